-- Ordering schema: carts, orders with their price snapshot and saga, the saga timeline,
-- checkout idempotency keys and the price read model fed by catalog.product_changed.

CREATE TABLE carts (
  id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  currency TEXT NOT NULL,
  region TEXT NOT NULL,
  email TEXT NOT NULL,
  shipping_address TEXT NOT NULL,
  status TEXT NOT NULL,
  lines_version BIGINT NOT NULL,
  reservation_id TEXT NOT NULL,
  reservation_status TEXT NOT NULL,
  reservation_expires_at_ms BIGINT NOT NULL,
  reservation_short_skus TEXT NOT NULL,
  order_id TEXT NOT NULL,
  version BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);

CREATE TABLE cart_lines (
  cart_id TEXT NOT NULL,
  position BIGINT NOT NULL,
  sku TEXT NOT NULL,
  quantity BIGINT NOT NULL,
  PRIMARY KEY (cart_id, position)
);

CREATE TABLE orders (
  id TEXT PRIMARY KEY,
  cart_id TEXT NOT NULL,
  customer_id TEXT NOT NULL,
  email TEXT NOT NULL,
  state TEXT NOT NULL,
  reason TEXT NOT NULL,
  currency TEXT NOT NULL,
  region TEXT NOT NULL,
  payment_method TEXT NOT NULL,
  shipping_address TEXT NOT NULL,
  subtotal_minor BIGINT NOT NULL,
  shipping_minor BIGINT NOT NULL,
  tax_minor BIGINT NOT NULL,
  total_minor BIGINT NOT NULL,
  saga TEXT NOT NULL,
  saga_step TEXT NOT NULL,
  saga_deadline_ms BIGINT NOT NULL,
  event_seq BIGINT NOT NULL,
  version BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, id);
CREATE INDEX orders_by_state ON orders (state, id);
CREATE INDEX orders_by_deadline ON orders (saga_step, saga_deadline_ms);

-- The price snapshot: what the customer agreed to pay, whatever the catalog says later.
CREATE TABLE order_lines (
  order_id TEXT NOT NULL,
  position BIGINT NOT NULL,
  sku TEXT NOT NULL,
  title TEXT NOT NULL,
  quantity BIGINT NOT NULL,
  unit_price_minor BIGINT NOT NULL,
  line_total_minor BIGINT NOT NULL,
  PRIMARY KEY (order_id, position)
);

-- The saga timeline: every step, command, reply, retry and compensation.
CREATE TABLE order_events (
  order_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  at_ms BIGINT NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL,
  state TEXT NOT NULL,
  PRIMARY KEY (order_id, seq)
);

-- Written in the transaction that creates the order.
CREATE TABLE idempotency_keys (
  scope TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  order_id TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  PRIMARY KEY (scope, idempotency_key)
);

-- Price read model: sku -> prices per currency (minor units, JSON object).
CREATE TABLE prices (
  sku TEXT PRIMARY KEY,
  product_id TEXT NOT NULL,
  title TEXT NOT NULL,
  active BIGINT NOT NULL,
  prices TEXT NOT NULL
);
CREATE INDEX prices_by_product ON prices (product_id);

CREATE TABLE price_products (
  product_id TEXT PRIMARY KEY,
  version BIGINT NOT NULL
);
