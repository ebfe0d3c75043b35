#!/usr/bin/env python3
"""Interop with Confluent's own clients: run by dev/interop-confluent, which starts the pipeline.

1. Takes the newest schema of OrderPlaced in the repo (schemas/avro/v<N>/OrderPlaced.avsc, the
   highest N), checks that our registry holds it under the TopicRecordNameStrategy subject
   (order.events-saga.events.OrderPlaced), and writes one order with Confluent's AvroSerializer
   (auto.register.schemas off: the serializer must look the schema up) to order.events, keyed by
   the order id, with Confluent's Producer.
2. Polls GET /orders/{id} of the running pipeline until the order is terminal: it must be
   CONFIRMED, with the customer, amount and item count that were sent.
3. Reads every event of that order back (read_committed) from order.events, payment.events,
   inventory.events and shipping.events and decodes them with AvroDeserializer: each expected
   event exactly once, its writer schema registered under <topic>-saga.events.<EventType>, and
   the values that must survive (order id, event type, customer, amounts, items, tracking
   number, correlation and causation ids) as they were.

Every check is printed; the last line counts them. Exits 1 if any failed, 2 if the test could not
run at all (nothing to test against: a schema not registered, the pipeline not answering).
"""

import argparse
import datetime
import json
import logging
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

NAMESPACE = "saga.events"
ORDER_TOPIC = "order.events"
# What a confirmed order leaves on each saga topic, once each (docs/saga.md).
EXPECTED = {
    "order.events": ("OrderPlaced", "OrderConfirmed"),
    "payment.events": ("PaymentCompleted",),
    "inventory.events": ("InventoryReserved",),
    "shipping.events": ("ShipmentCreated",),
}
TERMINAL = ("CONFIRMED", "CANCELLED", "REQUIRES_INTERVENTION")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class CannotRun(Exception):
    """Nothing to test against: the message says what is missing and what to do."""


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"  ok    {name}")
        else:
            self.failed.append(name)
            print(f"  FAIL  {name}{': ' + detail if detail else ''}")
        return ok

    def equal(self, name, actual, expected):
        return self.check(name, actual == expected, f"got {actual!r}, expected {expected!r}")


# --- Kafka's default partitioner -------------------------------------------------------------

def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Java's default partitioner (and librdkafka's murmur2_random, which our
    runtime and Debezium's producer match) gives KEY: murmur2, made positive, modulo."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(key)) & mask
    whole = len(key) - len(key) % 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(key[i:i + 4], "little") * m) & mask
        k ^= k >> 24
        h = ((h * m) & mask) ^ ((k * m) & mask)
    tail = key[whole:]
    if tail:
        for i in reversed(range(len(tail))):
            h ^= tail[i] << (8 * i)
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def check_murmur2():
    # Kafka's Utils.murmur2 test vectors (as in tests/src/kafka.rs), as positive values.
    for key, java in ((b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536)):
        expected = (java & 0x7FFFFFFF) % 1_000_003
        if murmur2_partition(key, 1_000_003) != expected:
            raise CannotRun(f"murmur2 of {key!r} is wrong in this script: a bug here, not in the pipeline")


# --- The schema: newest in the repo, as the registry holds it ----------------------------------

