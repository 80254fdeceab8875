-- A coordinator's own message (SendMessage) carries its text instead of a
-- template: patient data, kept with the attempt like its destination. The
-- subject is an email's; sent_by is who wrote it (the signed-in user the desk
-- vouched for).
ALTER TABLE attempts ADD COLUMN body text, ADD COLUMN subject text, ADD COLUMN sent_by text;
