-- Copies per local day and location: valid, not checked (listed but not counted: an earlier location already decided the slot), not ok, absent.
SELECT d.name AS dataset,
       s.day,
       l.role,
       l.url AS location,
       COUNT(*) AS slots,
       SUM(o.status = 'ok') AS ok,
       SUM(o.status = 'unchecked') AS not_checked,
       SUM(o.status NOT IN ('ok', 'unchecked')) AS not_ok,
       SUM(o.id IS NULL) AS absent
FROM slots s
JOIN datasets d ON d.id = s.dataset_id
JOIN locations l ON l.dataset_id = s.dataset_id AND l.active = 1
LEFT JOIN objects o ON o.location_id = l.id AND o.slot_start = s.slot_start AND o.gone_at IS NULL
WHERE (:dataset IS NULL OR d.name = :dataset)
  AND (:first IS NULL OR s.slot_start >= :first)
  AND (:last IS NULL OR s.slot_start <= :last)
GROUP BY d.name, s.day, l.id
ORDER BY d.name, s.day, l.position;
