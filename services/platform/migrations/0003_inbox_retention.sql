-- Inbox rows are kept for the retention (TOUCHPOINT_INBOX_RETENTION_DAYS),
-- longer than the topics keep records, then purged by the consumer that wrote
-- them. Rows arrive in processed_at order, so a BRIN index finds the old ones
-- for a few pages of index and nearly nothing per insert.
CREATE INDEX inbox_processed_at ON inbox USING brin (processed_at);
