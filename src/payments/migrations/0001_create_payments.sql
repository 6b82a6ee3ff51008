-- The card vault: the only table holding card data, and only as ciphertext.
CREATE TABLE payment_methods (
  token TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  brand TEXT NOT NULL,
  last4 TEXT NOT NULL,
  expiry_month INTEGER NOT NULL,
  expiry_year INTEGER NOT NULL,
  key_id TEXT NOT NULL,
  nonce BLOB NOT NULL,
  ciphertext BLOB NOT NULL,
  created_at_ms BIGINT NOT NULL
);
CREATE INDEX payment_methods_customer ON payment_methods (customer_id, created_at_ms);
CREATE INDEX payment_methods_key ON payment_methods (key_id);

-- One payment intent per order.
CREATE TABLE payment_intents (
  id TEXT PRIMARY KEY,
  order_id TEXT NOT NULL UNIQUE,
  customer_id TEXT NOT NULL,
  payment_method TEXT NOT NULL,
  amount_minor BIGINT NOT NULL,
  currency TEXT NOT NULL,
  state TEXT NOT NULL,
  authorized_minor BIGINT NOT NULL DEFAULT 0,
  captured_minor BIGINT NOT NULL DEFAULT 0,
  refunded_minor BIGINT NOT NULL DEFAULT 0,
  psp_authorization_id TEXT,
  decline_reason TEXT,
  fraud_score INTEGER NOT NULL DEFAULT 0,
  fraud_reasons TEXT NOT NULL DEFAULT '',
  billing_country TEXT NOT NULL DEFAULT '',
  shipping_country TEXT NOT NULL DEFAULT '',
  client_ip TEXT NOT NULL DEFAULT '',
  version BIGINT NOT NULL DEFAULT 1,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
CREATE INDEX payment_intents_state ON payment_intents (state, updated_at_ms);
CREATE INDEX payment_intents_customer ON payment_intents (customer_id, created_at_ms);

-- Every PSP call, keyed by its idempotency key. status: pending (recorded, not yet sent),
-- unknown (sent, outcome not known), succeeded, failed. A recovery sweep re-drives pending and
-- unknown attempts with the SAME key.
CREATE TABLE psp_attempts (
  idempotency_key TEXT PRIMARY KEY,
  intent_id TEXT NOT NULL REFERENCES payment_intents (id),
  operation TEXT NOT NULL,
  attempt_group BIGINT NOT NULL,
  amount_minor BIGINT NOT NULL,
  status TEXT NOT NULL,
  psp_object_id TEXT,
  result_code TEXT,
  try_count BIGINT NOT NULL DEFAULT 0,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
CREATE INDEX psp_attempts_status ON psp_attempts (status, updated_at_ms);
CREATE INDEX psp_attempts_intent ON psp_attempts (intent_id);

-- Commands from ordering (bus) and staff (HTTP), de-duplicated by command id.
CREATE TABLE payment_commands (
  command_id TEXT PRIMARY KEY,
  intent_id TEXT NOT NULL,
  operation TEXT NOT NULL,
  amount_minor BIGINT NOT NULL,
  reply_to TEXT,
  correlation_id TEXT,
  created_at_ms BIGINT NOT NULL
);

-- Idempotency-Key of state-changing HTTP calls: the stored response is replayed.
CREATE TABLE http_idempotency (
  idempotency_key TEXT PRIMARY KEY,
  request_hash TEXT NOT NULL,
  status INTEGER NOT NULL,
  body TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL
);

-- The double-entry ledger: every money movement is a balanced set of rows.
CREATE TABLE ledger_entries (
  transaction_id TEXT NOT NULL,
  entry_index INTEGER NOT NULL,
  intent_id TEXT NOT NULL,
  movement TEXT NOT NULL,
  account TEXT NOT NULL,
  direction TEXT NOT NULL,
  amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
  currency TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  PRIMARY KEY (transaction_id, entry_index)
);
CREATE INDEX ledger_entries_intent ON ledger_entries (intent_id);

-- PSP notifications already processed (de-duplication).
CREATE TABLE psp_notifications (
  event_id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  object_id TEXT NOT NULL,
  received_at_ms BIGINT NOT NULL
);
