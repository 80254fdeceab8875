-- What the spine tests' consumer applies: one row per applied event, in apply order.
-- Deliberately no unique constraint on event_id: a double effect must be visible.
CREATE TABLE spine_effects (
    applied_seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    UUID   NOT NULL,
    case_id     TEXT   NOT NULL,
    sequence    BIGINT NOT NULL,
    trace_id    TEXT
);
