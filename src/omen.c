/*-------------------------------------------------------------------------
 *
 * omen.c
 *	  The omen index access method handler, its relation options and GUCs,
 *	  and the module's load-time setup (SIMD kernel dispatch).
 *
 * IDENTIFICATION
 *	  src/omen.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/amapi.h"
#include "access/reloptions.h"
#include "commands/progress.h"
#include "commands/vacuum.h"
#include "fmgr.h"
#include "omen.h"
#include "utils/builtins.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

int			omen_ef_search = OMEN_DEFAULT_EF_SEARCH;

/* omen.simd: the highest kernel implementation to use */
static int	omen_simd_max = OMEN_SIMD_AVX512;

static const struct config_enum_entry omen_simd_options[] = {
	{"scalar", OMEN_SIMD_SCALAR, false},
	{"avx2", OMEN_SIMD_AVX2, false},
	{"avx512", OMEN_SIMD_AVX512, false},
	{NULL, 0, false}
};

static relopt_kind omen_relopt_kind;

double		omen_rerank_factor = 2.0;
int			omen_code_cache_mb = 128;
int			omen_max_scan_tuples = 100000;
double		omen_scan_mem_multiplier = 2.0;
char	   *omen_debug_wait_point = NULL;
int			omen_max_build_shared_memory = 2048;

/* not copied by add_enum_reloption: must be static */
static relopt_enum_elt_def omen_quantizer_values[] = {
	{"none", OMEN_QUANT_NONE},
	{"sq8", OMEN_QUANT_SQ8},
	{"bq", OMEN_QUANT_BQ},
	{(const char *) NULL}
};

static relopt_enum_elt_def omen_vectors_values[] = {
	{"index", OMEN_VECTORS_INDEX},
	{"heap", OMEN_VECTORS_HEAP},
	{(const char *) NULL}
};

static void
omen_simd_assign(int newval, void *extra)
{
	omen_simd_init((OmenSimdLevel) newval);
}

/*
 * Module load: register reloptions and GUCs, and pick the distance kernels
 * for this CPU.  Parallel workers run this too, before the leader's GUC
 * values reach them; the assign hook then re-runs the dispatch.
 */
