-- bench/mixed/check.sql: after a mixed load (bench/mixed_load,
-- test/t/006_pgbench.pl), VACUUM, then check the table against the log and
-- the index against the table.  Prints one row per check: name, ok (t or f;
-- empty when it could not run) and detail.
--
-- psql variables: rows and dims as given to setup.sql; ef, the
-- omen.ef_search of the index checks (default 400).

\set ON_ERROR_STOP 1
\if :{?ef}
\else
\set ef 400
\endif

SET client_min_messages = warning;
VACUUM items;

CREATE TEMP TABLE mixed_checks (n serial, name text, ok bool, detail text);

-- the table: initial rows + inserted - deleted, by count and by id
INSERT INTO mixed_checks (name, ok, detail)
SELECT 'row count', n = :rows + i - d,
	format('%s rows = %s initial + %s inserted - %s deleted (%s updates)', n, :rows, i, d, u)
FROM (SELECT (SELECT count(*) FROM items) AS n,
			 count(*) FILTER (WHERE op = 'i') AS i, count(*) FILTER (WHERE op = 'd') AS d,
			 count(*) FILTER (WHERE op = 'u') AS u
	  FROM mixed_log) s;

WITH expected AS (
	SELECT generate_series(1, :rows)::bigint AS id
	UNION SELECT id FROM mixed_log WHERE op = 'i'
	EXCEPT SELECT id FROM mixed_log WHERE op = 'd')
INSERT INTO mixed_checks (name, ok, detail)
SELECT 'row ids', missing + extra = 0, format('%s ids missing, %s unexpected', missing, extra)
FROM (SELECT (SELECT count(*) FROM (SELECT id FROM expected EXCEPT SELECT id FROM items) m) AS missing,
			 (SELECT count(*) FROM (SELECT id FROM items EXCEPT SELECT id FROM expected) e) AS extra) s;

INSERT INTO mixed_checks (name, ok, detail)
SELECT 'row vectors', bad = 0, format('%s rows whose vector is not that of their seed', bad)
FROM (SELECT count(*) AS bad FROM items WHERE v <> mixed_vec(seed, :dims)) s;

-- the index: one live element per row, nothing left deleted after VACUUM
INSERT INTO mixed_checks (name, ok, detail)
SELECT 'index elements', elements = n AND deleted_elements = 0,
	format('%s elements, %s deleted, %s rows, %s pages', elements, deleted_elements, n, pages)
FROM omen_index_info('items_v'), (SELECT count(*) AS n FROM items) s;

SET jit = off;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET omen.ef_search = :ef;

-- every row found by its own vector: the nearest row is at distance 0
INSERT INTO mixed_checks (name, ok, detail)
SELECT 'self search', missed = 0,
	format('%s of %s rows not found first by their own vector (ef_search %s)', missed, n, :ef)
FROM (SELECT count(*) AS n,
			 count(*) FILTER (WHERE (SELECT j.v <-> i.v FROM items j ORDER BY j.v <-> i.v LIMIT 1) > 0) AS missed
	  FROM items i) s;

-- recall@10 of 50 queries against a sort
INSERT INTO mixed_checks (name, ok, detail)
SELECT 'recall@10', recall >= 0.95, format('%s over 50 queries (ef_search %s)', round(recall, 4), :ef)
FROM (SELECT avg((SELECT count(*) FROM
				  ((SELECT id FROM items ORDER BY v <-> q.v LIMIT 10)
				   INTERSECT
				   (SELECT id FROM items ORDER BY l2_distance(v, q.v) LIMIT 10)) x) / 10.0) AS recall
	  FROM (SELECT mixed_vec(-s, :dims) AS v FROM generate_series(1, 50) s) q) r;

-- omen_verify(), where this omen has it: structure, every row indexed,
-- every element reachable; the damage it reports, if any, as the detail
SELECT to_regproc('omen_verify') IS NOT NULL AS have_verify \gset
\if :have_verify
DO $$
DECLARE
	r			record;
	msg			text;
	errdetail	text;
BEGIN
	SELECT * INTO r FROM omen_verify('items_v', true);
	INSERT INTO mixed_checks (name, ok, detail)
	VALUES ('omen_verify',
			r.deleted = 0 AND r.unreachable = 0 AND r.elements = (SELECT count(*) FROM items),
			format('%s elements, %s deleted, %s unreachable, %s segments, %s pages',
				   r.elements, r.deleted, r.unreachable, r.segments, r.pages));
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, errdetail = PG_EXCEPTION_DETAIL;
	INSERT INTO mixed_checks (name, ok, detail)
	VALUES ('omen_verify', false, translate(msg || ': ' || coalesce(errdetail, ''), E'\n|', '  '));
END
$$;
\else
INSERT INTO mixed_checks (name, ok, detail) VALUES ('omen_verify', NULL, 'not in this version of omen');
\endif

SELECT name, ok, detail FROM mixed_checks ORDER BY n;
