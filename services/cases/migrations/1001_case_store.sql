-- The case timeline: the append-only audit trail (HIPAA keeps it six years).
-- Rows with a version are the case's own events, its event-sourced log; rows
-- without are other services' events appended to the timeline.
CREATE TABLE timeline (
    position    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id     TEXT        NOT NULL,
    version     BIGINT,
    event_id    UUID        NOT NULL UNIQUE,
    kind        TEXT        NOT NULL,
    source      TEXT        NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    envelope    BYTEA       NOT NULL,
    -- The writing transaction's id. WatchEvents reads in (writer_xid, position)
    -- order and only rows whose writer is older than every running transaction,
    -- so a row whose transaction commits late is never skipped.
    writer_xid  BIGINT      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint)
);
CREATE INDEX timeline_stream ON timeline (writer_xid, position);
CREATE UNIQUE INDEX timeline_case_version ON timeline (case_id, version) WHERE version IS NOT NULL;
CREATE INDEX timeline_case_position ON timeline (case_id, position);

-- The current state of each case (a projection of its events), as GetCase returns it.
CREATE TABLE cases (
    case_id    TEXT        PRIMARY KEY,
    version    BIGINT      NOT NULL,
    state      BYTEA       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Normalised contact points ("phone:+1312...", "email:...") to case ids.
CREATE TABLE contact_index (
    contact_key TEXT NOT NULL,
    case_id     TEXT NOT NULL,
    PRIMARY KEY (contact_key, case_id)
);
CREATE INDEX contact_index_case ON contact_index (case_id);

-- Client request ids already carried out, and what they produced.
CREATE TABLE command_requests (
    request_id TEXT        PRIMARY KEY,
    case_id    TEXT        NOT NULL,
    version    BIGINT      NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
