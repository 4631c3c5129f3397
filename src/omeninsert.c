/*-------------------------------------------------------------------------
 *
 * omeninsert.c
 *	  aminsert for omen: add one element to the newest segment's graph on
 *	  pages, WAL-logged step by step.
 *
 * An insert is a sequence of small atomic changes, each one GenericXLog
 * record on one page, ordered so that every state in between is a valid
 * graph that scans can use:
 *
 *	1. search the graph for the new element's neighbours (read only);
 *	2. write its vector (and upper neighbour lists), which nothing
 *	   references yet;
 *	3. write its slot, complete with its own neighbour lists: from now on
 *	   the element exists, but nothing links to it;
 *	4. add a back-link to it from each neighbour, one page at a time;
 *	5. make it the segment's entry point if it is the highest element.
 *
 * A crash between steps leaves garbage nobody references (after 2) or an
 * element that scans cannot reach (after 3 or during 4), never a broken
 * link.  No step holds more than one buffer content lock, except that the
 * very first element of a segment is written while holding the metapage,
 * which is taken before any other page; see src/README for the lock order.
 *
 * IDENTIFICATION
 *	  src/omeninsert.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "miscadmin.h"
#include "omen.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* How often a back-link update is retried when its list changes under it */
#define OMEN_LINK_RETRIES	3

/* Which insert hint of the metapage */
typedef enum OmenHint
{
	OMEN_HINT_GRAPH,
	OMEN_HINT_VECTOR,
	OMEN_HINT_UPPER
} OmenHint;

/* The neighbour lists chosen for a new element */
typedef struct OmenNewLinks
{
	int			n[OMEN_MAX_LEVEL + 1];
	OmenElem   *elems[OMEN_MAX_LEVEL + 1];
	float	   *dists[OMEN_MAX_LEVEL + 1];
} OmenNewLinks;

/* Record where inserts should look for space next */
static void
OmenSetHint(Relation index, OmenHint hint, BlockNumber blk)
{
	Buffer		buf = ReadBuffer(index, OMEN_METAPAGE_BLKNO);
	GenericXLogState *state;
	OmenMetaPage meta;
	Page		page;

	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(state, buf, 0);
	OmenCheckPage(index, page, OMEN_METAPAGE_BLKNO, OMEN_PAGE_META);
	meta = OmenPageGetMeta(page);
	if (hint == OMEN_HINT_GRAPH)
		meta->graphInsertBlk = blk;
	else if (hint == OMEN_HINT_VECTOR)
		meta->vectorInsertBlk = blk;
	else
		meta->upperInsertBlk = blk;
	GenericXLogFinish(state);
	UnlockReleaseBuffer(buf);
}

/*
 * Add an item on a page of the given type: on the hinted page if it has
 * room, else on a new page, which becomes the hint.  One WAL record.
 */
static void
OmenAddItem(Relation index, uint16 type, OmenHint hint, BlockNumber hintblk,
			Item item, Size size, bool ownpage, BlockNumber *blk, OffsetNumber *off)
{
	GenericXLogState *state;
	Buffer		buf;
	Page		page;

	if (!ownpage && hintblk != InvalidBlockNumber)
	{
		buf = ReadBuffer(index, hintblk);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		page = BufferGetPage(buf);
		OmenCheckPage(index, page, hintblk, type);
		if (PageGetFreeSpace(page) >= MAXALIGN(size))
		{
			state = GenericXLogStart(index);
			page = GenericXLogRegisterBuffer(state, buf, 0);
			*off = PageAddItem(page, item, size, InvalidOffsetNumber, false, false);
			if (*off == InvalidOffsetNumber)
				elog(ERROR, "failed to add item to index page in \"%s\"",
					 RelationGetRelationName(index));
			GenericXLogFinish(state);
			*blk = hintblk;
			UnlockReleaseBuffer(buf);
			return;
		}
		UnlockReleaseBuffer(buf);
	}

	buf = OmenNewBuffer(index, MAIN_FORKNUM);
	state = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE);
	OmenInitPage(page, type);
	*off = PageAddItem(page, item, size, InvalidOffsetNumber, false, false);
	if (*off == InvalidOffsetNumber)
		elog(ERROR, "failed to add item to index page in \"%s\"",
			 RelationGetRelationName(index));
	GenericXLogFinish(state);
	*blk = BufferGetBlockNumber(buf);
	UnlockReleaseBuffer(buf);

	if (!ownpage)
		OmenSetHint(index, hint, *blk);
}

