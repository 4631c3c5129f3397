/*-------------------------------------------------------------------------
 *
 * omenutils.c
 *	  Page, metapage, vector and distance helpers shared by build, insert,
 *	  scan and vacuum.
 *
 * IDENTIFICATION
 *	  src/omenutils.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/relation.h"
#include "common/pg_prng.h"
#include "fmgr.h"
#include "omen.h"
#include "storage/freespace.h"
#include "storage/indexfsm.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/rel.h"

/*
 * The opclass's metric, from its metric support procedure.  Called once per
 * operation; the procedure returns a pointer to static data.
 */
const OmenMetricInfo *
OmenGetMetricInfo(Relation index)
{
	FmgrInfo   *proc = index_getprocinfo(index, 1, OMEN_METRIC_PROC);
	const OmenMetricInfo *info;

	info = (const OmenMetricInfo *) DatumGetPointer(FunctionCall1(proc, PointerGetDatum(NULL)));
	if (info == NULL ||
		info->metric < OMEN_METRIC_L2 || info->metric > OMEN_METRIC_L1 ||
		info->elemtype != OMEN_TYPE_VECTOR)
		elog(ERROR, "omen metric support procedure returned an invalid description");
	return info;
}

/* Dimensions declared by the indexed column's typmod, or 0 */
int
OmenColumnDims(Relation index)
{
	int32		typmod = TupleDescAttr(RelationGetDescr(index), 0)->atttypmod;

	return typmod > 0 ? typmod : 0;
}

void
OmenInitPage(Page page, uint16 type)
{
	OmenPageOpaque opaque;

	PageInit(page, BLCKSZ, sizeof(OmenPageOpaqueData));
	opaque = OmenPageGetOpaque(page);
	opaque->nextblkno = InvalidBlockNumber;
	opaque->type = type;
	opaque->nslots = 0;
	opaque->unused = 0;
	opaque->page_id = OMEN_PAGE_ID;
}

/*
 * Check that a page we are about to interpret is one of ours, of the
 * expected type.  A zeroed page is tolerated only by callers that expect
 * one (a crash after relation extension leaves such pages behind).
 */
void
OmenCheckPage(Relation index, Page page, BlockNumber blkno, uint16 type)
{
	OmenPageOpaque opaque;

	if (PageIsNew(page) ||
		PageGetSpecialSize(page) != MAXALIGN(sizeof(OmenPageOpaqueData)))
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" contains an unexpected page",
						RelationGetRelationName(index)),
				 errdetail("Block %u is not an omen page.", blkno)));
	opaque = OmenPageGetOpaque(page);
	if (opaque->page_id != OMEN_PAGE_ID || opaque->type != type)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" contains a page of the wrong type",
						RelationGetRelationName(index)),
				 errdetail("Block %u has page id 0x%04X and type %u where type %u was expected.",
						   blkno, opaque->page_id, opaque->type, type)));
}

void
OmenCheckMetaPage(Relation index, OmenMetaPage meta)
{
	if (meta->magic != OMEN_MAGIC)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" is not an omen index",
						RelationGetRelationName(index)),
				 errdetail("The metapage has magic number 0x%08X.", meta->magic)));
	if (meta->version != OMEN_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("index \"%s\" has on-disk format version %u, but this build of omen reads version %d",
						RelationGetRelationName(index), meta->version, OMEN_FORMAT_VERSION),
				 errhint("Run REINDEX INDEX %s.",
						 quote_identifier(RelationGetRelationName(index)))));
	if (meta->dims < 0 || meta->dims > OMEN_MAX_DIM ||
		meta->m < OMEN_MIN_M || meta->m > OMEN_MAX_M ||
		meta->slotsize != (int) OmenSlotSize(meta->m) ||
		meta->slotsperpage < 1 || meta->slotsperpage > OMEN_MAX_SLOTS_PER_PAGE ||
		meta->nsegments > OMEN_MAX_SEGMENTS)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has an invalid metapage",
						RelationGetRelationName(index))));
}

