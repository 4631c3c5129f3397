/*-------------------------------------------------------------------------
 *
 * omenbuild.c
 *	  CREATE INDEX for omen: build HNSW graphs in memory, then write them
 *	  out as segments of fixed-size slots, vector pages and upper pages.
 *
 * The graph is built in backend memory, where following a link costs a
 * pointer and not a buffer lookup, and written out once.  When the graph
 * outgrows maintenance_work_mem it is written out as a finished segment
 * and a new, empty graph is started, so a build never needs more memory
 * than it was given; scans search every segment.
 *
 * Pages are written without WAL and logged as full images at the end
 * (log_newpage_range), the pattern GIN and SP-GiST builds use: cheaper
 * than a record per change, and just as crash-safe, because a crash before
 * commit throws the whole relfilenode away.
 *
 * IDENTIFICATION
 *	  src/omenbuild.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/tableam.h"
#include "access/xloginsert.h"
#include "catalog/index.h"
#include "common/pg_prng.h"
#include "commands/progress.h"
#include "miscadmin.h"
#include "omen.h"
#include "storage/bufmgr.h"
#include "storage/smgr.h"
#include "utils/backend_progress.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* Build phases shown in pg_stat_progress_create_index */
#define OMEN_PHASE_LOAD		2
#define OMEN_PHASE_WRITE	3

/* Vectors are kept in chunks of this many elements, to avoid huge copies */
#define OMEN_BUILD_CHUNK	4096

typedef struct OmenBuildElem
{
	ItemPointerData tid;
	uint8		level;
	bool		nograph;		/* zero vector under cosine: not linked */
	float		norm;
	int32	   *nbrs;			/* per level: count, then the ids */
	/* where it was written */
	BlockNumber vecblk;
	OffsetNumber vecoff;
	BlockNumber upperblk;
	OffsetNumber upperoff;
} OmenBuildElem;

typedef struct OmenBuildState
{
	Relation	heap;
	Relation	index;
	IndexInfo  *indexInfo;

	OmenMetric	metric;
	int			dims;
	int			m;
	int			maxm0;
	int			efc;
	double		ml;
	int			slotsize;
	int			slotsperpage;

	/* the graph being built */
	MemoryContext graphCtx;
	OmenBuildElem *elems;
	float	  **vchunks;
	int			nelems;
	int			cap;
	int			entry;
	int			maxlevel;
	Size		memused;
	Size		memlimit;

	/* search scratch */
	uint32	   *visitmark;
	uint32		epoch;
	OmenHeap	C;
	OmenHeap	W;
	OmenCand   *cands;
	const float **cvec;
	float	   *cnorm;
	float	   *cdist;
	int		   *keep;

	/* results */
	double		reltuples;
	double		indtuples;

	/*
	 * The metapage being built: layout, segments, extent directory.  It is
	 * written at the end.
	 */
	OmenMetaPageData meta;
	OmenIndexInfo info;			/* for encoding codes */

	MemoryContext tmpCtx;
} OmenBuildState;

static inline float *
BuildVec(OmenBuildState *bs, int i)
{
	return bs->vchunks[i / OMEN_BUILD_CHUNK] + (Size) (i % OMEN_BUILD_CHUNK) * bs->dims;
}

static inline int32 *
BuildList(OmenBuildState *bs, int i, int level)
{
	int32	   *p = bs->elems[i].nbrs;

	if (level == 0)
		return p;
	return p + (bs->maxm0 + 1) + (level - 1) * (bs->m + 1);
}

static inline float
BuildDist(OmenBuildState *bs, const OmenQuery *q, int j)
{
	return OmenDistance(bs->metric, q, BuildVec(bs, j), bs->elems[j].norm, bs->dims);
}

/*
 * Search one level of the in-memory graph: the classic HNSW search with a
 * candidate min-heap C and a result max-heap W of size ef.  W is left in
 * bs->W.
 */
static void
BuildSearchLayer(OmenBuildState *bs, const OmenQuery *q, int level, int ef)
{
	uint32		epoch = bs->epoch;

	/* bs->W holds the entry points on entry; seed C from them */
	bs->C.n = 0;
	for (int i = 0; i < bs->W.n; i++)
	{
		bs->visitmark[bs->W.items[i].elem] = epoch;
		OmenHeapPush(&bs->C, bs->W.items[i].dist, bs->W.items[i].elem);
	}

	while (bs->C.n > 0)
	{
		OmenCand	c = OmenHeapPop(&bs->C);
		int32	   *list;

		if (bs->W.n >= ef && OmenDistLess(OmenHeapTop(&bs->W)->dist, c.dist))
			break;
		list = BuildList(bs, c.elem, level);
		for (int i = 1; i <= list[0]; i++)
		{
			int			n = list[i];
			float		d;

			if (bs->visitmark[n] == epoch)
				continue;
			bs->visitmark[n] = epoch;
			if (i + 1 <= list[0])
				__builtin_prefetch(BuildVec(bs, list[i + 1]));
			d = BuildDist(bs, q, n);
			if (bs->W.n < ef || OmenDistLess(d, OmenHeapTop(&bs->W)->dist))
			{
				OmenHeapPush(&bs->C, d, n);
				OmenHeapPush(&bs->W, d, n);
				if (bs->W.n > ef)
					OmenHeapPop(&bs->W);
			}
		}
	}
}

