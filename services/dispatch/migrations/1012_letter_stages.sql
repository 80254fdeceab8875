-- A letter's journey (mailed, in transit, …) as the print-and-mail provider's
-- webhooks report it: each stage is published once per attempt, however often
-- the provider repeats a webhook. Empty for every other channel.
ALTER TABLE attempts
    ADD COLUMN stages text[] NOT NULL DEFAULT '{}';
