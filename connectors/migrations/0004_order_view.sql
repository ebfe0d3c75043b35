-- 0004_order_view: the CQRS read model the projector keeps (pipeline/src/projector) and GET /orders reads.
-- One row per order, created by whichever of its events arrives first (topics are consumed
-- independently, so e.g. PaymentCompleted can land before OrderPlaced); fields fill in as they become known.
CREATE TABLE IF NOT EXISTS order_view (
    order_id            text        PRIMARY KEY,
    customer_id         text,
    -- PLACED | PAID | RESERVED | CONFIRMED | COMPENSATING | CANCELLED
    status              text        NOT NULL,
    -- cents, as on the events
    total_amount        bigint,
    -- units ordered: the sum of the item quantities
    item_count          bigint,
    tracking_number     text,
    cancellation_reason text,
    -- Steps known to have happened; the status is derived from them, so arrival order does not matter.
    charged             boolean     NOT NULL DEFAULT false,
    refunded            boolean     NOT NULL DEFAULT false,
    reserved            boolean     NOT NULL DEFAULT false,
    released            boolean     NOT NULL DEFAULT false,
    -- Distinct events applied; readers wait for a version with ?min_version=N.
    version             bigint      NOT NULL,
    placed_at           timestamptz,
    updated_at          timestamptz NOT NULL
);

-- The listing's filters, each in the listing's order (newest first, order_id breaks ties).
CREATE INDEX IF NOT EXISTS order_view_by_customer ON order_view (customer_id, placed_at DESC NULLS LAST, order_id);
CREATE INDEX IF NOT EXISTS order_view_by_status ON order_view (status, placed_at DESC NULLS LAST, order_id);
CREATE INDEX IF NOT EXISTS order_view_by_placed_at ON order_view (placed_at DESC NULLS LAST, order_id);

-- Events already applied: Debezium and the consumer are at-least-once, so the projector inserts the
-- event id first, in the same transaction as the row update, and skips the event when it is there.
CREATE TABLE IF NOT EXISTS projected_events (
    event_id     text        PRIMARY KEY,
    order_id     text        NOT NULL,
    projected_at timestamptz NOT NULL DEFAULT now()
);
