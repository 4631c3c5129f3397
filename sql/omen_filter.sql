-- Filtered queries return k rows whenever k rows match, the scan's work
-- is bounded, the planner weighs filter selectivity and LIMIT, and
-- partitioned tables get one ordered scan per partition.
CREATE EXTENSION omen CASCADE;

CREATE TABLE items (id int PRIMARY KEY, cat int, v vector(100));
CREATE TEMP TABLE src (id int, v vector(100));
\copy src FROM 'data/glove_base.tsv'
-- a synthetic attribute uniform over 0..99: cat < 10 keeps 10%, cat = 0 keeps 1%
INSERT INTO items SELECT id, (id * 7919) % 100, v FROM src;
CREATE TABLE queries (id int PRIMARY KEY, v vector(100));
\copy queries FROM 'data/glove_query.tsv'
CREATE INDEX items_idx ON items USING omen (v vector_cosine_ops);
CREATE INDEX items_cat ON items (cat);
ANALYZE items;

-- exact filtered top 10, by sequential scan
SET enable_indexscan = off;
SET enable_bitmapscan = off;
CREATE TABLE gt10 AS SELECT q.id, ARRAY(SELECT i.id FROM items i WHERE i.cat < 10
										ORDER BY i.v <=> q.v LIMIT 10) AS ids FROM queries q;
CREATE TABLE gt1 AS SELECT q.id, ARRAY(SELECT i.id FROM items i WHERE i.cat = 0
									   ORDER BY i.v <=> q.v LIMIT 10) AS ids FROM queries q;
RESET enable_indexscan;
RESET enable_bitmapscan;

-- with the omen scan forced: k rows, in order, at high recall
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET enable_sort = off;
CREATE FUNCTION filtered(q vector, sel int) RETURNS int[] LANGUAGE sql AS $$
	SELECT ARRAY(SELECT id FROM items WHERE CASE sel WHEN 10 THEN cat < 10 ELSE cat = 0 END
				 ORDER BY v <=> q LIMIT 10)
$$;
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE cat = 0 ORDER BY v <=> (SELECT v FROM queries WHERE id = 1) LIMIT 10;
SELECT bool_and(cardinality(filtered(q.v, 10)) = 10) AS ten_10pct,
	avg((SELECT count(*) FROM unnest(filtered(q.v, 10)) r WHERE r = ANY (g.ids)) / 10.0) >= 0.9 AS recall_10pct
FROM queries q JOIN gt10 g USING (id);
SELECT bool_and(cardinality(filtered(q.v, 1)) = 10) AS ten_1pct,
	avg((SELECT count(*) FROM unnest(filtered(q.v, 1)) r WHERE r = ANY (g.ids)) / 10.0) >= 0.9 AS recall_1pct
FROM queries q JOIN gt1 g USING (id);
-- a filter that keeps 3 rows returns all 3, found late or by the sweep
SELECT count(*) FROM (SELECT id FROM items WHERE id IN (17, 4242, 9999)
					  ORDER BY v <=> (SELECT v FROM queries WHERE id = 1) LIMIT 10) s;
-- distance-bounded queries: the bound is a filter, so add a LIMIT
SELECT count(*) = (SELECT count(*) FROM items WHERE v <=> (SELECT v FROM queries WHERE id = 2) < 0.3)
	AS bounded_ok
FROM (SELECT id FROM items WHERE v <=> (SELECT v FROM queries WHERE id = 2) < 0.3
	  ORDER BY v <=> (SELECT v FROM queries WHERE id = 2) LIMIT 1000) s;
-- bounds: the scan stops after omen.max_scan_tuples rows
SET omen.max_scan_tuples = 50;
SELECT count(*) FROM (SELECT id FROM items WHERE cat = 0 ORDER BY v <=> (SELECT v FROM queries WHERE id = 3) LIMIT 10) s;
SELECT returned, stopped_by FROM omen_last_scan();
RESET omen.max_scan_tuples;
-- and when it needs more memory than work_mem * omen.scan_mem_multiplier
SET work_mem = '64kB';
SET omen.scan_mem_multiplier = 1;
SELECT count(*) < 10000 AS stopped_early FROM (SELECT id FROM items ORDER BY v <=> (SELECT v FROM queries WHERE id = 4) LIMIT 10000) s;
SELECT stopped_by FROM omen_last_scan();
RESET work_mem;
RESET omen.scan_mem_multiplier;
SET omen.max_scan_tuples = -1;
SET omen.scan_mem_multiplier = 0;
RESET enable_sort;
RESET enable_seqscan;
RESET enable_bitmapscan;

