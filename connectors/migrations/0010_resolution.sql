-- 0010_resolution: an operator's note settling a parked order (POST /admin/orders/{id}/intervention
-- with action resolve); the order is CANCELLED as it stands.
ALTER TABLE order_view ADD COLUMN IF NOT EXISTS resolution text;
