-- Who changed a member's settings, and every change: the roster is staff
-- data, changed by supervisors through the desk (or by an operator's tool).
ALTER TABLE members ADD COLUMN updated_by TEXT NOT NULL DEFAULT '';

CREATE TABLE roster_changes (
    change_id  BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id  TEXT        NOT NULL,
    changed_by TEXT        NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The settings as saved: role, zone, programs, languages, skills,
    -- capacity, presence and shifts.
    settings   JSONB       NOT NULL
);
CREATE INDEX roster_changes_member ON roster_changes (member_id, changed_at);
