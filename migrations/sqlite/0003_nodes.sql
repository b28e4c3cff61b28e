-- The nodes serving this database: each renews its row while it runs
-- (`last_seen`, Unix ms by the database's clock). On SQLite there is only ever one.

CREATE TABLE nodes (
    id         TEXT    PRIMARY KEY, -- --node-id
    devices    TEXT    NOT NULL,    -- JSON array of its workers' devices
    started_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);
