-- Parallel CREATE INDEX: builds with workers and without give complete,
-- ordered, high-recall indexes; a small maintenance_work_mem makes several
-- segments; omen.max_build_shared_memory falls back to a serial build;
-- omen_merge_segments() rebuilds the segments into one.
CREATE EXTENSION omen CASCADE;

CREATE TABLE glove (id int PRIMARY KEY, v vector(100));
\copy glove FROM 'data/glove_base.tsv'
CREATE TABLE glove_q (id int PRIMARY KEY, v vector(100));
\copy glove_q FROM 'data/glove_query.tsv'
ANALYZE glove;

SET enable_indexscan = off;
CREATE TABLE glove_gt AS
	SELECT q.id, ARRAY(SELECT s.id FROM glove s ORDER BY s.v <=> q.v LIMIT 10) AS ids FROM glove_q q;
RESET enable_indexscan;

CREATE FUNCTION recall_glove() RETURNS float8 LANGUAGE sql AS $$
	SELECT avg((SELECT count(*) FROM unnest(ARRAY(SELECT s.id FROM glove s ORDER BY s.v <=> q.v LIMIT 10)) r
				WHERE r = ANY (g.ids)) / 10.0)
	FROM glove_q q JOIN glove_gt g USING (id)
$$;
-- rows in non-decreasing exact distance, for every query
CREATE FUNCTION ordered_glove(k int) RETURNS bool LANGUAGE sql AS $$
	SELECT bool_and(ok) FROM (
		SELECT (SELECT coalesce(bool_and(d >= prev - 1e-6), true) FROM (
					SELECT d, lag(d, 1, 0::float8) OVER (ORDER BY ord) AS prev
					FROM (SELECT s.v <=> q.v AS d, row_number() OVER () AS ord
						  FROM (SELECT v FROM glove ORDER BY v <=> q.v LIMIT k) s) s) s) AS ok
		FROM glove_q q) s
$$;
-- omen_verify's checks pass, and the index holds one element per row,
-- (nearly) all of them reachable
CREATE FUNCTION complete(idx regclass) RETURNS bool LANGUAGE sql AS $$
	SELECT elements = (SELECT count(*) FROM glove) AND deleted = 0 AND unreachable < 10
	FROM omen_verify(idx, heapallindexed => true)
$$;

-- Workers on a small table: the table's parallel_workers option and
-- max_parallel_maintenance_workers decide; nbtree's 32MB-per-participant
-- rule does not apply.  The DEBUG1 line from core ("serially") reflects
-- only btree's planning; omen's own line tells how many workers ran.
ALTER TABLE glove SET (parallel_workers = 2);
SET max_parallel_maintenance_workers = 2;
SET maintenance_work_mem = '64MB';
SET enable_seqscan = off;
SET omen.ef_search = 40;

SET client_min_messages = debug1;
CREATE INDEX glove_par ON glove USING omen (v vector_cosine_ops) WITH (m = 16, ef_construction = 64);
RESET client_min_messages;
SELECT complete('glove_par'), segments FROM omen_index_info('glove_par');
SELECT recall_glove() >= 0.95 AS parallel_recall_ok, ordered_glove(50) AS parallel_ordered;
DROP INDEX glove_par;

-- the same without workers
SET max_parallel_maintenance_workers = 0;
SET client_min_messages = debug1;
CREATE INDEX glove_ser ON glove USING omen (v vector_cosine_ops) WITH (m = 16, ef_construction = 64);
RESET client_min_messages;
SELECT complete('glove_ser'), segments FROM omen_index_info('glove_ser');
SELECT recall_glove() >= 0.95 AS serial_recall_ok, ordered_glove(50) AS serial_ordered;
DROP INDEX glove_ser;
SET max_parallel_maintenance_workers = 2;

-- CREATE INDEX CONCURRENTLY and REINDEX use workers too
SET client_min_messages = debug1;
CREATE INDEX CONCURRENTLY glove_cic ON glove USING omen (v vector_cosine_ops);
REINDEX INDEX glove_cic;
RESET client_min_messages;
SELECT complete('glove_cic'), segments FROM omen_index_info('glove_cic');
SELECT recall_glove() >= 0.95 AS cic_recall_ok;
DROP INDEX glove_cic;

-- A tiny maintenance_work_mem (for all participants together): the
-- shared graph is written out as a segment whenever it is full.
SET maintenance_work_mem = '1MB';
CREATE INDEX glove_seg ON glove USING omen (v vector_cosine_ops);
RESET maintenance_work_mem;
SELECT complete('glove_seg'), segments > 2 AS several_segments FROM omen_index_info('glove_seg');
SELECT recall_glove() >= 0.95 AS segments_recall_ok, ordered_glove(50) AS segments_ordered;
CREATE TABLE before_merge AS
	SELECT q.id, ARRAY(SELECT s.id FROM glove s ORDER BY s.v <=> q.v LIMIT 10) AS ids FROM glove_q q;

