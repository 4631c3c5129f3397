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
-- the deleted elements are unlinked and their slots freed
SELECT elements, deleted_elements FROM omen_index_info('items_idx');
SELECT pages AS pages_before FROM omen_index_info('items_idx') \gset

-- new rows far away from everything, in the freed line pointers
INSERT INTO items SELECT 100000 + i, ARRAY[1000 + i, 1000, 1000]::vector FROM generate_series(1, 2500) i;
-- the new rows reuse the freed slots: the index does not grow
SELECT pages <= :pages_before + 2 AS reused FROM omen_index_info('items_idx');
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

-- recall after deleting half the rows of a real data set, and index size
-- over repeated delete / vacuum / insert cycles
CREATE TABLE glove (id int PRIMARY KEY, v vector(100)) WITH (autovacuum_enabled = off);
\copy glove FROM 'data/glove_base.tsv'
CREATE TABLE glove_q (id int PRIMARY KEY, v vector(100));
\copy glove_q FROM 'data/glove_query.tsv'
CREATE INDEX glove_idx ON glove USING omen (v vector_cosine_ops);
DELETE FROM glove WHERE id % 2 = 0;
VACUUM glove;
SET enable_seqscan = off;
SET enable_indexscan = off;
CREATE TABLE glove_gt AS
	SELECT q.id, ARRAY(SELECT s.id FROM glove s ORDER BY s.v <=> q.v LIMIT 10) AS ids FROM glove_q q;
SET enable_indexscan = on;
SELECT avg((SELECT count(*) FROM unnest(ARRAY(SELECT s.id FROM glove s ORDER BY s.v <=> q.v LIMIT 10)) r
			WHERE r = ANY (g.ids)) / 10.0) >= 0.95 AS recall_after_delete
FROM glove_q q JOIN glove_gt g USING (id);
SELECT pages AS glove_pages FROM omen_index_info('glove_idx') \gset
CREATE TEMP TABLE src (id int, v vector(100));
\copy src FROM 'data/glove_base.tsv'
DO $$
BEGIN
	FOR round IN 1..4 LOOP
		DELETE FROM glove WHERE id % 5 = round;
		INSERT INTO glove SELECT id, v FROM src WHERE id % 2 = 0 AND id % 5 = round;
	END LOOP;
END $$;
VACUUM glove;
INSERT INTO glove SELECT s.id, s.v FROM src s WHERE NOT EXISTS (SELECT 1 FROM glove g WHERE g.id = s.id) AND s.id % 5 = 0;
SELECT pages <= :glove_pages * 1.2 AS bounded_growth, elements = (SELECT count(*) FROM glove) AS counts_match
FROM omen_index_info('glove_idx');
-- a VACUUM with nothing to delete links again what the inserts left
-- unreached, and leaves every row reachable by its own vector
SELECT unreachable AS unreached_before FROM omen_verify('glove_idx') \gset
VACUUM glove;
SELECT unreachable <= :unreached_before AS no_more_unreached, deleted = 0 AS nothing_deleted
FROM omen_verify('glove_idx');
SELECT count(*) AS rows_not_found_by_their_vector FROM glove g
WHERE g.id % 50 = 0 AND NOT EXISTS (SELECT 1 FROM (SELECT id FROM glove x ORDER BY x.v <=> g.v LIMIT 10) s WHERE s.id = g.id);
RESET enable_seqscan;
DROP TABLE glove, glove_q, glove_gt, src;

DROP EXTENSION omen;
DROP EXTENSION vector;
