package saga.peer;


/** What the peer stores, as JSON: the same entities, with the same fields, as ours. */
final class State {
    /** The fields of an event's envelope a reply needs. */
    public static final class Envelope {
        public String eventId;
        public String orderId;
        public long occurredAt;
        public String correlationId;
        public String causationId;
        public int schemaVersion;
    }

    /** Everything payment knows about one order, keyed by order id. */
    public static final class OrderPayment {
        public String customerId;
        public long amountCents;
        /** NOT_REQUESTED, REQUESTED, CHARGED or FAILED. */
        public String charge = "NOT_REQUESTED";
        public String paymentId;
        /** UNKNOWN, RESERVED or FAILED. */
        public String inventory = "UNKNOWN";
        public boolean released;
        public String cancelled;
        /** NOT_REQUESTED, REQUESTED or REFUNDED. */
        public String refund = "NOT_REQUESTED";
    }

    /** What retention knows of an order. */
    public static final class Lifecycle {
        public boolean decided;
        public boolean parked;
    }

    /** The money a customer has. */
    public static final class CustomerBalance {
        public long balanceCents;
    }

    /** A request a balance applied, and when. */
    public static final class Applied {
        public Settled settled;
        public long appliedAtMs;
    }

    public static final class Settled {
        /** CHARGED or DECLINED. */
        public String outcome;
        public String paymentId;
        public String reason;
    }

    /** A charge for one order, keyed by customer id on its way to the balances. */
    public static final class BalanceRequest {
        public String orderId;
        public String customerId;
        public long amountCents;
        public String command;
        public Envelope cause;
    }

    private State() {}
}
