-- 0012_projector_dead_letters: the poison records a projector group has dead-lettered. The
-- projector commits its Kafka offsets after its database writes, so after a failed offset commit
-- (a broker restart) it reads records again; a record found here with sent_at set is not
-- dead-lettered a second time.
CREATE TABLE IF NOT EXISTS projector_dead_letters (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    "partition"    integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    -- NULL until the dead letter is acknowledged by the broker.
    sent_at        timestamptz,
    PRIMARY KEY (consumer_group, topic, "partition", "offset")
);
