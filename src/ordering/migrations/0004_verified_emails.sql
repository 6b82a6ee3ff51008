-- E-mails accounts has verified, from accounts.customer_verified: a guest checkout with one of
-- them is listed under that customer at once (a guest order placed before the verification is
-- attached when the event arrives). Keyed by the lower-cased address.
CREATE TABLE verified_emails (
  email TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  verified_at_ms BIGINT NOT NULL
);
