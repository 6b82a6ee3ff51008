-- Indexes that follow what the queries ask, so the periodic ones cost what is live, not every
-- order ever placed.
--
-- The deadline sweep (every 100 ms) asks for sagas still running whose deadline passed:
-- `saga_step <> 'done' AND saga_deadline_ms <= ?`. orders_by_deadline (saga_step,
-- saga_deadline_ms) could not serve an inequality on its first column, so every sweep scanned
-- the whole orders table and sorted it. A partial index holds only the running sagas (an order
-- leaves it when its saga finishes), ordered by deadline; the unfinished-saga count and the
-- stuck-saga list read the same small index.
DROP INDEX orders_by_deadline;
CREATE INDEX orders_running_by_deadline ON orders (saga_deadline_ms) WHERE saga_step <> 'done';

-- Guest orders and open guest carts by e-mail are listed in id order: with id in the index the
-- e-mail search also gives that order (before, the planner preferred walking every guest order
-- through orders_by_account, because that index was already in id order).
DROP INDEX orders_guest_by_email;
CREATE INDEX orders_guest_by_email ON orders (lower(email), id) WHERE account_id = '';
DROP INDEX carts_guest_by_email;
CREATE INDEX carts_guest_by_email ON carts (lower(email), id)
  WHERE account_id = '' AND status = 'open';

-- No query reads orders by customer_id (listings go by account_id since 0002); the index was
-- only written, on every order.
DROP INDEX orders_by_customer;
