-- Calibrations of the origin against the archive: per run and day of gaps, what came back.
SELECT c.id,
       d.name AS dataset,
       c.run_id,
       (SELECT start_local FROM slots WHERE dataset_id = c.dataset_id AND slot_start = c.scope_first) AS first_gap,
       (SELECT start_local FROM slots WHERE dataset_id = c.dataset_id AND slot_start = c.scope_last) AS last_gap,
       (SELECT start_local FROM slots WHERE dataset_id = c.dataset_id AND slot_start = c.reference_slot) AS reference,
       c.verdict,
       c.blind_to,
       c.expected,
       c.found,
       ROUND(c.recall, 3) AS recall,
       c.origin_calls,
       c.message,
       c.calibrated_at
FROM calibrations c
JOIN datasets d ON d.id = c.dataset_id
WHERE (:dataset IS NULL OR d.name = :dataset)
  AND (:first IS NULL OR c.scope_last >= :first)
  AND (:last IS NULL OR c.scope_first <= :last)
ORDER BY c.id DESC
LIMIT 200;
