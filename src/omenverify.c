/*-------------------------------------------------------------------------
 *
 * omenverify.c
 *	  SQL functions that look inside an omen index: omen_index_info()
 *	  reports what the metapage and the graph pages hold; omen_verify()
 *	  checks every page, slot, code and neighbour list, in the manner of
 *	  contrib/amcheck, and optionally that every row of the table is
 *	  indexed.
 *
 * IDENTIFICATION
 *	  src/omenverify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xlog.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "commands/defrem.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "omen.h"
#include "port/pg_bitutils.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/*
 * Open an index by OID, checking that it is an omen index that this
 * session may read.  Other sessions' temporary indexes are refused, as
 * their pages live in another backend's local buffers.
 */
Relation
OmenOpenIndex(Oid indexoid, LOCKMODE lockmode)
{
	Relation	index = relation_open(indexoid, lockmode);

	if (index->rd_rel->relkind != RELKIND_INDEX ||
		index->rd_rel->relam != get_index_am_oid("omen", false))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not an omen index",
						RelationGetRelationName(index))));
	if (RELATION_IS_OTHER_TEMP(index))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot access temporary indexes of other sessions")));
	if (!index->rd_index->indisvalid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index \"%s\" is not valid",
						RelationGetRelationName(index))));
	return index;
}

static const char *
OmenMetricName(int metric)
{
	switch (metric)
	{
		case OMEN_METRIC_L2:
			return "l2";
		case OMEN_METRIC_IP:
			return "inner_product";
		case OMEN_METRIC_COSINE:
			return "cosine";
		case OMEN_METRIC_L1:
			return "l1";
	}
	return "unknown";
}

/*
 * omen_index_info(regclass): the metapage's settings and a count of the
 * elements on the graph pages.
 */
