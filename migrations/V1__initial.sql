-- slotfill catalog, schema version 1. Documented for users in docs/catalog.md.
-- Rules: migrations are append-only (see migrations/README.md).

-- One row per configured dataset, with the slot settings it was catalogued with.
CREATE TABLE datasets (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    slot_minutes   INTEGER NOT NULL,
    utc_offset     TEXT    NOT NULL,          -- '+09:00'
    key_template   TEXT    NOT NULL,
    created_at     TEXT    NOT NULL
);

-- Every location a dataset has had: primary, backup(s), complement.
CREATE TABLE locations (
    id          INTEGER PRIMARY KEY,
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id),
    url         TEXT    NOT NULL,             -- s3://bucket/prefix or file:///dir
    role        TEXT    NOT NULL CHECK (role IN ('primary', 'backup', 'complement')),
    position    INTEGER NOT NULL,             -- order in the config: primary 0, backups 1.., complement last
    active      INTEGER NOT NULL DEFAULT 1,   -- 0 once the location left the config
    UNIQUE (dataset_id, url)
);

-- Every object seen by a listing: the facts (size, ETag, lines) and the verdict.
CREATE TABLE objects (
    id             INTEGER PRIMARY KEY,
    location_id    INTEGER NOT NULL REFERENCES locations(id),
    key            TEXT    NOT NULL,          -- relative to the location
    slot_start     INTEGER NOT NULL,          -- Unix seconds (UTC)
    size           INTEGER NOT NULL,
    etag           TEXT,
    last_modified  TEXT,
    lines          INTEGER,                   -- NULL until counted; capped at max_lines
    utf8_valid     INTEGER,                   -- 0 when the object holds non-UTF-8 bytes
    unterminated   INTEGER,                   -- 1 when the last line has no newline
    complete       INTEGER,                   -- complement metadata 'complete' (1/0), NULL if absent
    note_count     INTEGER,                   -- complement metadata 'note-count'
    earliest       TEXT,                      -- complement metadata 'earliest'
    latest         TEXT,                      -- complement metadata 'latest'
    status         TEXT    NOT NULL CHECK (status IN
                     ('ok', 'too_small', 'too_few_lines', 'too_many_lines', 'unreadable', 'incomplete')),
    counted_at     TEXT,
    seen_at        TEXT    NOT NULL,          -- last listing that saw it
    gone_at        TEXT,                      -- set when a later listing no longer had it
    UNIQUE (location_id, key)
);
CREATE INDEX objects_by_slot ON objects (location_id, slot_start);

-- Which day prefix of which location was listed when.
CREATE TABLE listings (
    location_id  INTEGER NOT NULL REFERENCES locations(id),
    day          TEXT    NOT NULL,            -- local date, '2025-08-01'
    prefix       TEXT    NOT NULL,
    listed_at    TEXT    NOT NULL,
    objects      INTEGER NOT NULL,
    pages        INTEGER NOT NULL,
    PRIMARY KEY (location_id, day)
);

-- Every slot of every scanned window and its derived state.
CREATE TABLE slots (
    dataset_id        INTEGER NOT NULL REFERENCES datasets(id),
    slot_start        INTEGER NOT NULL,       -- Unix seconds (UTC)
    start_local       TEXT    NOT NULL,       -- '2025-08-01T00:40:00+09:00'
    day               TEXT    NOT NULL,       -- local date
    state             TEXT    NOT NULL CHECK (state IN
                        ('ok', 'missing', 'too_small', 'too_few_lines', 'too_many_lines', 'unreadable', 'incomplete')),
    ok_role           TEXT,                   -- role of the location whose object makes it ok
    object_id         INTEGER REFERENCES objects(id),  -- the object that decides the state
    updated_at        TEXT    NOT NULL,
    retry_after       TEXT,                   -- an empty fill is not retried before this time
    PRIMARY KEY (dataset_id, slot_start)
) WITHOUT ROWID;
CREATE INDEX slots_by_state ON slots (dataset_id, state, slot_start);