/*
 * Choose up to maxkeep of ncand candidates (in bs->cands, sorted) with the
 * heuristic, writing them as the list of element "base".
 */
static void
BuildSelect(OmenBuildState *bs, int ncand, int maxkeep, int32 *list)
{
	int			nkeep;

	for (int i = 0; i < ncand; i++)
	{
		bs->cdist[i] = bs->cands[i].dist;
		bs->cvec[i] = BuildVec(bs, bs->cands[i].elem);
		bs->cnorm[i] = bs->elems[bs->cands[i].elem].norm;
	}
	nkeep = OmenSelectNeighbors(bs->metric, bs->dims, ncand, bs->cdist,
								bs->cvec, bs->cnorm, maxkeep, bs->keep);
	list[0] = nkeep;
	for (int i = 0; i < nkeep; i++)
		list[i + 1] = bs->cands[bs->keep[i]].elem;
}

/* Add a link from n to q at a level, pruning n's list if it is full */
static void
BuildAddLink(OmenBuildState *bs, int n, int q, float dist, int level)
{
	int32	   *list = BuildList(bs, n, level);
	int			cap = level == 0 ? bs->maxm0 : bs->m;
	OmenQuery	nq;

	if (list[0] < cap)
	{
		list[++list[0]] = q;
		return;
	}

	nq.values = BuildVec(bs, n);
	nq.norm = bs->elems[n].norm;
	for (int i = 0; i < list[0]; i++)
	{
		bs->cands[i].elem = list[i + 1];
		bs->cands[i].dist = BuildDist(bs, &nq, list[i + 1]);
	}
	bs->cands[list[0]].elem = q;
	bs->cands[list[0]].dist = dist;
	qsort(bs->cands, list[0] + 1, sizeof(OmenCand), OmenCandCmp);
	BuildSelect(bs, list[0] + 1, cap, list);
}

/* Link element q into the in-memory graph */
static void
BuildInsertElement(OmenBuildState *bs, int q)
{
	OmenBuildElem *e = &bs->elems[q];
	OmenQuery	query;
	int			ep;
	float		epdist;

	if (e->nograph)
		return;
	if (bs->entry < 0)
	{
		bs->entry = q;
		bs->maxlevel = e->level;
		return;
	}

	query.values = BuildVec(bs, q);
	query.norm = e->norm;
	ep = bs->entry;
	epdist = BuildDist(bs, &query, ep);

	/* greedy descent through the levels above the new element's */
	for (int level = bs->maxlevel; level > e->level; level--)
	{
		bool		changed = true;

		while (changed)
		{
			int32	   *list = BuildList(bs, ep, level);

			changed = false;
			for (int i = 1; i <= list[0]; i++)
			{
				float		d = BuildDist(bs, &query, list[i]);

				if (OmenDistLess(d, epdist))
				{
					ep = list[i];
					epdist = d;
					changed = true;
				}
			}
		}
	}

	bs->W.n = 0;
	OmenHeapPush(&bs->W, epdist, ep);
	for (int level = Min(e->level, bs->maxlevel); level >= 0; level--)
	{
		int			ncand;
		int32	   *list = BuildList(bs, q, level);

		bs->epoch++;
		if (bs->epoch == 0)
		{
			memset(bs->visitmark, 0, sizeof(uint32) * bs->cap);
			bs->epoch = 1;
		}
		BuildSearchLayer(bs, &query, level, bs->efc);

		ncand = bs->W.n;
		memcpy(bs->cands, bs->W.items, sizeof(OmenCand) * ncand);
		qsort(bs->cands, ncand, sizeof(OmenCand), OmenCandCmp);
		BuildSelect(bs, ncand, level == 0 ? bs->maxm0 : bs->m, list);
		for (int i = 1; i <= list[0]; i++)
		{
			int			n = list[i];

			/* recompute: BuildAddLink reuses bs->cands */
			BuildAddLink(bs, n, q, BuildDist(bs, &query, n), level);
		}
		/* W stays as the entry points of the next level down */
	}

	if (e->level > bs->maxlevel)
	{
		bs->entry = q;
		bs->maxlevel = e->level;
	}
}

