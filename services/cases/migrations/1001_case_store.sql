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
    -- Lets a reader by position wait until every earlier transaction has
    -- committed, so a slow writer's row is never skipped.
    writer_xid  xid8        NOT NULL DEFAULT pg_current_xact_id()
);
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