/*
 * Write a vector as a chain of chunks, last chunk first so that each
 * record is complete on its own.
 */
static void
OmenWriteVector(Relation index, OmenMetaPage meta, const float *v, float norm,
				BlockNumber *blk, OffsetNumber *off)
{
	int			dims = meta->dims;
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

		chunk->nextblk = nextblk;
		chunk->nextoff = nextoff;
		chunk->nvalues = n;
		chunk->norm = c == 0 ? norm : 0;
		memcpy(chunk->values, v + start, sizeof(float4) * n);
		OmenAddItem(index, OMEN_PAGE_VECTOR, OMEN_HINT_VECTOR, meta->vectorInsertBlk,
					(Item) chunk, offsetof(OmenVectorChunkData, values) + sizeof(float4) * n,
					nchunks > 1, &nextblk, &nextoff);
	}
	*blk = nextblk;
	*off = nextoff;
	pfree(chunk);
}

/* Fill a slot image for a new element */
static void
OmenFillSlot(OmenSlot slot, OmenIndexInfo *info, uint32 generation, int level, int segment,
			 bool nograph, ItemPointer tid, BlockNumber vecblk, OffsetNumber vecoff,
			 BlockNumber upperblk, OffsetNumber upperoff, const OmenNewLinks *links)
{
	memset(slot, 0, info->slotsize);
	slot->generation = generation;
	slot->flags = OMEN_SLOT_USED | (nograph ? OMEN_SLOT_NOGRAPH : 0);
	slot->level = level;
	slot->segment = segment;
	slot->heaptid = *tid;
	slot->vecblk = vecblk;
	slot->vecoff = vecoff;
	slot->upperblk = upperblk;
	slot->upperoff = upperoff;
	slot->n0 = links->n[0];
	for (int j = 0; j < info->maxm0; j++)
		slot->neighbors[j] = j < links->n[0] ? links->elems[0][j] : OMEN_INVALID_ELEM;
}

/*
 * Find a free slot, on the hinted graph page or a new one, and write the
 * element into it.  One WAL record (plus one for the hint).
 */
static OmenElem
OmenWriteSlot(Relation index, OmenIndexInfo *info, OmenMetaPage meta, int level,
			  int segment, bool nograph, ItemPointer tid,
			  BlockNumber vecblk, OffsetNumber vecoff,
			  BlockNumber upperblk, OffsetNumber upperoff, const OmenNewLinks *links)
{
	BlockNumber blk = meta->graphInsertBlk;
	GenericXLogState *state;
	Buffer		buf;
	Page		page;

	if (blk != InvalidBlockNumber)
	{
		buf = ReadBuffer(index, blk);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		page = BufferGetPage(buf);
		OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
		for (int s = 0; s < OmenPageGetOpaque(page)->nslots; s++)
		{
			OmenSlot	slot = OmenPageGetSlot(page, info->slotsize, s);

			if (slot->flags & OMEN_SLOT_USED)
				continue;
			state = GenericXLogStart(index);
			page = GenericXLogRegisterBuffer(state, buf, 0);
			slot = OmenPageGetSlot(page, info->slotsize, s);
			OmenFillSlot(slot, info, slot->generation + 1, level, segment, nograph, tid,
						 vecblk, vecoff, upperblk, upperoff, links);
			GenericXLogFinish(state);
			UnlockReleaseBuffer(buf);
			return OmenElemMake(blk, s);
		}
		UnlockReleaseBuffer(buf);
	}

	buf = OmenNewBuffer(index, MAIN_FORKNUM);
	blk = BufferGetBlockNumber(buf);
	state = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE);
	OmenInitPage(page, OMEN_PAGE_GRAPH);
	OmenPageGetOpaque(page)->nslots = info->slotsperpage;
	((PageHeader) page)->pd_lower += info->slotsperpage * info->slotsize;
	OmenFillSlot(OmenPageGetSlot(page, info->slotsize, 0), info, 1, level, segment, nograph,
				 tid, vecblk, vecoff, upperblk, upperoff, links);
	GenericXLogFinish(state);
	UnlockReleaseBuffer(buf);
	OmenSetHint(index, OMEN_HINT_GRAPH, blk);
	return OmenElemMake(blk, 0);
}