/* Bytes one element costs in memory */
static Size
BuildElemSize(OmenBuildState *bs, int level)
{
	return sizeof(OmenBuildElem) + sizeof(uint32) + sizeof(float) * bs->dims +
		sizeof(int32) * ((bs->maxm0 + 1) + level * (bs->m + 1));
}

static void
BuildResetGraph(OmenBuildState *bs)
{
	MemoryContextReset(bs->graphCtx);
	bs->cap = 1024;
	bs->nelems = 0;
	bs->elems = MemoryContextAllocHuge(bs->graphCtx, sizeof(OmenBuildElem) * bs->cap);
	bs->visitmark = MemoryContextAllocHuge(bs->graphCtx, sizeof(uint32) * bs->cap);
	memset(bs->visitmark, 0, sizeof(uint32) * bs->cap);
	bs->vchunks = MemoryContextAllocZero(bs->graphCtx, sizeof(float *) * (bs->cap / OMEN_BUILD_CHUNK + 1));
	bs->epoch = 1;
	bs->entry = -1;
	bs->maxlevel = -1;
	bs->memused = 0;
}

/* ---- writing a segment ---- */

/* A new page at the end of the index, initialized, pinned and locked */
static Buffer
BuildNewPage(OmenBuildState *bs, uint16 type)
{
	Buffer		buf = ReadBufferExtended(bs->index, MAIN_FORKNUM, P_NEW, RBM_NORMAL, NULL);

	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	if (type == OMEN_PAGE_CODE || type == OMEN_PAGE_DIR || type == OMEN_PAGE_AUX)
		OmenInitAreaPage(BufferGetPage(buf), type);
	else
		OmenInitPage(BufferGetPage(buf), type);
	return buf;
}

static void
BuildFinishPage(Buffer buf)
{
	MarkBufferDirty(buf);
	UnlockReleaseBuffer(buf);
}

/*
 * Add an item to the open page of a kind (vector or upper), starting a new
 * page when it does not fit.  Returns the item's location.
 */
static void
BuildAddItem(OmenBuildState *bs, Buffer *cur, uint16 type, Item item, Size size,
			 BlockNumber *blk, OffsetNumber *off, bool newpage)
{
	if (*cur != InvalidBuffer &&
		(newpage || PageGetFreeSpace(BufferGetPage(*cur)) < MAXALIGN(size)))
	{
		BuildFinishPage(*cur);
		*cur = InvalidBuffer;
	}
	if (*cur == InvalidBuffer)
		*cur = BuildNewPage(bs, type);
	*off = PageAddItem(BufferGetPage(*cur), item, size, InvalidOffsetNumber, false, false);
	if (*off == InvalidOffsetNumber)
		elog(ERROR, "failed to add item to index page in \"%s\"",
			 RelationGetRelationName(bs->index));
	*blk = BufferGetBlockNumber(*cur);
}

/*
 * Write one vector as a chain of chunks.  The chunks are written last to
 * first so that each one knows its successor.
 */
static void
BuildWriteVector(OmenBuildState *bs, Buffer *cur, const float *v, float norm,
				 BlockNumber *blk, OffsetNumber *off)
{
	int			dims = bs->meta.dims;
	int			maxvals = OMEN_MAX_CHUNK_VALUES;
	int			nchunks = (dims + maxvals - 1) / maxvals;
	BlockNumber nextblk = InvalidBlockNumber;
	OffsetNumber nextoff = InvalidOffsetNumber;
	OmenVectorChunk chunk = palloc(offsetof(OmenVectorChunkData, values) +
								   sizeof(float4) * Min(dims, maxvals));

	for (int c = nchunks - 1; c >= 0; c--)
	{
		int			start = c * maxvals;
		int			n = Min(maxvals, dims - start);
		Size		size = offsetof(OmenVectorChunkData, values) + sizeof(float4) * n;

		chunk->nextblk = nextblk;
		chunk->nextoff = nextoff;
		chunk->nvalues = n;
		chunk->norm = c == 0 ? norm : 0;
		memcpy(chunk->values, v + start, sizeof(float4) * n);
		/* a chunk that fills a page gets a page of its own */
		BuildAddItem(bs, cur, OMEN_PAGE_VECTOR, (Item) chunk, size, &nextblk, &nextoff,
					 nchunks > 1);
	}
	*blk = nextblk;
	*off = nextoff;
	pfree(chunk);
}

/*
 * Allocate the next extent: its code pages and graph pages, consecutive,
 * and its entry in the directory.
 */
