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

#include "access/htup_details.h"
#include "access/relation.h"
#include "common/pg_prng.h"
#include "fmgr.h"
#include "omen.h"
#include "storage/freespace.h"
#include "storage/indexfsm.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "common/hashfn.h"
#include "miscadmin.h"
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
		(info->elemtype != OMEN_TYPE_VECTOR && info->elemtype != OMEN_TYPE_HALFVEC))
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
	opaque->unused2 = 0;
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
	OmenMetaPageData expect;

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

	/*
	 * Everything about the layout follows from a few settings: recompute it
	 * and insist on agreement, so that no size read from disk can steer a
	 * copy out of bounds.
	 */
	if (meta->dims < 0 || meta->dims > OMEN_MAX_DIM ||
		meta->m < OMEN_MIN_M || meta->m > OMEN_MAX_M ||
		meta->quantizer < OMEN_QUANT_NONE || meta->quantizer > OMEN_QUANT_BQ ||
		meta->slotsize != (int) OmenSlotSize(meta->m) ||
		meta->slotsperpage != OMEN_AREA_SPACE / meta->slotsize ||
		meta->nsegments > OMEN_MAX_SEGMENTS ||
		meta->ndirpages > OMEN_MAX_DIR_PAGES ||
		meta->nextents > (uint32) meta->ndirpages * OMEN_DIR_ENTRIES)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has an invalid metapage",
						RelationGetRelationName(index))));
	memcpy(&expect, meta, offsetof(OmenMetaPageData, segments));
	OmenComputeLayout(&expect);
	if (expect.codesize != meta->codesize || expect.paddims != meta->paddims ||
		expect.extentElems != meta->extentElems ||
		expect.extentCodePages != meta->extentCodePages ||
		expect.extentGraphPages != meta->extentGraphPages ||
		(meta->extentElems > 0 &&
		 meta->nextElem > (uint64) meta->nextents * meta->extentElems))
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has an invalid metapage",
						RelationGetRelationName(index)),
				 errdetail("Its layout does not follow from its dimensions, quantizer and m.")));
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
	const OmenMetricInfo *mi = OmenGetMetricInfo(index);

	memset(info, 0, sizeof(OmenIndexInfo));
	info->index = index;
	info->metric = (OmenMetric) mi->metric;
	info->elemtype = (OmenElemType) mi->elemtype;
	info->dims = meta->dims;
	info->m = meta->m;
	info->maxm0 = 2 * meta->m;
	info->ef_construction = meta->ef_construction;
	info->slotsize = meta->slotsize;
	info->slotsperpage = meta->slotsperpage;
	info->ml = 1.0 / log((double) meta->m);
	info->quantizer = meta->quantizer;
	info->vectors = meta->vectors;
	info->codesize = meta->codesize;
	info->K = meta->extentElems;
	info->C = meta->extentCodePages;
	info->G = meta->extentGraphPages;
	info->paddims = meta->paddims;
	info->rotseed = meta->rotseed;
	info->codegen = meta->codegen;
	info->centroidBlk = meta->centroidBlk;
	info->mcxt = CurrentMemoryContext;
	info->ndirpages = meta->ndirpages;
	memcpy(info->dirpages, meta->dirpages, sizeof(BlockNumber) * meta->ndirpages);
	info->dircache = palloc0(sizeof(BlockNumber *) * OMEN_MAX_DIR_PAGES);
	if (info->quantizer == OMEN_QUANT_BQ && info->centroidBlk != InvalidBlockNumber)
		info->centroid = OmenReadAux(index, info->centroidBlk, info->dims);
}

/* Initialize a page whose contents are a packed byte area (code, dir, aux) */
void
OmenInitAreaPage(Page page, uint16 type)
{
	OmenInitPage(page, type);
	((PageHeader) page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + OMEN_AREA_SPACE;
	if (type == OMEN_PAGE_DIR)
		memset(PageGetContents(page), 0xFF, OMEN_AREA_SPACE);
}

/*
 * The first block of extent x, from the extent directory.  Directory pages
 * are read (and cached in the OmenIndexInfo) only when needed; an entry
 * that is not there yet means the extent was added after we last looked,
 * so the page is read again.
 */
BlockNumber
OmenExtentStart(OmenIndexInfo *info, uint32 x)
{
	int			d = x / OMEN_DIR_ENTRIES;
	int			i = x % OMEN_DIR_ENTRIES;
	BlockNumber blk;

	for (int attempt = 0; attempt < 2; attempt++)
	{
		if (d >= info->ndirpages)
		{
			OmenMetaPageData meta;

			OmenReadMetaPage(info->index, &meta);
			info->ndirpages = meta.ndirpages;
			memcpy(info->dirpages, meta.dirpages, sizeof(BlockNumber) * meta.ndirpages);
			if (d >= info->ndirpages)
				break;
		}
		if (info->dircache[d] == NULL || info->dircache[d][i] == InvalidBlockNumber)
		{
			Buffer		buf = ReadBuffer(info->index, info->dirpages[d]);
			Page		page;

			LockBuffer(buf, BUFFER_LOCK_SHARE);
			page = BufferGetPage(buf);
			OmenCheckPage(info->index, page, info->dirpages[d], OMEN_PAGE_DIR);
			if (info->dircache[d] == NULL)
				info->dircache[d] = MemoryContextAlloc(info->mcxt, OMEN_AREA_SPACE);
			memcpy(info->dircache[d], PageGetContents(page), OMEN_AREA_SPACE);
			UnlockReleaseBuffer(buf);
		}
		blk = info->dircache[d][i];
		if (blk != InvalidBlockNumber && blk != OMEN_METAPAGE_BLKNO)
			return blk;
		/* not there: the next attempt reads the metapage and directory anew */
		info->ndirpages = 0;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("index \"%s\" has no directory entry for extent %u",
					RelationGetRelationName(info->index), x)));
	return InvalidBlockNumber;	/* keep the compiler quiet */
}