-- Merge the segments into one: same rows, same recall, nearly the same
-- answers (the graph is new, so an approximate search may differ a little)
SELECT omen_merge_segments('glove_seg');
SELECT complete('glove_seg'), segments FROM omen_index_info('glove_seg');
SELECT recall_glove() >= 0.95 AS merged_recall_ok, ordered_glove(50) AS merged_ordered;
SELECT avg((SELECT count(*) FROM unnest(ARRAY(SELECT s.id FROM glove s ORDER BY s.v <=> q.v LIMIT 10)) r
			WHERE r = ANY (b.ids)) / 10.0) >= 0.95 AS same_answers
FROM glove_q q JOIN before_merge b USING (id);
-- the slots VACUUM freed are left behind, and the old pages stay
-- unreferenced until REINDEX; inserts go on into the merged index
DELETE FROM glove WHERE id % 10 = 0;
VACUUM glove;
SELECT pg_relation_size('glove_seg') AS size_before \gset
SELECT omen_merge_segments('glove_seg');
SELECT complete('glove_seg'), segments FROM omen_index_info('glove_seg');
SELECT pg_relation_size('glove_seg') > :size_before AS grew;
\copy glove FROM 'data/glove_base.tsv' WHERE id % 10 = 0
SELECT complete('glove_seg');
TRUNCATE glove_gt;
SET enable_indexscan = off;
INSERT INTO glove_gt
	SELECT q.id, ARRAY(SELECT s.id FROM glove s ORDER BY s.v <=> q.v LIMIT 10) AS ids FROM glove_q q;
RESET enable_indexscan;
SELECT recall_glove() >= 0.95 AS merged_insert_recall_ok;
DROP INDEX glove_seg;

-- Quantized codes, several segments from several writers (the centroid
-- of bq comes from the first one), and a merge that reads the vectors
-- back from the table (vectors = heap)
SET maintenance_work_mem = '1MB';
CREATE INDEX glove_bq ON glove USING omen (v vector_cosine_ops) WITH (quantizer = bq);
CREATE INDEX glove_sq8 ON glove USING omen (v vector_cosine_ops) WITH (quantizer = sq8, vectors = heap);
RESET maintenance_work_mem;
SELECT complete('glove_bq'), segments > 2 AS several_segments FROM omen_index_info('glove_bq');
SELECT complete('glove_sq8'), segments > 2 AS several_segments FROM omen_index_info('glove_sq8');
DROP INDEX glove_bq;
SELECT recall_glove() >= 0.95 AS sq8_recall_ok;
SELECT omen_merge_segments('glove_sq8');
SELECT complete('glove_sq8'), segments FROM omen_index_info('glove_sq8');
SELECT recall_glove() >= 0.95 AS sq8_merged_recall_ok, ordered_glove(50) AS sq8_merged_ordered;
DROP INDEX glove_sq8;

-- Shared memory over omen.max_build_shared_memory: a NOTICE, then a
-- serial build
SET omen.max_build_shared_memory = '1MB';
\set VERBOSITY terse
SET client_min_messages = debug1;
CREATE INDEX glove_cap ON glove USING omen (v vector_cosine_ops);
RESET client_min_messages;
\set VERBOSITY default
RESET omen.max_build_shared_memory;
SELECT complete('glove_cap'), segments FROM omen_index_info('glove_cap');
SELECT recall_glove() >= 0.95 AS capped_recall_ok;
DROP INDEX glove_cap;

-- A cancelled parallel build stops and leaves nothing behind
SET statement_timeout = '100ms';
CREATE INDEX glove_cancel ON glove USING omen (v vector_cosine_ops) WITH (ef_construction = 1000);
RESET statement_timeout;
SELECT count(*) FROM pg_class WHERE relname = 'glove_cancel';

-- omen_merge_segments() wants an omen index that the caller owns
CREATE INDEX glove_own ON glove USING omen (v vector_cosine_ops);
SELECT omen_merge_segments('glove');
SELECT omen_merge_segments('glove_pkey');
CREATE ROLE omen_parallel_other;
SET ROLE omen_parallel_other;
SELECT omen_merge_segments('glove_own');
RESET ROLE;
DROP ROLE omen_parallel_other;
-- nor one this session is scanning
BEGIN;
DECLARE c CURSOR FOR SELECT id FROM glove ORDER BY v <=> (SELECT v FROM glove_q WHERE id = 1);
FETCH 1 FROM c;
SELECT omen_merge_segments('glove_own');
ROLLBACK;

DROP TABLE glove, glove_q, glove_gt, before_merge;
DROP FUNCTION recall_glove(), ordered_glove(int), complete(regclass);
DROP EXTENSION omen;
DROP EXTENSION vector;
