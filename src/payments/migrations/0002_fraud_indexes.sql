-- Velocity rules count recent intents per card and per client IP; keep those counts indexed.
CREATE INDEX payment_intents_method ON payment_intents (payment_method, created_at_ms);
CREATE INDEX payment_intents_ip ON payment_intents (client_ip, created_at_ms);
