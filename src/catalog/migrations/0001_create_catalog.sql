-- The catalog's store: products as documents plus the columns reads filter and sort on, the
-- durable update queue, idempotency keys and reviews.
CREATE TABLE catalog_products (
  id TEXT PRIMARY KEY,
  handle TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  brand TEXT NOT NULL,
  category TEXT NOT NULL,
  version BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL,
  update_seq BIGINT NOT NULL,
  rating_count BIGINT NOT NULL DEFAULT 0,
  rating_sum BIGINT NOT NULL DEFAULT 0,
  rating_average DOUBLE PRECISION NOT NULL DEFAULT 0,
  document TEXT NOT NULL
);
CREATE INDEX catalog_products_created ON catalog_products (status, created_at_ms, id);
CREATE INDEX catalog_products_rating ON catalog_products (status, rating_average, id);
CREATE INDEX catalog_products_category ON catalog_products (category);
CREATE INDEX catalog_products_seq ON catalog_products (update_seq);

-- The lowest variant price of each product per currency, for price filters and sorting.
CREATE TABLE catalog_prices (
  product_id TEXT NOT NULL,
  currency TEXT NOT NULL,
  amount_minor BIGINT NOT NULL,
  PRIMARY KEY (product_id, currency)
);
CREATE INDEX catalog_prices_amount ON catalog_prices (currency, amount_minor, product_id);

-- Scalar attributes (lists contribute one row per item), for "attribute equals" filters.
CREATE TABLE catalog_attributes (
  product_id TEXT NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL
);
CREATE INDEX catalog_attributes_lookup ON catalog_attributes (name, value, product_id);
CREATE INDEX catalog_attributes_product ON catalog_attributes (product_id);

-- SKU ownership: a SKU belongs to one product across the catalog.
CREATE TABLE catalog_skus (
  sku TEXT PRIMARY KEY,
  product_id TEXT NOT NULL
);
CREATE INDEX catalog_skus_product ON catalog_skus (product_id);

-- The durable product update queue, applied in seq order by the processor.
CREATE TABLE catalog_updates (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  product_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  base_version BIGINT,
  target_version BIGINT NOT NULL,
  payload TEXT NOT NULL,
  state TEXT NOT NULL,
  reason TEXT,
  message TEXT,
  applied_version BIGINT,
  created_at_ms BIGINT NOT NULL,
  finished_at_ms BIGINT
);
CREATE INDEX catalog_updates_state ON catalog_updates (state, seq);

-- The version the product will reach once every queued update applies; If-Match checks it.
CREATE TABLE catalog_heads (
  product_id TEXT PRIMARY KEY,
  queued_version BIGINT NOT NULL
);

CREATE TABLE catalog_idempotency (
  key TEXT PRIMARY KEY,
  request_hash TEXT NOT NULL,
  status INTEGER NOT NULL,
  body TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL
);

CREATE TABLE catalog_reviews (
  id TEXT PRIMARY KEY,
  product_id TEXT NOT NULL,
  author TEXT NOT NULL,
  rating INTEGER NOT NULL,
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  UNIQUE (product_id, author)
);
CREATE INDEX catalog_reviews_product ON catalog_reviews (product_id, created_at_ms, id);