def schema_versions(schemas_dir: Path, event_type: str):
    """(N, path) of every schemas/avro/v<N>/<event_type>.avsc, oldest first."""
    found = []
    for path in schemas_dir.glob(f"v*/{event_type}.avsc"):
        match = re.fullmatch(r"v(\d+)", path.parent.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def lookup(registry: SchemaRegistryClient, subject: str, text: str):
    """The registered schema (id, version) equal to TEXT under SUBJECT, or None if the subject
    holds no such version. Raises CannotRun if the subject does not exist at all."""
    try:
        return registry.lookup_schema(subject, Schema(text, "AVRO"))
    except SchemaRegistryError as error:
        if error.http_status_code == 404 and error.error_code == 40401:
            raise CannotRun(
                f"subject {subject!r} does not exist in the registry: nothing registered OrderPlaced. "
                "Run `pipeline schemas register` (or start the pipeline once) first."
            ) from error
        if error.http_status_code == 404:
            return None
        raise


def choose_schema(registry, schemas_dir: Path, subject: str, choice: str):
    """(version N, path, text, registered) of the OrderPlaced schema the producer writes."""
    versions = schema_versions(schemas_dir, "OrderPlaced")
    if not versions:
        raise CannotRun(f"no {schemas_dir}/v<N>/OrderPlaced.avsc")
    latest_version, latest_path = versions[-1]
    registered = {latest_version: lookup(registry, subject, latest_path.read_text())}
    if registered[latest_version] is not None:
        return latest_version, latest_path, latest_path.read_text(), registered[latest_version]
    held = registry.get_versions(subject)
    where = f"{latest_path.relative_to(schemas_dir.parent.parent)} (v{latest_version}, the newest in the repo)"
    for version, path in versions:
        if version not in registered:
            registered[version] = lookup(registry, subject, path.read_text())
    older = [v for v in sorted(registered, reverse=True) if registered[v] is not None]
    if choice == "latest":
        raise CannotRun(
            f"{where} is not registered under subject {subject!r}, which holds registry versions {held}"
            f" (of the repo's: {', '.join(f'v{v}' for v in older) or 'none'}). Register it with "
            "`pipeline schemas register` from a build that ships it, or run with "
            "INTEROP_SCHEMA=newest-registered to test with the newest repo version the registry has."
        )
    if not older:
        raise CannotRun(f"no version of {schemas_dir}/v<N>/OrderPlaced.avsc is registered under {subject!r} "
                        f"(it holds registry versions {held}); run `pipeline schemas register`")
    version = older[0]
    path = dict(versions)[version]
    print(f"  WARNING: {where} is not registered under {subject!r}; writing v{version} instead "
          "(INTEROP_SCHEMA=newest-registered)")
    return version, path, path.read_text(), registered[version]


# --- The order -------------------------------------------------------------------------------

def build(schema, known, names, where):
    """A value of Avro SCHEMA from KNOWN: record fields the test knows are taken from KNOWN, the
    others get their default; a field with neither stops the test, naming it."""
    if isinstance(schema, str) and schema in names:
        schema = names[schema]
    if isinstance(schema, list):  # a union: null, or the first branch that fits
        if known is None:
            if "null" not in schema:
                raise CannotRun(f"{where} is not nullable and the test has no value for it")
            return None
        branches = [b for b in schema if b != "null"]
        return build(branches[0], known, names, where)
    if isinstance(schema, dict) and schema.get("type") == "record":
        names[schema["name"]] = schema
        if schema.get("namespace"):
            names[f"{schema['namespace']}.{schema['name']}"] = schema
        out = {}
        for field in schema["fields"]:
            name = field["name"]
            if name in known:
                out[name] = build(field["type"], known[name], names, f"{where}.{name}")
            elif "default" in field:
                out[name] = field["default"]
            else:
                raise CannotRun(f"{where}.{name} has no default and dev/interop_confluent.py does not know "
                                "what to write there: teach it (the `known` values in order_placed)")
        return out
    if isinstance(schema, dict) and schema.get("type") == "array":
        return [build(schema["items"], item, names, f"{where}[]") for item in known]
    return known


def order_placed(schema_text: str, version: int, run: str):
    """The OrderPlaced value, and what the pipeline must make of it. The customer and products
    are new (config/pipeline.toml gives them default_balance_cents and default_stock), the
    address is in an allowed country without shipping's INVALID test hook: a confirmable order."""
    order_id = str(uuid.uuid4())
    customer_id = f"interop-customer-{run}"
    lines = [(f"interop-product-{run}-a", 2, 1234), (f"interop-product-{run}-b", 1, 990)]
    now = datetime.datetime.now(datetime.timezone.utc)
    known = {
        "event_id": str(uuid.uuid4()),
        "event_type": "OrderPlaced",
        "order_id": order_id,
        # fastavro writes a datetime as timestamp-millis.
        "occurred_at": now.replace(microsecond=now.microsecond // 1000 * 1000),
        "correlation_id": str(uuid.uuid4()),
        "causation_id": None,
        "schema_version": version,
        "customer_id": customer_id,
        "items": [
            {"product_id": p, "quantity": q, "unit_price_cents": cents,
             "unit_price": {"amount_minor": cents, "currency": "EUR"}}
            for p, q, cents in lines
        ],
        "total_cents": sum(q * cents for _, q, cents in lines),
        "shipping_address": {"line1": "1 Interop Street", "line2": "Rear building", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"},
        "currency": "EUR",
        "coupon_code": None,
    }
    return build(json.loads(schema_text), known, {}, f"OrderPlaced v{version}")


def plain(value):
    """A decoded (or sent) value with fastavro's logical types turned back into what is on the
    wire (uuid → str, timestamp-millis → int), so sent and decoded compare."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# --- The run ---------------------------------------------------------------------------------

def wait_terminal(api: str, order_id: str, timeout_s: float):
    """The read model's record of the order once terminal, or the last one seen (or None)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api}/orders/{order_id}", timeout=5) as answer:
                last = json.load(answer)
            if last.get("status") in TERMINAL:
                return last
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise CannotRun(f"GET {api}/orders/{order_id} answered {error.code}: {error.read()[:300]!r}")
        except (urllib.error.URLError, ConnectionError) as error:
            raise CannotRun(f"the order API at {api} is unreachable: {error}")
        time.sleep(0.25)
    return last


def read_back(bootstrap: str, order_id: str, partition: int, start: dict, timeout_s: float):
    """Every record keyed ORDER_ID on PARTITION of each saga topic from START[topic] on, read
    read_committed up to the end of each partition."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"interop-confluent-{uuid.uuid4()}",  # assigned, never subscribed: commits nothing
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    })
    try:
        consumer.assign([TopicPartition(topic, partition, start[topic]) for topic in EXPECTED])
        at_end, found = set(), []
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(EXPECTED) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.topic())
                    continue
                raise CannotRun(f"reading {message.topic()}: {message.error()}")
            at_end.discard(message.topic())
            if message.key() == order_id.encode():
                found.append(message)
        missing_end = sorted(set(EXPECTED) - at_end)
        return found, missing_end
    finally:
        consumer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--registry", required=True, help="the Confluent-compatible API root (…/apis/ccompat/v7)")
    parser.add_argument("--api", required=True, help="the pipeline's order API, for GET /orders/{id}")
    parser.add_argument("--schemas", required=True, type=Path, help="schemas/avro")
    parser.add_argument("--schema", choices=("latest", "newest-registered"), default="latest")
    parser.add_argument("--settle-timeout", type=float, default=120.0)
    args = parser.parse_args()

    # Every registry call the Confluent client makes, for the report.
    calls = []

    class Recorder(logging.Handler):
        def emit(self, record):
            if record.args and len(record.args) >= 4:
                calls.append(f"{record.args[0]} {str(record.args[1]).replace(args.registry, '')} -> {record.args[3]}")

    for name in ("httpx2", "httpx"):
        logging.getLogger(name).addHandler(Recorder())
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).propagate = False

    checks = Checks()
    run = uuid.uuid4().hex[:10]
    subject = f"{ORDER_TOPIC}-{NAMESPACE}.OrderPlaced"
    try:
        check_murmur2()
        # One client to check what the registry holds, and fresh ones for the serializer and
        # the deserializer, so that each makes its own calls rather than reading a cache.
        probe = SchemaRegistryClient({"url": args.registry})
        calls.append("(this script: what the registry holds)")
        version, path, text, registered = choose_schema(probe, args.schemas, subject, args.schema)
        print(f"interop-confluent: OrderPlaced v{version} ({path.name} in {path.parent.name}/), "
              f"registry id {registered.schema_id}, subject {subject!r} version {registered.version}")

        serializer = AvroSerializer(
            SchemaRegistryClient({"url": args.registry}), text,
            conf={"auto.register.schemas": False, "subject.name.strategy": topic_record_subject_name_strategy},
        )
        deserializer = AvroDeserializer(
            SchemaRegistryClient({"url": args.registry}),
            conf={"subject.name.strategy": topic_record_subject_name_strategy},
        )
        checker = SchemaRegistryClient({"url": args.registry})

        value = order_placed(text, version, run)
        order_id = value["order_id"]
        producer = Producer({
            "bootstrap.servers": args.bootstrap,
            "client.id": "interop-confluent",
            "enable.idempotence": True,
            "acks": "all",
            # librdkafka's default (consistent_random, CRC32) would put the key elsewhere than
            # the Java clients and our runtime do, and the saga's topics are co-partitioned by it.
            "partitioner": "murmur2_random",
        })
        metadata = producer.list_topics(timeout=10)
        counts = {}
        for topic in EXPECTED:
            if topic not in metadata.topics or metadata.topics[topic].error is not None:
                raise CannotRun(f"topic {topic} does not exist (the pipeline's setup creates it)")
            counts[topic] = len(metadata.topics[topic].partitions)
        if len(set(counts.values())) != 1:
            raise CannotRun(f"the saga topics are not co-partitioned: {counts}")
        partitions = counts[ORDER_TOPIC]
        partition = murmur2_partition(order_id.encode(), partitions)

        # Where each topic's partition ends before the order exists: its events all come after.
        offsets_of = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"interop-confluent-{run}",
                               "enable.auto.commit": False, "isolation.level": "read_committed"})
        start = {t: offsets_of.get_watermark_offsets(TopicPartition(t, partition), timeout=10)[1] for t in EXPECTED}
        offsets_of.close()

        print(f"interop-confluent: producing OrderPlaced for order {order_id} (customer {value['customer_id']}, "
              f"{value['total_cents']} cents) to {ORDER_TOPIC}, partition {partition} of {partitions} by murmur2")
        context = SerializationContext(ORDER_TOPIC, MessageField.VALUE)
        calls.append("(AvroSerializer)")
        wire = serializer(value, context)
        checks.equal("AvroSerializer writes the Confluent framing: magic byte 0", wire[0], 0)
        checks.equal("AvroSerializer writes the schema id our registry gave the newest OrderPlaced",
                     int.from_bytes(wire[1:5], "big"), registered.schema_id)
        delivered = {}
        producer.produce(
            ORDER_TOPIC,
            key=StringSerializer("utf_8")(order_id, SerializationContext(ORDER_TOPIC, MessageField.KEY)),
            value=wire,
            on_delivery=lambda error, message: delivered.update(error=error, message=message),
        )
        left = producer.flush(30)
        if left or delivered.get("error") is not None or "message" not in delivered:
            raise CannotRun(f"OrderPlaced was not delivered: {delivered.get('error') or f'{left} still queued'}")
        sent_at = time.monotonic()
        placed_offset = delivered["message"].offset()
        checks.equal("the producer put the key on murmur2's partition (where our runtime puts it)",
                     delivered["message"].partition(), partition)

        view = wait_terminal(args.api, order_id, args.settle_timeout)
        elapsed = time.monotonic() - sent_at
        if view is None:
            checks.check("the read model shows the order", False,
                         f"GET {args.api}/orders/{order_id} stayed 404 for {args.settle_timeout:.0f} s")
        else:
            print(f"interop-confluent: read model after {elapsed:.1f} s: {json.dumps(view, sort_keys=True)}")
            checks.check("the order reaches a terminal state in the read model", view.get("status") in TERMINAL,
                         f"still {view.get('status')} after {args.settle_timeout:.0f} s")
            checks.equal("the order is CONFIRMED", view.get("status"), "CONFIRMED")
            checks.equal("read model: customer_id", view.get("customer_id"), value["customer_id"])
            checks.equal("read model: total_amount", view.get("total_amount"), value["total_cents"])
            checks.equal("read model: item_count", view.get("item_count"), sum(i["quantity"] for i in value["items"]))
            checks.check("read model: no projection problem", view.get("projection_problem") is None,
                         str(view.get("projection_problem")))

        records, not_at_end = read_back(args.bootstrap, order_id, partition, start, 60.0)
        checks.check("read_committed reached the end of partition "
                     f"{partition} of every saga topic", not not_at_end, f"not the end of {not_at_end}")
        events = {}
        calls.append("(AvroDeserializer, and this script: the subject of each writer schema)")
        for message in records:
            raw = message.value()
            schema_id = int.from_bytes(raw[1:5], "big")
            try:
                decoded = deserializer(raw, SerializationContext(message.topic(), MessageField.VALUE, message.headers()))
            except Exception as error:  # the deserializer's own message is the diagnosis
                checks.check(f"AvroDeserializer decodes {message.topic()}@{message.offset()}", False, repr(error))
                continue
            writer = json.loads(checker.get_schema(schema_id).schema_str)
            event_type = writer["name"]
            headers = {k: (v.decode() if v is not None else None) for k, v in (message.headers() or [])}
            events.setdefault(event_type, []).append(
                {"topic": message.topic(), "offset": message.offset(), "id": schema_id, "value": plain(decoded),
                 "writer": writer, "headers": headers, "raw": raw})
        print("interop-confluent: read back (topic@offset schema-id event):")
        for event_type, copies in sorted(events.items(), key=lambda e: (e[1][0]["topic"], e[1][0]["offset"])):
            for copy in copies:
                print(f"    {copy['topic']}@{partition}:{copy['offset']}  id {copy['id']}  {event_type}")

        for topic, wanted in EXPECTED.items():
            for event_type in wanted:
                copies = [c for c in events.get(event_type, []) if c["topic"] == topic]
                checks.equal(f"{topic}: {event_type} once", len(copies), 1)
        unexpected = sorted(t for t in events if not any(t in w for w in EXPECTED.values()))
        checks.check("no other event for the order (no failure, no compensation)", not unexpected, str(unexpected))

        for event_type, copies in events.items():
            for copy in copies:
                where = f"{event_type} ({copy['topic']}@{copy['offset']})"
                decoded, writer = copy["value"], copy["writer"]
                subject_of = f"{copy['topic']}-{writer.get('namespace')}.{event_type}"
                try:
                    under = checker.lookup_schema(subject_of, checker.get_schema(copy["id"])).schema_id
                except SchemaRegistryError as error:
                    under = f"not found ({error})"
                checks.equal(f"{where}: its writer schema is registered under {subject_of}", under, copy["id"])
                checks.equal(f"{where}: order_id", decoded.get("order_id"), order_id)
                checks.equal(f"{where}: event_type", decoded.get("event_type"), event_type)
                checks.equal(f"{where}: correlation_id", decoded.get("correlation_id"), value["correlation_id"])
                version_default = next(f.get("default") for f in writer["fields"] if f["name"] == "schema_version")
                checks.equal(f"{where}: schema_version is its writer schema's own", decoded.get("schema_version"),
                             version_default)
                if event_type != "OrderPlaced":
                    checks.equal(f"{where}: event_type header", copy["headers"].get("event_type"), event_type)
                    checks.equal(f"{where}: event_id header", copy["headers"].get("event_id"), decoded.get("event_id"))

        def one(event_type):
            copies = events.get(event_type) or [{"value": {}}]
            return copies[0]["value"]

        placed, paid, reserved = one("OrderPlaced"), one("PaymentCompleted"), one("InventoryReserved")
        shipped, confirmed = one("ShipmentCreated"), one("OrderConfirmed")
        checks.equal("OrderPlaced read back equals what was sent, field by field", placed, plain(value))
        checks.equal("OrderPlaced read back: the bytes are the ones produced", events.get("OrderPlaced", [{}])[0].get("raw"), wire)
        checks.equal("OrderPlaced read back: at the offset it was delivered to", events.get("OrderPlaced", [{}])[0].get("offset"), placed_offset)
        checks.equal("PaymentCompleted: customer_id", paid.get("customer_id"), value["customer_id"])
        checks.equal("PaymentCompleted: amount_cents = total_cents", paid.get("amount_cents"), value["total_cents"])
        checks.check("PaymentCompleted: a payment_id", bool(paid.get("payment_id")), repr(paid.get("payment_id")))
        checks.equal("PaymentCompleted: caused by our OrderPlaced", paid.get("causation_id"), value["event_id"])
        checks.equal("InventoryReserved: the items and quantities ordered",
                     sorted((i.get("product_id"), i.get("quantity")) for i in reserved.get("items", [])),
                     sorted((i["product_id"], i["quantity"]) for i in value["items"]))
        checks.equal("InventoryReserved: caused by PaymentCompleted", reserved.get("causation_id"), paid.get("event_id"))
        checks.check("ShipmentCreated: a tracking number", bool(shipped.get("tracking_number")),
                     repr(shipped.get("tracking_number")))
        checks.equal("ShipmentCreated: caused by InventoryReserved", shipped.get("causation_id"), reserved.get("event_id"))
        checks.equal("OrderConfirmed: customer_id", confirmed.get("customer_id"), value["customer_id"])
        checks.equal("OrderConfirmed: total_cents", confirmed.get("total_cents"), value["total_cents"])
        tracking = shipped.get("tracking_number") or "(no ShipmentCreated)"
        checks.equal("OrderConfirmed: tracking_number = ShipmentCreated's", confirmed.get("tracking_number"), tracking)
        # The saga reads four topics; whichever completed step it read last caused the confirmation.
        steps = {paid.get("event_id"), reserved.get("event_id"), shipped.get("event_id")} - {None}
        checks.check("OrderConfirmed: caused by one of the order's steps", confirmed.get("causation_id") in steps,
                     repr(confirmed.get("causation_id")))
        if view is not None:
            checks.equal("read model: tracking_number = ShipmentCreated's", view.get("tracking_number"), tracking)
    except CannotRun as error:
        print(f"interop-confluent: cannot run: {error}", file=sys.stderr)
        print(f"interop-confluent: {checks.passed} passed, {len(checks.failed) + 1} failed")
        return 2

    print("interop-confluent: registry calls made by the Confluent client:")
    for call in calls:
        print(f"    {call}")
    print(f"interop-confluent: {checks.passed} passed, {len(checks.failed)} failed")
    if checks.failed:
        print("interop-confluent: failed: " + "; ".join(checks.failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