static int
OmenCandCmpDist(const void *a, const void *b)
{
	const OmenCand *x = a;
	const OmenCand *y = b;

	if (OmenDistLess(x->dist, y->dist))
		return -1;
	if (OmenDistLess(y->dist, x->dist))
		return 1;
	return (x->elem > y->elem) - (x->elem < y->elem);
}

/*
 * Choose among candidates (sorted, with distances to base) with the
 * heuristic; reads their vectors.  Writes the chosen to out/outdist.
 */
static int
OmenSelectFromCands(OmenReader *r, OmenCand *cands, int ncand, int maxkeep,
					OmenElem *out, float *outdist)
{
	OmenIndexInfo *info = r->info;
	const float **cvec = palloc(sizeof(float *) * ncand);
	float	   *cnorm = palloc(sizeof(float) * ncand);
	float	   *cdist = palloc(sizeof(float) * ncand);
	int		   *keep = palloc(sizeof(int) * ncand);
	float	   *vecs = palloc(sizeof(float) * (Size) info->dims * ncand);
	OmenSlot	slot = palloc(info->slotsize);
	int			n = 0;
	int			nkeep;

	for (int i = 0; i < ncand; i++)
	{
		if (!OmenReadSlot(r, cands[i].elem, slot) ||
			(slot->flags & (OMEN_SLOT_DELETED | OMEN_SLOT_NOGRAPH)))
			continue;
		cands[n] = cands[i];
		cdist[n] = cands[i].dist;
		cvec[n] = OmenSlotVector(r, slot, vecs + (Size) info->dims * n, &cnorm[n]);
		n++;
	}
	nkeep = OmenSelectNeighbors(info->metric, info->dims, n, cdist, cvec, cnorm, maxkeep, keep);
	for (int i = 0; i < nkeep; i++)
	{
		out[i] = cands[keep[i]].elem;
		outdist[i] = cands[keep[i]].dist;
	}
	pfree(cvec);
	pfree(cnorm);
	pfree(cdist);
	pfree(keep);
	pfree(vecs);
	pfree(slot);
	return nkeep;
}

/*
 * Search the segment for the new element's neighbours at every level up to
 * its own.
 */
static void
OmenFindNeighbors(OmenReader *r, const OmenQuery *q, OmenElem entry, int entrylevel,
				  int level, OmenNewLinks *links)
{
	OmenIndexInfo *info = r->info;
	OmenElem	ep = entry;
	OmenCand   *cands = NULL;
	int			ncand = 0;

	if (entrylevel > level)
		ep = OmenDescend(r, q, entry, entrylevel, level);

	for (int l = Min(level, entrylevel); l >= 0; l--)
	{
		OmenLayerSearch s;
		int			maxkeep = l == 0 ? info->maxm0 : info->m;

		OmenLayerInit(&s, r, l);
		if (cands == NULL)
			OmenLayerAddEntry(&s, r, q, ep);
		else
		{
			for (int i = 0; i < ncand; i++)
				OmenLayerAddEntry(&s, r, q, cands[i].elem);
		}
		OmenLayerRun(&s, r, q, info->ef_construction);
		if (cands)
			pfree(cands);
		cands = palloc(sizeof(OmenCand) * Max(s.W.n, 1));
		ncand = OmenLayerResults(&s, cands);
		OmenLayerFree(&s);

		if (ncand == 0)
		{
			/* everything near is deleted: keep going down from the entry */
			cands = repalloc(cands, sizeof(OmenCand));
			cands[0].elem = ep;
			cands[0].dist = 0;
			ncand = 1;
			continue;
		}
		{
			OmenCand   *copy = palloc(sizeof(OmenCand) * ncand);

			memcpy(copy, cands, sizeof(OmenCand) * ncand);
			qsort(copy, ncand, sizeof(OmenCand), OmenCandCmpDist);
			links->n[l] = OmenSelectFromCands(r, copy, ncand, maxkeep,
											  links->elems[l], links->dists[l]);
			pfree(copy);
		}
	}
	if (cands)
		pfree(cands);
}

