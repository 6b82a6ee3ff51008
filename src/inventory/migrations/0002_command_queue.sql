-- Bus commands accepted by the inventory consumer (in the transaction that records the message
-- in the inbox) and not yet applied by the shard engine. The engine's batch transaction deletes
-- a row together with the command's effects and events, so a command is applied exactly once.
CREATE TABLE command_queue (
  message_id TEXT PRIMARY KEY,
  seq BIGINT NOT NULL,
  type TEXT NOT NULL,
  envelope TEXT NOT NULL,
  received_at_ms BIGINT NOT NULL
);
CREATE INDEX command_queue_by_seq ON command_queue (seq);
