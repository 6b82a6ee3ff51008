-- Idempotency-Key records of the staff stock routes (receive, adjust): written in the batch
-- transaction that applied the command, so a retried request after a lost answer replays
-- `response` instead of receiving the stock twice.
CREATE TABLE staff_idempotency (
  key TEXT PRIMARY KEY,
  request TEXT NOT NULL,
  response TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL
);
