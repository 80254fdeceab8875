-- The cases service's own tables start here; its issue fills them in.
-- The platform's outbox and inbox (versions below 1000) already exist in this schema.
COMMENT ON SCHEMA cases IS 'Touchpoint cases service';
