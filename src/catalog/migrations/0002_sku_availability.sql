-- The availability read model, kept from inventory.availability_changed (the catalog never reads
-- inventory's tables). One row per SKU: units available to sell over every location, on hand,
-- the sender's version when its payload carries one, and the local order of the last applied
-- event (updated_seq, increasing), for the in-stock list filter.
CREATE TABLE catalog_sku_availability (
  sku TEXT PRIMARY KEY,
  available BIGINT NOT NULL,
  on_hand BIGINT NOT NULL,
  source_version BIGINT,
  updated_seq BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
CREATE INDEX catalog_sku_availability_seq ON catalog_sku_availability (updated_seq);
