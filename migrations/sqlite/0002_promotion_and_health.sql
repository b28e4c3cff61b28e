-- Explicit promotion, and a row for the health check's write probe.

-- Promotion is explicit: the model `/classify` answers with by default is the
-- one promoted last (Unix ms), whether by its job (`promote`) or by hand
-- (`POST /models/{id}/promote`); NULL for a model never promoted.
ALTER TABLE models ADD COLUMN promoted_at INTEGER;

-- Models that existed before were promoted when their job succeeded.
UPDATE models SET promoted_at = created_at;

CREATE INDEX models_by_promotion ON models (promoted_at);

-- One row `GET /health` rewrites to check that the database still takes writes.
CREATE TABLE health (
    id         INTEGER PRIMARY KEY,
    checked_at INTEGER NOT NULL
);
