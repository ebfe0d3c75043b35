-- dev/fuzz-api's test data, in the fuzzing run's own database (after the pipeline's migrations),
-- so that schemathesis reaches past "not found": psql -v replay_topic=<topic> -f this file.

-- No projector runs: every order the fuzzer places shows in the read model as parked, so
-- GET /orders/{id} and GET /orders answer real rows and an intervention reaches the event store.
CREATE FUNCTION fuzz_park_placed_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_view (order_id, customer_id, status, total_amount, item_count, version, order_version,
                            intervention_reason, outstanding_compensations, placed_at, updated_at)
    VALUES (NEW.aggregate_id, NEW.payload->>'customer_id', 'REQUIRES_INTERVENTION', (NEW.payload->>'total_cents')::bigint,
            jsonb_array_length(NEW.payload->'items'), 1, NEW.version, 'seeded by dev/fuzz-api', ARRAY['refund'], now(), now());
    RETURN NEW;
END $$;
CREATE TRIGGER fuzz_park_placed_order AFTER INSERT ON event_store
    FOR EACH ROW WHEN (NEW.event_type = 'OrderPlaced') EXECUTE FUNCTION fuzz_park_placed_order();

-- Dead letters of every shape the API renders: keys as text, as bytes and absent; payloads that do
-- not decode, that name a schema the registry does not know, and tombstones; every error class.
-- A reprocess publishes to :replay_topic, which nothing reads.
INSERT INTO dlq_entries (dlq_topic, dlq_partition, dlq_offset, original_topic, original_partition, original_offset,
                         original_timestamp, consumer_group, processor, error_class, error_message, attempts, failed_at,
                         key, value, headers, reprocessed_from)
SELECT :'replay_topic' || '.dlq', 0, n, :'replay_topic', 0, n, 1700000000000 + n, 'fuzz-api', 'source',
       (ARRAY['transient', 'permanent', 'poison'])[1 + n % 3], 'seeded by dev/fuzz-api', 1 + n % 5, now(),
       CASE n % 3 WHEN 0 THEN NULL WHEN 1 THEN convert_to('order-' || n, 'UTF8') ELSE '\xfe01'::bytea END,
       CASE n % 3 WHEN 0 THEN NULL WHEN 1 THEN convert_to('not avro', 'UTF8') ELSE '\x00000f423f02'::bytea END,
       '[{"key": "trace", "value": "dC0x"}, {"key": "raw", "value": "/w=="}, {"key": "none", "value": null}]'::jsonb,
       CASE WHEN n > 1 AND n % 4 = 0 THEN n - 1 END
FROM generate_series(1, 40) AS n;
