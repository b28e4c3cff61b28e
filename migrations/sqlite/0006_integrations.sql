-- Integrations: what a job asked for (its own webhook receivers, an MLflow
-- run), the MLflow run it logs to once made (so a retry or another node
-- resumes it), and the webhook outbox: one row per event and receiver,
-- written in the transaction that changes the job, sent by whichever node
-- claims it first (claimed_by / claim_expires_at), retried until done_at.
ALTER TABLE jobs ADD COLUMN webhooks TEXT;     -- JSON array of {"url"}; NULL: none of its own
ALTER TABLE jobs ADD COLUMN integrations TEXT; -- JSON array of {"type": "mlflow", ...}; NULL: none
ALTER TABLE jobs ADD COLUMN tracking TEXT;     -- JSON: the MLflow run (ids, URL); NULL until made

CREATE TABLE webhook_outbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id       TEXT    NOT NULL, -- webhook-id: one per event, the same for every receiver and try
    event_type       TEXT    NOT NULL, -- job.running, job.succeeded, …, model.promoted
    job_id           TEXT    NOT NULL,
    url              TEXT    NOT NULL,
    subject          TEXT    NOT NULL, -- JSON: the job (or model) as it was at the event
    created_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    claimed_by       TEXT,
    claim_expires_at INTEGER,
    done_at          INTEGER,          -- delivered, or given up (delivered false)
    delivered        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (message_id, url)
);

CREATE INDEX webhook_outbox_due ON webhook_outbox (done_at, next_attempt_at);
