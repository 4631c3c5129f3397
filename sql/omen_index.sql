-- The omen access method: building, planning, ordered and resumable scans,
-- and the corner cases of the rows it indexes.
CREATE EXTENSION omen CASCADE;

CREATE TABLE sift (id int PRIMARY KEY, v vector(128));
\copy sift FROM 'data/bigann_base.tsv'
CREATE TABLE sift_q (id int PRIMARY KEY, v vector(128));
\copy sift_q FROM 'data/bigann_query.tsv'
ANALYZE sift;

CREATE INDEX sift_idx ON sift USING omen (v vector_l2_ops) WITH (m = 16, ef_construction = 64);
SELECT format_version, dims, metric, m, ef_construction, segments, elements, deleted_elements
FROM omen_index_info('sift_idx');
SELECT amvalidate(opc.oid), opc.opcname FROM pg_opclass opc JOIN pg_am am ON am.oid = opc.opcmethod
WHERE am.amname = 'omen' ORDER BY opc.opcname;
SELECT pg_indexam_has_property(oid, 'can_order'), pg_index_column_has_property('sift_idx', 1, 'distance_orderable')
FROM pg_am WHERE amname = 'omen';

-- the planner uses the index for ORDER BY ... LIMIT, not without a LIMIT
EXPLAIN (COSTS OFF) SELECT id FROM sift ORDER BY v <-> (SELECT v FROM sift_q WHERE id = 1) LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM sift ORDER BY v <-> array_fill(1, ARRAY[128])::vector LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM sift ORDER BY v <-> (SELECT v FROM sift_q WHERE id = 1);
-- other operators than the opclass's cannot use it
EXPLAIN (COSTS OFF) SELECT id FROM sift ORDER BY v <#> (SELECT v FROM sift_q WHERE id = 1) LIMIT 10;
-- a generic plan with unknown LIMIT still uses it
SET plan_cache_mode = force_generic_plan;
PREPARE knn(vector, int) AS SELECT id FROM sift ORDER BY v <-> $1 LIMIT $2;
EXPLAIN (COSTS OFF) EXECUTE knn(array_fill(1, ARRAY[128])::vector, 10);
RESET plan_cache_mode;

-- rows come in non-decreasing exact distance, and a scan is resumable:
-- LIMIT 100 with ef_search 10 still returns 100 rows
SET omen.ef_search = 10;
CREATE FUNCTION scan_check(q vector, k int) RETURNS TABLE (n bigint, ordered bool)
LANGUAGE sql AS $$
	SELECT count(*), coalesce(bool_and(d >= prev - 1e-6 * prev), true)
	FROM (SELECT d, lag(d, 1, 0::float8) OVER (ORDER BY ord) AS prev
		  FROM (SELECT v <-> q AS d, row_number() OVER () AS ord
				FROM (SELECT v FROM sift ORDER BY v <-> q LIMIT k) s) s) s
$$;
SELECT n, ordered FROM scan_check((SELECT v FROM sift_q WHERE id = 1), 100);
SELECT n, ordered FROM scan_check((SELECT v FROM sift_q WHERE id = 2), 1000);
-- drained to the end, a scan returns (nearly) every row: the few that a
-- graph search finds only after farther rows went out are dropped
SELECT n > 9800 AS nearly_all, ordered FROM scan_check((SELECT v FROM sift_q WHERE id = 3), 20000);
RESET omen.ef_search;
SELECT pg_stat_force_next_flush();
SELECT idx_scan > 0 AS counted FROM pg_stat_user_indexes WHERE indexrelname = 'sift_idx';

-- INSERT after build: new rows are found
INSERT INTO sift SELECT id + 100000, v FROM sift_q;
SELECT count(*) AS self_found FROM sift_q q
WHERE (SELECT s.id FROM sift s ORDER BY s.v <-> q.v LIMIT 1) IN (q.id, q.id + 100000);

-- NULL vectors are not indexed and never returned; ORDER BY <-> NULL
-- returns rows in some order
CREATE TABLE small (id int, v vector(3));
CREATE INDEX small_l2 ON small USING omen (v);
SELECT id FROM small ORDER BY v <-> '[1,1,1]' LIMIT 5;
INSERT INTO small VALUES (1, '[1,1,1]'), (2, NULL), (3, '[2,2,2]'), (4, '[0,0,0]');
SET enable_seqscan = off;
SELECT id FROM small ORDER BY v <-> '[1.1,1.1,1.1]' LIMIT 5;
SELECT count(*) FROM (SELECT id FROM small ORDER BY v <-> NULL LIMIT 5) s;
EXPLAIN (COSTS OFF) SELECT id FROM small ORDER BY v <-> NULL LIMIT 5;

