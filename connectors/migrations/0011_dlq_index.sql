-- 0011_dlq_index: every record of every <topic>.dlq topic, as the DLQ indexer (pipeline/src/dlq)
-- reads it, with what an operator did about it (GET/POST /admin/dlq on the admin port).
CREATE TABLE IF NOT EXISTS dlq_entries (
    id                 bigserial   PRIMARY KEY,
    -- Where the dead letter is: unique, so indexing a redelivered record again changes nothing.
    dlq_topic          text        NOT NULL,
    dlq_partition      integer     NOT NULL,
    dlq_offset         bigint      NOT NULL,
    -- Where the record came from (dlq.original.*). A dead letter without those headers (a lane
    -- record the runtime did not write) gets the DLQ topic's name less ".dlq" and its partition.
    original_topic     text        NOT NULL,
    original_partition integer     NOT NULL,
    original_offset    bigint,
    -- Kafka timestamp of the original record, epoch milliseconds.
    original_timestamp bigint,
    consumer_group     text,
    processor          text,
    -- transient | permanent | poison; NULL when the record did not say.
    error_class        text        CHECK (error_class IN ('transient', 'permanent', 'poison')),
    error_message      text,
    attempts           integer,
    failed_at          timestamptz,
    -- The original record, byte for byte: what a reprocess publishes again.
    key                bytea,
    value              bytea,
    -- The original headers in order, without the dlq.* ones: [{"key": "...", "value": "<base64>" | null}].
    headers            jsonb       NOT NULL DEFAULT '[]',
    status             text        NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'REPROCESSED', 'DISCARDED')),
    status_changed_by  text,
    status_changed_at  timestamptz,
    status_reason      text,
    -- The entry this record was reprocessed from, when it failed again (header dlq.reprocessed.from).
    -- No foreign key: a link to an entry that is gone must not stop the indexer.
    reprocessed_from   bigint,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dlq_topic, dlq_partition, dlq_offset)
);

-- The listing's filters, each in the listing's order (keyset on id).
CREATE INDEX IF NOT EXISTS dlq_entries_by_status ON dlq_entries (status, id);
CREATE INDEX IF NOT EXISTS dlq_entries_by_topic ON dlq_entries (original_topic, status, id);
CREATE INDEX IF NOT EXISTS dlq_entries_by_reprocessed_from ON dlq_entries (reprocessed_from) WHERE reprocessed_from IS NOT NULL;
