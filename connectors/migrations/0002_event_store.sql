-- Event store of the order service (the write side): every event of an aggregate, in version order.
-- UNIQUE (aggregate_id, version) is the optimistic-concurrency guard: two writers that loaded the same
-- version cannot both append the next one; the loser gets a unique violation, never a lost write.
CREATE TABLE IF NOT EXISTS event_store (
    event_id       uuid        PRIMARY KEY,
    aggregate_id   text        NOT NULL,
    aggregate_type text        NOT NULL,
    event_type     text        NOT NULL,
    version        int         NOT NULL CHECK (version > 0),
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (aggregate_id, version)
);

-- The latest snapshot of an aggregate; loading reads it, then replays only the events after `version`.
CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_id text        PRIMARY KEY,
    version      int         NOT NULL,
    state        jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The final word on Idempotency-Key: written in the same transaction as the order's events, so a retried
-- request finds the first response here even when Redis has forgotten the key.
CREATE TABLE IF NOT EXISTS order_requests (
    idempotency_key text        PRIMARY KEY,
    order_id        text        NOT NULL,
    response        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
