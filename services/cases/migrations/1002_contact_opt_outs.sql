-- What each number or address said about being contacted, on whatever case it
-- said it, or on none (a STOP from a number no case holds yet). A case that
-- is opened with the contact point, or given it later, starts with it revoked
-- (FCC 24-24: an opt-out belongs to the number). Both instants are kept so the
-- outcome does not depend on the order of events from different cases: the
-- contact point is opted out while its latest opt-out is later than its latest
-- opt-in.
CREATE TABLE contact_opt_outs (
    -- Normalised, as in contact_index ("phone:+1312...", "email:...").
    contact_key  TEXT        NOT NULL,
    channel      INT         NOT NULL,
    opted_out_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    opted_in_at  TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    -- The inbound event of the latest opt-out, for the evidence.
    opt_out_event_id UUID,
    PRIMARY KEY (contact_key, channel)
);
