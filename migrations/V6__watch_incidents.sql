-- slotfill catalog, schema version 6. Documented for users in docs/catalog.md.
-- (Version 5 belongs to another change; refinery applies both in order.)
--
-- The freshness watch of `slotfill serve` keeps its state here, so that a restart in the
-- middle of an incident neither forgets it nor alerts again: the last check of each
-- dataset, every incident, and every alert (with whether the webhook took it). An alert
-- is written in the same transaction that opens or closes its incident and sent after,
-- so a process killed in between sends it when it comes back, once.

CREATE TABLE watch_checks (
    dataset_id        INTEGER PRIMARY KEY REFERENCES datasets(id),
    checked_at        TEXT    NOT NULL,       -- the clock when the last check began
    overdue           INTEGER NOT NULL,       -- gap slots past the grace at that check
    newest_collector  INTEGER,                -- newest slot a collector wrote validly (Unix s)
    checks            INTEGER NOT NULL        -- checks made so far, by every serve process
);

CREATE TABLE incidents (
    id             INTEGER PRIMARY KEY,
    dataset_id     INTEGER NOT NULL REFERENCES datasets(id),
    kind           TEXT    NOT NULL CHECK (kind IN ('overdue', 'stale')),
    opened_at      TEXT    NOT NULL,
    first_overdue  INTEGER,                   -- the first overdue slot when it opened (Unix s)
    last_overdue   INTEGER,                   -- the newest slot that was overdue during it
    closed_at      TEXT                       -- NULL while open
);
-- At most one open incident per dataset.
CREATE UNIQUE INDEX incidents_open ON incidents (dataset_id) WHERE closed_at IS NULL;

CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
    incident_id  INTEGER NOT NULL REFERENCES incidents(id),
    status       TEXT    NOT NULL CHECK (status IN ('overdue', 'stale', 'recovered')),
    message      TEXT    NOT NULL,            -- the text posted
    details      TEXT    NOT NULL,            -- the JSON posted under `slotfill`
    created_at   TEXT    NOT NULL,
    delivery     TEXT    NOT NULL CHECK (delivery IN ('pending', 'sent', 'log_only', 'gave_up')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    sent_at      TEXT,                        -- when the webhook accepted it
    last_error   TEXT
);
-- One opening alert and one recovery per incident.
CREATE UNIQUE INDEX alerts_once ON alerts (incident_id, status = 'recovered');