PG_FUNCTION_INFO_V1(omen_index_info);
Datum
omen_index_info(PG_FUNCTION_ARGS)
{
	Oid			indexoid = PG_GETARG_OID(0);
	Relation	index;
	OmenMetaPageData meta;
	OmenIndexInfo oi;
	TupleDesc	tupdesc;
	Datum		values[10];
	bool		nulls[10] = {false};
	static const char *const quantizers[] = {"none", "sq8", "bq"};
	BlockNumber nblocks;
	int64		live = 0;
	int64		deleted = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	index = OmenOpenIndex(indexoid, AccessShareLock);
	OmenReadMetaPage(index, &meta);
	OmenInitIndexInfo(&oi, index, &meta);
	nblocks = RelationGetNumberOfBlocks(index);

	for (uint32 x = 0; x < meta.nextents; x++)
	{
		BlockNumber start = OmenExtentStart(&oi, x);

		for (int g = 0; g < oi.G; g++)
		{
			BlockNumber blk = start + oi.C + g;
			Buffer		buf;
			Page		page;

			CHECK_FOR_INTERRUPTS();
			buf = ReadBuffer(index, blk);
			LockBuffer(buf, BUFFER_LOCK_SHARE);
			page = BufferGetPage(buf);
			OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
			for (int s = 0; s < Min(OmenPageGetOpaque(page)->nslots, meta.slotsperpage); s++)
			{
				OmenSlot	slot = OmenPageGetSlot(page, meta.slotsize, s);

				if (!(slot->flags & OMEN_SLOT_USED))
					continue;
				if (slot->flags & OMEN_SLOT_DELETED)
					deleted++;
				else
					live++;
			}
			UnlockReleaseBuffer(buf);
		}
	}
	relation_close(index, AccessShareLock);

	values[0] = Int32GetDatum(OMEN_FORMAT_VERSION);
	values[1] = Int32GetDatum(meta.dims);
	values[2] = CStringGetTextDatum(OmenMetricName(meta.metric));
	values[3] = Int32GetDatum(meta.m);
	values[4] = Int32GetDatum(meta.ef_construction);
	values[5] = Int32GetDatum(meta.nsegments);
	values[6] = Int64GetDatum(live);
	values[7] = Int64GetDatum(deleted);
	values[8] = Int64GetDatum(nblocks);
	values[9] = CStringGetTextDatum(quantizers[meta.quantizer]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ---------------------------------------------------------------- omen_verify */

/*
 * omen_verify() reads the whole index and checks it against everything the
 * writers guarantee (src/README, "omen_verify"), in passes:
 *
 *	1. the metapage, on its own: magic, version, and that the settings and
 *	   the extent shape agree with each other and with the opclass;
 *	2. every page: header, special space, page id, type, and what its type
 *	   implies (packed areas cover the page, line pointers stay on it);
 *	3. the extent directory: every extent inside the relation, made of C
 *	   code pages then G graph pages, no block in two places; the centroid
 *	   chain and the insert hints;
 *	4. every element, extent by extent: the slot's fields, its heap TID, its
 *	   vector chain and upper item, its code's header and payload;
 *	5. every neighbour list and entry point, against the elements of 4;
 *	6. a breadth-first walk from the entry points over all levels, which
 *	   counts the live elements no search can reach;
 *	7. with heapallindexed, a scan of the table for rows with no element.
 *
 * Without heapallindexed the index and table are locked in AccessShareLock
 * mode, like amcheck's bt_index_check: inserts and VACUUM go on while we
 * read, one page at a time under a share lock.  A state that a concurrent
 * writer passes through (a link to an element newer than our copy of the
 * metapage, a code marked deleted after we read its slot) is read again
 * before it is reported, so only real damage raises an error; the count
 * of unreachable elements is then approximate.  With heapallindexed both
 * are locked in ShareLock mode, like bt_index_parent_check: nothing
 * changes, every check is exact, and two live elements with the same heap
 * TID are reported too.
 */

/*
 * A code's header and the fields that follow it, as omenquant.c writes
 * them (see the comment at the top of that file): uint16 flags, uint16 set
 * bits (bq), then the quantizer's floats.
 */
#define VERIFY_CODE_HDR			4
#define VerifyCodeFlags(code)	(*(const uint16 *) (code))
#define VerifyCodePopcount(code) (*(const uint16 *) ((code) + 2))
#define VerifyCodeFloat(code, i) (((const float *) ((code) + VERIFY_CODE_HDR))[i])

/* Per-element mark of the reachability walk, beside the slot's flags */
#define VERIFY_REACHED			0x80

/*
 * An empty slot may be reserved by an insert that reuses a slot VACUUM
 * freed; older builds never set this flag.
 */
#ifndef OMEN_SLOT_RESERVED
#define OMEN_SLOT_RESERVED		0x08
#endif

typedef struct OmenVerifyState
{
	Relation	index;
	Relation	heap;
	const char *name;
	bool		strict;			/* ShareLock: nothing changes under us */
	bool		heapallindexed;
	BufferAccessStrategy strategy;
	OmenMetaPageData meta;
	int			maxm0;
	bool		keepvectors;	/* slots must point to a vector chain */
	BlockNumber nblocks;		/* of the index, when we began */
	BlockNumber heapblocks;		/* of a heap table, or InvalidBlockNumber */
	uint8	   *pagetype;		/* per block: type, 0 for a new page */
	uint8	   *claimed;		/* per block: taken by an extent or the directory */
	BlockNumber *extstart;		/* per extent: first block */
	uint32		nextents;
	OmenElem	nelems;			/* elements checked: the metapage's nextElem */
	uint8	   *eflags;			/* per element: slot flags, VERIFY_REACHED */
	uint8	   *elevel;
	uint8	   *esegment;
	char	   *page;			/* one page image */
	char	   *graph;			/* the graph pages of one extent */
	uint8	   *codes;			/* the code area of one extent */
	OmenSlot	slot;			/* one slot, read again */
	OmenSlot	slot2;			/* and again */
	uint8	   *code;			/* one code, read again */
	int64		stalelinks;		/* links to empty slots */
	uint32	   *upper;			/* one element's upper lists */
	OmenElem   *sorted;			/* one neighbour list, sorted */
	Buffer		curbuf;			/* the graph page last read at random */
	/* heapallindexed */
	uint64	   *tids;			/* live elements' heap TIDs, as keys */
	int64		ntids;
	int64		heaptuples;
	int64		missing;
	ItemPointerData firstmissing;
	/* the result */
	int64		live;
	int64		deleted;
	int64		unreachable;
} OmenVerifyState;

#define VerifyFail(vs, what, ...) \
	ereport(ERROR, \
			(errcode(ERRCODE_INDEX_CORRUPTED), \
			 errmsg("index \"%s\" has %s", (vs)->name, (what)), \
			 errdetail(__VA_ARGS__)))

/* Copy a page, read under a share lock, into dest */
static void
VerifyReadPage(OmenVerifyState *vs, BlockNumber blk, char *dest)
{
	Buffer		buf;

	CHECK_FOR_INTERRUPTS();
	buf = ReadBufferExtended(vs->index, MAIN_FORKNUM, blk, RBM_NORMAL, vs->strategy);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	memcpy(dest, BufferGetPage(buf), BLCKSZ);
	UnlockReleaseBuffer(buf);
}

/*
 * The number of blocks of the index, read again when a block at or beyond
 * what we saw at the start is referenced: without the ShareLock, the index
 * grows while we read it.
 */
static bool
VerifyBlockExists(OmenVerifyState *vs, BlockNumber blk)
{
	if (blk == InvalidBlockNumber)
		return false;
	if (blk < vs->nblocks)
		return true;
	if (vs->strict)
		return false;
	return blk < RelationGetNumberOfBlocks(vs->index);
}

/*
 * Check the header and special space of a page image; returns its type, or
 * 0 for a new page (all zeros), which a crash after extending the relation
 * leaves behind.
 */
static int
VerifyPageHeader(OmenVerifyState *vs, BlockNumber blk, Page page)
{
	PageHeader	ph = (PageHeader) page;
	OmenPageOpaque opaque;

	if (PageIsNew(page))
	{
		const uint64 *words = (const uint64 *) page;

		for (int i = 0; i < BLCKSZ / (int) sizeof(uint64); i++)
			if (words[i] != 0)
				VerifyFail(vs, "an invalid page",
						   "Block %u has pd_upper 0 but is not all zeros.", blk);
		return 0;
	}
	if (PageGetPageSize(page) != BLCKSZ ||
		PageGetPageLayoutVersion(page) != PG_PAGE_LAYOUT_VERSION ||
		(ph->pd_flags & ~PD_VALID_FLAG_BITS) != 0 ||
		ph->pd_lower < SizeOfPageHeaderData ||
		ph->pd_lower > ph->pd_upper ||
		ph->pd_upper > ph->pd_special ||
		ph->pd_special != BLCKSZ - MAXALIGN(sizeof(OmenPageOpaqueData)))
		VerifyFail(vs, "an invalid page",
				   "Block %u has pd_lower %u, pd_upper %u, pd_special %u, pd_flags 0x%04X and pd_pagesize_version 0x%04X.",
				   blk, ph->pd_lower, ph->pd_upper, ph->pd_special, ph->pd_flags,
				   ph->pd_pagesize_version);
	opaque = OmenPageGetOpaque(page);
	if (opaque->page_id != OMEN_PAGE_ID)
		VerifyFail(vs, "an invalid page",
				   "Block %u has page id 0x%04X instead of 0x%04X.",
				   blk, opaque->page_id, OMEN_PAGE_ID);
	if (opaque->type < OMEN_PAGE_META || opaque->type > OMEN_PAGE_AUX)
		VerifyFail(vs, "an invalid page",
				   "Block %u has the unknown page type %u.", blk, opaque->type);
	if ((opaque->type == OMEN_PAGE_META) != (blk == OMEN_METAPAGE_BLKNO))
		VerifyFail(vs, "an invalid page",
				   "Block %u has page type %u: the metapage is block 0 and block 0 only.",
				   blk, opaque->type);
	if (opaque->type != OMEN_PAGE_GRAPH && opaque->nslots != 0)
		VerifyFail(vs, "an invalid page",
				   "Block %u of type %u has a slot count of %u.",
				   blk, opaque->type, opaque->nslots);
	if (opaque->type != OMEN_PAGE_AUX && opaque->type != OMEN_PAGE_GRAPH &&
		opaque->nextblkno != InvalidBlockNumber)
		VerifyFail(vs, "an invalid page",
				   "Block %u of type %u links to block %u.",
				   blk, opaque->type, opaque->nextblkno);
	return opaque->type;
}

/*
 * Check the line pointers of an item page (vector or upper): every item
 * normal and within the page, and of a size its type can have.
 */
static void
VerifyItemPage(OmenVerifyState *vs, BlockNumber blk, Page page, uint16 type)
{
	PageHeader	ph = (PageHeader) page;
	OffsetNumber maxoff;
	Size		upperunit = sizeof(uint32) * (vs->meta.m + 1);

	if ((ph->pd_lower - SizeOfPageHeaderData) % sizeof(ItemIdData) != 0)
		VerifyFail(vs, "an invalid page",
				   "Block %u has pd_lower %u, which is not at a line pointer boundary.",
				   blk, ph->pd_lower);
	maxoff = PageGetMaxOffsetNumber(page);
	for (OffsetNumber off = FirstOffsetNumber; off <= maxoff; off++)
	{
		ItemId		iid = PageGetItemId(page, off);
		Size		len = ItemIdGetLength(iid);
		Size		start = ItemIdGetOffset(iid);
		bool		sizeok;

		if (!ItemIdIsNormal(iid) || start < ph->pd_upper || start != MAXALIGN(start) ||
			start + len > ph->pd_special || len == 0)
			VerifyFail(vs, "an invalid page",
					   "Block %u, offset %u: line pointer flags %u, offset %zu and length %zu do not describe an item on the page.",
					   blk, off, ItemIdGetFlags(iid), start, len);
		if (type == OMEN_PAGE_VECTOR)
		{
			OmenVectorChunk chunk = (OmenVectorChunk) PageGetItem(page, iid);

			sizeok = len >= offsetof(OmenVectorChunkData, values) &&
				chunk->nvalues >= 1 &&
				len == offsetof(OmenVectorChunkData, values) + sizeof(float4) * chunk->nvalues;
		}
		else
			sizeok = len % upperunit == 0 && len / upperunit <= OMEN_MAX_LEVEL;
		if (!sizeok)
			VerifyFail(vs, "an invalid page",
					   "Block %u, offset %u: an item of %zu bytes cannot be on a page of type %u.",
					   blk, off, len, type);
	}
}

/*
 * Pass 1: the metapage.  Its magic number and version go through
 * OmenCheckMetaPage, so that omen_verify() refuses an index of another
 * format version with the same error and hint as everything else.
 */
static void
VerifyMetaPage(OmenVerifyState *vs)
{
	OmenMetaPage meta = &vs->meta;
	OmenMetaPageData layout;
	const OmenMetricInfo *mi = OmenGetMetricInfo(vs->index);
	int			typmod = OmenColumnDims(vs->index);
	uint64		nelements = 0;

	VerifyReadPage(vs, OMEN_METAPAGE_BLKNO, vs->page);
	if (VerifyPageHeader(vs, OMEN_METAPAGE_BLKNO, (Page) vs->page) != OMEN_PAGE_META)
		VerifyFail(vs, "an invalid metapage", "Block 0 is a new page.");
	if (((PageHeader) vs->page)->pd_lower <
		MAXALIGN(SizeOfPageHeaderData) + sizeof(OmenMetaPageData))
		VerifyFail(vs, "an invalid metapage",
				   "Block 0 has pd_lower %u, short of the metapage's end.",
				   ((PageHeader) vs->page)->pd_lower);
	memcpy(meta, OmenPageGetMeta((Page) vs->page), sizeof(OmenMetaPageData));
	if (meta->magic != OMEN_MAGIC || meta->version != OMEN_FORMAT_VERSION)
		OmenCheckMetaPage(vs->index, meta);

	if (meta->metric != mi->metric || meta->elemtype != mi->elemtype)
		VerifyFail(vs, "an invalid metapage",
				   "The metapage has metric %d and element type %d, but the operator class has metric %d and element type %d.",
				   meta->metric, meta->elemtype, mi->metric, mi->elemtype);
	if (meta->dims < 0 || meta->dims > OMEN_MAX_DIM || (typmod > 0 && meta->dims != typmod))
		VerifyFail(vs, "an invalid metapage",
				   "The metapage has %d dimensions; the column has %d.", meta->dims, typmod);
	if (meta->m < OMEN_MIN_M || meta->m > OMEN_MAX_M ||
		meta->ef_construction < Max(OMEN_MIN_EF_CONSTRUCTION, 2 * meta->m) ||
		meta->ef_construction > OMEN_MAX_EF_CONSTRUCTION)
		VerifyFail(vs, "an invalid metapage",
				   "The metapage has m = %d and ef_construction = %d.",
				   meta->m, meta->ef_construction);
	if (meta->quantizer < OMEN_QUANT_NONE || meta->quantizer > OMEN_QUANT_BQ ||
		(meta->vectors != OMEN_VECTORS_INDEX && meta->vectors != OMEN_VECTORS_HEAP))
		VerifyFail(vs, "an invalid metapage",
				   "The metapage has quantizer %d and vectors %d.",
				   meta->quantizer, meta->vectors);
	if (meta->slotsize != (int) OmenSlotSize(meta->m) ||
		meta->slotsperpage != OMEN_AREA_SPACE / meta->slotsize)
		VerifyFail(vs, "an invalid metapage",
				   "The metapage has slots of %d bytes, %d per page, where m = %d makes slots of %d bytes, %d per page.",
				   meta->slotsize, meta->slotsperpage, meta->m, (int) OmenSlotSize(meta->m),
				   (int) (OMEN_AREA_SPACE / OmenSlotSize(meta->m)));

	/* the extent shape is a function of the settings above */
	memcpy(&layout, meta, sizeof(OmenMetaPageData));
	OmenComputeLayout(&layout);
	if (layout.codesize != meta->codesize || layout.extentElems != meta->extentElems ||
		layout.extentCodePages != meta->extentCodePages ||
		layout.extentGraphPages != meta->extentGraphPages || layout.paddims != meta->paddims)
		VerifyFail(vs, "an invalid metapage",
				   "The metapage has codes of %d bytes, %d padded dimensions and extents of %d elements on %d code and %d graph pages; its settings make %d, %d, %d, %d and %d.",
				   meta->codesize, meta->paddims, meta->extentElems, meta->extentCodePages,
				   meta->extentGraphPages, layout.codesize, layout.paddims, layout.extentElems,
				   layout.extentCodePages, layout.extentGraphPages);

	/* element and extent counts */
	if (meta->nextElem > OMEN_MAX_ELEMS ||
		(meta->dims == 0 && (meta->nextElem != 0 || meta->nextents != 0)) ||
		(meta->dims > 0 &&
		 (uint64) meta->nextents != ((uint64) meta->nextElem + meta->extentElems - 1) / meta->extentElems) ||
		meta->ndirpages != (meta->nextents + OMEN_DIR_ENTRIES - 1) / OMEN_DIR_ENTRIES ||
		meta->ndirpages > OMEN_MAX_DIR_PAGES)
		VerifyFail(vs, "an invalid metapage",
				   "The metapage has %u elements in %u extents listed on %u directory pages, with %d elements per extent.",
				   meta->nextElem, meta->nextents, meta->ndirpages, meta->extentElems);

	/* segments */
	if (meta->nsegments < 1 || meta->nsegments > OMEN_MAX_SEGMENTS)
		VerifyFail(vs, "an invalid metapage",
				   "The metapage has %u segments.", meta->nsegments);
	for (int i = 0; i < OMEN_MAX_SEGMENTS; i++)
	{
		OmenSegmentData *sd = &meta->segments[i];
		bool		ok;

		if (i >= meta->nsegments)
			ok = sd->entry == OMEN_INVALID_ELEM && sd->entrylevel == -1;
		else if (sd->entry == OMEN_INVALID_ELEM)
			ok = sd->entrylevel == -1;
		else
			ok = sd->entry < meta->nextElem &&
				sd->entrylevel >= 0 && sd->entrylevel <= OMEN_MAX_LEVEL;
		if (!ok)
			VerifyFail(vs, "an invalid metapage",
					   "Segment %d of %u has entry point %u at level %d, with %u elements allocated.",
					   i, meta->nsegments, sd->entry, sd->entrylevel, meta->nextElem);
		if (i < meta->nsegments)
			nelements += sd->nelements;
	}
	if (nelements > meta->nextElem)
		VerifyFail(vs, "an invalid metapage",
				   "The segments count " UINT64_FORMAT " elements, but only %u were allocated.",
				   nelements, meta->nextElem);
	if (meta->centroidBlk != InvalidBlockNumber &&
		(meta->quantizer != OMEN_QUANT_BQ || meta->dims == 0))
		VerifyFail(vs, "an invalid metapage",
				   "The metapage has a centroid at block %u, but quantizer %d and %d dimensions.",
				   meta->centroidBlk, meta->quantizer, meta->dims);

	vs->maxm0 = 2 * meta->m;
	vs->keepvectors = meta->quantizer != OMEN_QUANT_NONE && meta->vectors == OMEN_VECTORS_INDEX;
	vs->nelems = meta->nextElem;
	vs->nextents = meta->nextents;
}

/* Pass 2: every page on its own */
static void
VerifyPages(OmenVerifyState *vs)
{
	OmenMetaPage meta = &vs->meta;

	vs->pagetype = MemoryContextAllocHuge(CurrentMemoryContext, vs->nblocks);
	vs->claimed = MemoryContextAllocHuge(CurrentMemoryContext, vs->nblocks);
	memset(vs->claimed, 0, vs->nblocks);
	vs->pagetype[OMEN_METAPAGE_BLKNO] = OMEN_PAGE_META;
	vs->claimed[OMEN_METAPAGE_BLKNO] = 1;

	for (BlockNumber blk = 1; blk < vs->nblocks; blk++)
	{
		Page		page = (Page) vs->page;
		PageHeader	ph = (PageHeader) page;
		int			type;

		VerifyReadPage(vs, blk, vs->page);
		type = VerifyPageHeader(vs, blk, page);
		vs->pagetype[blk] = type;
		switch (type)
		{
			case OMEN_PAGE_CODE:
			case OMEN_PAGE_DIR:
			case OMEN_PAGE_AUX:
				if (ph->pd_lower != MAXALIGN(SizeOfPageHeaderData) + OMEN_AREA_SPACE)
					VerifyFail(vs, "an invalid page",
							   "Block %u of type %d has pd_lower %u, which does not cover its area.",
							   blk, type, ph->pd_lower);
				break;
			case OMEN_PAGE_GRAPH:
				{
					int			nslots = OmenPageGetOpaque(page)->nslots;

					if (meta->dims == 0 || nslots < 1 || nslots > meta->slotsperpage ||
						ph->pd_lower < MAXALIGN(SizeOfPageHeaderData) + nslots * meta->slotsize)
						VerifyFail(vs, "an invalid page",
								   "Graph page %u has %d slots of %d bytes and pd_lower %u.",
								   blk, nslots, meta->slotsize, ph->pd_lower);
					break;
				}
			case OMEN_PAGE_VECTOR:
			case OMEN_PAGE_UPPER:
				VerifyItemPage(vs, blk, page, type);
				break;
		}
	}
}

/*
 * Pass 3: the extent directory, the centroid's page chain and the insert
 * hints.  Directory entries past the last extent are not looked at: a
 * crash between writing an entry and the metapage leaves one behind, which
 * the next extent overwrites.
 */
static void
VerifyDirectory(OmenVerifyState *vs)
{
	OmenMetaPage meta = &vs->meta;
	int			npages = meta->extentCodePages + meta->extentGraphPages;

	for (int d = 0; d < meta->ndirpages; d++)
	{
		BlockNumber dblk = meta->dirpages[d];

		if (dblk == OMEN_METAPAGE_BLKNO || dblk >= vs->nblocks ||
			vs->pagetype[dblk] != OMEN_PAGE_DIR || vs->claimed[dblk])
			VerifyFail(vs, "an invalid extent directory",
					   "Directory page %d is block %u (of %u), of type %u%s.",
					   d, dblk, vs->nblocks, dblk < vs->nblocks ? vs->pagetype[dblk] : 0,
					   dblk < vs->nblocks && vs->claimed[dblk] ? ", listed twice" : "");
		vs->claimed[dblk] = 1;
	}

	vs->extstart = MemoryContextAllocHuge(CurrentMemoryContext,
										  sizeof(BlockNumber) * Max(vs->nextents, 1));
	for (uint32 x = 0; x < vs->nextents; x++)
	{
		int			d = x / OMEN_DIR_ENTRIES;
		BlockNumber start;

		if (x % OMEN_DIR_ENTRIES == 0)
			VerifyReadPage(vs, meta->dirpages[d], vs->page);
		start = ((BlockNumber *) PageGetContents((Page) vs->page))[x % OMEN_DIR_ENTRIES];
		if (start == OMEN_METAPAGE_BLKNO || start == InvalidBlockNumber ||
			(uint64) start + npages > vs->nblocks)
			VerifyFail(vs, "an invalid extent directory",
					   "Extent %u starts at block %u (directory block %u, entry %u), but the index has %u blocks and an extent %d.",
					   x, start, meta->dirpages[d], x % OMEN_DIR_ENTRIES, vs->nblocks, npages);
		for (int p = 0; p < npages; p++)
		{
			BlockNumber blk = start + p;
			int			want = p < meta->extentCodePages ? OMEN_PAGE_CODE : OMEN_PAGE_GRAPH;

			if (vs->pagetype[blk] != want)
				VerifyFail(vs, "an invalid extent directory",
						   "Block %u, page %d of extent %u, has type %u where type %d was expected.",
						   blk, p, x, vs->pagetype[blk], want);
			if (vs->claimed[blk])
				VerifyFail(vs, "an invalid extent directory",
						   "Block %u, page %d of extent %u, also belongs to another extent or to the directory.",
						   blk, p, x);
			vs->claimed[blk] = 1;
		}
		vs->extstart[x] = start;
	}

	if (meta->centroidBlk != InvalidBlockNumber)
	{
		int			naux = (int) ((sizeof(float) * meta->dims + OMEN_AREA_SPACE - 1) / OMEN_AREA_SPACE);
		BlockNumber blk = meta->centroidBlk;
		Size		left = sizeof(float) * meta->dims;

		for (int i = 0; i < naux; i++)
		{
			const float *values = (const float *) PageGetContents((Page) vs->page);
			int			n = (int) (Min(left, (Size) OMEN_AREA_SPACE) / sizeof(float));

			if (blk == OMEN_METAPAGE_BLKNO || blk >= vs->nblocks ||
				vs->pagetype[blk] != OMEN_PAGE_AUX)
				VerifyFail(vs, "an invalid quantizer page chain",
						   "Page %d of the centroid is block %u (of %u), of type %u.",
						   i, blk, vs->nblocks, blk < vs->nblocks ? vs->pagetype[blk] : 0);
			VerifyReadPage(vs, blk, vs->page);
			for (int j = 0; j < n; j++)
				if (!isfinite(values[j]))
					VerifyFail(vs, "an invalid quantizer page chain",
							   "Block %u holds a centroid value that is not finite.", blk);
			left -= sizeof(float) * n;
			blk = OmenPageGetOpaque((Page) vs->page)->nextblkno;
		}
		if (blk != InvalidBlockNumber)
			VerifyFail(vs, "an invalid quantizer page chain",
					   "The centroid's last page links to block %u.", blk);
	}

	if ((meta->vectorInsertBlk != InvalidBlockNumber &&
		 (meta->vectorInsertBlk >= vs->nblocks ||
		  vs->pagetype[meta->vectorInsertBlk] != OMEN_PAGE_VECTOR)) ||
		(meta->upperInsertBlk != InvalidBlockNumber &&
		 (meta->upperInsertBlk >= vs->nblocks ||
		  vs->pagetype[meta->upperInsertBlk] != OMEN_PAGE_UPPER)))
		VerifyFail(vs, "an invalid metapage",
				   "The insert hints point to blocks %u and %u, of %u.",
				   meta->vectorInsertBlk, meta->upperInsertBlk, vs->nblocks);
}

/* Where an element's slot is */
static void
VerifySlotLoc(OmenVerifyState *vs, OmenElem e, BlockNumber *blk, int *slotno)
{
	uint32		i = e % vs->meta.extentElems;

	*blk = vs->extstart[e / vs->meta.extentElems] + vs->meta.extentCodePages +
		i / vs->meta.slotsperpage;
	*slotno = i % vs->meta.slotsperpage;
}

/*
 * Copy the current image of an element's slot into out, for the checks
 * that read again what a concurrent writer may have changed, and for the
 * reachability walk.  The last graph page read stays pinned.
 */
static void
VerifyReadSlot(OmenVerifyState *vs, OmenElem e, OmenSlot out)
{
	BlockNumber blk;
	int			slotno;
	Page		page;

	VerifySlotLoc(vs, e, &blk, &slotno);
	if (vs->curbuf == InvalidBuffer || BufferGetBlockNumber(vs->curbuf) != blk)
	{
		if (vs->curbuf != InvalidBuffer)
			ReleaseBuffer(vs->curbuf);
		vs->curbuf = InvalidBuffer;
		vs->curbuf = ReadBuffer(vs->index, blk);
	}
	LockBuffer(vs->curbuf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(vs->curbuf);
	if (PageIsNew(page) || PageGetSpecialSize(page) != MAXALIGN(sizeof(OmenPageOpaqueData)) ||
		OmenPageGetOpaque(page)->type != OMEN_PAGE_GRAPH ||
		slotno >= OmenPageGetOpaque(page)->nslots)
	{
		LockBuffer(vs->curbuf, BUFFER_LOCK_UNLOCK);
		VerifyFail(vs, "an invalid page",
				   "Graph page %u, which holds element %u, changed type.", blk, e);
	}
	memcpy(out, OmenPageGetSlot(page, vs->meta.slotsize, slotno), vs->meta.slotsize);
	LockBuffer(vs->curbuf, BUFFER_LOCK_UNLOCK);
}

/* Copy the current image of an element's code into out, page by page */
static void
VerifyReadCode(OmenVerifyState *vs, OmenElem e, uint8 *out)
{
	OmenMetaPage meta = &vs->meta;
	uint64		byte = (uint64) (e % meta->extentElems) * meta->codesize;
	BlockNumber blk = vs->extstart[e / meta->extentElems] + (BlockNumber) (byte / OMEN_AREA_SPACE);
	int			off = (int) (byte % OMEN_AREA_SPACE);
	int			left = meta->codesize;

	while (left > 0)
	{
		Buffer		buf = ReadBuffer(vs->index, blk);
		int			n = Min(left, OMEN_AREA_SPACE - off);

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		memcpy(out, PageGetContents(BufferGetPage(buf)) + off, n);
		UnlockReleaseBuffer(buf);
		out += n;
		left -= n;
		blk++;
		off = 0;
	}
}

/*
 * Read an element's slot, its code, and its slot again, until both slot
 * images agree: then the code read goes with that slot.  For the checks
 * that a concurrent VACUUM or insert can fool when the slot and the code
 * are read apart.  Returns false if the element kept changing.
 */
static bool
VerifyStableRead(OmenVerifyState *vs, OmenElem e, OmenSlot slot, uint8 *code)
{
	for (int attempt = 0; attempt < 8; attempt++)
	{
		VerifyReadSlot(vs, e, slot);
		VerifyReadCode(vs, e, code);
		VerifyReadSlot(vs, e, vs->slot2);
		if (slot->generation == vs->slot2->generation && slot->flags == vs->slot2->flags)
			return true;
	}
	return false;
}

/*
 * Follow an element's vector chain: every chunk an item of a vector page,
 * as many values in all as the index has dimensions, all finite.
 */
static void
VerifyVector(OmenVerifyState *vs, OmenElem e, BlockNumber sblk, int slotno, const OmenSlot slot)
{
	int			dims = vs->meta.dims;
	int			done = 0;
	BlockNumber blk = slot->vecblk;
	OffsetNumber off = slot->vecoff;

	while (done < dims)
	{
		Buffer		buf;
		Page		page;
		ItemId		iid;
		OmenVectorChunk chunk;
		const char *bad = NULL;

		if (blk == OMEN_METAPAGE_BLKNO || !VerifyBlockExists(vs, blk))
			VerifyFail(vs, "an invalid vector",
					   "Block %u, slot %d (element %u): chunk at value %d is at block %u, offset %u, outside the index.",
					   sblk, slotno, e, done, blk, off);
		buf = ReadBuffer(vs->index, blk);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		if (PageIsNew(page) || PageGetSpecialSize(page) != MAXALIGN(sizeof(OmenPageOpaqueData)) ||
			OmenPageGetOpaque(page)->page_id != OMEN_PAGE_ID ||
			OmenPageGetOpaque(page)->type != OMEN_PAGE_VECTOR)
			bad = "is not on a vector page";
		else if (off < FirstOffsetNumber || off > PageGetMaxOffsetNumber(page))
			bad = "is not an item of its page";
		else
		{
			iid = PageGetItemId(page, off);
			chunk = (OmenVectorChunk) PageGetItem(page, iid);
			if (!ItemIdIsNormal(iid) ||
				ItemIdGetOffset(iid) + ItemIdGetLength(iid) > ((PageHeader) page)->pd_special ||
				ItemIdGetLength(iid) < offsetof(OmenVectorChunkData, values) ||
				chunk->nvalues < 1 || chunk->nvalues > dims - done ||
				ItemIdGetLength(iid) < offsetof(OmenVectorChunkData, values) + sizeof(float4) * chunk->nvalues)
				bad = "has the wrong size";
			else if (done == 0 && !(chunk->norm >= 0))
				bad = "has an invalid norm";
			else
			{
				for (int i = 0; i < chunk->nvalues && bad == NULL; i++)
					if (!isfinite(chunk->values[i]))
						bad = "holds a value that is not finite";
				done += chunk->nvalues;
				blk = chunk->nextblk;
				off = chunk->nextoff;
			}
		}
		UnlockReleaseBuffer(buf);
		if (bad != NULL)
			VerifyFail(vs, "an invalid vector",
					   "Block %u, slot %d (element %u): the chunk at block %u, offset %u %s.",
					   sblk, slotno, e, blk, off, bad);
	}
	if (blk != InvalidBlockNumber)
		VerifyFail(vs, "an invalid vector",
				   "Block %u, slot %d (element %u): the vector's last chunk links to block %u, offset %u.",
				   sblk, slotno, e, blk, off);
}

/*
 * Copy an element's upper item (its neighbour lists of levels 1 and up)
 * into vs->upper, checking where it is and that no count exceeds m.
 */
static void
VerifyReadUpper(OmenVerifyState *vs, OmenElem e, BlockNumber sblk, int slotno, const OmenSlot slot)
{
	BlockNumber blk = slot->upperblk;
	OffsetNumber off = slot->upperoff;
	Size		size = OmenUpperItemSize(vs->meta.m, slot->level);
	Buffer		buf;
	Page		page;
	const char *bad = NULL;

	if (blk == OMEN_METAPAGE_BLKNO || !VerifyBlockExists(vs, blk))
		VerifyFail(vs, "an invalid upper neighbour list",
				   "Block %u, slot %d (element %u): the list is at block %u, offset %u, outside the index.",
				   sblk, slotno, e, blk, off);
	buf = ReadBuffer(vs->index, blk);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (PageIsNew(page) || PageGetSpecialSize(page) != MAXALIGN(sizeof(OmenPageOpaqueData)) ||
		OmenPageGetOpaque(page)->page_id != OMEN_PAGE_ID ||
		OmenPageGetOpaque(page)->type != OMEN_PAGE_UPPER)
		bad = "is not on an upper page";
	else if (off < FirstOffsetNumber || off > PageGetMaxOffsetNumber(page))
		bad = "is not an item of its page";
	else
	{
		ItemId		iid = PageGetItemId(page, off);

		if (!ItemIdIsNormal(iid) || ItemIdGetLength(iid) != size ||
			ItemIdGetOffset(iid) + size > ((PageHeader) page)->pd_special)
			bad = "does not have the size of its element's level";
		else
			memcpy(vs->upper, PageGetItem(page, iid), size);
	}
	UnlockReleaseBuffer(buf);
	if (bad != NULL)
		VerifyFail(vs, "an invalid upper neighbour list",
				   "Block %u, slot %d (element %u) of level %u: the item at block %u, offset %u %s.",
				   sblk, slotno, e, slot->level, blk, off, bad);
	for (int level = 1; level <= slot->level; level++)
	{
		uint32		n = OmenUpperList(vs->upper, vs->meta.m, level)[0];

		if (n > (uint32) vs->meta.m ||
			((slot->flags & OMEN_SLOT_NOGRAPH) && n != 0))
			VerifyFail(vs, "an invalid upper neighbour list",
					   "Block %u, slot %d (element %u): level %d at block %u, offset %u, has %u neighbours.",
					   sblk, slotno, e, level, blk, off, n);
	}
}

/*
 * Is the payload of a written code one that a vector encodes to?  Values
 * copied from the vector must be finite (input refuses others); norms and
 * the like, which may overflow to infinity for huge values, must be
 * neither NaN nor negative.  A bq code's bit count must match its bits.
 */
static bool
VerifyCodePayloadOk(OmenVerifyState *vs, const uint8 *code)
{
	OmenMetaPage meta = &vs->meta;
	bool		ok = true;

	switch (meta->quantizer)
	{
		case OMEN_QUANT_NONE:
			ok = VerifyCodeFloat(code, 0) >= 0;
			for (int i = 1; i <= meta->dims && ok; i++)
				ok = isfinite(VerifyCodeFloat(code, i));
			break;
		case OMEN_QUANT_SQ8:
			ok = isfinite(VerifyCodeFloat(code, 0)) && VerifyCodeFloat(code, 0) >= 0 &&
				VerifyCodeFloat(code, 1) >= 0 && VerifyCodeFloat(code, 2) >= 0;
			break;
		case OMEN_QUANT_BQ:
			ok = VerifyCodeFloat(code, 0) >= 0 && !isnan(VerifyCodeFloat(code, 1)) &&
				VerifyCodePopcount(code) ==
				pg_popcount((const char *) code + VERIFY_CODE_HDR + 2 * sizeof(float),
							meta->paddims / 8);
			break;
	}
	return ok;
}

/*
 * Do a slot and a code, read together, agree?  Flags only they may have;
 * a live element's code written and not deleted (a code is written before
 * its slot, and marked deleted, then cleared, only after its slot is
 * marked deleted); no deleted code for an empty slot; a written code that
 * a vector encodes to.  A deleted slot may have any code: VACUUM is on its
 * way to freeing it.
 */
static bool
VerifyElementOk(OmenVerifyState *vs, const OmenSlot slot, const uint8 *code)
{
	uint16		cflags = VerifyCodeFlags(code);

	if ((cflags & ~(OMEN_CODE_VALID | OMEN_CODE_DELETED)) != 0)
		return false;
	if (!(slot->flags & OMEN_SLOT_USED))
		return !(cflags & OMEN_CODE_DELETED);
	if (!(slot->flags & OMEN_SLOT_DELETED) &&
		(cflags & (OMEN_CODE_VALID | OMEN_CODE_DELETED)) != OMEN_CODE_VALID)
		return false;
	return !(cflags & OMEN_CODE_VALID) || VerifyCodePayloadOk(vs, code);
}

static inline uint64
VerifyTidKey(ItemPointer tid)
{
	return ((uint64) ItemPointerGetBlockNumberNoCheck(tid) << 16) |
		ItemPointerGetOffsetNumberNoCheck(tid);
}

/*
 * Check one element: its slot and its code as copied with its extent, and
 * what the slot points to.  Without the ShareLock, a slot and a code that
 * disagree may just have been read on either side of a change (VACUUM
 * marks a slot deleted, then its code; frees the code, then the slot; an
 * insert writes a code, then its slot): they are read again together
 * before anything is reported.
 */
static void
VerifyElement(OmenVerifyState *vs, OmenElem e, BlockNumber blk, int slotno,
			  OmenSlot slot, const uint8 *code)
{
	OmenMetaPage meta = &vs->meta;
	uint16		cflags;

	if (!vs->strict && !VerifyElementOk(vs, slot, code))
	{
		if (!VerifyStableRead(vs, e, vs->slot, vs->code))
			return;				/* busy: left unchecked, as if empty */
		slot = vs->slot;
		code = vs->code;
	}
	cflags = VerifyCodeFlags(code);

	if ((slot->flags & OMEN_SLOT_USED) ?
		(slot->flags & ~(OMEN_SLOT_USED | OMEN_SLOT_DELETED | OMEN_SLOT_NOGRAPH)) != 0 :
		(slot->flags != 0 && slot->flags != OMEN_SLOT_RESERVED && slot->flags != OMEN_SLOT_FREE))
		VerifyFail(vs, "an invalid element slot",
				   "Block %u, slot %d (element %u) has flags 0x%02X.", blk, slotno, e, slot->flags);
	if ((cflags & ~(OMEN_CODE_VALID | OMEN_CODE_DELETED)) != 0)
		VerifyFail(vs, "an invalid code",
				   "Element %u (block %u, slot %d) has code flags 0x%04X.", e, blk, slotno, cflags);
	if ((cflags & OMEN_CODE_DELETED) && !(slot->flags & OMEN_SLOT_DELETED))
		VerifyFail(vs, "an invalid code",
				   "Element %u (block %u, slot %d): its code is marked deleted, its slot (flags 0x%02X) is not.",
				   e, blk, slotno, slot->flags);
	if (!(slot->flags & OMEN_SLOT_USED))
		return;
	if (!(slot->flags & OMEN_SLOT_DELETED) && !(cflags & OMEN_CODE_VALID))
		VerifyFail(vs, "an invalid code",
				   "Element %u (block %u, slot %d) is live, but its code is not written.",
				   e, blk, slotno);
	if ((cflags & OMEN_CODE_VALID) && !VerifyCodePayloadOk(vs, code))
	{
		uint64		byte = (uint64) (e % meta->extentElems) * meta->codesize;

		VerifyFail(vs, "an invalid code",
				   "Element %u: its code at block %u, offset %d, holds values that no vector encodes to.",
				   e, vs->extstart[e / meta->extentElems] + (BlockNumber) (byte / OMEN_AREA_SPACE),
				   (int) (byte % OMEN_AREA_SPACE));
	}

	if (slot->level > OMEN_MAX_LEVEL || slot->n0 > vs->maxm0 ||
		slot->segment >= meta->nsegments)
		VerifyFail(vs, "an invalid element slot",
				   "Block %u, slot %d (element %u) has level %u, %u level-0 neighbours and segment %u; the index allows level %d, %d neighbours and %u segments.",
				   blk, slotno, e, slot->level, slot->n0, slot->segment, OMEN_MAX_LEVEL,
				   vs->maxm0, meta->nsegments);
	if ((slot->flags & OMEN_SLOT_NOGRAPH) &&
		(slot->n0 != 0 || meta->metric != OMEN_METRIC_COSINE))
		VerifyFail(vs, "an invalid element slot",
				   "Block %u, slot %d (element %u) is outside the graph, but has %u neighbours under metric %d.",
				   blk, slotno, e, slot->n0, meta->metric);

	if (!(slot->flags & OMEN_SLOT_DELETED))
	{
		ItemPointer tid = &slot->heaptid;
		BlockNumber hblk = ItemPointerGetBlockNumberNoCheck(tid);
		OffsetNumber hoff = ItemPointerGetOffsetNumberNoCheck(tid);

		if (vs->heapblocks != InvalidBlockNumber && hblk >= vs->heapblocks && !vs->strict &&
			hblk != InvalidBlockNumber)
			vs->heapblocks = RelationGetNumberOfBlocks(vs->heap);
		if (hblk == InvalidBlockNumber || hoff < FirstOffsetNumber ||
			hoff > (vs->heapblocks != InvalidBlockNumber ? MaxHeapTuplesPerPage : MaxOffsetNumber) ||
			(vs->heapblocks != InvalidBlockNumber && hblk >= vs->heapblocks))
			VerifyFail(vs, "an invalid element slot",
					   "Block %u, slot %d (element %u) has heap TID (%u,%u), but table \"%s\" has %u blocks.",
					   blk, slotno, e, hblk, hoff, RelationGetRelationName(vs->heap),
					   vs->heapblocks);
		if (vs->heapallindexed)
			vs->tids[vs->ntids++] = VerifyTidKey(tid);
		vs->live++;
	}
	else
		vs->deleted++;

	if (vs->keepvectors != (slot->vecblk != InvalidBlockNumber))
		VerifyFail(vs, "an invalid element slot",
				   "Block %u, slot %d (element %u) has vector block %u, in an index that %s.",
				   blk, slotno, e, slot->vecblk,
				   vs->keepvectors ? "keeps its vectors" : "does not keep vectors");
	if (slot->vecblk != InvalidBlockNumber)
		VerifyVector(vs, e, blk, slotno, slot);
	if ((slot->level > 0) != (slot->upperblk != InvalidBlockNumber))
		VerifyFail(vs, "an invalid element slot",
				   "Block %u, slot %d (element %u) has level %u and upper list block %u.",
				   blk, slotno, e, slot->level, slot->upperblk);
	if (slot->level > 0)
		VerifyReadUpper(vs, e, blk, slotno, slot);

	vs->eflags[e] = slot->flags;
	vs->elevel[e] = slot->level;
	vs->esegment[e] = slot->segment;
}

/*
 * Pass 4: every element, extent by extent.  The graph pages of an extent
 * are copied before its code pages, so that a slot in use always finds
 * its code written (see VerifyElement).
 */
static void
VerifyElements(OmenVerifyState *vs)
{
	OmenMetaPage meta = &vs->meta;
	int			K = meta->extentElems;
	int			C = meta->extentCodePages;
	int			G = meta->extentGraphPages;
	int			spp = meta->slotsperpage;
	Size		codebytes = (Size) K * meta->codesize;

	if (vs->nextents == 0)
		return;
	vs->graph = palloc((Size) G * BLCKSZ);
	vs->codes = palloc((Size) C * OMEN_AREA_SPACE);

	for (uint32 x = 0; x < vs->nextents; x++)
	{
		BlockNumber start = vs->extstart[x];

		for (int g = 0; g < G; g++)
		{
			Page		page = (Page) (vs->graph + (Size) g * BLCKSZ);
			int			want = Min(spp, K - g * spp);

			VerifyReadPage(vs, start + C + g, (char *) page);
			if (VerifyPageHeader(vs, start + C + g, page) != OMEN_PAGE_GRAPH ||
				OmenPageGetOpaque(page)->nslots != want ||
				(OmenPageGetOpaque(page)->nextblkno != InvalidBlockNumber &&
				 OmenPageGetOpaque(page)->nextblkno != x))
				VerifyFail(vs, "an invalid page",
						   "Graph page %u of extent %u has type %u, %u slots where %d were expected, and extent number %u.",
						   start + C + g, x, OmenPageGetOpaque(page)->type,
						   OmenPageGetOpaque(page)->nslots, want,
						   OmenPageGetOpaque(page)->nextblkno);
		}
		for (int p = 0; p < C; p++)
		{
			VerifyReadPage(vs, start + p, vs->page);
			if (VerifyPageHeader(vs, start + p, (Page) vs->page) != OMEN_PAGE_CODE)
				VerifyFail(vs, "an invalid page",
						   "Code page %u of extent %u changed type.", start + p, x);
			memcpy(vs->codes + (Size) p * OMEN_AREA_SPACE, PageGetContents((Page) vs->page),
				   Min((Size) OMEN_AREA_SPACE, codebytes - (Size) p * OMEN_AREA_SPACE));
		}

		for (int i = 0; i < K; i++)
		{
			uint64		e = (uint64) x * K + i;
			Page		page = (Page) (vs->graph + (Size) (i / spp) * BLCKSZ);
			OmenSlot	slot = OmenPageGetSlot(page, meta->slotsize, i % spp);

			CHECK_FOR_INTERRUPTS();
			if (e >= vs->nelems)
			{
				/* not allocated yet; without the ShareLock it may be now */
				if (vs->strict && slot->flags != 0)
					VerifyFail(vs, "an invalid element slot",
							   "Block %u, slot %d (element " UINT64_FORMAT ") is in use, but only %u elements were allocated.",
							   start + C + i / spp, i % spp, e, vs->nelems);
				continue;
			}
			VerifyElement(vs, (OmenElem) e, start + C + i / spp, i % spp, slot,
						  vs->codes + (Size) i * meta->codesize);
		}
	}
}

/*
 * Check that element e's neighbour t, on its list of the given level, is
 * an element that may be there: allocated and in use, of the same segment,
 * in the graph, and of that level at least.  Without the ShareLock a
 * neighbour newer than our copy of the metapage or of its slot is read
 * again first.
 */
static void
VerifyNeighbor(OmenVerifyState *vs, OmenElem e, int level, OmenElem t,
			   BlockNumber blk, int slotno)
{
	if (t == e)
		VerifyFail(vs, "an invalid neighbour list",
				   "Block %u, slot %d (element %u) lists itself as a neighbour at level %d.",
				   blk, slotno, e, level);
	if (t >= vs->nelems)
	{
		OmenMetaPageData fresh;

		if (!vs->strict && t != OMEN_INVALID_ELEM)
		{
			OmenReadMetaPage(vs->index, &fresh);
			if (t < fresh.nextElem)
				return;			/* added after we began: not ours to check */
		}
		VerifyFail(vs, "an invalid neighbour list",
				   "Block %u, slot %d (element %u) lists element %u at level %d, but only %u elements were allocated.",
				   blk, slotno, e, t, level, vs->nelems);
	}
	if (!(vs->eflags[t] & OMEN_SLOT_USED))
	{
		/*
		 * An empty slot: one written after we read its extent, or a stale
		 * link to a slot VACUUM freed (src/README, "Vacuum").  Searches
		 * skip such links; they are counted, not reported as damage.
		 */
		if (!vs->strict)
		{
			VerifyReadSlot(vs, t, vs->slot);
			if (vs->slot->flags & OMEN_SLOT_USED)
				return;
		}
		vs->stalelinks++;
		return;
	}
	if (vs->esegment[t] != vs->esegment[e] || (vs->eflags[t] & OMEN_SLOT_NOGRAPH) ||
		vs->elevel[t] < level)
		VerifyFail(vs, "an invalid neighbour list",
				   "Block %u, slot %d (element %u of segment %u) lists element %u at level %d, but that element is of segment %u and level %u%s.",
				   blk, slotno, e, vs->esegment[e], t, level, vs->esegment[t], vs->elevel[t],
				   (vs->eflags[t] & OMEN_SLOT_NOGRAPH) ? " and outside the graph" : "");
}

static int
VerifyElemCmp(const void *a, const void *b)
{
	OmenElem	x = *(const OmenElem *) a;
	OmenElem	y = *(const OmenElem *) b;

	return (x > y) - (x < y);
}

/* Check one neighbour list: its count, its elements, no element twice */
static void
VerifyList(OmenVerifyState *vs, OmenElem e, int level, const OmenElem *list, uint32 n,
		   BlockNumber blk, int slotno)
{
	uint32		cap = level == 0 ? vs->maxm0 : vs->meta.m;

	if (n > cap)
		VerifyFail(vs, "an invalid neighbour list",
				   "Block %u, slot %d (element %u) has %u neighbours at level %d, more than %u.",
				   blk, slotno, e, n, level, cap);
	for (uint32 i = 0; i < n; i++)
		VerifyNeighbor(vs, e, level, list[i], blk, slotno);
	memcpy(vs->sorted, list, sizeof(OmenElem) * n);
	qsort(vs->sorted, n, sizeof(OmenElem), VerifyElemCmp);
	for (uint32 i = 1; i < n; i++)
		if (vs->sorted[i] == vs->sorted[i - 1])
			VerifyFail(vs, "an invalid neighbour list",
					   "Block %u, slot %d (element %u) lists element %u twice at level %d.",
					   blk, slotno, e, vs->sorted[i], level);
}

/*
 * Pass 5: every neighbour list, and the entry points.  The slots are read
 * again: lists change as elements are added, and what matters is that
 * every list we read is valid.
 */
static void
VerifyLinks(OmenVerifyState *vs)
{
	OmenMetaPage meta = &vs->meta;
	int			K = meta->extentElems;
	int			spp = meta->slotsperpage;

	for (uint32 x = 0; x < vs->nextents; x++)
	{
		for (int g = 0; g < meta->extentGraphPages; g++)
		{
			BlockNumber blk = vs->extstart[x] + meta->extentCodePages + g;
			Page		page = (Page) vs->page;

			VerifyReadPage(vs, blk, vs->page);
			for (int s = 0; s < Min(spp, K - g * spp); s++)
			{
				uint64		e = (uint64) x * K + g * spp + s;
				OmenSlot	slot = OmenPageGetSlot(page, meta->slotsize, s);

				CHECK_FOR_INTERRUPTS();
				/* elements written since pass 4 are not ours to check */
				if (e >= vs->nelems || !(vs->eflags[e] & OMEN_SLOT_USED))
					continue;
				VerifyList(vs, (OmenElem) e, 0, slot->neighbors, slot->n0, blk, s);
				if (slot->level > 0)
				{
					VerifyReadUpper(vs, (OmenElem) e, blk, s, slot);
					for (int level = 1; level <= slot->level; level++)
					{
						uint32	   *list = OmenUpperList(vs->upper, meta->m, level);

						VerifyList(vs, (OmenElem) e, level, list + 1, list[0], blk, s);
					}
				}
			}
		}
	}

	for (int i = 0; i < meta->nsegments; i++)
	{
		OmenSegmentData *sd = &meta->segments[i];

		OmenElem	entry = sd->entry;
		uint8		flags;
		uint8		segment;
		uint8		level;

		if (entry == OMEN_INVALID_ELEM)
			continue;
		flags = vs->eflags[entry];
		segment = vs->esegment[entry];
		level = vs->elevel[entry];
		if (!vs->strict &&
			(!(flags & OMEN_SLOT_USED) || segment != i || level != sd->entrylevel))
		{
			OmenMetaPageData fresh;

			/* VACUUM replaces an entry point before it frees its slot */
			OmenReadMetaPage(vs->index, &fresh);
			if (fresh.segments[i].entry != entry)
				continue;
			VerifyReadSlot(vs, entry, vs->slot);
			flags = vs->slot->flags;
			segment = vs->slot->segment;
			level = vs->slot->level;
		}
		if (!(flags & OMEN_SLOT_USED) || (flags & OMEN_SLOT_NOGRAPH) ||
			segment != i || level != sd->entrylevel)
			VerifyFail(vs, "an invalid segment entry point",
					   "Segment %d has entry point %u at level %d, but that element has slot flags 0x%02X, segment %u and level %u.",
					   i, entry, sd->entrylevel, flags, segment, level);
	}

	if (vs->stalelinks > 0)
		ereport(NOTICE,
				(errmsg("index \"%s\" has %lld links to empty slots",
						vs->name, (long long) vs->stalelinks),
				 errdetail("Searches skip them.  They are left by an insert that links to an element VACUUM frees meanwhile, and by a repair that VACUUM gives up because an insert changed the list.")));
}

/* Mark an element reached and queue it, if it is in the graph and new */
static inline void
VerifyReach(OmenVerifyState *vs, OmenElem t, OmenElem *queue, uint32 *tail)
{
	if (t < vs->nelems &&
		(vs->eflags[t] & (OMEN_SLOT_USED | OMEN_SLOT_NOGRAPH | VERIFY_REACHED)) == OMEN_SLOT_USED)
	{
		vs->eflags[t] |= VERIFY_REACHED;
		queue[(*tail)++] = t;
	}
}

/*
 * Pass 6: walk the graph breadth first from every segment's entry point,
 * following the lists of all levels, and count the live elements that are
 * in the graph but were not reached.  Deleted elements are walked through,
 * as searches do.
 */
static void
VerifyReachability(OmenVerifyState *vs)
{
	OmenMetaPage meta = &vs->meta;
	OmenElem   *queue;
	uint32		head = 0;
	uint32		tail = 0;

	if (vs->nelems == 0)
		return;
	queue = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(OmenElem) * vs->nelems);
	for (int i = 0; i < meta->nsegments; i++)
		if (meta->segments[i].entry != OMEN_INVALID_ELEM)
			VerifyReach(vs, meta->segments[i].entry, queue, &tail);

	while (head < tail)
	{
		OmenElem	e = queue[head++];
		OmenSlot	slot = vs->slot;

		CHECK_FOR_INTERRUPTS();
		VerifyReadSlot(vs, e, slot);
		for (int i = 0; i < Min(slot->n0, vs->maxm0); i++)
			VerifyReach(vs, slot->neighbors[i], queue, &tail);
		if (slot->level > 0 && slot->level <= OMEN_MAX_LEVEL)
		{
			BlockNumber blk;
			int			slotno;

			VerifySlotLoc(vs, e, &blk, &slotno);
			VerifyReadUpper(vs, e, blk, slotno, slot);
			for (int level = 1; level <= slot->level; level++)
			{
				uint32	   *list = OmenUpperList(vs->upper, meta->m, level);

				for (uint32 j = 0; j < Min(list[0], (uint32) meta->m); j++)
					VerifyReach(vs, list[j + 1], queue, &tail);
			}
		}
	}
	for (OmenElem e = 0; e < vs->nelems; e++)
		if ((vs->eflags[e] & (OMEN_SLOT_USED | OMEN_SLOT_DELETED | OMEN_SLOT_NOGRAPH | VERIFY_REACHED)) ==
			OMEN_SLOT_USED)
			vs->unreachable++;
	pfree(queue);
}

static int
VerifyKeyCmp(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

/* Called by the table scan of pass 7 for every row the index should hold */
static void
VerifyHeapCallback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
				   bool tupleIsAlive, void *state)
{
	OmenVerifyState *vs = (OmenVerifyState *) state;
	uint64		key = VerifyTidKey(tid);

	if (isnull[0])
		return;
	vs->heaptuples++;
	if (bsearch(&key, vs->tids, vs->ntids, sizeof(uint64), VerifyKeyCmp) == NULL)
	{
		if (vs->missing == 0)
			vs->firstmissing = *tid;
		vs->missing++;
	}
}

/*
 * Pass 7: every row of the table that the index should hold (visible to
 * our snapshot, matching a partial index's predicate, with a value that
 * is not null) must have a live element.  The table is read the way the
 * first scan of CREATE INDEX CONCURRENTLY reads it; HOT chains give the
 * TID of their root, which is what an element holds.
 */
static void
VerifyHeap(OmenVerifyState *vs, Snapshot snapshot)
{
	IndexInfo  *indexinfo = BuildIndexInfo(vs->index);
	TableScanDesc scan;

	qsort(vs->tids, vs->ntids, sizeof(uint64), VerifyKeyCmp);
	for (int64 i = 1; i < vs->ntids; i++)
		if (vs->tids[i] == vs->tids[i - 1])
			VerifyFail(vs, "two elements for one row",
					   "Heap TID (%u,%u) is held by two live elements.",
					   (BlockNumber) (vs->tids[i] >> 16), (OffsetNumber) (vs->tids[i] & 0xFFFF));

	scan = table_beginscan_strat(vs->heap, snapshot, 0, NULL, true, true);
	indexinfo->ii_Concurrent = true;
	table_index_build_scan(vs->heap, vs->index, indexinfo, true, false,
						   VerifyHeapCallback, (void *) vs, scan);
	if (vs->missing > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("heap tuple (%u,%u) from table \"%s\" is not in index \"%s\"",
						ItemPointerGetBlockNumber(&vs->firstmissing),
						ItemPointerGetOffsetNumber(&vs->firstmissing),
						RelationGetRelationName(vs->heap), vs->name),
				 errdetail("%lld of the table's %lld rows with a value are missing from the index.",
						   (long long) vs->missing, (long long) vs->heaptuples),
				 errhint("Run REINDEX INDEX %s.", quote_identifier(vs->name))));
}

/* Run every pass over an opened and locked index */
static void
VerifyIndex(OmenVerifyState *vs)
{
	Snapshot	snapshot = InvalidSnapshot;

	vs->page = palloc(BLCKSZ);
	vs->strategy = GetAccessStrategy(BAS_BULKREAD);
	vs->curbuf = InvalidBuffer;

	/*
	 * The rows the table scan will see must all have been indexed before we
	 * read the elements: take the snapshot first (amcheck does the same).
	 */
	if (vs->heapallindexed)
	{
		snapshot = RegisterSnapshot(GetTransactionSnapshot());
		if (IsolationUsesXactSnapshot() && vs->index->rd_index->indcheckxmin &&
			!TransactionIdPrecedes(HeapTupleHeaderGetXmin(vs->index->rd_indextuple->t_data),
								   snapshot->xmin))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("index \"%s\" cannot be verified using transaction snapshot",
							vs->name)));
	}

	VerifyMetaPage(vs);
	vs->nblocks = RelationGetNumberOfBlocks(vs->index);
	vs->heapblocks = vs->heap->rd_rel->relam == HEAP_TABLE_AM_OID ?
		RelationGetNumberOfBlocks(vs->heap) : InvalidBlockNumber;
	VerifyPages(vs);
	VerifyDirectory(vs);

	vs->eflags = MemoryContextAllocHuge(CurrentMemoryContext, Max(vs->nelems, 1));
	vs->elevel = MemoryContextAllocHuge(CurrentMemoryContext, Max(vs->nelems, 1));
	vs->esegment = MemoryContextAllocHuge(CurrentMemoryContext, Max(vs->nelems, 1));
	memset(vs->eflags, 0, Max(vs->nelems, 1));
	memset(vs->elevel, 0, Max(vs->nelems, 1));
	memset(vs->esegment, 0, Max(vs->nelems, 1));
	vs->slot = palloc(vs->meta.slotsize);
	vs->slot2 = palloc(vs->meta.slotsize);
	vs->code = palloc(Max(vs->meta.codesize, 1));
	vs->upper = palloc(OmenUpperItemSize(vs->meta.m, OMEN_MAX_LEVEL));
	vs->sorted = palloc(sizeof(OmenElem) * vs->maxm0);
	if (vs->heapallindexed)
		vs->tids = MemoryContextAllocHuge(CurrentMemoryContext,
										  sizeof(uint64) * Max(vs->nelems, 1));

	VerifyElements(vs);
	VerifyLinks(vs);
	VerifyReachability(vs);
	if (vs->curbuf != InvalidBuffer)
		ReleaseBuffer(vs->curbuf);
	vs->curbuf = InvalidBuffer;
	if (vs->heapallindexed)
	{
		VerifyHeap(vs, snapshot);
		UnregisterSnapshot(snapshot);
	}
	FreeAccessStrategy(vs->strategy);
}

