-- logagg cloud sync bookkeeping.

CREATE TABLE @extschema@.sync_log (
    id           bigserial PRIMARY KEY,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    source       text NOT NULL,
    object_key   text,
    part         int NOT NULL DEFAULT 0,
    rows         bigint,
    bytes        bigint,
    checksum     text,
    status       text NOT NULL CHECK (status IN ('uploaded', 'failed')),
    error        text,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_log_window ON @extschema@.sync_log (window_start, source);
COMMENT ON TABLE @extschema@.sync_log IS
    'One row per cloud-sync upload attempt: the window, source, object key, rows, bytes and checksum, written only after the store confirmed the object.';
