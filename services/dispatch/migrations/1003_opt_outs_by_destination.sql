-- An opt-out belongs to the number or address, not to one case: a STOP from a
-- number stops every case's texts to it, until the number opts back in (START)
-- or a case records consent naming it. Both instants are kept so the outcome
-- does not depend on the order in which events of different cases arrive: the
-- number is opted out while its latest opt-out is later than its latest opt-in.
CREATE TABLE opted_out_destinations (
    channel      TEXT        NOT NULL,
    -- Patient data: the number or address.
    destination  TEXT        NOT NULL,
    opted_out_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    opted_in_at  TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (channel, destination)
);
