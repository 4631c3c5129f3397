-- bench/mixed/insert.sql (pgbench): a row with a random vector
\set s random(1, 1000000000)
WITH i AS (INSERT INTO items (seed, v) VALUES (:s, mixed_vec(:s, :dims)) RETURNING id)
INSERT INTO mixed_log SELECT 'i', id FROM i;
