-- Every possible adverse event a case was flagged with, and what was decided
-- (src/kpi/flags.rs): the pharmacovigilance list of open flags and the
-- monthly reconciliation. Kept by the KPI projector in the same transaction
-- as the figures, so it is rebuilt with them. A flag is a few rows a month per
-- program; rows are kept as long as the timeline keeps the events they come
-- from.
CREATE TABLE ae_flags (
    case_id          TEXT        NOT NULL,
    -- The flag's review task, or its message when it has none.
    key              TEXT        NOT NULL,
    program_id       TEXT        NOT NULL,
    inbound_id       TEXT        NOT NULL,
    -- Day zero: the first receipt of the message.
    received_at      TIMESTAMPTZ NOT NULL,
    due_at           TIMESTAMPTZ NOT NULL,
    -- NULL (open), 'reported', 'not_adverse_event' or 'reviewed' (its review
    -- task was completed without a report).
    decision         TEXT,
    decided_at       TIMESTAMPTZ,
    decided_by       TEXT        NOT NULL DEFAULT '',
    safety_reference TEXT        NOT NULL DEFAULT '',
    reason           TEXT        NOT NULL DEFAULT '',
    PRIMARY KEY (case_id, key)
);
CREATE INDEX ae_flags_received ON ae_flags (received_at);
CREATE INDEX ae_flags_key ON ae_flags (key);
CREATE INDEX ae_flags_open ON ae_flags (due_at)
    WHERE decision IS NULL OR decision = 'reviewed';
