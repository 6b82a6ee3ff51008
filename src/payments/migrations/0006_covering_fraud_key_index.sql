-- Screening reads a customer's history on the writer for every new authorization: the last
-- 100 authorized amounts, and the cards used in the velocity window. With (fraud_key,
-- created_at_ms) alone, each counted intent cost a table b-tree descent for authorized_minor
-- or payment_method; carrying both in the index answers both queries from it.
CREATE INDEX payment_intents_fraud_history
  ON payment_intents (fraud_key, created_at_ms, payment_method, authorized_minor);
DROP INDEX IF EXISTS payment_intents_fraud_key;
