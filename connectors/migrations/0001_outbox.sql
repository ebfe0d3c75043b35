-- Transactional outbox: one row per domain event, written in the same transaction as the event store.
-- Debezium's Outbox EventRouter (connectors/debezium/order-outbox.json) turns inserts into Kafka records:
-- topic "<aggregate_type>.events", key aggregate_id, value = payload bytes untouched (Avro, Confluent wire format).
CREATE TABLE IF NOT EXISTS outbox (
    id             uuid        PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    event_type     text        NOT NULL,
    payload        bytea       NOT NULL,
    correlation_id text,
    causation_id   text,
    traceparent    text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
-- Rows only need to live until Debezium has read the insert from the WAL; a sweeper deletes old ones
-- (deletes are skipped by the connector: skipped.operations=u,d,t).
CREATE INDEX IF NOT EXISTS outbox_created_at ON outbox (created_at);
