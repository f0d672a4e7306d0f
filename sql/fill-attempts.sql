-- Fill attempts per slot: how many, the last outcome, notes written, notes the visibility
-- policy left out (of the last attempt that fetched), origin calls spent.
SELECT d.name AS dataset,
       s.start_local AS slot,
       s.state,
       COUNT(*) AS attempts,
       (SELECT a2.outcome FROM fill_attempts a2
        WHERE a2.dataset_id = a.dataset_id AND a2.slot_start = a.slot_start
        ORDER BY a2.id DESC LIMIT 1) AS last_outcome,
       MAX(a.notes) AS notes,
       (SELECT a3.left_out FROM fill_attempts a3
        WHERE a3.dataset_id = a.dataset_id AND a3.slot_start = a.slot_start AND a3.left_out IS NOT NULL
        ORDER BY a3.id DESC LIMIT 1) AS left_out,
       SUM(a.origin_calls) AS origin_calls,
       SUM(a.retries) AS retries,
       MAX(a.coverage_seconds) AS coverage_seconds,
       MAX(a.finished_at) AS last_finished
FROM fill_attempts a
JOIN datasets d ON d.id = a.dataset_id
JOIN slots s ON s.dataset_id = a.dataset_id AND s.slot_start = a.slot_start
WHERE (:dataset IS NULL OR d.name = :dataset)
  AND (:first IS NULL OR a.slot_start >= :first)
  AND (:last IS NULL OR a.slot_start <= :last)
GROUP BY a.dataset_id, a.slot_start
ORDER BY d.name, a.slot_start;
