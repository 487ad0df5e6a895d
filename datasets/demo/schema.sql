-- Summit & Trail Outfitters: an outdoor-gear retailer with shops in several European cities,
-- a web shop and a phone line. All money is in euros.

CREATE TABLE stores (
    id integer PRIMARY KEY,
    name text NOT NULL UNIQUE,
    store_type text NOT NULL CHECK (store_type IN ('flagship', 'standard', 'outlet', 'warehouse')),
    city text NOT NULL,
    country char(2) NOT NULL,
    opened_on date NOT NULL
);
COMMENT ON TABLE stores IS 'Shops, plus the warehouse, which ships web and phone orders.';
COMMENT ON COLUMN stores.country IS 'ISO country code, e.g. DE, AT, CH.';

CREATE TABLE employees (
    id integer PRIMARY KEY,
    store_id integer NOT NULL REFERENCES stores (id),
    manager_id integer REFERENCES employees (id),
    first_name text NOT NULL,
    last_name text NOT NULL,
    role text NOT NULL CHECK (role IN ('store_manager', 'sales_associate', 'warehouse_staff', 'customer_service')),
    hired_on date NOT NULL,
    hourly_wage numeric(6,2) NOT NULL CHECK (hourly_wage > 0)
);
COMMENT ON COLUMN employees.manager_id IS 'Who this employee reports to; NULL at the top.';

CREATE TABLE customers (
    id integer PRIMARY KEY,
    first_name text NOT NULL,
    last_name text NOT NULL,
    email text NOT NULL UNIQUE,
    birth_date date,
    loyalty_tier text NOT NULL DEFAULT 'none' CHECK (loyalty_tier IN ('none', 'bronze', 'silver', 'gold')),
    marketing_opt_in boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL
);

CREATE TABLE addresses (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    kind text NOT NULL CHECK (kind IN ('shipping', 'billing')),
    street text NOT NULL,
    postal_code text NOT NULL,
    city text NOT NULL,
    country char(2) NOT NULL,
    is_default boolean NOT NULL DEFAULT false
);

CREATE TABLE categories (
    id integer PRIMARY KEY,
    name text NOT NULL UNIQUE,
    parent_id integer REFERENCES categories (id)
);
COMMENT ON TABLE categories IS 'Departments (parent_id NULL, e.g. Camping) and their subcategories (e.g. Tents); products belong to subcategories.';

CREATE TABLE suppliers (
    id integer PRIMARY KEY,
    name text NOT NULL UNIQUE,
    country char(2) NOT NULL,
    contact_email text NOT NULL,
    lead_time_days smallint NOT NULL CHECK (lead_time_days > 0)
);
COMMENT ON COLUMN suppliers.lead_time_days IS 'Typical days from purchase order to delivery.';

CREATE TABLE products (
    id integer PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    name text NOT NULL,
    brand text NOT NULL,
    category_id integer NOT NULL REFERENCES categories (id),
    supplier_id integer NOT NULL REFERENCES suppliers (id),
    list_price numeric(8,2) NOT NULL CHECK (list_price > 0),
    unit_cost numeric(8,2) NOT NULL CHECK (unit_cost > 0),
    weight_grams integer CHECK (weight_grams > 0),
    launched_on date NOT NULL,
    is_active boolean NOT NULL DEFAULT true
);
COMMENT ON COLUMN products.list_price IS 'Current retail price; the price paid is in order_items.';
COMMENT ON COLUMN products.unit_cost IS 'What we pay the supplier.';
COMMENT ON COLUMN products.is_active IS 'false once discontinued.';

CREATE TABLE inventory (
    store_id integer NOT NULL REFERENCES stores (id),
    product_id integer NOT NULL REFERENCES products (id),
    quantity_on_hand integer NOT NULL CHECK (quantity_on_hand >= 0),
    reorder_level integer NOT NULL CHECK (reorder_level >= 0),
    PRIMARY KEY (store_id, product_id)
);
COMMENT ON COLUMN inventory.reorder_level IS 'Restock when quantity_on_hand is at or below this.';

CREATE TABLE orders (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    store_id integer NOT NULL REFERENCES stores (id),
    employee_id integer REFERENCES employees (id),
    channel text NOT NULL CHECK (channel IN ('web', 'store', 'phone')),
    status text NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled', 'returned')),
    ordered_at timestamptz NOT NULL,
    shipping_address_id integer REFERENCES addresses (id),
    shipping_fee numeric(6,2) NOT NULL DEFAULT 0 CHECK (shipping_fee >= 0)
);
COMMENT ON COLUMN orders.store_id IS 'The shop of a store sale, or the location that ships a web or phone order.';
COMMENT ON COLUMN orders.employee_id IS 'Who took the order; NULL for web orders.';
COMMENT ON COLUMN orders.status IS 'Store sales are delivered at once; web and phone orders go pending, paid, shipped, delivered, and may end up cancelled or returned.';
COMMENT ON COLUMN orders.shipping_address_id IS 'NULL for store sales.';

CREATE TABLE order_items (
    order_id integer NOT NULL REFERENCES orders (id),
    line_no smallint NOT NULL,
    product_id integer NOT NULL REFERENCES products (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(8,2) NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, line_no)
);
COMMENT ON COLUMN order_items.unit_price IS 'Price charged per unit, after promotions. Order total = sum(quantity * unit_price) + orders.shipping_fee.';

CREATE TABLE payments (
    id integer PRIMARY KEY,
    order_id integer NOT NULL REFERENCES orders (id),
    method text NOT NULL CHECK (method IN ('card', 'paypal', 'gift_card', 'cash', 'invoice')),
    status text NOT NULL CHECK (status IN ('captured', 'failed', 'refunded')),
    amount numeric(10,2) NOT NULL CHECK (amount > 0),
    paid_at timestamptz NOT NULL
);
COMMENT ON TABLE payments IS 'Payment attempts; an order may be paid in parts (e.g. gift card plus card). Only captured payments count as revenue.';

CREATE TABLE shipments (
    id integer PRIMARY KEY,
    order_id integer NOT NULL REFERENCES orders (id),
    carrier text NOT NULL CHECK (carrier IN ('DHL', 'UPS', 'DPD', 'Post')),
    tracking_number text NOT NULL UNIQUE,
    shipped_at timestamptz NOT NULL,
    delivered_at timestamptz CHECK (delivered_at >= shipped_at)
);
COMMENT ON COLUMN shipments.delivered_at IS 'NULL while in transit.';

CREATE TABLE reviews (
    id integer PRIMARY KEY,
    product_id integer NOT NULL REFERENCES products (id),
    customer_id integer NOT NULL REFERENCES customers (id),
    rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    title text NOT NULL,
    body text,
    created_at timestamptz NOT NULL,
    UNIQUE (product_id, customer_id)
);
COMMENT ON TABLE reviews IS 'One review per customer and product; rating is 1 to 5 stars.';
