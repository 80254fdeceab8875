-- The KPI projection (src/kpi): daily figures per program, day (in the site's
-- time zone) and channel, kept current by following the timeline, which holds
-- every event of the four topics; rebuilt from it on demand.

-- How far the projection has read the timeline, in WatchEvents' gap-free
-- (writer_xid, position) order. One row.
CREATE TABLE kpi_cursor (
    one         BOOLEAN     PRIMARY KEY DEFAULT true CHECK (one),
    writer_xid  BIGINT      NOT NULL DEFAULT 0,
    position    BIGINT      NOT NULL DEFAULT 0,
    -- Bumped by each rebuild.
    generation  BIGINT      NOT NULL DEFAULT 0,
    -- When the last entry folded was recorded ('epoch': none yet).
    through     TIMESTAMPTZ NOT NULL DEFAULT 'epoch'
);
INSERT INTO kpi_cursor DEFAULT VALUES;

-- Daily figures: counts and summed seconds (src/kpi/fold.rs names them).
-- channel '' holds a case's figures (enrolled, first contact, opt-out, ...).
CREATE TABLE kpi_daily (
    program_id TEXT   NOT NULL,
    day        DATE   NOT NULL,
    channel    TEXT   NOT NULL,
    figure     TEXT   NOT NULL,
    value      BIGINT NOT NULL,
    PRIMARY KEY (program_id, day, channel, figure)
);
-- A range of days over many programs is read from this index alone.
CREATE INDEX kpi_daily_day ON kpi_daily (day, figure) INCLUDE (program_id, channel, value);

-- The same figures summed over every program, kept beside them: a plot of
-- every program over a year reads a row a day and figure, not one per program.
CREATE TABLE kpi_daily_all (
    day     DATE   NOT NULL,
    channel TEXT   NOT NULL,
    figure  TEXT   NOT NULL,
    value   BIGINT NOT NULL,
    PRIMARY KEY (day, figure, channel)
);

-- The programs the projection has seen a case of: a caller whose programs
-- cover them all reads kpi_daily_all.
CREATE TABLE kpi_programs (
    program_id TEXT PRIMARY KEY
);

-- What the projection keeps of each case.
CREATE TABLE kpi_cases (
    case_id          TEXT        PRIMARY KEY,
    program_id       TEXT        NOT NULL,
    opened_at        TIMESTAMPTZ NOT NULL,
    first_sent_at    TIMESTAMPTZ,
    first_contact_at TIMESTAMPTZ,
    opted_out        BOOLEAN     NOT NULL DEFAULT false
);

-- What it keeps of each attempt: to credit an answer to the day it was made,
-- and the backlog (asked for and due, not yet made).
CREATE TABLE kpi_attempts (
    attempt_id   TEXT    PRIMARY KEY,
    case_id      TEXT    NOT NULL,
    program_id   TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    due_at       TIMESTAMPTZ,
    attempted_on DATE,
    settled      BOOLEAN NOT NULL,
    reached      BOOLEAN NOT NULL
);
CREATE INDEX kpi_attempts_backlog ON kpi_attempts (due_at) WHERE NOT settled;
-- Attempts are forgotten 90 days after they were made (src/kpi/projector.rs).
CREATE INDEX kpi_attempts_made ON kpi_attempts (attempted_on) WHERE settled;

-- Work open on a case that a figure waits on: callbacks, adverse-event flags,
-- inbound contacts nobody has answered yet. Deleted when closed.
CREATE TABLE kpi_open (
    kind       TEXT        NOT NULL,
    key        TEXT        NOT NULL,
    case_id    TEXT        NOT NULL,
    program_id TEXT        NOT NULL,
    channel    TEXT        NOT NULL,
    since      TIMESTAMPTZ NOT NULL,
    due_at     TIMESTAMPTZ,
    PRIMARY KEY (key, kind)
);
CREATE INDEX kpi_open_case ON kpi_open (case_id);
