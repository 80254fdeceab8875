-- What the voice provider reported of a call after it was routed (answered by
-- whom, a voicemail left), each piece once: the key is the report's own
-- (`answered:<call sid>`, `voicemail:<recording sid>`), so a report sent
-- again publishes nothing more.
CREATE TABLE call_news (
    key         TEXT        PRIMARY KEY,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
