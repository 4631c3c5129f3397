-- Recall@10 against exact results (a sequential scan) on real data:
-- BIGANN SIFT descriptors with L2 and GloVe word vectors with cosine.
CREATE EXTENSION omen CASCADE;

CREATE TABLE sift (id int PRIMARY KEY, v vector(128));
\copy sift FROM 'data/bigann_base.tsv'
CREATE TABLE sift_q (id int PRIMARY KEY, v vector(128));
\copy sift_q FROM 'data/bigann_query.tsv'
CREATE TABLE glove (id int PRIMARY KEY, v vector(100));
\copy glove FROM 'data/glove_base.tsv'
CREATE TABLE glove_q (id int PRIMARY KEY, v vector(100));
\copy glove_q FROM 'data/glove_query.tsv'
ANALYZE sift, glove;

-- exact top 10 by sequential scan
SET enable_indexscan = off;
CREATE TABLE sift_gt AS
	SELECT q.id, ARRAY(SELECT s.id FROM sift s ORDER BY s.v <-> q.v LIMIT 10) AS ids FROM sift_q q;
CREATE TABLE glove_gt AS
	SELECT q.id, ARRAY(SELECT s.id FROM glove s ORDER BY s.v <=> q.v LIMIT 10) AS ids FROM glove_q q;
RESET enable_indexscan;

CREATE INDEX sift_idx ON sift USING omen (v vector_l2_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX glove_idx ON glove USING omen (v vector_cosine_ops) WITH (m = 16, ef_construction = 64);

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

SET enable_seqscan = off;
SET omen.ef_search = 40;
SELECT recall_sift() >= 0.95 AS sift_recall_ok, recall_glove() >= 0.95 AS glove_recall_ok;
-- more ef_search, more recall
SET omen.ef_search = 200;
SELECT recall_sift() >= 0.99 AS sift_recall_200_ok, recall_glove() >= 0.99 AS glove_recall_200_ok;

-- an index grown by INSERTs (half built, half inserted) holds its recall
DROP INDEX sift_idx, glove_idx;
DELETE FROM sift WHERE id > 4950;
DELETE FROM glove WHERE id > 5000;
CREATE INDEX sift_idx ON sift USING omen (v vector_l2_ops);
CREATE INDEX glove_idx ON glove USING omen (v vector_cosine_ops);
\copy sift FROM 'data/bigann_base.tsv' WHERE id > 4950
\copy glove FROM 'data/glove_base.tsv' WHERE id > 5000
SET omen.ef_search = 40;
SELECT recall_sift() >= 0.95 AS sift_insert_recall_ok, recall_glove() >= 0.95 AS glove_insert_recall_ok;

-- a tiny maintenance_work_mem makes several segments; scans merge them
DROP INDEX sift_idx;
SET maintenance_work_mem = '1MB';
CREATE INDEX sift_idx ON sift USING omen (v vector_l2_ops);
RESET maintenance_work_mem;
SELECT segments > 1 AS several_segments FROM omen_index_info('sift_idx');
SELECT recall_sift() >= 0.95 AS sift_segments_recall_ok;

DROP TABLE sift, sift_q, sift_gt, glove, glove_q, glove_gt;
DROP FUNCTION recall_sift(), recall_glove();

DROP EXTENSION omen;
DROP EXTENSION vector;