void
_PG_init(void)
{
	omen_simd_init(OMEN_SIMD_AVX512);

	omen_relopt_kind = add_reloption_kind();
	add_int_reloption(omen_relopt_kind, "m",
					  "Maximum number of neighbours per element and graph level",
					  OMEN_DEFAULT_M, OMEN_MIN_M, OMEN_MAX_M,
					  AccessExclusiveLock);
	add_int_reloption(omen_relopt_kind, "ef_construction",
					  "Size of the candidate list while building the graph",
					  OMEN_DEFAULT_EF_CONSTRUCTION, OMEN_MIN_EF_CONSTRUCTION,
					  OMEN_MAX_EF_CONSTRUCTION, AccessExclusiveLock);

	add_enum_reloption(omen_relopt_kind, "quantizer",
					   "Codes the graph is navigated with",
					   omen_quantizer_values, OMEN_QUANT_NONE,
					   "Valid values are \"none\", \"sq8\" and \"bq\".",
					   AccessExclusiveLock);
	add_enum_reloption(omen_relopt_kind, "vectors",
					   "Where the full vectors used for re-ranking are kept",
					   omen_vectors_values, OMEN_VECTORS_INDEX,
					   "Valid values are \"index\" and \"heap\".",
					   AccessExclusiveLock);

	DefineCustomIntVariable("omen.ef_search",
							"Size of the candidate list of an index scan.",
							"Larger values find more of the true nearest neighbours, at more cost per query.",
							&omen_ef_search,
							OMEN_DEFAULT_EF_SEARCH, OMEN_MIN_EF_SEARCH, OMEN_MAX_EF_SEARCH,
							PGC_USERSET, 0, NULL, NULL, NULL);

	DefineCustomRealVariable("omen.rerank_factor",
							 "How many candidates a quantized index re-ranks, as a multiple of ef_search.",
							 "The best candidates by code distance are re-ranked with the full vectors.",
							 &omen_rerank_factor, 2.0, 1.0, 100.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("omen.max_scan_tuples",
							"Maximum number of rows an index scan returns before it stops.",
							"Bounds the work of a scan under a selective filter. 0 means no limit.",
							&omen_max_scan_tuples, 100000, 0, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);

	DefineCustomRealVariable("omen.scan_mem_multiplier",
							 "Memory an index scan may use, as a multiple of work_mem.",
							 "A scan that needs more for its visited set and queues stops.",
							 &omen_scan_mem_multiplier, 2.0, 1.0, 1000.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("omen.code_cache",
							"Memory each backend may use to keep copies of index codes.",
							"Searches read codes from this copy instead of shared buffers. 0 turns it off.",
							&omen_code_cache_mb, 128, 0, INT_MAX / 2,
							PGC_USERSET, GUC_UNIT_MB, NULL, NULL, NULL);

	DefineCustomStringVariable("omen.debug_wait_point",
							   "Makes a backend wait at a named point inside omen, for concurrency tests.",
							   "The backend waits for the advisory lock hashtext(name). See src/README.",
							   &omen_debug_wait_point, "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL, NULL, NULL, NULL);

	DefineCustomIntVariable("omen.max_build_shared_memory",
							"Largest dynamic shared memory segment a parallel index build may use.",
							"A build that would need more (or more than /dev/shm has free) runs without parallel workers.",
							&omen_max_build_shared_memory, 2048, 0, INT_MAX / 2,
							PGC_USERSET, GUC_UNIT_MB, NULL, NULL, NULL);

	DefineCustomEnumVariable("omen.simd",
							 "Highest SIMD implementation of the distance kernels to use.",
							 "The best one the CPU supports is used, up to this level.",
							 &omen_simd_max, OMEN_SIMD_AVX512, omen_simd_options,
							 PGC_USERSET, 0, NULL, omen_simd_assign, NULL);

	MarkGUCPrefixReserved("omen");
}

/*
 * Parse WITH (...) options.  They are copied into the metapage at build,
 * so later changes (ALTER INDEX ... SET) take effect at the next REINDEX.
 */
bytea *
omenoptions(Datum reloptions, bool validate)
{
	static const relopt_parse_elt tab[] = {
		{"m", RELOPT_TYPE_INT, offsetof(OmenOptions, m)},
		{"ef_construction", RELOPT_TYPE_INT, offsetof(OmenOptions, ef_construction)},
		{"quantizer", RELOPT_TYPE_ENUM, offsetof(OmenOptions, quantizer)},
		{"vectors", RELOPT_TYPE_ENUM, offsetof(OmenOptions, vectors)},
	};

	return (bytea *) build_reloptions(reloptions, validate, omen_relopt_kind,
									  sizeof(OmenOptions), tab, lengthof(tab));
}

/* Name the build phases shown in pg_stat_progress_create_index */
static char *
omenbuildphasename(int64 phasenum)
{
	switch (phasenum)
	{
		case PROGRESS_CREATEIDX_SUBPHASE_INITIALIZE:
			return "initializing";
		case 2:
			return "loading tuples";
		case 3:
			return "writing pages";
		case 4:
			return "building graph";
		default:
			return NULL;
	}
}

static bool
omenproperty(Oid index_oid, int attno, IndexAMProperty prop,
			 const char *propname, bool *res, bool *isnull)
{
	if (attno == 0)
		return false;
	switch (prop)
	{
		case AMPROP_DISTANCE_ORDERABLE:
			*res = true;
			return true;
		case AMPROP_RETURNABLE:
		case AMPROP_ORDERABLE:
			*res = false;
			return true;
		default:
			return false;
	}
}

PG_FUNCTION_INFO_V1(omenhandler);
Datum
omenhandler(PG_FUNCTION_ARGS)
{
	IndexAmRoutine *amroutine = makeNode(IndexAmRoutine);

	amroutine->amstrategies = 0;
	amroutine->amsupport = OMEN_NPROC;
	amroutine->amoptsprocnum = 0;
	amroutine->amcanorder = false;
	amroutine->amcanorderbyop = true;
	amroutine->amcanbackward = false;
	amroutine->amcanunique = false;
	amroutine->amcanmulticol = false;
	amroutine->amoptionalkey = true;
	amroutine->amsearcharray = false;
	amroutine->amsearchnulls = false;
	amroutine->amstorage = false;
	amroutine->amclusterable = false;
	amroutine->ampredlocks = false;
	amroutine->amcanparallel = false;
	amroutine->amcaninclude = false;
	amroutine->amusemaintenanceworkmem = false;
	amroutine->amparallelvacuumoptions =
		VACUUM_OPTION_PARALLEL_BULKDEL | VACUUM_OPTION_PARALLEL_CLEANUP;
	amroutine->amkeytype = InvalidOid;

	amroutine->ambuild = omenbuild;
	amroutine->ambuildempty = omenbuildempty;
	amroutine->aminsert = omeninsert;
	amroutine->ambulkdelete = omenbulkdelete;
	amroutine->amvacuumcleanup = omenvacuumcleanup;
	amroutine->amcanreturn = NULL;
	amroutine->amcostestimate = omencostestimate;
	amroutine->amoptions = omenoptions;
	amroutine->amproperty = omenproperty;
	amroutine->ambuildphasename = omenbuildphasename;
	amroutine->amvalidate = omenvalidate;
	amroutine->amadjustmembers = NULL;
	amroutine->ambeginscan = omenbeginscan;
	amroutine->amrescan = omenrescan;
	amroutine->amgettuple = omengettuple;
	amroutine->amgetbitmap = NULL;
	amroutine->amendscan = omenendscan;
	amroutine->ammarkpos = NULL;
	amroutine->amrestrpos = NULL;
	amroutine->amestimateparallelscan = NULL;
	amroutine->aminitparallelscan = NULL;
	amroutine->amparallelrescan = NULL;

	PG_RETURN_POINTER(amroutine);
}

/* SQL: the kernel implementation in use in this backend */
PG_FUNCTION_INFO_V1(omen_simd_level);
Datum
omen_simd_level(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(omen_simd_level_name(omen_simd_active_level())));
}

/* SQL: the CPU features the dispatcher detected */
PG_FUNCTION_INFO_V1(omen_simd_features);
Datum
omen_simd_features(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(omen_simd_cpu_features()));
}