static void
BuildNewExtent(OmenBuildState *bs)
{
	OmenMetaPage meta = &bs->meta;
	uint32		x = meta->nextents;
	BlockNumber start = InvalidBlockNumber;
	int			d = x / OMEN_DIR_ENTRIES;
	Buffer		buf;

	if (d >= OMEN_MAX_DIR_PAGES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("index \"%s\" has too many elements", RelationGetRelationName(bs->index))));

	for (int p = 0; p < meta->extentCodePages + meta->extentGraphPages; p++)
	{
		bool		code = p < meta->extentCodePages;

		buf = BuildNewPage(bs, code ? OMEN_PAGE_CODE : OMEN_PAGE_GRAPH);
		if (p == 0)
			start = BufferGetBlockNumber(buf);
		else if (BufferGetBlockNumber(buf) != start + p)
			elog(ERROR, "unexpected block number during omen build");
		if (!code)
		{
			Page		page = BufferGetPage(buf);
			int			g = p - meta->extentCodePages;
			int			nslots = Min(meta->slotsperpage,
									 meta->extentElems - g * meta->slotsperpage);

			OmenPageGetOpaque(page)->nslots = nslots;
			OmenPageGetOpaque(page)->nextblkno = x;	/* graph pages: extent */
			((PageHeader) page)->pd_lower += nslots * meta->slotsize;
		}
		BuildFinishPage(buf);
	}

	if (x % OMEN_DIR_ENTRIES == 0)
	{
		buf = BuildNewPage(bs, OMEN_PAGE_DIR);
		meta->dirpages[meta->ndirpages++] = BufferGetBlockNumber(buf);
		bs->info.ndirpages = meta->ndirpages;
		bs->info.dirpages[d] = BufferGetBlockNumber(buf);
	}
	else
	{
		buf = ReadBuffer(bs->index, meta->dirpages[d]);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	}
	((BlockNumber *) PageGetContents(BufferGetPage(buf)))[x % OMEN_DIR_ENTRIES] = start;
	BuildFinishPage(buf);
	meta->nextents++;
}

/* Write bytes into the code area starting at loc, across pages if needed */
static void
BuildWriteCode(OmenBuildState *bs, OmenCodeLoc loc, const uint8 *data, int len)
{
	while (len > 0)
	{
		Buffer		buf = ReadBuffer(bs->index, loc.blk);
		int			n = Min(len, OMEN_AREA_SPACE - loc.off);

		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		memcpy(PageGetContents(BufferGetPage(buf)) + loc.off, data, n);
		BuildFinishPage(buf);
		data += n;
		len -= n;
		loc.blk++;
		loc.off = 0;
	}
}

/* Write the centroid (for bq) as a chain of aux pages */
static BlockNumber
BuildWriteAux(OmenBuildState *bs, const float *values, int n)
{
	const char *src = (const char *) values;
	Size		left = sizeof(float) * n;
	BlockNumber first = InvalidBlockNumber;
	Buffer		prev = InvalidBuffer;

	while (left > 0)
	{
		Buffer		buf = BuildNewPage(bs, OMEN_PAGE_AUX);
		Size		chunk = Min(left, (Size) OMEN_AREA_SPACE);

		memcpy(PageGetContents(BufferGetPage(buf)), src, chunk);
		if (prev != InvalidBuffer)
		{
			OmenPageGetOpaque(BufferGetPage(prev))->nextblkno = BufferGetBlockNumber(buf);
			BuildFinishPage(prev);
		}
		else
			first = BufferGetBlockNumber(buf);
		prev = buf;
		src += chunk;
		left -= chunk;
	}
	if (prev != InvalidBuffer)
		BuildFinishPage(prev);
	return first;
}

/*
 * The centroid of the in-memory vectors (normalised first for cosine),
 * which centres the 1-bit codes.  Computed from the first segment and
 * kept for the life of the index.
 */
static void
BuildCentroid(OmenBuildState *bs)
{
	int			dims = bs->meta.dims;
	double	   *sum = palloc0(sizeof(double) * dims);
	float	   *c = MemoryContextAlloc(bs->info.mcxt, sizeof(float) * dims);
	int			n = 0;

	for (int i = 0; i < bs->nelems; i++)
	{
		const float *v = BuildVec(bs, i);
		float		norm = bs->elems[i].norm;

		if (bs->meta.metric == OMEN_METRIC_COSINE)
		{
			if (norm == 0)
				continue;
			for (int j = 0; j < dims; j++)
				sum[j] += v[j] / norm;
		}
		else
			for (int j = 0; j < dims; j++)
				sum[j] += v[j];
		n++;
	}
	for (int j = 0; j < dims; j++)
		c[j] = n > 0 ? (float) (sum[j] / n) : 0;
	pfree(sum);
	bs->info.centroid = c;
	bs->meta.centroidBlk = BuildWriteAux(bs, c, dims);
	bs->info.centroidBlk = bs->meta.centroidBlk;
}