/* Copy the metapage out, under a share lock, and check it */
void
OmenReadMetaPage(Relation index, OmenMetaPageData *meta)
{
	Buffer		buf;
	Page		page;

	buf = ReadBuffer(index, OMEN_METAPAGE_BLKNO);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	OmenCheckPage(index, page, OMEN_METAPAGE_BLKNO, OMEN_PAGE_META);
	memcpy(meta, OmenPageGetMeta(page), sizeof(OmenMetaPageData));
	UnlockReleaseBuffer(buf);
	OmenCheckMetaPage(index, meta);
}

void
OmenInitIndexInfo(OmenIndexInfo *info, Relation index, OmenMetaPage meta)
{
	info->index = index;
	info->metric = (OmenMetric) OmenGetMetricInfo(index)->metric;
	info->dims = meta->dims;
	info->m = meta->m;
	info->maxm0 = 2 * meta->m;
	info->ef_construction = meta->ef_construction;
	info->slotsize = meta->slotsize;
	info->slotsperpage = meta->slotsperpage;
	info->ml = 1.0 / log((double) meta->m);
}

/*
 * Draw an element's level: floor(-ln(U) * ml), the HNSW paper's
 * exponentially decaying distribution.
 */
int
OmenRandomLevel(double ml)
{
	double		u = pg_prng_double(&pg_global_prng_state);
	int			level;

	if (u <= 0.0)
		u = DBL_MIN;
	level = (int) floor(-log(u) * ml);
	return Min(level, OMEN_MAX_LEVEL);
}

/*
 * The internal distance between a query and a stored vector: monotone in
 * the operator's result (squared for L2), so it can rank without a square
 * root.  vnorm is the stored vector's norm (used by cosine only).
 */
float
OmenDistance(OmenMetric metric, const OmenQuery *q, const float *v, float vnorm, int dims)
{
	switch (metric)
	{
		case OMEN_METRIC_L2:
			return omen_kernels.l2sq_f32(q->values, v, dims);
		case OMEN_METRIC_IP:
			return -omen_kernels.dot_f32(q->values, v, dims);
		case OMEN_METRIC_COSINE:
			{
				double		sim = (double) omen_kernels.dot_f32(q->values, v, dims) /
					((double) q->norm * (double) vnorm);

				if (isnan(sim))
					return get_float4_nan();
				if (sim > 1.0)
					sim = 1.0;
				else if (sim < -1.0)
					sim = -1.0;
				return (float) (1.0 - sim);
			}
		case OMEN_METRIC_L1:
			return omen_kernels.l1_f32(q->values, v, dims);
	}
	return 0;					/* keep the compiler quiet */
}

/* Convert an internal distance to the operator's value */
double
OmenDistanceToOperator(OmenMetric metric, float d)
{
	if (metric == OMEN_METRIC_L2)
		return sqrt((double) d);
	return (double) d;
}

/*
 * Allocate a new page at the end of the index, or from the free space
 * map.  Returns it pinned and exclusively locked, not yet initialized.
 * The caller must initialize it and WAL-log it with a full image.
 */
Buffer
OmenNewBuffer(Relation index, ForkNumber fork)
{
	Buffer		buf;
	bool		needLock = !RELATION_IS_LOCAL(index);

	if (fork == MAIN_FORKNUM)
	{
		for (;;)
		{
			BlockNumber blkno = GetFreeIndexPage(index);

			if (blkno == InvalidBlockNumber)
				break;
			buf = ReadBuffer(index, blkno);
			if (ConditionalLockBuffer(buf))
			{
				Page		page = BufferGetPage(buf);

				/* the FSM is a hint: only a new page is really free */
				if (PageIsNew(page))
					return buf;
				LockBuffer(buf, BUFFER_LOCK_UNLOCK);
			}
			ReleaseBuffer(buf);
		}
	}

	if (needLock)
		LockRelationForExtension(index, ExclusiveLock);
	buf = ReadBufferExtended(index, fork, P_NEW, RBM_NORMAL, NULL);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	if (needLock)
		UnlockRelationForExtension(index, ExclusiveLock);

	if (fork == MAIN_FORKNUM && BufferGetBlockNumber(buf) >= OMEN_MAX_BLOCKS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("index \"%s\" is too large",
						RelationGetRelationName(index)),
				 errdetail("An omen index can have at most %u pages.", OMEN_MAX_BLOCKS)));
	return buf;
}