-- cosine: a zero vector has distance NaN and comes after all others; ids 1 and 3
-- tie, so the outer ORDER BY fixes their order
CREATE INDEX small_cos ON small USING omen (v vector_cosine_ops);
SELECT * FROM (SELECT id, v <=> '[1,2,3]' AS d FROM small ORDER BY v <=> '[1,2,3]' LIMIT 5) s ORDER BY d, id;
RESET enable_seqscan;
SELECT * FROM (SELECT id, v <=> '[1,2,3]' AS d FROM small ORDER BY v <=> '[1,2,3]' LIMIT 5) s ORDER BY d, id;

-- tables of 0 and 1 rows
CREATE TABLE empty (v vector(4));
CREATE INDEX ON empty USING omen (v);
SET enable_seqscan = off;
SELECT * FROM empty ORDER BY v <-> '[1,2,3,4]' LIMIT 1;
INSERT INTO empty VALUES ('[1,2,3,4]');
SELECT * FROM empty ORDER BY v <-> '[1,2,3,4]' LIMIT 3;
CREATE TABLE one (v vector(4));
INSERT INTO one VALUES ('[4,3,2,1]');
CREATE INDEX ON one USING omen (v vector_ip_ops);
SELECT * FROM one ORDER BY v <#> '[1,2,3,4]' LIMIT 3;

-- many rows with the same vector, and duplicates among distinct ones
CREATE TABLE dup (id int, v vector(2));
INSERT INTO dup SELECT i, '[1,1]' FROM generate_series(1, 500) i;
INSERT INTO dup SELECT i, ARRAY[i % 7, i % 5]::vector FROM generate_series(501, 1000) i;
CREATE INDEX ON dup USING omen (v vector_l1_ops);
SELECT count(*) FROM (SELECT id FROM dup ORDER BY v <+> '[1,1]' LIMIT 600) s;
SELECT count(*) FILTER (WHERE v = '[1,1]') FROM (SELECT v FROM dup ORDER BY v <+> '[1,1]' LIMIT 500) s;
INSERT INTO dup SELECT i, '[1,1]' FROM generate_series(1001, 1200) i;
SELECT count(*) FILTER (WHERE v = '[1,1]') FROM (SELECT v FROM dup ORDER BY v <+> '[1,1]' LIMIT 700) s;
RESET enable_seqscan;

-- unlogged tables
CREATE UNLOGGED TABLE unlogged (id int, v vector(3));
INSERT INTO unlogged SELECT i, ARRAY[i, i * 2, i % 10]::vector FROM generate_series(1, 100) i;
CREATE INDEX unlogged_idx ON unlogged USING omen (v);
SET enable_seqscan = off;
SELECT id FROM unlogged ORDER BY v <-> '[10,20,0]' LIMIT 3;
RESET enable_seqscan;

-- REINDEX, REINDEX CONCURRENTLY, CREATE INDEX CONCURRENTLY
REINDEX INDEX sift_idx;
REINDEX INDEX CONCURRENTLY sift_idx;
CREATE INDEX CONCURRENTLY sift_cic ON sift USING omen (v);
SELECT indisvalid FROM pg_index WHERE indexrelid = 'sift_cic'::regclass;
SELECT elements = (SELECT count(*) FROM sift) AS all_indexed FROM omen_index_info('sift_cic');
DROP INDEX sift_cic;

-- structural options are frozen at build; ALTER INDEX takes effect at REINDEX
ALTER INDEX sift_idx SET (m = 8, ef_construction = 32);
SELECT m, ef_construction FROM omen_index_info('sift_idx');
REINDEX INDEX sift_idx;
SELECT m, ef_construction FROM omen_index_info('sift_idx');

-- expression indexes and typmod-less columns
CREATE TABLE expr (id int, v vector);
INSERT INTO expr SELECT i, ARRAY[i, 1, 0]::vector FROM generate_series(1, 50) i;
CREATE INDEX expr_idx ON expr USING omen ((l2_normalize(v)::vector(3)) vector_cosine_ops);
CREATE INDEX expr_free ON expr USING omen (v);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM expr ORDER BY l2_normalize(v)::vector(3) <=> '[1,0,0]' LIMIT 2;
SELECT id FROM expr ORDER BY l2_normalize(v)::vector(3) <=> '[1,0,0]' LIMIT 2;
SELECT id FROM expr ORDER BY v <-> '[3.2,1,0]' LIMIT 2;
SELECT dims FROM omen_index_info('expr_free');
RESET enable_seqscan;

-- VACUUM reports the index's tuples
VACUUM sift;
SELECT reltuples = (SELECT count(*) FROM sift) AS reltuples_ok FROM pg_class WHERE relname = 'sift_idx';

DROP TABLE sift, sift_q, small, empty, one, dup, unlogged, expr;
DROP FUNCTION scan_check(vector, int);

DROP EXTENSION omen;
DROP EXTENSION vector;