/*
 * The order to number the elements of the in-memory graph in: breadth
 * first over level 0 from the entry point, so that the neighbours an
 * element links to when it is expanded mostly sit together, and a search
 * reads their codes from few pages.  Returns order[] (position -> element)
 * and fills pos[] (element -> position).
 */
static int *
BuildOrder(OmenBuildState *bs, int *pos)
{
	int			n = bs->nelems;
	int		   *order = palloc(sizeof(int) * Max(n, 1));
	int			head = 0;
	int			tail = 0;
	int			next = 0;

	for (int i = 0; i < n; i++)
		pos[i] = -1;
	while (tail < n)
	{
		if (head == tail)
		{
			int			start = (tail == 0 && bs->entry >= 0) ? bs->entry : -1;

			if (start < 0)
			{
				while (pos[next] >= 0)
					next++;
				start = next;
			}
			pos[start] = tail;
			order[tail++] = start;
		}
		while (head < tail)
		{
			int32	   *list = BuildList(bs, order[head++], 0);

			for (int j = 1; j <= list[0]; j++)
			{
				if (pos[list[j]] < 0)
				{
					pos[list[j]] = tail;
					order[tail++] = list[j];
				}
			}
		}
	}
	return order;
}

/*
 * Write the in-memory graph out as a new segment.  Its elements get the
 * next element numbers, in BuildOrder's order; extents are allocated as
 * the numbers need them.
 */
static void
BuildWriteSegment(OmenBuildState *bs)
{
	OmenMetaPage meta = &bs->meta;
	int			seg = meta->nsegments;
	OmenElem	base = meta->nextElem;
	Buffer		vbuf = InvalidBuffer;
	Buffer		ubuf = InvalidBuffer;
	uint32	   *upper = palloc(OmenUpperItemSize(meta->m, OMEN_MAX_LEVEL));
	uint8	   *code;
	OmenSegmentData *sd = &meta->segments[seg];
	bool		keepvectors = meta->quantizer != OMEN_QUANT_NONE &&
		meta->vectors == OMEN_VECTORS_INDEX;
	int		   *pos;
	int		   *order;

	if (seg >= OMEN_MAX_SEGMENTS)
		elog(ERROR, "too many segments in omen build");
	if ((uint64) base + bs->nelems > OMEN_MAX_ELEMS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("index \"%s\" has too many elements", RelationGetRelationName(bs->index))));

	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, OMEN_PHASE_WRITE);

	if (meta->dims > 0 && meta->codesize == 0)
	{
		OmenComputeLayout(meta);
		bs->info.dims = meta->dims;
		bs->info.codesize = meta->codesize;
		bs->info.K = meta->extentElems;
		bs->info.C = meta->extentCodePages;
		bs->info.G = meta->extentGraphPages;
		bs->info.paddims = meta->paddims;
	}
	if (meta->quantizer == OMEN_QUANT_BQ && bs->nelems > 0 && meta->centroidBlk == InvalidBlockNumber)
		BuildCentroid(bs);
	code = palloc(Max(meta->codesize, 1));
	pos = palloc(sizeof(int) * Max(bs->nelems, 1));
	order = BuildOrder(bs, pos);

	/* vectors and upper lists first: the slots point to them */
	for (int i = 0; i < bs->nelems; i++)
	{
		OmenBuildElem *e = &bs->elems[i];

		CHECK_FOR_INTERRUPTS();
		if (keepvectors)
			BuildWriteVector(bs, &vbuf, BuildVec(bs, i), e->norm, &e->vecblk, &e->vecoff);
		else
		{
			e->vecblk = InvalidBlockNumber;
			e->vecoff = InvalidOffsetNumber;
		}
		if (e->level > 0)
		{
			for (int level = 1; level <= e->level; level++)
			{
				int32	   *src = BuildList(bs, i, level);
				uint32	   *dst = OmenUpperList(upper, meta->m, level);

				dst[0] = src[0];
				for (int j = 0; j < meta->m; j++)
					dst[j + 1] = j < src[0] ? base + pos[src[j + 1]] : OMEN_INVALID_ELEM;
			}
			BuildAddItem(bs, &ubuf, OMEN_PAGE_UPPER, (Item) upper,
						 OmenUpperItemSize(meta->m, e->level), &e->upperblk, &e->upperoff, false);
		}
		else
		{
			e->upperblk = InvalidBlockNumber;
			e->upperoff = InvalidOffsetNumber;
		}
	}
	if (vbuf != InvalidBuffer)
	{
		meta->vectorInsertBlk = BufferGetBlockNumber(vbuf);
		BuildFinishPage(vbuf);
	}
	if (ubuf != InvalidBuffer)
	{
		meta->upperInsertBlk = BufferGetBlockNumber(ubuf);
		BuildFinishPage(ubuf);
	}

	/* codes and slots */
	for (int k = 0; k < bs->nelems; k++)
	{
		int			i = order[k];
		OmenBuildElem *e = &bs->elems[i];
		OmenElem	elem = base + k;
		int32	   *list = BuildList(bs, i, 0);
		BlockNumber blk;
		int			slotno;
		Buffer		buf;
		OmenSlot	slot;

		CHECK_FOR_INTERRUPTS();
		if (elem / meta->extentElems >= meta->nextents)
			BuildNewExtent(bs);

		OmenEncode(&bs->info, BuildVec(bs, i), e->norm, code);
		BuildWriteCode(bs, OmenElemCodeLoc(&bs->info, elem), code, meta->codesize);

		OmenElemSlotLoc(&bs->info, elem, &blk, &slotno);
		buf = ReadBuffer(bs->index, blk);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		slot = OmenPageGetSlot(BufferGetPage(buf), meta->slotsize, slotno);
		slot->generation = 0;
		slot->flags = OMEN_SLOT_USED | (e->nograph ? OMEN_SLOT_NOGRAPH : 0);
		slot->level = e->level;
		slot->segment = seg;
		slot->n0 = list[0];
		slot->heaptid = e->tid;
		slot->vecblk = e->vecblk;
		slot->vecoff = e->vecoff;
		slot->upperblk = e->upperblk;
		slot->upperoff = e->upperoff;
		for (int j = 0; j < bs->maxm0; j++)
			slot->neighbors[j] = j < list[0] ? base + pos[list[j + 1]] : OMEN_INVALID_ELEM;
		BuildFinishPage(buf);
	}

	sd->entry = bs->entry >= 0 ? base + pos[bs->entry] : OMEN_INVALID_ELEM;
	sd->entrylevel = bs->entry >= 0 ? bs->maxlevel : -1;
	sd->flags = 0;
	sd->nelements = bs->nelems;
	meta->nsegments++;
	meta->nextElem = base + bs->nelems;
	pfree(upper);
	pfree(code);
	pfree(pos);
	pfree(order);

	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, OMEN_PHASE_LOAD);
}