/*
 * Make element n link to the new element q at one level.  The list is read
 * under a share lock, the new one computed with no lock held, and written
 * only if the list did not change in between (else we retry).  When the
 * list is full the heuristic decides which links stay.
 */
static void
OmenAddBackLink(Relation index, OmenReader *r, OmenElem n, OmenElem q, float dist, int level)
{
	OmenIndexInfo *info = r->info;
	int			cap = level == 0 ? info->maxm0 : info->m;
	OmenSlot	slot = palloc(info->slotsize);
	OmenElem   *old = palloc(sizeof(OmenElem) * (cap + 1));
	OmenElem   *newlist = palloc(sizeof(OmenElem) * (cap + 1));

	for (int attempt = 0; attempt < OMEN_LINK_RETRIES; attempt++)
	{
		int			nold;
		int			nnew;
		BlockNumber blk;
		Buffer		buf;
		Page		page;
		GenericXLogState *state;
		OmenElem   *cur;
		uint32	   *count;
		OmenSlot	pslot;

		if (!OmenReadSlot(r, n, slot) || (slot->flags & OMEN_SLOT_NOGRAPH) || slot->level < level)
			break;
		nold = OmenReadNeighbors(r, n, slot, level, old);

		if (nold < cap)
		{
			memcpy(newlist, old, sizeof(OmenElem) * nold);
			newlist[nold] = q;
			nnew = nold + 1;
		}
		else
		{
			/* full: let the heuristic choose among old and new */
			OmenCand   *cands = palloc(sizeof(OmenCand) * (nold + 1));
			OmenQuery	nq;
			float		nnorm;
			float	   *nvec = palloc(sizeof(float) * info->dims);
			float	   *dists = palloc(sizeof(float) * (cap + 1));
			OmenSlot	other = palloc(info->slotsize);
			int			ncand = 0;
			bool		haveq = false;

			nq.values = OmenSlotVector(r, slot, nvec, &nnorm);
			nq.norm = nnorm;
			for (int i = 0; i < nold; i++)
			{
				if (old[i] == OMEN_INVALID_ELEM || !OmenReadSlot(r, old[i], other))
					continue;
				cands[ncand].elem = old[i];
				cands[ncand].dist = OmenSlotDistance(r, other, &nq);
				ncand++;
			}
			cands[ncand].elem = q;
			cands[ncand].dist = dist;
			ncand++;
			qsort(cands, ncand, sizeof(OmenCand), OmenCandCmpDist);
			nnew = OmenSelectFromCands(r, cands, ncand, cap, newlist, dists);
			for (int i = 0; i < nnew; i++)
				haveq |= newlist[i] == q;
			pfree(cands);
			pfree(nvec);
			pfree(dists);
			pfree(other);
			if (!haveq)
				break;			/* the new element did not make the cut */
		}

		/* write it, if the list is still what we read */
		blk = level == 0 ? OmenElemBlock(n) : slot->upperblk;
		buf = ReadBuffer(index, blk);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, 0);
		if (level == 0)
		{
			OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
			if (OmenElemSlot(n) >= OmenPageGetOpaque(page)->nslots)
				elog(ERROR, "invalid element %u in index \"%s\"", n, RelationGetRelationName(index));
			pslot = OmenPageGetSlot(page, info->slotsize, OmenElemSlot(n));
			if (pslot->generation != slot->generation || !(pslot->flags & OMEN_SLOT_USED) ||
				pslot->n0 != nold || memcmp(pslot->neighbors, old, sizeof(OmenElem) * nold) != 0)
			{
				GenericXLogAbort(state);
				UnlockReleaseBuffer(buf);
				continue;
			}
			pslot->n0 = nnew;
			for (int j = 0; j < info->maxm0; j++)
				pslot->neighbors[j] = j < nnew ? newlist[j] : OMEN_INVALID_ELEM;
		}
		else
		{
			OmenCheckPage(index, page, blk, OMEN_PAGE_UPPER);
			if (slot->upperoff < FirstOffsetNumber || slot->upperoff > PageGetMaxOffsetNumber(page))
				elog(ERROR, "invalid upper list of element %u in index \"%s\"",
					 n, RelationGetRelationName(index));
			count = OmenUpperList(PageGetItem(page, PageGetItemId(page, slot->upperoff)),
								  info->m, level);
			cur = count + 1;
			if (count[0] != (uint32) nold || memcmp(cur, old, sizeof(OmenElem) * nold) != 0)
			{
				GenericXLogAbort(state);
				UnlockReleaseBuffer(buf);
				continue;
			}
			count[0] = nnew;
			for (int j = 0; j < info->m; j++)
				cur[j] = j < nnew ? newlist[j] : OMEN_INVALID_ELEM;
		}
		GenericXLogFinish(state);
		UnlockReleaseBuffer(buf);
		break;
	}
	pfree(slot);
	pfree(old);
	pfree(newlist);
}

