-- Re-added (0003 dropped it while nothing read it): the shard engine evicts settled
-- reservations from memory and reads them back by order id when a command names an order it
-- no longer holds (shard_engine.h, "Eviction"). Partial: a reservation gets an order id only
-- when it is allocated, so reserve-only traffic never touches the index, and the time-ordered
-- (UUIDv7) order ids of allocations append at its right edge.
CREATE INDEX reservations_by_order ON reservations (order_id) WHERE order_id <> '';
