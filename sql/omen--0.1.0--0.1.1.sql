/* omen--0.1.0--0.1.1.sql: omen_verify() */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION omen UPDATE TO '0.1.1'" to load this file. \quit

-- Structural checks of an omen index, in the manner of contrib/amcheck:
-- every page, slot, code and neighbour list; with heapallindexed, also that
-- every row of the table has an element.  Raises ERRCODE_INDEX_CORRUPTED
-- (XX002) at the first damage found.  Takes AccessShareLock on the index
-- and its table, or ShareLock (which blocks writes) with heapallindexed.
CREATE FUNCTION omen_verify(index regclass, heapallindexed boolean DEFAULT false,
	OUT elements bigint, OUT deleted bigint, OUT unreachable bigint,
	OUT segments int, OUT pages bigint)
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT PARALLEL RESTRICTED;

COMMENT ON FUNCTION omen_verify(regclass, boolean) IS 'check the structure of an omen index';

-- Not for everyone, as amcheck's functions are not: it reads every page
-- of the index, and with heapallindexed the whole table, under locks.
REVOKE ALL ON FUNCTION omen_verify(regclass, boolean) FROM PUBLIC;

-- Rebuild the live elements of an omen index into as few segments as
-- maintenance_work_mem allows (one, if they fit), so that scans search one
-- graph; returns the number of segments afterwards.  The caller must own
-- the index; inserts wait meanwhile, scans do not.
CREATE FUNCTION omen_merge_segments(regclass) RETURNS integer
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION omen_merge_segments(regclass) IS 'rebuild the live elements of an omen index into as few segments as memory allows';
