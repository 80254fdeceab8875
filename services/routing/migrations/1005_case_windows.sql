-- A callback is due inside the patient's contact window: routing keeps each
-- case's zone and, when a state rule applies to the patient, the state (USPS
-- code) whose rule narrows the program's window.
ALTER TABLE case_views
    ADD COLUMN time_zone TEXT,
    ADD COLUMN us_state  TEXT;