/*
 * omen_verify(index regclass, heapallindexed boolean DEFAULT false):
 * check an omen index, raising ERRCODE_INDEX_CORRUPTED at the first damage
 * found, and return what it holds: live and deleted elements, live
 * elements no search can reach, segments, pages.
 *
 * The table is locked before the index, as everywhere else, and anything
 * the table scan evaluates (index expressions, a partial index's
 * predicate) runs as the table's owner, in a security-restricted
 * operation, as amcheck does.  Execution is revoked from PUBLIC.
 */
PG_FUNCTION_INFO_V1(omen_verify);
Datum
omen_verify(PG_FUNCTION_ARGS)
{
	Oid			indexoid = PG_GETARG_OID(0);
	bool		heapallindexed = PG_NARGS() > 1 && !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	LOCKMODE	lockmode = heapallindexed ? ShareLock : AccessShareLock;
	OmenVerifyState vs;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false};
	Oid			heapoid;
	Relation	heap = NULL;
	Relation	index;
	Oid			save_userid = InvalidOid;
	int			save_sec_context = -1;
	int			save_nestlevel = -1;
	MemoryContext cxt;
	MemoryContext old;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/*
	 * Lock the table first.  Without a lock IndexGetRelation may race with
	 * a DROP INDEX, so the answer is checked again once the index is
	 * locked; an OID that is no index at all fails in OmenOpenIndex.
	 */
	heapoid = IndexGetRelation(indexoid, true);
	if (OidIsValid(heapoid))
	{
		heap = table_open(heapoid, lockmode);
		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(heap->rd_rel->relowner,
							   save_sec_context | SECURITY_RESTRICTED_OPERATION);
		save_nestlevel = NewGUCNestLevel();
	}
	index = OmenOpenIndex(indexoid, lockmode);
	if (heap == NULL || heapoid != IndexGetRelation(indexoid, false))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("could not open the table of index \"%s\"",
						RelationGetRelationName(index))));

	memset(&vs, 0, sizeof(vs));
	vs.index = index;
	vs.heap = heap;
	vs.name = RelationGetRelationName(index);
	vs.strict = lockmode == ShareLock;
	vs.heapallindexed = heapallindexed;

	/* an unlogged index has no main fork to read on a standby */
	if (index->rd_rel->relpersistence == RELPERSISTENCE_UNLOGGED && RecoveryInProgress())
		ereport(DEBUG1,
				(errmsg_internal("cannot verify unlogged index \"%s\" during recovery, skipping",
								 vs.name)));
	else
	{
		cxt = AllocSetContextCreate(CurrentMemoryContext, "omen verify", ALLOCSET_DEFAULT_SIZES);
		old = MemoryContextSwitchTo(cxt);
		VerifyIndex(&vs);
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
	}

	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	index_close(index, lockmode);
	table_close(heap, lockmode);

	values[0] = Int64GetDatum(vs.live);
	values[1] = Int64GetDatum(vs.deleted);
	values[2] = Int64GetDatum(vs.unreachable);
	values[3] = Int32GetDatum(vs.meta.nsegments);
	values[4] = Int64GetDatum((int64) vs.nblocks);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
