-- Re-added (0003 dropped it while nothing read it): the shard engine evicts settled
-- reservations from memory and reads them back by order id when a command names an order it
-- no longer holds (shard_engine.h, "Eviction"). Partial: only settled rows that were allocated
-- to an order can be evicted and read back by order, so only they are indexed. Reserve and
-- allocate (the hot path) never touch the index; a reservation enters it when it settles with
-- an order (shipped, delivered, allocation cancelled), and its time-ordered (UUIDv7) order id
-- lands near the right edge.
CREATE INDEX reservations_by_order ON reservations (order_id)
  WHERE order_id <> '' AND state NOT IN ('active', 'allocated');
