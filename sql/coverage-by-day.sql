-- Coverage per local day: expected slots, ok by location, empty, gaps by reason, coverage %.
-- coverage_pct: ok or confirmed-empty slots of the slots the day has (docs/catalog.md).
SELECT d.name AS dataset,
       s.day,
       1440 / d.slot_minutes AS expected,
       COUNT(*) AS catalogued,
       SUM(s.state = 'ok') AS ok,
       SUM(s.ok_role = 'primary') AS ok_primary,
       SUM(s.ok_role = 'backup') AS ok_backup,
       SUM(s.ok_role = 'complement') AS ok_complement,
       SUM(s.state = 'empty') AS empty,
       SUM(s.state = 'pending') AS pending,
       SUM(s.state = 'missing') AS missing,
       SUM(s.state = 'too_small') AS too_small,
       SUM(s.state = 'too_few_lines') AS too_few_lines,
       SUM(s.state = 'too_many_lines') AS too_many_lines,
       SUM(s.state IN ('unreadable', 'incomplete')) AS unreadable,
       ROUND(100.0 * SUM(s.state IN ('ok', 'empty')) / (1440 / d.slot_minutes), 2) AS coverage_pct
FROM slots s
JOIN datasets d ON d.id = s.dataset_id
WHERE (:dataset IS NULL OR d.name = :dataset)
  AND (:first IS NULL OR s.slot_start >= :first)
  AND (:last IS NULL OR s.slot_start <= :last)
GROUP BY d.name, s.day
ORDER BY d.name, s.day;
