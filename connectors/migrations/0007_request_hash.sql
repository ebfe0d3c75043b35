-- 0007_request_hash: an Idempotency-Key is kept with the SHA-256 of the request it answered, so
-- the same key with another body is refused (422). Keys are stored scoped to the customer,
-- `<customer>/<key>`; rows from before have no hash and answer as before.
ALTER TABLE order_requests ADD COLUMN IF NOT EXISTS request_hash text;
