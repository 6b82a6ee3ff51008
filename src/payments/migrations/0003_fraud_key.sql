-- The identity the customer-level fraud velocity rules count by: the customer id for a
-- signed-in customer; for a guest, the payer's e-mail ("guest-email:<e-mail>") or, without
-- one, the card ("guest-card:<vault token>"), so all guests are no longer one customer.
ALTER TABLE payment_intents ADD COLUMN fraud_key TEXT NOT NULL DEFAULT '';
UPDATE payment_intents SET fraud_key = CASE
  WHEN customer_id = 'guest' OR customer_id LIKE 'guest-%' THEN 'guest-card:' || payment_method
  ELSE customer_id END;
CREATE INDEX payment_intents_fraud_key ON payment_intents (fraud_key, created_at_ms);
