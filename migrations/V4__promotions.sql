-- slotfill catalog, schema version 4. Documented for users in docs/catalog.md.
--
-- `slotfill promote` copies complement objects into a collector location (the primary
-- by default). Each copy it made, or found made by an earlier promote that was killed
-- before recording it, is one row here; the copied object itself is a row of `objects`
-- at the target location, and the slot's state points at it.

CREATE TABLE promotions (
    id                  INTEGER PRIMARY KEY,
    dataset_id          INTEGER NOT NULL REFERENCES datasets(id),
    run_id              INTEGER REFERENCES runs(id),
    slot_start          INTEGER NOT NULL,
    source_location_id  INTEGER NOT NULL REFERENCES locations(id),
    source_key          TEXT    NOT NULL,
    source_etag         TEXT,
    target_location_id  INTEGER NOT NULL REFERENCES locations(id),
    target_key          TEXT    NOT NULL,
    etag                TEXT,                 -- the target object's ETag after the copy
    size                INTEGER NOT NULL,
    replaced_etag       TEXT,                 -- --replace-invalid: the invalid object replaced
    method              TEXT    NOT NULL CHECK (method IN ('copy', 'stream', 'found')),
    promoted_at         TEXT    NOT NULL,
    object_id           INTEGER REFERENCES objects(id)
);
CREATE INDEX promotions_by_slot ON promotions (dataset_id, slot_start);
