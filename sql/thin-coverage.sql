-- Complement slots whose earliest note is more than :thin_seconds (default 60) after the slot start.
SELECT d.name AS dataset,
       s.start_local AS slot,
       o.note_count AS notes,
       o.earliest,
       ROUND((julianday(o.earliest) - julianday(s.slot_start, 'unixepoch')) * 86400, 3) AS coverage_seconds
FROM slots s
JOIN datasets d ON d.id = s.dataset_id
JOIN objects o ON o.id = s.object_id
JOIN locations l ON l.id = o.location_id
WHERE l.role = 'complement'
  AND o.earliest IS NOT NULL
  AND (julianday(o.earliest) - julianday(s.slot_start, 'unixepoch')) * 86400 > COALESCE(:thin_seconds, 60)
  AND (:dataset IS NULL OR d.name = :dataset)
  AND (:first IS NULL OR s.slot_start >= :first)
  AND (:last IS NULL OR s.slot_start <= :last)
ORDER BY d.name, s.slot_start;
