-- Accounts: customers, their sessions and addresses, e-mail verification, staff keys.
-- Credentials (session tokens, staff keys, verification tokens) are stored only as SHA-256
-- hashes; passwords only as argon2id encoded hashes.
CREATE TABLE customers (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  email_verified INTEGER NOT NULL DEFAULT 0,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL,
  version BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE sessions (
  token_hash BLOB PRIMARY KEY,
  customer_id TEXT NOT NULL REFERENCES customers(id),
  created_at_ms BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0,
  revoked_at_ms BIGINT
);
CREATE INDEX sessions_by_customer ON sessions(customer_id, revoked);

CREATE TABLE addresses (
  id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL REFERENCES customers(id),
  fields TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
CREATE INDEX addresses_by_customer ON addresses(customer_id, id);

CREATE TABLE email_verifications (
  token_hash BLOB PRIMARY KEY,
  customer_id TEXT NOT NULL REFERENCES customers(id),
  email TEXT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  used_at_ms BIGINT
);

CREATE TABLE staff_keys (
  id TEXT PRIMARY KEY,
  key_hash BLOB NOT NULL UNIQUE,
  role TEXT NOT NULL,
  label TEXT NOT NULL DEFAULT '',
  created_at_ms BIGINT NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0,
  revoked_at_ms BIGINT
);
