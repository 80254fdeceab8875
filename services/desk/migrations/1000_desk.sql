-- The desk's own state: sign-ins under way, sessions, each user's language,
-- and the access log of who saw which case's patient data.

-- A sign-in between leaving for the identity provider and coming back.
-- Keyed by the SHA-256 of its `state`; taken once.
CREATE TABLE sign_ins (
    state_hash bytea PRIMARY KEY,
    nonce text NOT NULL,
    verifier text NOT NULL,
    created_at timestamptz NOT NULL
);

-- A signed-in browser. Keyed by the SHA-256 of the cookie's value, so a copy
-- of the table signs no one in.
CREATE TABLE sessions (
    id_hash bytea PRIMARY KEY,
    user_id text NOT NULL,
    signed_in_user jsonb NOT NULL,
    csrf text NOT NULL,
    created_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);
CREATE INDEX sessions_last_seen ON sessions (last_seen_at);

-- The language a user chose, kept across sign-ins, and the presence they
-- last set through the desk (routing holds the one that routes).
CREATE TABLE preferences (
    user_id text PRIMARY KEY,
    language text CHECK (language IN ('en', 'es')),
    presence text CHECK (presence IN ('available', 'busy', 'away'))
);

-- Every view of a case's patient data and every reveal (HIPAA audit
-- controls). Only ids and what was seen; never the data itself.
CREATE TABLE access_log (
    entry_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL,
    user_id text NOT NULL,
    case_id text NOT NULL,
    what text NOT NULL
);
CREATE INDEX access_log_at ON access_log (at DESC);
CREATE INDEX access_log_case ON access_log (case_id, at DESC);
