-- The 50 most recent runs and how they ended.
SELECT r.id,
       d.name AS dataset,
       r.command,
       r.window_start,
       r.window_end,
       r.started_at,
       r.finished_at,
       COALESCE(r.outcome, 'running or killed') AS outcome,
       r.slots,
       r.missing_before,
       r.filled,
       r.still_missing,
       r.requests,
       r.origin_calls,
       r.error
FROM runs r
LEFT JOIN datasets d ON d.id = r.dataset_id
WHERE (:dataset IS NULL OR d.name = :dataset)
ORDER BY r.id DESC
LIMIT 50;
