-- Slots by state and by the location that makes them ok, per dataset.
SELECT d.name AS dataset,
       s.state,
       COALESCE(s.ok_role, '') AS ok_from,
       COUNT(*) AS slots,
       MIN(s.start_local) AS first_slot,
       MAX(s.start_local) AS last_slot
FROM slots s
JOIN datasets d ON d.id = s.dataset_id
WHERE (:dataset IS NULL OR d.name = :dataset)
  AND (:first IS NULL OR s.slot_start >= :first)
  AND (:last IS NULL OR s.slot_start <= :last)
GROUP BY d.name, s.state, s.ok_role
ORDER BY d.name, s.state;
