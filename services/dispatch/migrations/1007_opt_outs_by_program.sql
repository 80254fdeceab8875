-- An opt-out may hold for one program's messages only, when the deployment
-- scopes opt-outs by program (TOUCHPOINT_OPT_OUT_SCOPE=program), and a case's
-- written consent naming a number lifts its opt-out for the case's program
-- only: '' is every program's. A destination is opted out of a program while
-- the latest opt-out of its rows for that program and for '' is later than
-- the latest opt-in of those rows, so START (an opt-in for '') lifts every
-- program's.
ALTER TABLE opted_out_destinations ADD COLUMN program_id TEXT NOT NULL DEFAULT '';
ALTER TABLE opted_out_destinations DROP CONSTRAINT opted_out_destinations_pkey;
ALTER TABLE opted_out_destinations ADD PRIMARY KEY (channel, destination, program_id);
