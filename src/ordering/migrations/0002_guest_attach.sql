-- Guest orders attach to an account: `account_id` is the customer an order or cart is listed
-- under ("" for a guest's until accounts.customer_verified names the customer with its e-mail).
-- `customer_id` stays what it was (the cart's owner / the payment method's owner).

ALTER TABLE orders ADD COLUMN account_id TEXT NOT NULL DEFAULT '';
UPDATE orders SET account_id = customer_id
  WHERE customer_id <> 'guest' AND customer_id NOT LIKE 'guest-%';
CREATE INDEX orders_by_account ON orders (account_id, id);
CREATE INDEX orders_guest_by_email ON orders (lower(email)) WHERE account_id = '';

ALTER TABLE carts ADD COLUMN account_id TEXT NOT NULL DEFAULT '';
UPDATE carts SET account_id = customer_id;
CREATE INDEX carts_guest_by_email ON carts (lower(email)) WHERE account_id = '' AND status = 'open';
