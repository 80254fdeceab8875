-- Every version of every program cadence has run (src/library.rs): the text of
-- its program.toml and the template ids its folder held, so an enrolment keeps
-- the steps it started on across edits and restarts. A version is published
-- when the programs folder (or its ConfigMap) changes and validates.
CREATE TABLE program_versions (
    program_id   TEXT        NOT NULL,
    version      INT         NOT NULL CHECK (version > 0),
    program_toml TEXT        NOT NULL,
    template_ids TEXT[]      NOT NULL,
    published_at TIMESTAMPTZ NOT NULL,
    published_by TEXT        NOT NULL,
    PRIMARY KEY (program_id, version)
);

-- The version each enrolment runs on (also in its state), to count cases by
-- version. Enrolments from before versions run on the first.
ALTER TABLE enrolments ADD COLUMN program_version INT NOT NULL DEFAULT 1;
CREATE INDEX enrolments_program_version ON enrolments (program_id, program_version);
