-- No query reads reservations by order (the shard engine keeps that index in memory, loaded at
-- startup), and maintaining it cost a write to a scattered index page for every allocation.
DROP INDEX reservations_by_order;
