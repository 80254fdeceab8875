-- The caps count what went to a number or address from any case: the sender
-- reads recent sends by destination as well as by case.
CREATE INDEX attempts_destination_sent ON attempts (destination, sent_at)
    WHERE sent_at IS NOT NULL;
