-- The coordinator roster. Shifts are weekly, in the member's own time zone.
CREATE TABLE members (
    member_id        TEXT        PRIMARY KEY,
    -- 'coordinator' or 'navigator'.
    role             TEXT        NOT NULL,
    time_zone        TEXT        NOT NULL,
    programs         TEXT[]      NOT NULL DEFAULT '{}',
    -- 'en', 'es'.
    languages        TEXT[]      NOT NULL DEFAULT '{}',
    skills           TEXT[]      NOT NULL DEFAULT '{}',
    capacity         INT         NOT NULL,
    -- 'available', 'busy', 'away' or 'offline'.
    presence         TEXT        NOT NULL DEFAULT 'offline',
    -- [{"day": 1..7, "start": "HH:MM", "end": "HH:MM"}]
    shifts           JSONB       NOT NULL DEFAULT '[]',
    open_tasks       INT         NOT NULL DEFAULT 0,
    last_assigned_at TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX members_updated ON members (updated_at);

-- What routing knows of each case, from touchpoint.case.v1.
CREATE TABLE case_views (
    case_id        TEXT        PRIMARY KEY,
    program_id     TEXT        NOT NULL,
    language       TEXT        NOT NULL,
    coordinator_id TEXT        NOT NULL DEFAULT '',
    navigator_id   TEXT        NOT NULL DEFAULT '',
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Normalised contact points (patient data) to the cases they reach: one number
-- may reach several cases (a caregiver of two patients).
CREATE TABLE case_contacts (
    contact_key TEXT NOT NULL,
    case_id     TEXT NOT NULL,
    PRIMARY KEY (contact_key, case_id)
);
CREATE INDEX case_contacts_case ON case_contacts (case_id);

-- The latest attempt sent to each case on each channel, from
-- touchpoint.attempt.v1: a reply soon after names it.
CREATE TABLE last_attempts (
    case_id    TEXT        NOT NULL,
    channel    TEXT        NOT NULL,
    attempt_id TEXT        NOT NULL,
    sent_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (case_id, channel)
);

-- Every inbound contact. A provider's message id makes a webhook delivered twice
-- one contact.
CREATE TABLE inbound (
    inbound_id          UUID        PRIMARY KEY,
    channel             TEXT        NOT NULL,
    provider_message_id TEXT        UNIQUE,
    case_ids            TEXT[]      NOT NULL DEFAULT '{}',
    rule                TEXT        NOT NULL,
    member_id           TEXT,
    queue               TEXT,
    received_at         TIMESTAMPTZ NOT NULL
);

-- Worklists: call tasks, routed contacts, callbacks and reviews.
CREATE TABLE tasks (
    task_id      UUID        PRIMARY KEY,
    -- 'call', 'inbound', 'callback', 'adverse_event_review', 'keyword_review'.
    kind         TEXT        NOT NULL,
    case_id      TEXT        NOT NULL DEFAULT '',
    channel      TEXT        NOT NULL DEFAULT '',
    member_id    TEXT,
    queue        TEXT,
    priority     INT         NOT NULL DEFAULT 0,
    -- 'open', 'claimed' or 'done'.
    status       TEXT        NOT NULL DEFAULT 'open',
    outcome      TEXT,
    attempt_id   TEXT,
    inbound_id   UUID,
    due_at       TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    -- The event that made the task: its story continues in TaskCompleted.
    correlation_id TEXT      NOT NULL DEFAULT ''
);
CREATE INDEX tasks_member ON tasks (member_id, priority DESC, due_at) WHERE status <> 'done';
CREATE INDEX tasks_queue ON tasks (queue, priority DESC, due_at) WHERE status <> 'done' AND member_id IS NULL;
CREATE UNIQUE INDEX tasks_call_attempt ON tasks (attempt_id) WHERE kind = 'call';
