package saga.peer;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;

/** Keyed by customer id; answers each charge once, keyed by order id (our payment::balances). */
final class Balances implements Processor<String, State.BalanceRequest, String, GenericRecord> {
    private final SagaAvro avro;
    private final long defaultBalanceCents;
    private ProcessorContext<String, GenericRecord> context;
    private KeyValueStore<String, State.CustomerBalance> balances;
    private KeyValueStore<String, State.Applied> applied;

    Balances(SagaAvro avro, long defaultBalanceCents) {
        this.avro = avro;
        this.defaultBalanceCents = defaultBalanceCents;
    }

    @Override
    public void init(ProcessorContext<String, GenericRecord> context) {
        this.context = context;
        this.balances = context.getStateStore(PaymentPeer.BALANCES_STORE);
        this.applied = context.getStateStore(PaymentPeer.APPLIED_STORE);
        // Forgets applied requests older than the grace period, as our durable timers do.
        context.schedule(Duration.ofHours(1), PunctuationType.WALL_CLOCK_TIME, this::forgetExpired);
    }

    @Override
    public void process(Record<String, State.BalanceRequest> record) {
        State.BalanceRequest request = record.value();
        long now = System.currentTimeMillis();
        State.CustomerBalance balance = balances.get(record.key());
        if (balance == null) {
            balance = new State.CustomerBalance();
            balance.balanceCents = defaultBalanceCents;
        }
        String appliedKey = request.orderId + "/" + request.command;
        GenericRecord reply = null;
        if (!appliedWithinGrace(appliedKey, now)) {
            State.Settled settled = new State.Settled();
            if (request.amountCents < 0 || balance.balanceCents < request.amountCents) {
                settled.outcome = "DECLINED";
                settled.reason = request.amountCents < 0 ? "invalid_amount" : "insufficient_funds";
            } else {
                balance.balanceCents -= request.amountCents;
                settled.outcome = "CHARGED";
                settled.paymentId = UUID.randomUUID().toString();
            }
            State.Applied remembered = new State.Applied();
            remembered.settled = settled;
            remembered.appliedAtMs = now;
            applied.put(appliedKey, remembered);
            reply = reply(request, settled, now);
        }
        balances.put(record.key(), balance);
        if (reply != null) {
            RecordHeaders headers = new RecordHeaders();
            headers.add("event_id", bytes(reply.get("event_id")));
            headers.add("event_type", bytes(reply.get("event_type")));
            headers.add("correlation_id", bytes(reply.get("correlation_id")));
            headers.add("causation_id", bytes(reply.get("causation_id")));
            context.forward(new Record<>(request.orderId, reply, record.timestamp(), headers));
        }
    }

    private boolean appliedWithinGrace(String appliedKey, long now) {
        State.Applied found = applied.get(appliedKey);
        return found != null && found.appliedAtMs >= now - PaymentPeer.GRACE.toMillis();
    }

    private void forgetExpired(long now) {
        List<String> expired = new ArrayList<>();
        try (KeyValueIterator<String, State.Applied> all = applied.all()) {
            all.forEachRemaining(entry -> {
                if (entry.value.appliedAtMs < now - PaymentPeer.GRACE.toMillis()) {
                    expired.add(entry.key);
                }
            });
        }
        expired.forEach(applied::delete);
    }

    private GenericRecord reply(State.BalanceRequest request, State.Settled settled, long now) {
        boolean charged = settled.outcome.equals("CHARGED");
        String name = charged ? "PaymentCompleted" : "PaymentFailed";
        Schema schema = avro.schemaOf("payment.events", "saga.events." + name);
        GenericRecord event = new GenericData.Record(schema);
        event.put("event_id", UUID.randomUUID().toString());
        event.put("event_type", name);
        event.put("order_id", request.orderId);
        event.put("occurred_at", now);
        event.put("correlation_id", request.cause.correlationId);
        event.put("causation_id", request.cause.eventId);
        event.put("schema_version", 1);
        event.put("customer_id", request.customerId);
        event.put("amount_cents", request.amountCents);
        if (charged) {
            event.put("payment_id", settled.paymentId);
        } else {
            event.put("reason", settled.reason);
        }
        return event;
    }

    private static byte[] bytes(Object value) {
        return value.toString().getBytes(StandardCharsets.UTF_8);
    }
}
