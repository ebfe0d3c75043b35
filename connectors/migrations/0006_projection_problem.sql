-- 0006_projection_problem: an order one of whose events the projector could never read (the
-- record is in <topic>.dlq with its reason) says so in the read model.
ALTER TABLE order_view ADD COLUMN IF NOT EXISTS projection_problem text;
