-- bench/mixed/update.sql (pgbench): a new random vector for the first row
-- at or after a random id (none if a concurrent delete took it)
\set r random(1, :idspan)
\set s random(1, 1000000000)
WITH u AS (UPDATE items SET seed = :s, v = mixed_vec(:s, :dims)
		   WHERE id = (SELECT id FROM items WHERE id >= :r ORDER BY id LIMIT 1) RETURNING id)
INSERT INTO mixed_log SELECT 'u', id FROM u;
