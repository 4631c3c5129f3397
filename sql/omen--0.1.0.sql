/* omen--0.1.0.sql: the omen index access method on pgvector's types */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION omen CASCADE" to load this file. \quit

-- Omen reads pgvector's on-disk layout and uses its operators, which are
-- stable from 0.7.0 on.
DO $$
DECLARE
	v text;
BEGIN
	SELECT extversion INTO v FROM pg_catalog.pg_extension WHERE extname = 'vector';
	IF v IS NULL THEN
		RAISE EXCEPTION 'omen requires the "vector" extension'
			USING HINT = 'Run CREATE EXTENSION omen CASCADE.';
	END IF;
	IF pg_catalog.string_to_array(pg_catalog.regexp_replace(v, '[^0-9.].*$', ''), '.')::int[]
	   < ARRAY[0, 7, 0] THEN
		RAISE EXCEPTION 'omen requires pgvector 0.7.0 or later, but version % is installed', v
			USING HINT = 'Upgrade pgvector, then run ALTER EXTENSION vector UPDATE.';
	END IF;
END
$$;

-- The access method

CREATE FUNCTION omenhandler(internal) RETURNS index_am_handler
	AS 'MODULE_PATHNAME' LANGUAGE C;

CREATE ACCESS METHOD omen TYPE INDEX HANDLER omenhandler;

COMMENT ON ACCESS METHOD omen IS 'HNSW graph index for nearest-neighbour search on vectors';

-- Distance functions: the opclasses' support function 1.  They compute
-- what pgvector's operators compute, with omen's SIMD kernels.

CREATE FUNCTION omen_l2_distance(vector, vector) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION omen_l2_squared_distance(vector, vector) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION omen_negative_inner_product(vector, vector) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION omen_cosine_distance(vector, vector) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION omen_l1_distance(vector, vector) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Metric procedures: support function 2, for the access method only.

CREATE FUNCTION omen_vector_l2_metric(internal) RETURNS internal
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION omen_vector_ip_metric(internal) RETURNS internal
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION omen_vector_cosine_metric(internal) RETURNS internal
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION omen_vector_l1_metric(internal) RETURNS internal
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION omen_halfvec_l2_metric(internal) RETURNS internal
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION omen_halfvec_ip_metric(internal) RETURNS internal
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION omen_halfvec_cosine_metric(internal) RETURNS internal
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION omen_halfvec_l1_metric(internal) RETURNS internal
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Introspection

CREATE FUNCTION omen_simd_level() RETURNS text
	AS 'MODULE_PATHNAME' LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION omen_simd_level() IS 'distance kernel implementation in use: scalar, avx2 or avx512';

CREATE FUNCTION omen_simd_features() RETURNS text
	AS 'MODULE_PATHNAME' LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION omen_simd_features() IS 'CPU features detected for the distance kernels';

CREATE FUNCTION omen_index_info(index regclass,
	OUT format_version int, OUT dims int, OUT metric text, OUT m int,
	OUT ef_construction int, OUT segments int, OUT elements bigint,
	OUT deleted_elements bigint, OUT pages bigint, OUT quantizer text)
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT PARALLEL SAFE;

COMMENT ON FUNCTION omen_index_info(regclass) IS 'settings and element counts of an omen index';

CREATE FUNCTION omen_last_scan(
	OUT returned bigint, OUT expanded bigint, OUT code_distances bigint,
	OUT exact_distances bigint, OUT reranked bigint, OUT pages bigint,
	OUT segments int, OUT rounds int, OUT dropped bigint, OUT swept bigint,
	OUT stopped_by text)
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT PARALLEL RESTRICTED;

COMMENT ON FUNCTION omen_last_scan() IS 'what the last omen index scan of this session did';

-- Operator classes on pgvector's vector type, ordering by pgvector's own
-- operators.

CREATE OPERATOR CLASS vector_l2_ops
	DEFAULT FOR TYPE vector USING omen AS
	OPERATOR 1 <-> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 1 omen_l2_distance(vector, vector),
	FUNCTION 2 omen_vector_l2_metric(internal);

CREATE OPERATOR CLASS vector_ip_ops
	FOR TYPE vector USING omen AS
	OPERATOR 1 <#> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 1 omen_negative_inner_product(vector, vector),
	FUNCTION 2 omen_vector_ip_metric(internal);

CREATE OPERATOR CLASS vector_cosine_ops
	FOR TYPE vector USING omen AS
	OPERATOR 1 <=> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 1 omen_cosine_distance(vector, vector),
	FUNCTION 2 omen_vector_cosine_metric(internal);

CREATE OPERATOR CLASS vector_l1_ops
	FOR TYPE vector USING omen AS
	OPERATOR 1 <+> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 1 omen_l1_distance(vector, vector),
	FUNCTION 2 omen_vector_l1_metric(internal);

-- Operator classes on pgvector's halfvec type.  Their distance support
-- functions are pgvector's own: omen reads halfvec values itself and
-- computes distances on them as float32.

CREATE OPERATOR CLASS halfvec_l2_ops
	FOR TYPE halfvec USING omen AS
	OPERATOR 1 <-> (halfvec, halfvec) FOR ORDER BY float_ops,
	FUNCTION 1 l2_distance(halfvec, halfvec),
	FUNCTION 2 omen_halfvec_l2_metric(internal);

CREATE OPERATOR CLASS halfvec_ip_ops
	FOR TYPE halfvec USING omen AS
	OPERATOR 1 <#> (halfvec, halfvec) FOR ORDER BY float_ops,
	FUNCTION 1 halfvec_negative_inner_product(halfvec, halfvec),
	FUNCTION 2 omen_halfvec_ip_metric(internal);

CREATE OPERATOR CLASS halfvec_cosine_ops
	FOR TYPE halfvec USING omen AS
	OPERATOR 1 <=> (halfvec, halfvec) FOR ORDER BY float_ops,
	FUNCTION 1 cosine_distance(halfvec, halfvec),
	FUNCTION 2 omen_halfvec_cosine_metric(internal);

CREATE OPERATOR CLASS halfvec_l1_ops
	FOR TYPE halfvec USING omen AS
	OPERATOR 1 <+> (halfvec, halfvec) FOR ORDER BY float_ops,
	FUNCTION 1 l1_distance(halfvec, halfvec),
	FUNCTION 2 omen_halfvec_l1_metric(internal);
