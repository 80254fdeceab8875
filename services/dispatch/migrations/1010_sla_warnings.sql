-- SLA alerts before the fact (src/sla.rs): a callback or a possible adverse
-- event within two hours of its due time is mailed once as a warning, then
-- again if it becomes late.
ALTER TABLE sla_watch ADD COLUMN warned BOOLEAN NOT NULL DEFAULT false;

-- A program's backlog older than its `backlog_hours`: when it was last mailed,
-- so a backlog that stays is mailed again only every few hours. One row a
-- program.
CREATE TABLE sla_backlog (
    program_id  TEXT        PRIMARY KEY,
    notified_at TIMESTAMPTZ NOT NULL
);
