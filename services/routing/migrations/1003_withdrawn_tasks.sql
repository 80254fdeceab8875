-- Open work whose reason is gone: status 'withdrawn' for a task nobody was
-- working; for a claimed one the status stays and only the reason is set.
ALTER TABLE tasks ADD COLUMN withdrawn_reason TEXT;
