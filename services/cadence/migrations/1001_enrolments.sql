-- Each case enrolled in a program: its enrolment (the facts cadence knows, one run
-- per step and the touchpoint each run waits to send) and the durable timer that
-- says when the due loop must next look at it.
CREATE TABLE enrolments (
    case_id    TEXT        PRIMARY KEY,
    program_id TEXT        NOT NULL,
    state      JSONB       NOT NULL,
    -- The soonest touchpoint not held by a pause; NULL while nothing waits.
    -- Due loops claim rows with wake_at <= now, FOR UPDATE SKIP LOCKED.
    wake_at    TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX enrolments_wake ON enrolments (wake_at) WHERE wake_at IS NOT NULL;
