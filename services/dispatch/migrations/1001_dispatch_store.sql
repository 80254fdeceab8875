-- What dispatch knows of each case, from touchpoint.case.v1 and touchpoint.inbound.v1:
-- enough to check consent at the last moment and to write to the patient. Names
-- are patient data; they never leave this table except into a rendered message.
CREATE TABLE case_views (
    case_id        TEXT        PRIMARY KEY,
    program_id     TEXT        NOT NULL,
    time_zone      TEXT        NOT NULL,
    first_name     TEXT        NOT NULL DEFAULT '',
    last_name      TEXT        NOT NULL DEFAULT '',
    coordinator_id TEXT        NOT NULL DEFAULT '',
    -- 'active', 'paused' or 'closed'.
    status         TEXT        NOT NULL DEFAULT 'active',
    paused_until   TIMESTAMPTZ,
    consented      TEXT[]      NOT NULL DEFAULT '{}',
    opted_out      TEXT[]      NOT NULL DEFAULT '{}',
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every attempt dispatch was asked to make, and where it stands. An attempt is
-- committed as 'sending' before its provider is called, so after a crash it is
-- reconciled, never blindly sent again.
CREATE TABLE attempts (
    attempt_id      UUID        PRIMARY KEY,
    case_id         TEXT        NOT NULL,
    program_id      TEXT        NOT NULL,
    step_id         TEXT        NOT NULL,
    template_id     TEXT        NOT NULL,
    channel         TEXT        NOT NULL,
    language        TEXT        NOT NULL,
    attempt_number  INT         NOT NULL,
    -- Patient data: the phone, email or fax number to send to.
    destination     TEXT        NOT NULL,
    due_at          TIMESTAMPTZ NOT NULL,
    not_after       TIMESTAMPTZ NOT NULL,
    -- 'queued', 'sending', 'sent', 'delivered', 'failed' or 'suppressed'.
    state           TEXT        NOT NULL DEFAULT 'queued',
    next_try_at     TIMESTAMPTZ NOT NULL,
    tries           INT         NOT NULL DEFAULT 0,
    provider        TEXT,
    provider_message_id TEXT,
    failure_code    TEXT,
    suppression     TEXT,
    -- The OutreachRequested it came from: outcome events are caused by it, share
    -- its story (correlation id) and continue its trace.
    request_event_id UUID       NOT NULL,
    correlation_id  TEXT        NOT NULL,
    traceparent     TEXT,
    requested_at    TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX attempts_ready ON attempts (next_try_at) WHERE state = 'queued';
CREATE INDEX attempts_sending ON attempts (updated_at) WHERE state = 'sending';
CREATE INDEX attempts_case ON attempts (case_id, requested_at);
CREATE INDEX attempts_sent ON attempts (case_id, sent_at) WHERE sent_at IS NOT NULL;
