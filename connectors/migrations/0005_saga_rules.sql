-- 0005_saga_rules: shipments can be cancelled, and the read model shows the saga's later rules
-- (docs/saga.md): a cancelled shipment, a refused cancellation, an order parked for a person.
ALTER TABLE shipments ADD COLUMN IF NOT EXISTS cancelled_at timestamptz;

ALTER TABLE order_view ADD COLUMN IF NOT EXISTS shipped boolean NOT NULL DEFAULT false;
ALTER TABLE order_view ADD COLUMN IF NOT EXISTS shipment_cancelled boolean NOT NULL DEFAULT false;
-- Why a customer's cancellation was refused (the order was already confirmed).
ALTER TABLE order_view ADD COLUMN IF NOT EXISTS cancellation_rejected text;
-- Set while the order is REQUIRES_INTERVENTION: why, and which compensations are missing.
ALTER TABLE order_view ADD COLUMN IF NOT EXISTS intervention_reason text;
ALTER TABLE order_view ADD COLUMN IF NOT EXISTS outstanding_compensations text[];
