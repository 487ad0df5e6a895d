INSERT INTO customers (id, name, city, signed_up) VALUES
    (1, 'Ada Lovelace',    'London', '2024-01-15'),
    (2, 'Alan Turing',     'London', '2024-02-03'),
    (3, 'Grace Hopper',    'New York', '2024-02-20'),
    (4, 'Edsger Dijkstra', 'Amsterdam', '2024-03-11'),
    (5, 'Barbara Liskov',  'Boston', '2024-04-02'),
    (6, 'Konrad Zuse',     'Berlin', '2024-05-19');

INSERT INTO products (id, name, category, price) VALUES
    (1, 'Mechanical keyboard', 'hardware', 89.00),
    (2, 'USB-C cable',         'hardware',  9.50),
    (3, 'SQL handbook',        'books',    34.90),
    (4, 'Compilers textbook',  'books',    72.00),
    (5, 'Desk lamp',           'office',   24.99);

INSERT INTO orders (id, customer_id, product_id, quantity, ordered_at, status) VALUES
    (1, 1, 3, 1, '2024-03-01 10:15:00+00', 'shipped'),
    (2, 1, 2, 3, '2024-03-01 10:16:00+00', 'shipped'),
    (3, 2, 1, 1, '2024-03-14 18:40:00+00', 'shipped'),
    (4, 3, 4, 2, '2024-04-05 09:00:00+00', 'shipped'),
    (5, 3, 3, 1, '2024-04-20 12:30:00+00', 'cancelled'),
    (6, 4, 1, 1, '2024-05-02 16:45:00+00', 'pending'),
    (7, 5, 2, 5, '2024-05-10 08:05:00+00', 'shipped'),
    (8, 6, 4, 1, '2024-06-01 14:20:00+00', 'pending');