/* ---- loading tuples ---- */

static void
BuildGrow(OmenBuildState *bs)
{
	int			newcap = bs->cap * 2;
	int			oldchunks = bs->cap / OMEN_BUILD_CHUNK + 1;
	int			newchunks = newcap / OMEN_BUILD_CHUNK + 1;

	bs->elems = repalloc_huge(bs->elems, sizeof(OmenBuildElem) * newcap);
	bs->visitmark = repalloc_huge(bs->visitmark, sizeof(uint32) * newcap);
	memset(bs->visitmark + bs->cap, 0, sizeof(uint32) * (newcap - bs->cap));
	bs->vchunks = repalloc(bs->vchunks, sizeof(float *) * newchunks);
	memset(bs->vchunks + oldchunks, 0, sizeof(float *) * (newchunks - oldchunks));
	bs->cap = newcap;
}

/* Add one vector to the in-memory graph, writing a segment if memory is full */
static void
BuildAddVector(OmenBuildState *bs, const float *v, ItemPointer tid)
{
	MemoryContext old;
	OmenBuildElem *e;
	int			level = OmenRandomLevel(bs->ml);
	Size		need = BuildElemSize(bs, level);
	int			i;

	if (bs->nelems > 0 && bs->memused + need > bs->memlimit &&
		bs->meta.nsegments < OMEN_MAX_SEGMENTS - 1)
	{
		BuildWriteSegment(bs);
		BuildResetGraph(bs);
	}

	old = MemoryContextSwitchTo(bs->graphCtx);
	if (bs->nelems == bs->cap)
		BuildGrow(bs);
	i = bs->nelems++;
	if (i % OMEN_BUILD_CHUNK == 0)
		bs->vchunks[i / OMEN_BUILD_CHUNK] =
			MemoryContextAllocHuge(bs->graphCtx, sizeof(float) * bs->dims * OMEN_BUILD_CHUNK);
	e = &bs->elems[i];
	e->tid = *tid;
	e->level = level;
	memcpy(BuildVec(bs, i), v, sizeof(float) * bs->dims);
	e->norm = OmenNorm(v, bs->dims);
	e->nograph = (bs->metric == OMEN_METRIC_COSINE && e->norm == 0);
	e->nbrs = palloc(sizeof(int32) * ((bs->maxm0 + 1) + level * (bs->m + 1)));
	e->nbrs[0] = 0;
	for (int l = 1; l <= level; l++)
		BuildList(bs, i, l)[0] = 0;
	MemoryContextSwitchTo(old);
	bs->memused += need;

	BuildInsertElement(bs, i);
}

