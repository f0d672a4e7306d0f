-- slotfill catalog, schema version 2. Documented for users in docs/catalog.md.
--
-- New states:
--   slots.state   'empty'     the origin confirmed, by a complete fetch, that it holds no
--                             record for the slot (a zero-line complement object says so)
--                 'pending'   the slot has not ended plus the settle delay: never a gap
--   objects.status 'empty'    a complete complement object with zero notes
--                  'unchecked' listed but not counted (outside the scanned window, or a
--                              location whose object cannot change the slot's state)
-- New columns:
--   fill_attempts.left_out    notes the visibility policy kept out of the slot's object
--
-- SQLite cannot change a CHECK constraint in place, so `objects` and `slots` are rebuilt
-- (every row copied as it is). slotfill opens the catalog with foreign keys off while it
-- migrates and turns them on afterwards, so the rebuild does not cascade.

DROP VIEW gaps;
DROP VIEW coverage_by_day;

CREATE TABLE objects_v2 (
    id             INTEGER PRIMARY KEY,
    location_id    INTEGER NOT NULL REFERENCES locations(id),
    key            TEXT    NOT NULL,
    slot_start     INTEGER NOT NULL,
    size           INTEGER NOT NULL,
    etag           TEXT,
    last_modified  TEXT,
    lines          INTEGER,
    utf8_valid     INTEGER,
    unterminated   INTEGER,
    complete       INTEGER,
    note_count     INTEGER,
    earliest       TEXT,
    latest         TEXT,
    status         TEXT    NOT NULL CHECK (status IN
                     ('ok', 'empty', 'too_small', 'too_few_lines', 'too_many_lines', 'unreadable',
                      'incomplete', 'unchecked')),
    counted_at     TEXT,
    seen_at        TEXT    NOT NULL,
    gone_at        TEXT,
    UNIQUE (location_id, key)
);
INSERT INTO objects_v2 SELECT * FROM objects;
DROP TABLE objects;
ALTER TABLE objects_v2 RENAME TO objects;
CREATE INDEX objects_by_slot ON objects (location_id, slot_start);

CREATE TABLE slots_v2 (
    dataset_id        INTEGER NOT NULL REFERENCES datasets(id),
    slot_start        INTEGER NOT NULL,
    start_local       TEXT    NOT NULL,
    day               TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN
                        ('ok', 'empty', 'pending', 'missing', 'too_small', 'too_few_lines',
                         'too_many_lines', 'unreadable', 'incomplete')),
    ok_role           TEXT,
    object_id         INTEGER REFERENCES objects(id),
    updated_at        TEXT    NOT NULL,
    retry_after       TEXT,
    PRIMARY KEY (dataset_id, slot_start)
) WITHOUT ROWID;
INSERT INTO slots_v2 SELECT * FROM slots;
DROP TABLE slots;
ALTER TABLE slots_v2 RENAME TO slots;
CREATE INDEX slots_by_state ON slots (dataset_id, state, slot_start);

ALTER TABLE fill_attempts ADD COLUMN left_out INTEGER;

-- Contiguous runs of gap slots: not ok, not confirmed empty, not pending. (Version 1's
-- view could not be queried: "misuse of aggregate function MIN()".)
CREATE VIEW gaps AS
WITH bad AS (
    SELECT s.dataset_id, s.slot_start, s.state,
           s.slot_start - (ROW_NUMBER() OVER (PARTITION BY s.dataset_id ORDER BY s.slot_start)) * d.slot_minutes * 60 AS grp
    FROM slots s JOIN datasets d ON d.id = s.dataset_id
    WHERE s.state NOT IN ('ok', 'empty', 'pending')
),
periods AS (
    SELECT dataset_id, MIN(slot_start) AS first_slot, MAX(slot_start) AS last_slot,
           COUNT(*) AS slots, group_concat(DISTINCT state) AS reasons
    FROM bad
    GROUP BY dataset_id, grp
)
SELECT p.dataset_id,
       d.name AS dataset,
       p.first_slot,
       p.last_slot,
       f.start_local AS first_local,
       l.start_local AS last_local,
       p.slots,
       p.reasons
FROM periods p
JOIN datasets d ON d.id = p.dataset_id
JOIN slots f ON f.dataset_id = p.dataset_id AND f.slot_start = p.first_slot
JOIN slots l ON l.dataset_id = p.dataset_id AND l.slot_start = p.last_slot;

-- Coverage per local day. coverage_pct counts against the slots a day has (1440 /
-- slot_minutes), so a day scanned in part is not 100 %; catalogued_pct against the slots
-- catalogued. Both count a slot confirmed empty at the origin as covered.
CREATE VIEW coverage_by_day AS
SELECT d.name AS dataset,
       s.day,
       1440 / d.slot_minutes AS expected,
       COUNT(*) AS slots,
       SUM(s.state = 'ok') AS ok,
       SUM(s.ok_role = 'primary') AS ok_primary,
       SUM(s.ok_role = 'backup') AS ok_backup,
       SUM(s.ok_role = 'complement') AS ok_complement,
       SUM(s.state = 'empty') AS empty,
       SUM(s.state = 'pending') AS pending,
       SUM(s.state NOT IN ('ok', 'empty', 'pending')) AS not_ok,
       ROUND(100.0 * SUM(s.state IN ('ok', 'empty')) / (1440 / d.slot_minutes), 2) AS coverage_pct,
       ROUND(100.0 * SUM(s.state IN ('ok', 'empty')) / COUNT(*), 2) AS catalogued_pct
FROM slots s JOIN datasets d ON d.id = s.dataset_id
GROUP BY d.name, s.day;
