-- VACUUM: dead rows are never returned, and a heap TID that VACUUM
-- recycles for a new row is never returned for the old row's vector.
CREATE EXTENSION omen CASCADE;

CREATE TABLE items (id int, v vector(3)) WITH (autovacuum_enabled = off);
INSERT INTO items SELECT i, ARRAY[i % 100, (i / 100) % 100, i % 7]::vector FROM generate_series(1, 5000) i;
CREATE INDEX items_idx ON items USING omen (v);
CREATE TABLE old AS SELECT id, v, ctid AS tid FROM items WHERE id % 2 = 0;

DELETE FROM items WHERE id % 2 = 0;
SET enable_seqscan = off;
-- before VACUUM: dead rows are filtered by the heap
SELECT count(*) FROM old o WHERE (SELECT i.id FROM items i ORDER BY i.v <-> o.v LIMIT 1) % 2 = 0;
VACUUM items;
SELECT elements, deleted_elements FROM omen_index_info('items_idx');

-- new rows far away from everything, in the freed line pointers
INSERT INTO items SELECT 100000 + i, '[1000,1000,1000]' FROM generate_series(1, 2500) i;
SELECT count(*) > 0 AS tids_recycled FROM items WHERE id > 100000 AND ctid IN (SELECT tid FROM old);
-- every old vector's nearest row is a live, near row, never a far one
SELECT count(*) AS wrong FROM old o
WHERE (SELECT i.v <-> o.v FROM items i ORDER BY i.v <-> o.v LIMIT 1) > 2;
-- and index scans agree with sequential scans on distance
SELECT count(*) AS mismatches FROM old o
WHERE (SELECT i.v <-> o.v FROM items i ORDER BY i.v <-> o.v LIMIT 1) <>
	  (SELECT min(i.v <-> o.v) FROM items i);

-- deleting everything and vacuuming leaves an index that returns nothing
DELETE FROM items;
VACUUM items;
SELECT count(*) FROM (SELECT id FROM items ORDER BY v <-> '[1,2,3]' LIMIT 10) s;
SELECT elements FROM omen_index_info('items_idx');
INSERT INTO items VALUES (1, '[1,2,3]');
SELECT id FROM items ORDER BY v <-> '[1,2,3]' LIMIT 10;
RESET enable_seqscan;

DROP TABLE items, old;

DROP EXTENSION omen;
DROP EXTENSION vector;