/* Check a vector's dimensions against the index's, fixing them on first use */
static void
BuildCheckDims(OmenBuildState *bs, int dims)
{
	if (bs->dims == 0)
	{
		bs->dims = dims;
		bs->meta.dims = dims;
		bs->info.dims = dims;
		return;
	}
	if (dims != bs->dims)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %d dimensions, not %d", bs->dims, dims)));
}

static void
BuildCallback(Relation index, ItemPointer tid, Datum *values,
			  bool *isnull, bool tupleIsAlive, void *state)
{
	OmenBuildState *bs = (OmenBuildState *) state;
	MemoryContext old;
	const float *v;
	int			dims;

	if (isnull[0])
		return;

	old = MemoryContextSwitchTo(bs->tmpCtx);
	v = OmenDatumValues(bs->meta.elemtype, values[0], &dims);
	BuildCheckDims(bs, dims);
	OmenCheckVectorValues(v, dims);
	MemoryContextSwitchTo(old);

	BuildAddVector(bs, v, tid);
	bs->indtuples++;
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, (int64) bs->indtuples);
	MemoryContextReset(bs->tmpCtx);
}

/* Fill a metapage image */
static void
OmenFillMetaPage(Page page, OmenBuildState *bs)
{
	OmenInitPage(page, OMEN_PAGE_META);
	memcpy(OmenPageGetMeta(page), &bs->meta, sizeof(OmenMetaPageData));
	((PageHeader) page)->pd_lower =
		((char *) OmenPageGetMeta(page) + sizeof(OmenMetaPageData)) - (char *) page;
}

/*
 * Set up the build state and the metapage image from the reloptions and
 * the column.  Used by ambuildempty too, with no heap.
 */
static void
BuildInitState(OmenBuildState *bs, Relation heap, Relation index, IndexInfo *indexInfo)
{
	OmenOptions *opts = (OmenOptions *) index->rd_options;
	OmenMetaPage meta = &bs->meta;

	memset(bs, 0, sizeof(OmenBuildState));
	bs->heap = heap;
	bs->index = index;
	bs->indexInfo = indexInfo;
	bs->metric = (OmenMetric) OmenGetMetricInfo(index)->metric;
	bs->dims = OmenColumnDims(index);
	bs->m = opts ? opts->m : OMEN_DEFAULT_M;
	bs->efc = opts ? opts->ef_construction : OMEN_DEFAULT_EF_CONSTRUCTION;
	bs->maxm0 = 2 * bs->m;
	bs->ml = 1.0 / log((double) bs->m);
	bs->slotsize = OmenSlotSize(bs->m);
	bs->slotsperpage = OMEN_AREA_SPACE / bs->slotsize;

	if (bs->efc < 2 * bs->m)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ef_construction must be greater than or equal to 2 * m")));
	if (bs->dims > OMEN_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("column cannot have more than %d dimensions for omen index",
						OMEN_MAX_DIM)));

	if (opts && opts->vectors == OMEN_VECTORS_HEAP && index->rd_index->indkey.values[0] == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("vectors = heap is not supported for an index on an expression"),
				 errhint("Keep the vectors in the index (vectors = index).")));

	meta->magic = OMEN_MAGIC;
	meta->version = OMEN_FORMAT_VERSION;
	meta->dims = bs->dims;
	meta->metric = bs->metric;
	meta->elemtype = OmenGetMetricInfo(index)->elemtype;
	meta->m = bs->m;
	meta->ef_construction = bs->efc;
	meta->quantizer = opts ? opts->quantizer : OMEN_QUANT_NONE;
	meta->vectors = opts ? opts->vectors : OMEN_VECTORS_INDEX;
	meta->slotsize = bs->slotsize;
	meta->slotsperpage = bs->slotsperpage;
	meta->rotseed = (uint32) pg_prng_uint32(&pg_global_prng_state);
	meta->centroidBlk = InvalidBlockNumber;
	meta->nextElem = 0;
	meta->nextents = 0;
	meta->vectorInsertBlk = InvalidBlockNumber;
	meta->upperInsertBlk = InvalidBlockNumber;
	meta->nsegments = 0;
	meta->ndirpages = 0;
	for (int i = 0; i < OMEN_MAX_SEGMENTS; i++)
	{
		meta->segments[i].entry = OMEN_INVALID_ELEM;
		meta->segments[i].entrylevel = -1;
	}
	OmenComputeLayout(meta);

	/* what encoding needs to know */
	bs->info.index = index;
	bs->info.metric = bs->metric;
	bs->info.elemtype = meta->elemtype;
	bs->info.dims = meta->dims;
	bs->info.m = meta->m;
	bs->info.maxm0 = bs->maxm0;
	bs->info.slotsize = meta->slotsize;
	bs->info.slotsperpage = meta->slotsperpage;
	bs->info.quantizer = meta->quantizer;
	bs->info.vectors = meta->vectors;
	bs->info.codesize = meta->codesize;
	bs->info.K = meta->extentElems;
	bs->info.C = meta->extentCodePages;
	bs->info.G = meta->extentGraphPages;
	bs->info.paddims = meta->paddims;
	bs->info.rotseed = meta->rotseed;
	bs->info.centroidBlk = InvalidBlockNumber;
	bs->info.mcxt = CurrentMemoryContext;
	bs->info.dircache = palloc0(sizeof(BlockNumber *) * OMEN_MAX_DIR_PAGES);
}

