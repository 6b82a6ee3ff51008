-- Fewer b-tree entries written per applied product (the update processor's writer thread spent
-- most of SaveProduct maintaining them):
-- * catalog_products_category: no query uses it (the category filter is an OR with a LIKE, so
--   listings go through the status-led indexes; the category counts scan the active rows).
-- * Prices, SKUs and attributes become WITHOUT ROWID tables clustered on their keys: a row is
--   one b-tree entry instead of a rowid row plus a key index. Attributes are keyed
--   (product_id, name, value), which also serves the per-product delete, so
--   catalog_attributes_product goes; a list attribute's repeated item is one row (the filter
--   asks only whether a row exists).
-- * The queue's state index keeps only queued updates (the processor's and the count's only
--   question): applying an update deletes its entry instead of moving it.
DROP INDEX catalog_products_category;

CREATE TABLE catalog_prices_keyed (
  product_id TEXT NOT NULL,
  currency TEXT NOT NULL,
  amount_minor BIGINT NOT NULL,
  PRIMARY KEY (product_id, currency)
) WITHOUT ROWID;
INSERT INTO catalog_prices_keyed (product_id, currency, amount_minor)
  SELECT product_id, currency, amount_minor FROM catalog_prices;
DROP TABLE catalog_prices;
ALTER TABLE catalog_prices_keyed RENAME TO catalog_prices;
CREATE INDEX catalog_prices_amount ON catalog_prices (currency, amount_minor, product_id);

CREATE TABLE catalog_attributes_keyed (
  product_id TEXT NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (product_id, name, value)
) WITHOUT ROWID;
INSERT OR IGNORE INTO catalog_attributes_keyed (product_id, name, value)
  SELECT product_id, name, value FROM catalog_attributes;
DROP TABLE catalog_attributes;
ALTER TABLE catalog_attributes_keyed RENAME TO catalog_attributes;
CREATE INDEX catalog_attributes_lookup ON catalog_attributes (name, value, product_id);

CREATE TABLE catalog_skus_keyed (
  sku TEXT PRIMARY KEY,
  product_id TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO catalog_skus_keyed (sku, product_id) SELECT sku, product_id FROM catalog_skus;
DROP TABLE catalog_skus;
ALTER TABLE catalog_skus_keyed RENAME TO catalog_skus;
CREATE INDEX catalog_skus_product ON catalog_skus (product_id);

DROP INDEX catalog_updates_state;
CREATE INDEX catalog_updates_queued ON catalog_updates (seq) WHERE state = 'queued';
