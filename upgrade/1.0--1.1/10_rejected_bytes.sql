-- logagg.rejected keeps each refused record's exact bytes (a bytea: a
-- record that is not valid text has no text form), the whole record's
-- length and, when the kept bytes are cut, its SHA-256; and the stream
-- and seq it came with.  raw stays, for valid text only.
ALTER TABLE @extschema@.rejected
    ADD COLUMN raw_bytes   bytea,
    ADD COLUMN raw_length  bigint,
    ADD COLUMN raw_sha256  bytea,
    ADD COLUMN stream      text,
    ADD COLUMN seq         bigint;
COMMENT ON COLUMN @extschema@.rejected.raw IS
    'The refused record''s bytes as text (at most 64 kB, cut at a character boundary), when they are valid text in the database encoding; else NULL (see raw_bytes).';
COMMENT ON COLUMN @extschema@.rejected.raw_bytes IS
    'The refused record''s exact bytes (one NDJSON line, array element or message), the first 64 kB of it.';
COMMENT ON COLUMN @extschema@.rejected.raw_length IS
    'Length in bytes of the whole refused record.';
COMMENT ON COLUMN @extschema@.rejected.raw_sha256 IS
    'SHA-256 of the whole refused record when raw_bytes holds only its first 64 kB; else NULL.';
COMMENT ON COLUMN @extschema@.rejected.stream IS
    'The stream of the connection the record came on, if any.';
COMMENT ON COLUMN @extschema@.rejected.seq IS
    'The record''s seq, when it had a valid one.';
COMMENT ON TABLE @extschema@.rejected IS
    'Records refused at ingest, one row per record (NDJSON line, array element or message) with the reason and its exact bytes (raw_bytes, the first 64 kB; raw_length and raw_sha256 describe the whole); nothing is dropped silently.';
