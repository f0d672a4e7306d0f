-- The 50 most recent runs and how they ended (with their calibrations' verdicts and lowest recall).
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
       (SELECT group_concat(DISTINCT c.verdict) FROM calibrations c WHERE c.run_id = r.id) AS calibration,
       (SELECT ROUND(MIN(c.recall), 3) FROM calibrations c WHERE c.run_id = r.id) AS recall,
       r.error
FROM runs r
LEFT JOIN datasets d ON d.id = r.dataset_id
WHERE (:dataset IS NULL OR d.name = :dataset)
ORDER BY r.id DESC
LIMIT 50;
