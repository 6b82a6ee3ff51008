-- Cart edits honour Idempotency-Key too: the stored response body is replayed for the same key
-- and request (checkout keys keep response empty and name their order instead).
ALTER TABLE idempotency_keys ADD COLUMN response TEXT NOT NULL DEFAULT '';
