-- bench/mixed/delete.sql (pgbench): delete the first row at or after a
-- random id (none if a concurrent delete took it)
\set r random(1, :idspan)
WITH d AS (DELETE FROM items WHERE id = (SELECT id FROM items WHERE id >= :r ORDER BY id LIMIT 1) RETURNING id)
INSERT INTO mixed_log SELECT 'd', id FROM d;
