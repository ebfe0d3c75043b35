-- Shipments created by the shipping participant. The primary key on order_id is the last line of
-- defence against a redelivered InventoryReserved creating a second shipment (the Redis
-- idempotency key is the first): the insert is ON CONFLICT DO NOTHING and the existing row wins.
CREATE TABLE IF NOT EXISTS shipments (
    order_id        text        PRIMARY KEY,
    shipment_id     uuid        NOT NULL UNIQUE,
    tracking_number text        NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
