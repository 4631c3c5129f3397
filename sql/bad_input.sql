-- Bad input to what omen owns gets a clear error, never a crash.
CREATE EXTENSION omen CASCADE;
\set VERBOSITY default

-- mismatched dimensions
SELECT omen_l2_distance('[1,2]', '[1,2,3]');
SELECT omen_cosine_distance('[1]', '[1,2]');
-- wrong argument types
SELECT omen_l2_distance(1, 2);
SELECT omen_l2_distance('[1,2]'::vector, 'abc');

-- reloptions
CREATE TABLE items (id int, v vector(3));
INSERT INTO items VALUES (1, '[1,2,3]'), (2, '[4,5,6]');
CREATE INDEX ON items USING omen (v) WITH (m = 1);
CREATE INDEX ON items USING omen (v) WITH (m = 101);
CREATE INDEX ON items USING omen (v) WITH (m = 'abc');
CREATE INDEX ON items USING omen (v) WITH (ef_construction = 3);
CREATE INDEX ON items USING omen (v) WITH (ef_construction = 1001);
CREATE INDEX ON items USING omen (v) WITH (m = 40, ef_construction = 64);
CREATE INDEX ON items USING omen (v) WITH (nosuchoption = 1);

-- GUCs
SET omen.ef_search = 0;
SET omen.ef_search = 1001;
SET omen.ef_search = 'many';
SET omen.simd = 'sse';
SET omen.nosuchsetting = 1;

-- opclass misuse
CREATE TABLE other (id int, n int, t text, v vector(3));
CREATE INDEX ON other USING omen (n);
CREATE INDEX ON other USING omen (t);
CREATE INDEX ON other USING omen (v, v);
CREATE INDEX ON other USING omen (v) INCLUDE (id);
CREATE UNIQUE INDEX ON other USING omen (v);
CREATE INDEX ON other USING omen (v vector_l2_ops DESC);

-- dimensions: the typmod-less column takes them from the first vector
CREATE TABLE free (id int, v vector);
CREATE INDEX free_idx ON free USING omen (v);
INSERT INTO free VALUES (1, '[1,2,3]');
INSERT INTO free VALUES (2, '[1,2]');
SELECT id FROM free ORDER BY v <-> '[1,2]' LIMIT 1;
CREATE TABLE mixed (id int, v vector);
INSERT INTO mixed VALUES (1, '[1,2,3]'), (2, '[1,2]');
CREATE INDEX ON mixed USING omen (v);

-- an index is only for ORDER BY
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE v = '[1,2,3]';
RESET enable_seqscan;

-- omen_index_info on something that is not an omen index
SELECT * FROM omen_index_info('items');
CREATE INDEX items_btree ON items (id);
SELECT * FROM omen_index_info('items_btree');

DROP TABLE items, other, free, mixed;

DROP EXTENSION omen;
DROP EXTENSION vector;