-- One row per command run.
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    dataset_id    INTEGER REFERENCES datasets(id),
    command       TEXT    NOT NULL,           -- scan, fill, verify, run, ...
    args          TEXT    NOT NULL,           -- the command line, secrets removed
    window_start  TEXT,
    window_end    TEXT,
    started_at    TEXT    NOT NULL,
    finished_at   TEXT,
    outcome       TEXT,                       -- ok, gaps_remain, failed, interrupted (NULL while running)
    slots         INTEGER,
    missing_before INTEGER,
    filled        INTEGER,
    still_missing INTEGER,
    requests      INTEGER,
    downloads     INTEGER,
    bytes_read    INTEGER,
    origin_calls  INTEGER,
    error         TEXT
);

-- One row per attempt to fill a slot from the origin.
CREATE TABLE fill_attempts (
    id                INTEGER PRIMARY KEY,
    dataset_id        INTEGER NOT NULL REFERENCES datasets(id),
    slot_start        INTEGER NOT NULL,
    run_id            INTEGER REFERENCES runs(id),
    started_at        TEXT    NOT NULL,
    finished_at       TEXT,
    outcome           TEXT CHECK (outcome IN ('filled', 'partial', 'empty', 'failed', 'exists')),
    notes             INTEGER,
    origin_calls      INTEGER NOT NULL DEFAULT 0,
    retries           INTEGER NOT NULL DEFAULT 0,
    coverage_seconds  REAL,                   -- earliest note minus slot start
    error_code        TEXT,
    object_id         INTEGER REFERENCES objects(id)
);
CREATE INDEX fill_attempts_by_slot ON fill_attempts (dataset_id, slot_start);

-- At most one process fills a dataset at a time.
CREATE TABLE leases (
    dataset_id   INTEGER PRIMARY KEY REFERENCES datasets(id),
    holder       TEXT    NOT NULL,            -- host:pid:nonce
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    acquired_at  TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL
);

-- Contiguous runs of non-ok slots (a gap ends where the next slot is ok or not catalogued).
CREATE VIEW gaps AS
WITH bad AS (
    SELECT s.dataset_id, s.slot_start, s.state, d.slot_minutes * 60 AS width,
           s.slot_start - (ROW_NUMBER() OVER (PARTITION BY s.dataset_id ORDER BY s.slot_start)) * d.slot_minutes * 60 AS grp
    FROM slots s JOIN datasets d ON d.id = s.dataset_id
    WHERE s.state <> 'ok'
)
SELECT b.dataset_id,
       d.name AS dataset,
       MIN(b.slot_start) AS first_slot,
       MAX(b.slot_start) AS last_slot,
       (SELECT start_local FROM slots WHERE dataset_id = b.dataset_id AND slot_start = MIN(b.slot_start)) AS first_local,
       (SELECT start_local FROM slots WHERE dataset_id = b.dataset_id AND slot_start = MAX(b.slot_start)) AS last_local,
       COUNT(*) AS slots,
       group_concat(DISTINCT b.state) AS reasons
FROM bad b JOIN datasets d ON d.id = b.dataset_id
GROUP BY b.dataset_id, b.grp;

-- Coverage per local day.
CREATE VIEW coverage_by_day AS
SELECT d.name AS dataset,
       s.day,
       COUNT(*) AS slots,
       SUM(s.state = 'ok') AS ok,
       SUM(s.ok_role = 'primary') AS ok_primary,
       SUM(s.ok_role = 'backup') AS ok_backup,
       SUM(s.ok_role = 'complement') AS ok_complement,
       SUM(s.state <> 'ok') AS not_ok,
       ROUND(100.0 * SUM(s.state = 'ok') / COUNT(*), 2) AS coverage_pct
FROM slots s JOIN datasets d ON d.id = s.dataset_id
GROUP BY d.name, s.day;
