-- Quantized codes (sq8, bq) with exact re-ranking, halfvec, and vectors of
-- 3,072 and 16,000 dimensions.
CREATE EXTENSION omen CASCADE;

CREATE TABLE sift (id int PRIMARY KEY, v vector(128));
\copy sift FROM 'data/bigann_base.tsv'
CREATE TABLE sift_q (id int PRIMARY KEY, v vector(128));
\copy sift_q FROM 'data/bigann_query.tsv'
CREATE TABLE glove (id int PRIMARY KEY, v vector(100));
\copy glove FROM 'data/glove_base.tsv'
CREATE TABLE glove_q (id int PRIMARY KEY, v vector(100));
\copy glove_q FROM 'data/glove_query.tsv'

SET enable_indexscan = off;
CREATE TABLE sift_gt AS
	SELECT q.id, ARRAY(SELECT s.id FROM sift s ORDER BY s.v <-> q.v LIMIT 10) AS ids FROM sift_q q;
CREATE TABLE glove_gt AS
	SELECT q.id, ARRAY(SELECT s.id FROM glove s ORDER BY s.v <=> q.v LIMIT 10) AS ids FROM glove_q q;
RESET enable_indexscan;

CREATE FUNCTION recall_sift() RETURNS float8 LANGUAGE sql AS $$
	SELECT avg((SELECT count(*) FROM unnest(ARRAY(SELECT s.id FROM sift s ORDER BY s.v <-> q.v LIMIT 10)) r
				WHERE r = ANY (g.ids)) / 10.0)
	FROM sift_q q JOIN sift_gt g USING (id)
$$;
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

SET enable_seqscan = off;
SET omen.ef_search = 40;

CREATE INDEX sift_sq8 ON sift USING omen (v vector_l2_ops) WITH (quantizer = sq8);
CREATE INDEX glove_sq8 ON glove USING omen (v vector_cosine_ops) WITH (quantizer = sq8);
SELECT quantizer FROM omen_index_info('sift_sq8');
SELECT recall_sift() >= 0.95 AS sift_sq8_ok, recall_glove() >= 0.95 AS glove_sq8_ok,
	ordered_glove(50) AS glove_sq8_ordered;
SELECT returned > 0 AND reranked > 0 AND code_distances > reranked AS reranks FROM omen_last_scan();
-- with omen.rerank_factor 1 a round re-ranks what its W holds; 200 rows at
-- ef_search 10 take a few widening rounds, not a search of the whole graph
SET omen.rerank_factor = 1;
SET omen.ef_search = 10;
SELECT count(*) FROM (SELECT id FROM glove ORDER BY v <=> (SELECT v FROM glove_q WHERE id = 3) LIMIT 200) s;
SELECT returned, rounds <= 6 AS few_rounds, expanded < 2000 AS bounded FROM omen_last_scan();
RESET omen.rerank_factor;
SET omen.ef_search = 40;
DROP INDEX sift_sq8, glove_sq8;

CREATE INDEX sift_bq ON sift USING omen (v vector_l2_ops) WITH (quantizer = bq);
CREATE INDEX glove_bq ON glove USING omen (v vector_cosine_ops) WITH (quantizer = bq);
SELECT recall_sift() >= 0.95 AS sift_bq_ok, recall_glove() >= 0.95 AS glove_bq_ok,
	ordered_glove(50) AS glove_bq_ordered;
-- inserts into a quantized index are found
INSERT INTO glove SELECT id + 100000, v FROM glove_q;
SELECT count(*) AS self_found FROM glove_q q
WHERE (SELECT s.id FROM glove s ORDER BY s.v <=> q.v LIMIT 1) = q.id + 100000;
DELETE FROM glove WHERE id > 100000;
DROP INDEX sift_bq, glove_bq;

-- full vectors from the table instead of the index: a smaller index,
-- still exact order
CREATE INDEX glove_bq_heap ON glove USING omen (v vector_cosine_ops) WITH (quantizer = bq, vectors = heap);
SELECT recall_glove() >= 0.95 AS glove_bq_heap_ok, ordered_glove(50) AS glove_bq_heap_ordered;
SELECT exact_distances > 0 AS reads_heap FROM omen_last_scan();
CREATE INDEX glove_bq_index ON glove USING omen (v vector_cosine_ops) WITH (quantizer = bq);
SELECT pg_relation_size('glove_bq_heap') < 0.6 * pg_relation_size('glove_bq_index') AS smaller;
DROP INDEX glove_bq_heap, glove_bq_index;
CREATE INDEX ON glove USING omen ((l2_normalize(v)::vector(100)) vector_cosine_ops) WITH (quantizer = bq, vectors = heap);

-- inner product and L1 with every quantizer: index results match a
-- sequential scan on distance
CREATE FUNCTION same_as_seqscan(tbl regclass, op text, q vector, k int) RETURNS bool
LANGUAGE plpgsql AS $$
DECLARE
	a float8[];
	b float8[];
BEGIN
	SET LOCAL enable_seqscan = off;
	SET LOCAL enable_indexscan = on;
	EXECUTE format('SELECT array_agg(d) FROM (SELECT v %s $1 AS d FROM %s ORDER BY v %s $1 LIMIT %s) s',
				   op, tbl, op, k) INTO a USING q;
	SET LOCAL enable_seqscan = on;
	SET LOCAL enable_indexscan = off;
	EXECUTE format('SELECT array_agg(d) FROM (SELECT v %s $1 AS d FROM %s ORDER BY v %s $1 LIMIT %s) s',
				   op, tbl, op, k) INTO b USING q;
	RETURN array_length(a, 1) = k AND
		(SELECT bool_and(abs(x - y) <= 1e-5 * greatest(abs(x), abs(y)) + 1e-6)
		 FROM unnest(a, b) AS t(x, y));