/* The graph page and slot number of an element */
void
OmenElemSlotLoc(OmenIndexInfo *info, OmenElem e, BlockNumber *blk, int *slotno)
{
	uint32		i = e % info->K;

	*blk = OmenExtentStart(info, e / info->K) + info->C + i / info->slotsperpage;
	*slotno = i % info->slotsperpage;
}

/* Where an element's code starts */
OmenCodeLoc
OmenElemCodeLoc(OmenIndexInfo *info, OmenElem e)
{
	uint64		byte = (uint64) (e % info->K) * info->codesize;
	OmenCodeLoc loc;

	loc.blk = OmenExtentStart(info, e / info->K) + (BlockNumber) (byte / OMEN_AREA_SPACE);
	loc.off = (int) (byte % OMEN_AREA_SPACE);
	return loc;
}

/*
 * Read n floats stored in a chain of aux pages starting at blk.  Aux pages
 * are written once, at build, and never change.
 */
float *
OmenReadAux(Relation index, BlockNumber blk, int n)
{
	float	   *out = palloc(sizeof(float) * n);
	char	   *dst = (char *) out;
	Size		left = sizeof(float) * n;

	while (left > 0)
	{
		Buffer		buf;
		Page		page;
		Size		chunk = Min(left, (Size) OMEN_AREA_SPACE);

		if (blk == InvalidBlockNumber || blk == OMEN_METAPAGE_BLKNO)
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("index \"%s\" has a broken quantizer page chain",
							RelationGetRelationName(index))));
		buf = ReadBuffer(index, blk);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		OmenCheckPage(index, page, blk, OMEN_PAGE_AUX);
		memcpy(dst, PageGetContents(page), chunk);
		blk = OmenPageGetOpaque(page)->nextblkno;
		UnlockReleaseBuffer(buf);
		dst += chunk;
		left -= chunk;
	}
	return out;
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
 * Allocate a new page at the end of the index.  (The free space map holds
 * graph pages with free slots, not free pages: see omenvacuum.c.)  Returns
 * it pinned and exclusively locked, not yet initialized.
 * The caller must initialize it and WAL-log it with a full image.
 */
Buffer
OmenNewBuffer(Relation index, ForkNumber fork)
{
	Buffer		buf;
	bool		needLock = !RELATION_IS_LOCAL(index);

	if (needLock)
		LockRelationForExtension(index, ExclusiveLock);
	buf = ReadBufferExtended(index, fork, P_NEW, RBM_NORMAL, NULL);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	if (needLock)
		UnlockRelationForExtension(index, ExclusiveLock);

	return buf;
}

/*
 * A named wait point, for concurrency tests.  When omen.debug_wait_point
 * names this point, the backend takes and releases a share lock on the
 * advisory lock pg_advisory_lock(hashtext(name)), so a test session that
 * holds that lock stops us here, where isolationtester can see us waiting,
 * and lets us go when it releases it.  A single test of an empty string
 * otherwise.
 */
void
OmenWaitPoint(const char *name)
{
	LOCKTAG		tag;
	int64		key;

	if (omen_debug_wait_point == NULL || omen_debug_wait_point[0] == '\0' ||
		strcmp(omen_debug_wait_point, name) != 0)
		return;
	key = (int32) DatumGetUInt32(hash_any((const unsigned char *) name, strlen(name)));
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key, 1);
	(void) LockAcquire(&tag, ShareLock, false, false);
	LockRelease(&tag, ShareLock, false);
}

/*
 * A heap TID read from an index page, before anything follows it: a
 * damaged one must not send a heap fetch to block InvalidBlockNumber,
 * which ReadBuffer takes for P_NEW and answers by extending the table.
 */
void
OmenCheckHeapTid(Relation index, ItemPointer tid, OmenElem elem)
{
	if (!ItemPointerIsValid(tid) ||
		ItemPointerGetBlockNumberNoCheck(tid) == InvalidBlockNumber ||
		ItemPointerGetOffsetNumberNoCheck(tid) > MaxHeapTuplesPerPage)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has an invalid heap TID",
						RelationGetRelationName(index)),
				 errdetail("Element %u points to (%u,%u).", elem,
						   ItemPointerGetBlockNumberNoCheck(tid),
						   ItemPointerGetOffsetNumberNoCheck(tid))));
}

/*
 * Is item off of this page one we may read size bytes of?  Checks the line
 * pointer against the page, so that a damaged one cannot point a read or a
 * write outside the page.
 */
bool
OmenItemOk(Page page, OffsetNumber off, Size size)
{
	ItemId		iid;
	PageHeader	ph = (PageHeader) page;

	if (off < FirstOffsetNumber || off > PageGetMaxOffsetNumber(page))
		return false;
	iid = PageGetItemId(page, off);
	return ItemIdIsNormal(iid) &&
		ItemIdGetLength(iid) >= size &&
		ItemIdGetOffset(iid) >= ph->pd_upper &&
		(Size) ItemIdGetOffset(iid) + ItemIdGetLength(iid) <= ph->pd_special;
}
