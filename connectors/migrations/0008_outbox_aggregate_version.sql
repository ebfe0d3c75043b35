-- 0008_outbox_aggregate_version: read-your-writes. Each outbox row carries the event-store version
-- of the order it leaves; Debezium passes it on as the `aggregate_version` header.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS aggregate_version bigint NOT NULL DEFAULT 0;
