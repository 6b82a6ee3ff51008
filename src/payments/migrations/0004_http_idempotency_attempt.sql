-- An HTTP Idempotency-Key whose command handed its work to a PSP attempt names that attempt:
-- the attempt's settling transaction writes the key's answer (or forgets a key whose answer is
-- not replayable), so a replay record and the change it answers always commit together, even
-- when the attempt is settled by the recovery sweep after a crash.
ALTER TABLE http_idempotency ADD COLUMN attempt_key TEXT;
ALTER TABLE http_idempotency ADD COLUMN answer_kind INTEGER NOT NULL DEFAULT 0;
CREATE INDEX http_idempotency_attempt ON http_idempotency (attempt_key)
  WHERE attempt_key IS NOT NULL;
