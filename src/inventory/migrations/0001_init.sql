-- Inventory schema: locations, the stock projection, the immutable ledger, reservations.

CREATE TABLE locations (
  id TEXT PRIMARY KEY,
  region TEXT NOT NULL,
  address TEXT NOT NULL
);

-- A projection of the ledger; `inventory rebuild` recomputes it. version = last ledger seq.
CREATE TABLE stock (
  sku TEXT NOT NULL,
  location_id TEXT NOT NULL,
  on_hand BIGINT NOT NULL,
  reserved BIGINT NOT NULL,
  allocated BIGINT NOT NULL,
  version BIGINT NOT NULL,
  PRIMARY KEY (sku, location_id),
  CHECK (reserved >= 0 AND allocated >= 0 AND reserved + allocated <= on_hand)
);

CREATE TABLE ledger (
  sku TEXT NOT NULL,
  location_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  kind TEXT NOT NULL,
  quantity BIGINT NOT NULL,
  reference TEXT NOT NULL,
  time_ms BIGINT NOT NULL,
  PRIMARY KEY (sku, location_id, seq)
);

CREATE TABLE reservations (
  id TEXT PRIMARY KEY,
  region TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  state TEXT NOT NULL,
  order_id TEXT NOT NULL,
  shipment_ids TEXT NOT NULL,
  return_ids TEXT NOT NULL
);
CREATE INDEX reservations_by_order ON reservations (order_id);

-- One row per (line, split): the location choice recorded per line.
CREATE TABLE reservation_lines (
  reservation_id TEXT NOT NULL,
  line_no INTEGER NOT NULL,
  split_no INTEGER NOT NULL,
  sku TEXT NOT NULL,
  line_quantity BIGINT NOT NULL,
  location_id TEXT NOT NULL,
  quantity BIGINT NOT NULL,
  shipped BIGINT NOT NULL,
  returned BIGINT NOT NULL,
  PRIMARY KEY (reservation_id, line_no, split_no)
);
