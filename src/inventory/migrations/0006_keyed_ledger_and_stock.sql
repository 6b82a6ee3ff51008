-- The ledger and the stock projection become WITHOUT ROWID tables clustered on their primary
-- keys: a ledger entry (or a stock row) is one b-tree entry instead of a rowid row plus an
-- entry in the key's automatic index, so a shard batch inserts into (and dirties pages of) one
-- b-tree per table instead of two. The ledger keeps its order per (sku, location): a hot SKU's
-- entries still append at the end of its range. Same columns, constraints and rows.
CREATE TABLE ledger_keyed (
  sku TEXT NOT NULL,
  location_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  kind TEXT NOT NULL,
  quantity BIGINT NOT NULL,
  reference TEXT NOT NULL,
  time_ms BIGINT NOT NULL,
  PRIMARY KEY (sku, location_id, seq)
) WITHOUT ROWID;
INSERT INTO ledger_keyed (sku, location_id, seq, kind, quantity, reference, time_ms)
  SELECT sku, location_id, seq, kind, quantity, reference, time_ms FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_keyed RENAME TO ledger;

CREATE TABLE stock_keyed (
  sku TEXT NOT NULL,
  location_id TEXT NOT NULL,
  on_hand BIGINT NOT NULL,
  reserved BIGINT NOT NULL,
  allocated BIGINT NOT NULL,
  version BIGINT NOT NULL,
  PRIMARY KEY (sku, location_id),
  CHECK (reserved >= 0 AND allocated >= 0 AND reserved + allocated <= on_hand)
) WITHOUT ROWID;
INSERT INTO stock_keyed (sku, location_id, on_hand, reserved, allocated, version)
  SELECT sku, location_id, on_hand, reserved, allocated, version FROM stock;
DROP TABLE stock;
ALTER TABLE stock_keyed RENAME TO stock;
