-- SLA alerts (src/sla.rs): what routing promised with a due time (a callback,
-- a possible adverse event's 24-hour review), watched until its task is done;
-- mailed to the program's supervisors once it is late. Ids only.
CREATE TABLE sla_watch (
    kind        TEXT        NOT NULL, -- 'callback' or 'adverse_event'
    key         TEXT        NOT NULL, -- the task (or the inbound contact)
    case_id     TEXT        NOT NULL,
    program_id  TEXT        NOT NULL,
    due_at      TIMESTAMPTZ NOT NULL,
    -- 'watching', 'sending' (claimed for a mail), 'sent' or 'closed' (done in time).
    state       TEXT        NOT NULL DEFAULT 'watching',
    notified_at TIMESTAMPTZ,
    PRIMARY KEY (key, kind)
);
CREATE INDEX sla_watch_due ON sla_watch (due_at) WHERE state = 'watching';
-- Rows mailed or closed are deleted a month after their due time.
CREATE INDEX sla_watch_done ON sla_watch (due_at) WHERE state IN ('sent', 'closed');