/*
 * Make q the entry point of its segment if it is higher than the current
 * one, or if there is none.  Takes the metapage exclusively, holding
 * nothing else.
 */
static void
OmenUpdateEntry(Relation index, int segment, OmenElem q, int level)
{
	Buffer		buf = ReadBuffer(index, OMEN_METAPAGE_BLKNO);
	GenericXLogState *state;
	OmenMetaPage meta;
	Page		page;

	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	meta = OmenPageGetMeta(BufferGetPage(buf));
	if (meta->segments[segment].entry == OMEN_INVALID_ELEM ||
		meta->segments[segment].entrylevel < level)
	{
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, 0);
		meta = OmenPageGetMeta(page);
		meta->segments[segment].entry = q;
		meta->segments[segment].entrylevel = level;
		if (meta->nsegments <= segment)
			meta->nsegments = segment + 1;
		GenericXLogFinish(state);
	}
	UnlockReleaseBuffer(buf);
}

/*
 * Set the metapage's dimensions from the first vector of an index whose
 * column has no typmod, or check against them.
 */
static void
OmenSetDims(Relation index, OmenMetaPageData *meta, int dims)
{
	Buffer		buf;
	GenericXLogState *state;
	Page		page;

	if (meta->dims == 0)
	{
		buf = ReadBuffer(index, OMEN_METAPAGE_BLKNO);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, 0);
		if (OmenPageGetMeta(page)->dims == 0)
		{
			OmenPageGetMeta(page)->dims = dims;
			GenericXLogFinish(state);
		}
		else
			GenericXLogAbort(state);
		meta->dims = OmenPageGetMeta(BufferGetPage(buf))->dims;
		UnlockReleaseBuffer(buf);
	}
	if (meta->dims != dims)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %d dimensions, not %d", meta->dims, dims)));
}

/* Write the new element's upper lists, if it has any */
static void
OmenWriteUpper(Relation index, OmenIndexInfo *info, OmenMetaPage meta, int level,
			   const OmenNewLinks *links, BlockNumber *blk, OffsetNumber *off)
{
	uint32	   *item;

	*blk = InvalidBlockNumber;
	*off = InvalidOffsetNumber;
	if (level == 0)
		return;
	item = palloc(OmenUpperItemSize(info->m, level));
	for (int l = 1; l <= level; l++)
	{
		uint32	   *list = OmenUpperList(item, info->m, l);

		list[0] = links->n[l];
		for (int j = 0; j < info->m; j++)
			list[j + 1] = j < links->n[l] ? links->elems[l][j] : OMEN_INVALID_ELEM;
	}
	OmenAddItem(index, OMEN_PAGE_UPPER, OMEN_HINT_UPPER, meta->upperInsertBlk,
				(Item) item, OmenUpperItemSize(info->m, level), false, blk, off);
	pfree(item);
}