IndexBuildResult *
omenbuild(Relation heap, Relation index, IndexInfo *indexInfo)
{
	IndexBuildResult *result;
	OmenBuildState bs;
	Buffer		metabuf;
	int			maxcand;

	if (RelationGetNumberOfBlocks(index) != 0)
		elog(ERROR, "index \"%s\" already contains data", RelationGetRelationName(index));

	BuildInitState(&bs, heap, index, indexInfo);

	/* the metapage is block 0; it is filled in at the end */
	metabuf = ReadBufferExtended(index, MAIN_FORKNUM, P_NEW, RBM_NORMAL, NULL);
	Assert(BufferGetBlockNumber(metabuf) == OMEN_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	OmenInitPage(BufferGetPage(metabuf), OMEN_PAGE_META);
	MarkBufferDirty(metabuf);
	LockBuffer(metabuf, BUFFER_LOCK_UNLOCK);

	bs.graphCtx = AllocSetContextCreate(CurrentMemoryContext, "omen build graph",
										ALLOCSET_DEFAULT_SIZES);
	bs.tmpCtx = AllocSetContextCreate(CurrentMemoryContext, "omen build tuple",
									  ALLOCSET_DEFAULT_SIZES);
	bs.memlimit = (Size) maintenance_work_mem * 1024;
	BuildResetGraph(&bs);

	maxcand = Max(bs.efc, bs.maxm0) + 1;
	OmenHeapInit(&bs.C, bs.efc * 4, false);
	OmenHeapInit(&bs.W, bs.efc + 1, true);
	bs.cands = palloc(sizeof(OmenCand) * maxcand);
	bs.cvec = palloc(sizeof(float *) * maxcand);
	bs.cnorm = palloc(sizeof(float) * maxcand);
	bs.cdist = palloc(sizeof(float) * maxcand);
	bs.keep = palloc(sizeof(int) * maxcand);

	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, OMEN_PHASE_LOAD);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL,
								 (int64) Max(heap->rd_rel->reltuples, 0));
	bs.reltuples = table_index_build_scan(heap, index, indexInfo, true, true,
										  BuildCallback, (void *) &bs, NULL);

	/* the last (or only) segment; an empty index still gets segment 0 */
	if (bs.nelems > 0 || bs.meta.nsegments == 0)
		BuildWriteSegment(&bs);

	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	OmenFillMetaPage(BufferGetPage(metabuf), &bs);
	MarkBufferDirty(metabuf);
	UnlockReleaseBuffer(metabuf);

	if (RelationNeedsWAL(index))
		log_newpage_range(index, MAIN_FORKNUM, 0, RelationGetNumberOfBlocks(index), true);

	MemoryContextDelete(bs.graphCtx);
	MemoryContextDelete(bs.tmpCtx);

	result = palloc(sizeof(IndexBuildResult));
	result->heap_tuples = bs.reltuples;
	result->index_tuples = bs.indtuples;
	return result;
}

/*
 * The init fork of an unlogged index: just a metapage.  GenericXLog writes
 * nothing for unlogged relations, so log the page ourselves.
 */
void
omenbuildempty(Relation index)
{
	OmenBuildState bs;
	Page		page;

	BuildInitState(&bs, NULL, index, NULL);
	bs.meta.nsegments = 1;

	page = (Page) palloc(BLCKSZ);
	OmenFillMetaPage(page, &bs);
	PageSetChecksumInplace(page, OMEN_METAPAGE_BLKNO);
	smgrwrite(RelationGetSmgr(index), INIT_FORKNUM, OMEN_METAPAGE_BLKNO, (char *) page, true);
	log_newpage(&(RelationGetSmgr(index))->smgr_rnode.node, INIT_FORKNUM,
				OMEN_METAPAGE_BLKNO, page, true);
	smgrimmedsync(RelationGetSmgr(index), INIT_FORKNUM);
	pfree(page);
}
