-- Where a person's calls ring: '' for their Twilio Client (identity: their
-- member id), a sip: address (a desk phone) or an E.164 number (their own
-- phone). Staff data, not patient data.
ALTER TABLE members ADD COLUMN dial_to TEXT NOT NULL DEFAULT '';
