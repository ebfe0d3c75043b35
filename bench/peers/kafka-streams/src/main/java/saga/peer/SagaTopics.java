package saga.peer;

/** The topic whose subject holds each event's schema (our schemas::topic_of). */
final class SagaTopics {
    static String canonical(String eventName) {
        if (eventName.startsWith("Payment")) {
            return "payment.events";
        }
        if (eventName.startsWith("Inventory")) {
            return "inventory.events";
        }
        if (eventName.startsWith("Shipment")) {
            return "shipping.events";
        }
        return "order.events";
    }

    private SagaTopics() {}
}
