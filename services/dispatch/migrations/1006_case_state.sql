-- The patient's US state (USPS code) when a state rule applies to it, from the
-- postal address or the phone's area code: the sender checks the program's
-- window and cap as narrowed by that state's rule.
ALTER TABLE case_views ADD COLUMN us_state text;
