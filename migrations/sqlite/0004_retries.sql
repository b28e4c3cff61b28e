-- Retries with backoff. A job whose attempt failed on a cause that may pass
-- (a full disk, the database or the Hub away) waits in `queued` until
-- `retry_at` (Unix ms; NULL: claimable now); `retries` counts those waits,
-- the exponent of the next one's backoff.
ALTER TABLE jobs ADD COLUMN retry_at INTEGER;
ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
