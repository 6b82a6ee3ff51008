-- Idempotency-Key records of the accounts POSTs that create things (sign-up, addresses),
-- written in the same transaction as the effect. `key` is scoped by the caller
-- ("signup:<key>", "address:<customer>:<key>"); `request_hash` fingerprints the request
-- without secrets; `body` is the stored response, which never holds a credential.
CREATE TABLE accounts_idempotency (
  key TEXT PRIMARY KEY,
  request_hash TEXT NOT NULL,
  status INTEGER NOT NULL,
  body TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL
);
