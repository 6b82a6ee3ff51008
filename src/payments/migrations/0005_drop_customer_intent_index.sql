-- payment_intents_customer (customer_id, created_at_ms) has served no query since the fraud
-- velocity rules count by fraud_key (0003), which has its own index; every new intent still
-- paid for an entry in it (a b-tree insert and, with customers spread over the key space, one
-- more dirty page per intent in each group commit's WAL frames).
DROP INDEX IF EXISTS payment_intents_customer;
