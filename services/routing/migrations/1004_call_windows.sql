-- A call task is worked only inside the patient's contact window: from when and
-- until when (as dispatch asked for the call), and the patient's zone to show
-- them in the patient's time. NULL for other tasks.
ALTER TABLE tasks
    ADD COLUMN callable_from  TIMESTAMPTZ,
    ADD COLUMN callable_until TIMESTAMPTZ,
    ADD COLUMN time_zone      TEXT;

-- The number a call task calls, as a contact key ("phone:+1312..."): patient
-- data, kept so that a call the patient answered by asking not to be called
-- again revokes voice to that number.
ALTER TABLE tasks ADD COLUMN contact_key TEXT;
