package saga.peer;

import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

/** Keyed by order id; forwards charge requests keyed by customer id (our payment::ledger). */
final class OrderLedger implements Processor<String, GenericRecord, String, State.BalanceRequest> {
    private ProcessorContext<String, State.BalanceRequest> context;
    private KeyValueStore<String, State.OrderPayment> orders;
    private KeyValueStore<String, State.Lifecycle> lifecycles;

    @Override
    public void init(ProcessorContext<String, State.BalanceRequest> context) {
        this.context = context;
        this.orders = context.getStateStore(PaymentPeer.ORDERS_STORE);
        this.lifecycles = context.getStateStore(PaymentPeer.LIFECYCLE_STORE);
    }

    @Override
    public void process(Record<String, GenericRecord> record) {
        // Retention's bookkeeping, as ours: a lifecycle per order from its first event.
        if (lifecycles.get(record.key()) == null) {
            lifecycles.put(record.key(), new State.Lifecycle());
        }
        GenericRecord event = record.value();
        State.OrderPayment stored = orders.get(record.key());
        State.OrderPayment order = stored == null ? new State.OrderPayment() : stored;
        String type = event.get("event_type").toString();
        State.BalanceRequest request = null;
        boolean changed = true;
        switch (type) {
            case "OrderPlaced" -> {
                if (order.customerId != null) {
                    return;
                }
                order.customerId = event.get("customer_id").toString();
                order.amountCents = (Long) event.get("total_cents");
                if (order.cancelled == null && order.charge.equals("NOT_REQUESTED")) {
                    order.charge = "REQUESTED";
                    request = charge(order, record.key(), event);
                }
            }
            case "PaymentCompleted" -> {
                changed = order.charge.equals("REQUESTED");
                if (changed) {
                    order.charge = "CHARGED";
                    order.paymentId = event.get("payment_id").toString();
                }
            }
            case "PaymentFailed" -> {
                changed = order.charge.equals("REQUESTED");
                if (changed) {
                    order.charge = "FAILED";
                }
            }
            default -> changed = false;
        }
        if (changed) {
            orders.put(record.key(), order);
        }
        if (request != null) {
            context.forward(record.withKey(request.customerId).withValue(request));
        }
    }

    private static State.BalanceRequest charge(State.OrderPayment order, String orderId, GenericRecord cause) {
        State.BalanceRequest request = new State.BalanceRequest();
        request.orderId = orderId;
        request.customerId = order.customerId;
        request.amountCents = order.amountCents;
        request.command = "charge";
        request.cause = envelope(cause);
        return request;
    }

    private static State.Envelope envelope(GenericRecord event) {
        State.Envelope envelope = new State.Envelope();
        envelope.eventId = event.get("event_id").toString();
        envelope.orderId = event.get("order_id").toString();
        envelope.occurredAt = (Long) event.get("occurred_at");
        envelope.correlationId = event.get("correlation_id").toString();
        Object causation = event.get("causation_id");
        envelope.causationId = causation == null ? null : causation.toString();
        envelope.schemaVersion = (Integer) event.get("schema_version");
        return envelope;
    }
}