END $$;

CREATE TABLE small AS SELECT id, v FROM glove WHERE id <= 1000;
CREATE INDEX small_ip_none ON small USING omen (v vector_ip_ops) WITH (quantizer = none);
SELECT same_as_seqscan('small', '<#>', (SELECT v FROM glove_q WHERE id = 1), 10) AS ip_none;
DROP INDEX small_ip_none;
CREATE INDEX small_ip_sq8 ON small USING omen (v vector_ip_ops) WITH (quantizer = sq8);
SELECT same_as_seqscan('small', '<#>', (SELECT v FROM glove_q WHERE id = 2), 10) AS ip_sq8;
DROP INDEX small_ip_sq8;
CREATE INDEX small_ip_bq ON small USING omen (v vector_ip_ops) WITH (quantizer = bq);
SELECT same_as_seqscan('small', '<#>', (SELECT v FROM glove_q WHERE id = 3), 10) AS ip_bq;
DROP INDEX small_ip_bq;
CREATE INDEX small_l1_sq8 ON small USING omen (v vector_l1_ops) WITH (quantizer = sq8);
SELECT same_as_seqscan('small', '<+>', (SELECT v FROM glove_q WHERE id = 4), 10) AS l1_sq8;
DROP INDEX small_l1_sq8;
CREATE INDEX small_l1_bq ON small USING omen (v vector_l1_ops) WITH (quantizer = bq);
SELECT same_as_seqscan('small', '<+>', (SELECT v FROM glove_q WHERE id = 5), 10) AS l1_bq;
DROP INDEX small_l1_bq;

-- halfvec
CREATE TABLE half AS SELECT id, v::halfvec(100) AS v FROM glove WHERE id <= 2000;
CREATE INDEX half_idx ON half USING omen (v halfvec_cosine_ops);
SELECT (SELECT array_agg(id) FROM (SELECT id FROM half ORDER BY v <=> (SELECT v::halfvec FROM glove_q WHERE id = 6) LIMIT 5) s) =
	   (SELECT array_agg(id) FROM (SELECT id FROM (SELECT id, v <=> (SELECT v::halfvec FROM glove_q WHERE id = 6) AS d FROM half) t
								   ORDER BY d LIMIT 5) s) AS halfvec_top5;
CREATE INDEX half_l2 ON half USING omen (v halfvec_l2_ops) WITH (quantizer = sq8);
EXPLAIN (COSTS OFF) SELECT id FROM half ORDER BY v <-> '[1,2]'::halfvec LIMIT 1;
SELECT amvalidate(opc.oid), opc.opcname FROM pg_opclass opc JOIN pg_am am ON am.oid = opc.opcmethod
WHERE am.amname = 'omen' AND opc.opcname LIKE 'halfvec%' ORDER BY opc.opcname;

-- 3,072 and 16,000 dimensions, every quantizer: exact results on a few rows
CREATE TABLE wide (id int, v vector(3072));
INSERT INTO wide SELECT i, (SELECT array_agg(sin(i * j * 0.001)::real) FROM generate_series(1, 3072) j)
FROM generate_series(1, 60) i;
CREATE TABLE huge (id int, v vector(16000));
INSERT INTO huge SELECT i, (SELECT array_agg(cos(i + j * 0.01)::real) FROM generate_series(1, 16000) j)
FROM generate_series(1, 25) i;
CREATE FUNCTION check_wide(quant text) RETURNS TABLE (q text, wide_l2 bool, wide_cos bool, huge_l2 bool, huge_ip bool)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE INDEX wide_l2 ON wide USING omen (v vector_l2_ops) WITH (quantizer = %s)', quant);
	EXECUTE format('CREATE INDEX wide_cos ON wide USING omen (v vector_cosine_ops) WITH (quantizer = %s)', quant);
	EXECUTE format('CREATE INDEX huge_l2 ON huge USING omen (v vector_l2_ops) WITH (quantizer = %s)', quant);
	EXECUTE format('CREATE INDEX huge_ip ON huge USING omen (v vector_ip_ops) WITH (quantizer = %s)', quant);
	INSERT INTO huge SELECT 100 + id, v FROM huge WHERE id <= 3;
	q := quant;
	wide_l2 := same_as_seqscan('wide', '<->', (SELECT v FROM wide WHERE id = 7), 5);
	wide_cos := same_as_seqscan('wide', '<=>', (SELECT v FROM wide WHERE id = 8), 5);
	huge_l2 := same_as_seqscan('huge', '<->', (SELECT v FROM huge WHERE id = 9), 5);
	huge_ip := same_as_seqscan('huge', '<#>', (SELECT v FROM huge WHERE id = 10), 5);
	DELETE FROM huge WHERE id > 100;
	DROP INDEX wide_l2, wide_cos, huge_l2, huge_ip;
	RETURN NEXT;
END $$;
SELECT * FROM check_wide('none');
SELECT * FROM check_wide('sq8');
SELECT * FROM check_wide('bq');

-- bad values
CREATE INDEX ON small USING omen (v) WITH (quantizer = pq);
CREATE INDEX ON small USING omen (v) WITH (vectors = nowhere);
SET omen.rerank_factor = 0.5;
SET omen.code_cache = -1;

DROP TABLE sift, sift_q, sift_gt, glove, glove_q, glove_gt, small, half, wide, huge;
DROP FUNCTION recall_sift(), recall_glove(), ordered_glove(int), same_as_seqscan(regclass, text, vector, int),
	check_wide(text);

DROP EXTENSION omen;
DROP EXTENSION vector;
