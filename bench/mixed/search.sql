-- bench/mixed/search.sql (pgbench): the 10 nearest rows to a random vector
\set q random(1, 1000000000)
SELECT id FROM items ORDER BY v <-> mixed_vec(:q, :dims) LIMIT 10;
