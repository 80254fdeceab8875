-- Click to call (PlaceCall): a person's own call is a voice attempt whose
-- sent_by is who rings first. asked_at is the database's real time when the
-- call was asked for: the provider's call list is searched from there when a
-- hand-off's answer was lost. calls_for is the call task's attempt the call
-- makes, so one contact is not counted twice against the caps. answered_by is
-- the provider's answering-machine verdict on the patient's leg.
ALTER TABLE attempts
    ADD COLUMN asked_at timestamptz,
    ADD COLUMN calls_for uuid,
    ADD COLUMN answered_by text;

-- One call at a time per person: the provider's call list is searched by the
-- person's client, so two calls of theirs in flight could not be told apart.
CREATE UNIQUE INDEX attempts_one_call_in_flight ON attempts (sent_by)
    WHERE channel = 'CHANNEL_VOICE' AND sent_by IS NOT NULL
      AND state IN ('queued', 'sending');
