-- Contiguous periods of gap slots (not ok, confirmed empty or pending): the `gaps` view.
SELECT g.dataset,
       g.first_local AS first_slot,
       g.last_local AS last_slot,
       g.slots,
       g.slots * d.slot_minutes AS minutes,
       g.reasons
FROM gaps g
JOIN datasets d ON d.id = g.dataset_id
WHERE (:dataset IS NULL OR g.dataset = :dataset)
  AND (:first IS NULL OR g.last_slot >= :first)
  AND (:last IS NULL OR g.first_slot <= :last)
ORDER BY g.dataset, g.first_slot;
