-- An opt-out may hold for one program's messages only, when the deployment
-- scopes opt-outs by program (TOUCHPOINT_OPT_OUT_SCOPE=program): '' is every
-- program's. A contact point is opted out of a program while the latest
-- opt-out of its rows for that program and for '' is later than the latest
-- opt-in of those rows, so START (an opt-in for '') lifts every program's.
ALTER TABLE contact_opt_outs ADD COLUMN program_id TEXT NOT NULL DEFAULT '';
ALTER TABLE contact_opt_outs DROP CONSTRAINT contact_opt_outs_pkey;
ALTER TABLE contact_opt_outs ADD PRIMARY KEY (contact_key, channel, program_id);
