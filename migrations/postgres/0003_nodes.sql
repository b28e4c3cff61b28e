-- The nodes serving this database: each renews its row while it runs
-- (`last_seen`, Unix ms by the database's clock).

CREATE TABLE nodes (
    id         TEXT    PRIMARY KEY, -- --node-id
    devices    JSONB   NOT NULL,    -- array of its workers' devices
    started_at BIGINT  NOT NULL,
    last_seen  BIGINT  NOT NULL
);
