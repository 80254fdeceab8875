-- An answer to an SMS keyword (STOP, START, HELP), which carrier rules require
-- whatever the patient's consent or opt-out: the last-moment checks pass it.
ALTER TABLE attempts ADD COLUMN keyword_reply BOOLEAN NOT NULL DEFAULT false;
