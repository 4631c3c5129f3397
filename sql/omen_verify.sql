-- omen_verify(): structural checks of an omen index in the manner of
-- amcheck, the upgrade from 0.1.0 that adds it, and who may run it.
-- (Damaged pages are made on disk in test/t/004_corruption.pl.)

-- 0.1.0 has no omen_verify(); ALTER EXTENSION omen UPDATE adds it
CREATE EXTENSION omen VERSION '0.1.0' CASCADE;
SELECT extversion FROM pg_extension WHERE extname = 'omen';
SELECT count(*) AS verify_functions FROM pg_proc WHERE proname = 'omen_verify';
ALTER EXTENSION omen UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'omen';
SELECT pg_get_function_arguments('omen_verify'::regproc) AS arguments,
	pg_get_function_result('omen_verify'::regproc) AS result;

-- errors as SQLSTATE and message, without the source locations
CREATE FUNCTION verify_error(rel regclass, heapallindexed boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM omen_verify(rel, heapallindexed);
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

CREATE TEMP TABLE src (id int, v vector(128));
\copy src FROM 'data/bigann_base.tsv'
CREATE TABLE sift (id int PRIMARY KEY, v vector(128)) WITH (autovacuum_enabled = off);
INSERT INTO sift SELECT id, v FROM src WHERE id <= 3000;

-- a fresh build: every row an element, every element reachable
CREATE INDEX sift_idx ON sift USING omen (v) WITH (m = 16, ef_construction = 64);
SELECT elements, deleted, unreachable, segments,
	pages = pg_relation_size('sift_idx') / current_setting('block_size')::int AS pages_match
FROM omen_verify('sift_idx');
SELECT elements, deleted, unreachable, segments FROM omen_verify('sift_idx', heapallindexed => true);

-- quantized codes, with the vectors in the index or in the table
CREATE INDEX sift_sq8 ON sift USING omen (v) WITH (quantizer = 'sq8');
CREATE INDEX sift_bq ON sift USING omen (v) WITH (quantizer = 'bq');
CREATE INDEX sift_bq_heap ON sift USING omen (v) WITH (quantizer = 'bq', vectors = 'heap');
SELECT i AS index, v.elements, v.deleted, v.unreachable, v.segments
FROM unnest(ARRAY['sift_sq8', 'sift_bq', 'sift_bq_heap']::regclass[]) i,
	LATERAL omen_verify(i, true) v;

-- a build that outgrows maintenance_work_mem writes several segments
SET maintenance_work_mem = '1MB';
CREATE INDEX sift_segs ON sift USING omen (v);
RESET maintenance_work_mem;
SELECT elements, deleted, unreachable, segments > 1 AS several_segments
FROM omen_verify('sift_segs', true);

-- a partial index on an expression: heapallindexed evaluates both
CREATE INDEX sift_half ON sift USING omen ((v::halfvec(128)) halfvec_l2_ops) WHERE id % 2 = 0;
SELECT elements, unreachable FROM omen_verify('sift_half', true);

-- inserts after the build
INSERT INTO sift SELECT id, v FROM src WHERE id > 3000 AND id <= 3500;
SELECT i AS index, v.elements, v.deleted, v.unreachable
FROM unnest(ARRAY['sift_idx', 'sift_bq', 'sift_segs', 'sift_half']::regclass[]) i,
	LATERAL omen_verify(i, true) v;

-- deleted rows keep their elements until VACUUM, which repairs the graph
-- around them and frees their slots; inserts then reuse the slots
DELETE FROM sift WHERE id % 3 = 0;
SELECT elements, deleted, unreachable FROM omen_verify('sift_idx', true);
VACUUM sift;
SELECT i AS index, v.elements = (SELECT count(*) FROM sift) AS all_rows, v.deleted, v.unreachable
FROM unnest(ARRAY['sift_idx', 'sift_sq8', 'sift_segs']::regclass[]) i,
	LATERAL omen_verify(i, true) v;
-- with 1-bit codes and the vectors in the table, VACUUM repairs the lists
-- with vectors decoded from the codes, and now and then leaves an element
-- or two unreachable
SELECT elements = (SELECT count(*) FROM sift) AS all_rows, deleted, unreachable < 10 AS few_unreachable
FROM omen_verify('sift_bq_heap', true);
INSERT INTO sift SELECT id, v FROM src WHERE id > 3500 AND id <= 4000;
SELECT i AS index, v.elements = (SELECT count(*) FROM sift) AS all_rows, v.deleted, v.unreachable
FROM unnest(ARRAY['sift_idx', 'sift_bq', 'sift_segs']::regclass[]) i,
	LATERAL omen_verify(i, true) v;

-- empty, null and zero vectors (cosine leaves zero vectors out of the
-- graph: elements, but never unreachable), halfvec, no typmod
CREATE TABLE hv (id int, v halfvec);
CREATE INDEX hv_idx ON hv USING omen (v halfvec_cosine_ops);
SELECT * FROM omen_verify('hv_idx', true);
INSERT INTO hv SELECT i, CASE WHEN i % 10 = 0 THEN NULL
	WHEN i % 10 = 1 THEN '[0,0,0]'
	ELSE ARRAY[sin(i), cos(i), i % 7]::halfvec END
FROM generate_series(1, 600) i;
SELECT elements, deleted, unreachable, segments FROM omen_verify('hv_idx', true);
REINDEX INDEX hv_idx;
SELECT elements, deleted, unreachable, segments FROM omen_verify('hv_idx', true);

-- temporary and unlogged indexes of this session
CREATE TEMP TABLE tmp AS SELECT id, v FROM src WHERE id <= 300;
CREATE INDEX tmp_idx ON tmp USING omen (v);
CREATE UNLOGGED TABLE unl AS SELECT id, v FROM src WHERE id <= 300;
CREATE INDEX unl_idx ON unl USING omen (v vector_ip_ops);
SELECT elements, unreachable FROM omen_verify('tmp_idx', true);
SELECT elements, unreachable FROM omen_verify('unl_idx', true);

-- only omen indexes
CREATE INDEX sift_btree ON sift (id);
SELECT verify_error('sift');
SELECT verify_error('sift_pkey');
SELECT verify_error('sift_btree', true);
SELECT verify_error('src');

-- execution is revoked from PUBLIC, as amcheck's functions are
CREATE ROLE regress_omen_verify;
GRANT SELECT ON sift TO regress_omen_verify;
SET ROLE regress_omen_verify;
SELECT verify_error('sift_idx');
RESET ROLE;
GRANT EXECUTE ON FUNCTION omen_verify(regclass, boolean) TO regress_omen_verify;
SET ROLE regress_omen_verify;
SELECT elements = (SELECT count(*) FROM sift) AS all_rows FROM omen_verify('sift_idx');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION omen_verify(regclass, boolean) FROM regress_omen_verify;
REVOKE SELECT ON sift FROM regress_omen_verify;
DROP ROLE regress_omen_verify;

DROP TABLE sift, hv, tmp, unl, src;
DROP FUNCTION verify_error(regclass, boolean);
DROP EXTENSION omen;
DROP EXTENSION vector;