-- the planner: the omen scan for unselective filters, the btree (or a
-- bitmap) and a sort for selective ones, also with a generic plan (on a
-- 3-d table, to keep the plans readable).  At 10% the omen scan wins even
-- on 3-d vectors: 0.3 ms against 0.7 ms for a bitmap scan and a sort of
-- the 2,000 matches, when measured.
CREATE TABLE p3 (id int PRIMARY KEY, cat int, v vector(3));
INSERT INTO p3 SELECT i, (i * 7919) % 100, ARRAY[sin(i), cos(i), sin(i * 0.5)]::vector
FROM generate_series(1, 20000) i;
CREATE INDEX p3_idx ON p3 USING omen (v);
CREATE INDEX p3_cat ON p3 (cat);
ANALYZE p3;
EXPLAIN (COSTS OFF) SELECT id FROM p3 WHERE cat < 50 ORDER BY v <-> '[1,2,3]' LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM p3 WHERE cat < 10 ORDER BY v <-> '[1,2,3]' LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM p3 WHERE cat = 0 AND id < 500 ORDER BY v <-> '[1,2,3]' LIMIT 10;
SET plan_cache_mode = force_generic_plan;
PREPARE f(vector, int) AS SELECT id FROM p3 WHERE cat < 50 ORDER BY v <-> $1 LIMIT $2;
EXPLAIN (COSTS OFF) EXECUTE f('[1,2,3]', 10);
PREPARE g(vector, int) AS SELECT id FROM p3 WHERE cat = 0 AND id < 500 ORDER BY v <-> $1 LIMIT $2;
EXPLAIN (COSTS OFF) EXECUTE g('[1,2,3]', 10);
-- with 100 dimensions distances cost more: the omen scan wins at 10%;
-- at 1% of these 10,000 rows, sorting the 100 matches wins
PREPARE h10(vector) AS SELECT id FROM items WHERE cat < 10 ORDER BY v <=> $1 LIMIT 10;
EXPLAIN (COSTS OFF) EXECUTE h10(array_fill(0.1, ARRAY[100])::vector);
PREPARE h1(vector) AS SELECT id FROM items WHERE cat = 0 ORDER BY v <=> $1 LIMIT 10;
EXPLAIN (COSTS OFF) EXECUTE h1(array_fill(0.1, ARRAY[100])::vector);
RESET plan_cache_mode;

-- partitioned tables: an index per partition, merged in order
CREATE TABLE parts (id int, cat int, v vector(100)) PARTITION BY LIST ((cat % 4));
CREATE TABLE parts_0 PARTITION OF parts FOR VALUES IN (0);
CREATE TABLE parts_1 PARTITION OF parts FOR VALUES IN (1);
CREATE TABLE parts_2 PARTITION OF parts FOR VALUES IN (2);
CREATE TABLE parts_3 PARTITION OF parts FOR VALUES IN (3);
INSERT INTO parts SELECT * FROM items;
CREATE INDEX parts_idx ON parts USING omen (v vector_cosine_ops);
ANALYZE parts;
SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'parts_%' AND indexdef LIKE '%USING omen%';
SET enable_seqscan = off;
SET plan_cache_mode = force_generic_plan;
PREPARE pq(vector) AS SELECT id FROM parts ORDER BY v <=> $1 LIMIT 10;
EXPLAIN (COSTS OFF) EXECUTE pq(array_fill(0.1, ARRAY[100])::vector);
RESET plan_cache_mode;
RESET enable_seqscan;
SELECT avg((SELECT count(*) FROM unnest(ARRAY(SELECT id FROM parts ORDER BY v <=> q.v LIMIT 10)) r
			WHERE r = ANY (ARRAY(SELECT id FROM items ORDER BY v <=> q.v LIMIT 10))) / 10.0) >= 0.95 AS parts_recall
FROM queries q WHERE q.id <= 30;

-- more partitions than a backend keeps code caches (8): the scans of the
-- first partitions keep their caches while later ones push them out, and
-- each partition's scan widens several times to give Merge Append 1,000
-- rows in order
CREATE TABLE parts10 (id int, v vector(100)) PARTITION BY LIST ((id % 10));
SELECT format('CREATE TABLE parts10_%s PARTITION OF parts10 FOR VALUES IN (%s)', i, i)
FROM generate_series(0, 9) i \gexec
INSERT INTO parts10 SELECT id, v FROM items;
CREATE INDEX ON parts10 USING omen (v vector_cosine_ops);
ANALYZE parts10;
SET enable_seqscan = off;
SET omen.ef_search = 10;
CREATE TEMP TABLE got AS
SELECT row_number() OVER () AS rn, id, d FROM
  (SELECT id, v <=> (SELECT v FROM queries WHERE id = 5) AS d FROM parts10
   ORDER BY v <=> (SELECT v FROM queries WHERE id = 5) LIMIT 1000) s;
RESET enable_seqscan;
RESET omen.ef_search;
SET enable_indexscan = off;
CREATE TEMP TABLE want AS
SELECT id FROM items ORDER BY v <=> (SELECT v FROM queries WHERE id = 5) LIMIT 1000;
RESET enable_indexscan;
SELECT count(*) AS rows,
	(SELECT count(*) FROM got a JOIN got b ON b.rn = a.rn + 1 WHERE b.d < a.d - 1e-6) AS out_of_order,
	count(DISTINCT id) = count(*) AS distinct_ids,
	(SELECT count(*) FROM got WHERE id IN (SELECT id FROM want)) >= 900 AS recall_at_least_0_9
FROM got;

DROP TABLE items, queries, gt10, gt1, parts, parts10, src, p3;
DROP FUNCTION filtered(vector, int);

DROP EXTENSION omen;
DROP EXTENSION vector;
