-- slotfill catalog, schema version 5. Documented for users in docs/catalog.md.
--
-- "Complete" and "empty" rest on proof. Before a fill trusts the origin's answers, it
-- checks them against the archive: for a valid slot the collector archived, the same
-- request a fill makes must return that object's notes (those the mode can return by
-- design). Each such check is a calibration; a fill records which one vouched for each
-- attempt, what ended each of its ranges, and how the notes were obtained.

CREATE TABLE calibrations (
    id                     INTEGER PRIMARY KEY,
    dataset_id             INTEGER NOT NULL REFERENCES datasets(id),
    run_id                 INTEGER REFERENCES runs(id),
    scope_first            INTEGER NOT NULL,    -- the first gap slot this calibration vouches for
    scope_last             INTEGER NOT NULL,    -- and the last
    reference_slot         INTEGER,             -- the archived slot compared (NULL: none found)
    reference_location_id  INTEGER REFERENCES locations(id),
    reference_key          TEXT,
    source                 TEXT    NOT NULL,    -- the endpoint asked, as in the objects' `source`
    expected               INTEGER,             -- archived notes the answer should have held
    found                  INTEGER,             -- of those, the notes it held
    recall                 REAL,                -- found / expected
    verdict                TEXT    NOT NULL CHECK (verdict IN
                             ('ok', 'partial', 'low_recall', 'blind', 'inconclusive', 'skipped')),
    blind_to               TEXT,                -- verdict 'blind': 'all', 'remote' or 'local' notes
    origin_calls           INTEGER NOT NULL DEFAULT 0,
    message                TEXT,                -- for people: what was compared, or why not
    calibrated_at          TEXT    NOT NULL
);
CREATE INDEX calibrations_by_run ON calibrations (run_id);

-- The calibration that vouched for the attempt's origin answers (NULL: none ran).
ALTER TABLE fill_attempts ADD COLUMN calibration_id INTEGER REFERENCES calibrations(id);
-- In-range notes outside the dataset's scope (the host or text filter), as `left_out`
-- counts those the visibility policy kept out.
ALTER TABLE fill_attempts ADD COLUMN out_of_scope INTEGER;
-- What ended the slot's ranges: `empty-page`, `older-note`, `no-new-note`, with a count
-- each when sub-slot windows made several ranges (`empty-page:5,no-new-note:1`).
ALTER TABLE fill_attempts ADD COLUMN range_end TEXT;
-- How the notes were obtained, as JSON: origin, mode, endpoint, engine, token (the class,
-- `anonymous` or `user`, never the token), visibility, host, filter.
ALTER TABLE fill_attempts ADD COLUMN provenance TEXT;