/*
 * Insert one vector into the index.  Works in the caller's memory context,
 * which the caller resets.
 */
static void
OmenInsertVector(Relation index, const float *v, int dims, ItemPointer tid)
{
	OmenMetaPageData meta;
	OmenIndexInfo info;
	OmenReader	reader;
	OmenQuery	q;
	OmenNewLinks links;
	int			level;
	int			segment;
	bool		nograph;
	BlockNumber vecblk,
				upperblk;
	OffsetNumber vecoff,
				upperoff;
	OmenElem	elem;
	bool		firstlock = false;
	OmenSegmentData seg;

	OmenReadMetaPage(index, &meta);
	OmenSetDims(index, &meta, dims);
	OmenInitIndexInfo(&info, index, &meta);

	q.values = v;
	q.norm = OmenNorm(v, dims);
	level = OmenRandomLevel(info.ml);
	nograph = info.metric == OMEN_METRIC_COSINE && q.norm == 0;
	segment = Max(meta.nsegments, 1) - 1;
	seg = meta.segments[segment];

	memset(&links, 0, sizeof(links));
	for (int l = 0; l <= level; l++)
	{
		int			cap = l == 0 ? info.maxm0 : info.m;

		links.elems[l] = palloc(sizeof(OmenElem) * cap);
		links.dists[l] = palloc(sizeof(float) * cap);
	}

	/*
	 * The first element of a segment is inserted under a heavyweight lock
	 * on the metapage, so that two first elements cannot miss each other:
	 * the second waits, then finds the first as its entry point.
	 */
	if (!nograph && seg.entry == OMEN_INVALID_ELEM)
	{
		LockPage(index, OMEN_METAPAGE_BLKNO, ExclusiveLock);
		firstlock = true;
		OmenReadMetaPage(index, &meta);
		seg = meta.segments[segment];
		if (seg.entry != OMEN_INVALID_ELEM)
		{
			UnlockPage(index, OMEN_METAPAGE_BLKNO, ExclusiveLock);
			firstlock = false;
		}
	}

	OmenReaderInit(&reader, &info);
	if (!nograph && seg.entry != OMEN_INVALID_ELEM)
		OmenFindNeighbors(&reader, &q, seg.entry, seg.entrylevel, level, &links);

	OmenWriteVector(index, &meta, v, q.norm, &vecblk, &vecoff);
	OmenWriteUpper(index, &info, &meta, level, &links, &upperblk, &upperoff);
	elem = OmenWriteSlot(index, &info, &meta, level, segment, nograph, tid,
						 vecblk, vecoff, upperblk, upperoff, &links);

	if (firstlock)
	{
		OmenUpdateEntry(index, segment, elem, level);
		UnlockPage(index, OMEN_METAPAGE_BLKNO, ExclusiveLock);
		OmenReaderRelease(&reader);
		return;
	}

	for (int l = Min(level, seg.entrylevel); l >= 0; l--)
	{
		for (int i = 0; i < links.n[l]; i++)
		{
			CHECK_FOR_INTERRUPTS();
			OmenAddBackLink(index, &reader, links.elems[l][i], elem, links.dists[l][i], l);
		}
	}
	OmenReaderRelease(&reader);

	if (!nograph && level > seg.entrylevel)
		OmenUpdateEntry(index, segment, elem, level);
}

bool
omeninsert(Relation index, Datum *values, bool *isnull, ItemPointer heap_tid,
		   Relation heap, IndexUniqueCheck checkUnique, bool indexUnchanged,
		   IndexInfo *indexInfo)
{
	MemoryContext ctx;
	MemoryContext old;
	const float *v;
	int			dims;

	if (isnull[0])
		return false;

	ctx = AllocSetContextCreate(CurrentMemoryContext, "omen insert", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(ctx);
	v = OmenVectorValues(values[0], &dims);
	OmenCheckVectorValues(v, dims);
	OmenInsertVector(index, v, dims, heap_tid);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	return false;
}
