-- tuneserve's schema. Timestamps are Unix milliseconds (UTC); JSON columns hold text.

CREATE TABLE datasets (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    name         TEXT,
    format       TEXT    NOT NULL CHECK (format IN ('jsonl', 'csv')),
    rows         INTEGER NOT NULL,
    labels       TEXT    NOT NULL, -- JSON array of class names, by id
    label_counts TEXT    NOT NULL, -- JSON object: class name -> rows
    path         TEXT    NOT NULL, -- normalised JSONL copy
    created_at   INTEGER NOT NULL
);

CREATE TABLE jobs (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL UNIQUE,
    status            TEXT    NOT NULL
                      CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    base_model        TEXT    NOT NULL,
    train_dataset     TEXT    NOT NULL REFERENCES datasets (id),
    eval_dataset      TEXT             REFERENCES datasets (id),
    hyperparameters   TEXT    NOT NULL, -- JSON, every field explicit
    suffix            TEXT,
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    step              INTEGER NOT NULL DEFAULT 0,
    total_steps       INTEGER,
    epoch             REAL,
    tokens            INTEGER NOT NULL DEFAULT 0,
    tokens_per_second REAL,
    error             TEXT,
    model_id          TEXT,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    updated_at        INTEGER NOT NULL
);

CREATE INDEX jobs_by_status ON jobs (status, seq);
CREATE INDEX jobs_by_lease ON jobs (status, lease_expires_at);

CREATE TABLE metrics (
    job_id     TEXT    NOT NULL REFERENCES jobs (id),
    split      TEXT    NOT NULL CHECK (split IN ('train', 'eval')),
    step       INTEGER NOT NULL,
    epoch      REAL    NOT NULL,
    loss       REAL,
    data       TEXT    NOT NULL, -- JSON: the step's or evaluation's numbers
    attempt    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (job_id, split, step)
);

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT    NOT NULL REFERENCES jobs (id),
    attempt    INTEGER NOT NULL,
    level      TEXT    NOT NULL CHECK (level IN ('info', 'warning', 'error')),
    kind       TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    data       TEXT, -- JSON
    created_at INTEGER NOT NULL
);

CREATE INDEX events_by_job ON events (job_id, seq);

CREATE TABLE checkpoints (
    job_id     TEXT    NOT NULL REFERENCES jobs (id),
    step       INTEGER NOT NULL,
    path       TEXT    NOT NULL,
    metrics    TEXT, -- JSON: the evaluation at that step, if any
    attempt    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (job_id, step)
);

CREATE TABLE models (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    job_id     TEXT    NOT NULL UNIQUE REFERENCES jobs (id),
    base_model TEXT    NOT NULL,
    labels     TEXT    NOT NULL, -- JSON array
    metrics    TEXT,             -- JSON: the final evaluation, if any
    path       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
