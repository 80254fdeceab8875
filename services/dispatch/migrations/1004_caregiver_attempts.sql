-- An attempt whose destination is the caregiver's: it is written from the
-- caregiver's text, which names neither the patient nor their condition.
ALTER TABLE attempts ADD COLUMN to_caregiver BOOLEAN NOT NULL DEFAULT false;
