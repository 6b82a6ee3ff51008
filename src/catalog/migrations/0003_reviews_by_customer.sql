-- Reviews are written by signed-in customers: one review per (product, customer). The display
-- name ("author") is no longer unique, so the table is rebuilt with the new key (SQLite cannot
-- drop a table constraint in place). Reviews written before accounts existed keep their author
-- as a legacy owner key.
CREATE TABLE catalog_reviews_by_customer (
  id TEXT PRIMARY KEY,
  product_id TEXT NOT NULL,
  customer_id TEXT NOT NULL,
  author TEXT NOT NULL,
  rating INTEGER NOT NULL,
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  UNIQUE (product_id, customer_id)
);
INSERT INTO catalog_reviews_by_customer
  (id, product_id, customer_id, author, rating, title, body, created_at_ms)
  SELECT id, product_id, 'legacy:' || author, author, rating, title, body, created_at_ms
  FROM catalog_reviews;
DROP TABLE catalog_reviews;
ALTER TABLE catalog_reviews_by_customer RENAME TO catalog_reviews;
CREATE INDEX catalog_reviews_product ON catalog_reviews (product_id, created_at_ms, id);
