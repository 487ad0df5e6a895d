-- Demo dataset: a tiny shop. Placeholder until the large realistic dataset lands.

CREATE TABLE customers (
    id          integer PRIMARY KEY,
    name        text    NOT NULL,
    city        text    NOT NULL,
    signed_up   date    NOT NULL
);
COMMENT ON TABLE customers IS 'People who have an account in the shop.';

CREATE TABLE products (
    id          integer       PRIMARY KEY,
    name        text          NOT NULL UNIQUE,
    category    text          NOT NULL,
    price       numeric(10,2) NOT NULL CHECK (price >= 0)
);
COMMENT ON TABLE products IS 'Items for sale; price is in euros.';

CREATE TABLE orders (
    id          integer     PRIMARY KEY,
    customer_id integer     NOT NULL REFERENCES customers (id),
    product_id  integer     NOT NULL REFERENCES products (id),
    quantity    integer     NOT NULL CHECK (quantity > 0),
    ordered_at  timestamptz NOT NULL,
    status      text        NOT NULL CHECK (status IN ('pending', 'shipped', 'cancelled'))
);
COMMENT ON TABLE orders IS 'One product line bought by a customer.';
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
