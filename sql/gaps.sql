-- Contiguous periods of slots that are not ok, with their length and reasons.
WITH bad AS (
    SELECT s.dataset_id, s.slot_start, s.start_local, s.state, d.slot_minutes,
           s.slot_start - (ROW_NUMBER() OVER (PARTITION BY s.dataset_id ORDER BY s.slot_start)) * d.slot_minutes * 60 AS run
    FROM slots s
    JOIN datasets d ON d.id = s.dataset_id
    WHERE s.state <> 'ok'
      AND (:dataset IS NULL OR d.name = :dataset)
      AND (:first IS NULL OR s.slot_start >= :first)
      AND (:last IS NULL OR s.slot_start <= :last)
)
SELECT d.name AS dataset,
       MIN(b.start_local) AS first_slot,
       MAX(b.start_local) AS last_slot,
       COUNT(*) AS slots,
       COUNT(*) * b.slot_minutes AS minutes,
       group_concat(DISTINCT b.state) AS reasons
FROM bad b
JOIN datasets d ON d.id = b.dataset_id
GROUP BY b.dataset_id, b.run
ORDER BY d.name, MIN(b.slot_start);
