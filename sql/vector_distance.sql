-- omen's distance functions against pgvector's operators, on real data
-- (BIGANN SIFT descriptors and GloVe word vectors) and on edge cases.
CREATE EXTENSION omen CASCADE;

SELECT omen_simd_level() IN ('scalar', 'avx2', 'avx512') AS known_level;

CREATE TABLE sift (id int PRIMARY KEY, v vector(128));
\copy sift FROM 'data/bigann_base.tsv'
CREATE TABLE glove (id int PRIMARY KEY, v vector(100));
\copy glove FROM 'data/glove_base.tsv'

-- Relative difference, with an absolute floor for values near zero: SIMD
-- and scalar sums differ in the last bits.
CREATE FUNCTION close_enough(a float8, b float8) RETURNS bool
LANGUAGE sql IMMUTABLE AS $$
	SELECT (a IS NULL AND b IS NULL)
		OR (a = 'NaN' AND b = 'NaN')
		OR abs(a - b) <= 1e-6 * greatest(abs(a), abs(b)) + 1e-6
$$;

-- every pair among the first 60 rows of each set, with each kernel level
CREATE TABLE pairs AS
	SELECT 'sift' AS src, a.v AS a, b.v AS b FROM sift a, sift b WHERE a.id <= 60 AND b.id <= 60
	UNION ALL
	SELECT 'glove', a.v, b.v FROM glove a, glove b WHERE a.id <= 60 AND b.id <= 60;

CREATE FUNCTION check_all() RETURNS TABLE (src text, pairs bigint, l2 bool, l2sq bool, ip bool, cosine bool, l1 bool)
LANGUAGE sql AS $$
	SELECT src, count(*),
		bool_and(close_enough(omen_l2_distance(a, b), a <-> b)),
		bool_and(close_enough(omen_l2_squared_distance(a, b), (a <-> b) ^ 2)),
		bool_and(close_enough(omen_negative_inner_product(a, b), a <#> b)),
		bool_and(close_enough(omen_cosine_distance(a, b), a <=> b)),
		bool_and(close_enough(omen_l1_distance(a, b), a <+> b))
	FROM pairs GROUP BY src ORDER BY src
$$;

SET omen.simd = 'scalar';
SELECT omen_simd_level();
SELECT * FROM check_all();
SET omen.simd = 'avx2';
SELECT omen_simd_level() IN ('scalar', 'avx2') AS capped;
SELECT * FROM check_all();
RESET omen.simd;
SELECT * FROM check_all();

-- edge cases: one dimension, 16,000 dimensions, zero vectors
SELECT omen_l2_distance('[3]', '[-1]'), omen_l1_distance('[3]', '[-1]'),
	omen_negative_inner_product('[3]', '[-1]'), omen_cosine_distance('[3]', '[-1]');
SELECT omen_cosine_distance('[0,0,0]', '[1,2,3]'), '[0,0,0]'::vector <=> '[1,2,3]';
SELECT omen_cosine_distance('[0,0]', '[0,0]') = 'NaN'::float8 AS nan_both;
SELECT omen_l2_distance('[0,0,0]', '[0,0,0]'), omen_l1_distance('[0,0,0]', '[0,0,0]');

CREATE TABLE big (a vector(16000), b vector(16000));
INSERT INTO big
	SELECT array_agg(sin(i)::real)::vector, array_agg(cos(i * 0.5)::real)::vector
	FROM generate_series(1, 16000) i;
SELECT close_enough(omen_l2_distance(a, b), a <-> b) AS l2,
	close_enough(omen_negative_inner_product(a, b), a <#> b) AS ip,
	close_enough(omen_cosine_distance(a, b), a <=> b) AS cosine,
	close_enough(omen_l1_distance(a, b), a <+> b) AS l1
FROM big;

-- NULLs: the functions are strict
SELECT omen_l2_distance(NULL, '[1]') IS NULL AS l2_null,
	omen_cosine_distance('[1]', NULL) IS NULL AS cosine_null;

DROP TABLE pairs, big, sift, glove;
DROP FUNCTION check_all(), close_enough(float8, float8);

DROP EXTENSION omen;
DROP EXTENSION vector;
