-- 0009_order_view_version: the highest event-store version of the order the read model reflects
-- (the `aggregate_version` header); GET /orders/{id}?min_version=N waits for it.
ALTER TABLE order_view ADD COLUMN IF NOT EXISTS order_version bigint NOT NULL DEFAULT 0;
