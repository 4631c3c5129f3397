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
#include "storage/indexfsm.h"
#include "storage/lmgr.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/* How often a back-link update is retried when its list changes under it */
#define OMEN_LINK_RETRIES	3

/* Free space map pages an insert looks at for a freed slot */
#define OMEN_REUSE_ATTEMPTS	4

/* Which insert hint of the metapage */
typedef enum OmenHint
{
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

/* What OmenAddBackLink did: flags */
#define OMEN_BACKLINK_DONE	0x01	/* the neighbour links to the new element */
#define OMEN_BACKLINK_GONE	0x02	/* the neighbour is deleted or freed */

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
	if (hint == OMEN_HINT_VECTOR)
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
 * Add a new extent: allocate its pages, consecutive, under the relation
 * extension lock; initialize them, a WAL record per four pages; then make
 * the directory point to it.  The caller holds the metapage exclusively
 * (meta is its page) and logs the metapage change itself.  A crash before
 * the directory entry leaves pages nobody references.
 */
static void
OmenAddExtent(Relation index, OmenMetaPage meta, bool *newdir, BlockNumber *dirblk)
{
	uint32		x = meta->nextents;
	int			npages = meta->extentCodePages + meta->extentGraphPages;
	Buffer	   *bufs = palloc(sizeof(Buffer) * npages);
	bool		needLock = !RELATION_IS_LOCAL(index);
	BlockNumber start;
	GenericXLogState *state;
	Buffer		dbuf;
	Page		page;

	if (x / OMEN_DIR_ENTRIES >= OMEN_MAX_DIR_PAGES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("index \"%s\" has too many elements", RelationGetRelationName(index))));

	if (needLock)
		LockRelationForExtension(index, ExclusiveLock);
	for (int p = 0; p < npages; p++)
		bufs[p] = ReadBufferExtended(index, MAIN_FORKNUM, P_NEW, RBM_NORMAL, NULL);
	if (needLock)
		UnlockRelationForExtension(index, ExclusiveLock);
	start = BufferGetBlockNumber(bufs[0]);
	for (int p = 1; p < npages; p++)
		if (BufferGetBlockNumber(bufs[p]) != start + p)
			elog(ERROR, "omen extent pages are not consecutive in \"%s\"",
				 RelationGetRelationName(index));
	if (start + npages > MaxBlockNumber - 1)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("index \"%s\" is too large", RelationGetRelationName(index))));

	for (int p = 0; p < npages; p += MAX_GENERIC_XLOG_PAGES)
	{
		state = GenericXLogStart(index);
		for (int q = p; q < Min(npages, p + MAX_GENERIC_XLOG_PAGES); q++)
		{
			LockBuffer(bufs[q], BUFFER_LOCK_EXCLUSIVE);
			page = GenericXLogRegisterBuffer(state, bufs[q], GENERIC_XLOG_FULL_IMAGE);
			if (q < meta->extentCodePages)
				OmenInitAreaPage(page, OMEN_PAGE_CODE);
			else
			{
				int			g = q - meta->extentCodePages;
				int			nslots = Min(meta->slotsperpage,
										 meta->extentElems - g * meta->slotsperpage);

				OmenInitPage(page, OMEN_PAGE_GRAPH);
				OmenPageGetOpaque(page)->nslots = nslots;
				OmenPageGetOpaque(page)->nextblkno = x;	/* graph pages: extent */
				memset(PageGetContents(page), 0, nslots * meta->slotsize);
				((PageHeader) page)->pd_lower += nslots * meta->slotsize;
			}
		}
		GenericXLogFinish(state);
		for (int q = p; q < Min(npages, p + MAX_GENERIC_XLOG_PAGES); q++)
			UnlockReleaseBuffer(bufs[q]);
	}

	/* the directory entry */
	*newdir = x % OMEN_DIR_ENTRIES == 0;
	if (*newdir)
		dbuf = OmenNewBuffer(index, MAIN_FORKNUM);
	else
	{
		dbuf = ReadBuffer(index, meta->dirpages[x / OMEN_DIR_ENTRIES]);
		LockBuffer(dbuf, BUFFER_LOCK_EXCLUSIVE);
	}
	state = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(state, dbuf, *newdir ? GENERIC_XLOG_FULL_IMAGE : 0);
	if (*newdir)
		OmenInitAreaPage(page, OMEN_PAGE_DIR);
	else
		OmenCheckPage(index, page, BufferGetBlockNumber(dbuf), OMEN_PAGE_DIR);
	((BlockNumber *) PageGetContents(page))[x % OMEN_DIR_ENTRIES] = start;
	GenericXLogFinish(state);
	*dirblk = BufferGetBlockNumber(dbuf);
	UnlockReleaseBuffer(dbuf);
	pfree(bufs);
}

/*
 * Take a slot that VACUUM freed, if the free space map knows a graph page
 * with one.  The slot is marked reserved at once (WAL-logged), so that no
 * other insert takes it; the page goes back to the free space map if it
 * has more.  Element numbers at or past nextElem are never taken here:
 * they belong to the allocator; nor are slots freed while a transaction
 * still running now was running (see OmenSlotSetFreeXid).  Returns
 * OMEN_INVALID_ELEM if none.
 */
static OmenElem
OmenReuseElement(Relation index, OmenIndexInfo *info, OmenElem nextElem)
{
	OmenElem	result = OMEN_INVALID_ELEM;
	BlockNumber later[OMEN_REUSE_ATTEMPTS];
	int			nlater = 0;

	for (int attempt = 0; attempt < OMEN_REUSE_ATTEMPTS; attempt++)
	{
		BlockNumber blk = GetFreeIndexPage(index);
		Buffer		buf;
		Page		page;
		uint32		x;
		BlockNumber start;
		int			g;
		int			found = -1;
		int			more = 0;
		int			waiting = 0;

		if (blk == InvalidBlockNumber || blk >= RelationGetNumberOfBlocks(index))
			break;

		/* which extent: read it under a share lock, then find its start */
		buf = ReadBuffer(index, blk);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		if (PageIsNew(page) || PageGetSpecialSize(page) != MAXALIGN(sizeof(OmenPageOpaqueData)) ||
			OmenPageGetOpaque(page)->type != OMEN_PAGE_GRAPH ||
			OmenPageGetOpaque(page)->nextblkno >= (nextElem + info->K - 1) / info->K)
		{
			UnlockReleaseBuffer(buf);
			continue;
		}
		x = OmenPageGetOpaque(page)->nextblkno;
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		start = OmenExtentStart(info, x);
		g = (int) blk - (int) start - info->C;
		if (g < 0 || g >= info->G)
		{
			ReleaseBuffer(buf);
			continue;
		}

		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		page = BufferGetPage(buf);
		for (int s = 0; s < Min(OmenPageGetOpaque(page)->nslots, info->slotsperpage); s++)
		{
			OmenSlot	slot = OmenPageGetSlot(page, info->slotsize, s);
			OmenElem	e = x * info->K + g * info->slotsperpage + s;

			/*
			 * Only slots VACUUM freed (a 0 may be one just allocated), and
			 * only once no insert that was running when it was freed is
			 * left: such an insert may still link to the old element.
			 */
			if (slot->flags != OMEN_SLOT_FREE || e >= nextElem)
				continue;
			if (!GlobalVisCheckRemovableFullXid(NULL, OmenSlotGetFreeXid(slot)))
			{
				waiting++;
				continue;
			}
			if (found < 0)
				found = s;
			else
				more++;
		}
		if (found >= 0)
		{
			GenericXLogState *state = GenericXLogStart(index);
			Page		gpage = GenericXLogRegisterBuffer(state, buf, 0);

			OmenPageGetSlot(gpage, info->slotsize, found)->flags = OMEN_SLOT_RESERVED;
			GenericXLogFinish(state);
			UnlockReleaseBuffer(buf);
			if (more + waiting > 0)
				RecordFreeIndexPage(index, blk);
			result = x * info->K + g * info->slotsperpage + found;
			break;
		}
		UnlockReleaseBuffer(buf);

		/*
		 * Freed too recently to take: the page goes back to the map when we
		 * are done, for a later insert (not now, or we would be handed it
		 * again).
		 */
		if (waiting > 0)
			later[nlater++] = blk;
	}
	for (int i = 0; i < nlater; i++)
		RecordFreeIndexPage(index, later[i]);
	return result;
}

/*
 * Take the next element number, adding an extent when it starts a new
 * one.  Holds the metapage exclusively for the time of the allocation;
 * the metapage is always locked before any other page.
 */
static OmenElem
OmenAllocElement(Relation index, OmenIndexInfo *info)
{
	Buffer		buf = ReadBuffer(index, OMEN_METAPAGE_BLKNO);
	GenericXLogState *state;
	OmenMetaPage meta;
	Page		page;
	OmenElem	e;
	bool		newdir = false;
	BlockNumber dirblk = InvalidBlockNumber;
	bool		newextent;

	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	meta = OmenPageGetMeta(BufferGetPage(buf));
	OmenCheckMetaPage(index, meta);
	e = meta->nextElem;
	if (e >= OMEN_MAX_ELEMS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("index \"%s\" has too many elements", RelationGetRelationName(index))));
	newextent = e / meta->extentElems >= meta->nextents;
	if (newextent)
		OmenAddExtent(index, meta, &newdir, &dirblk);

	state = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(state, buf, 0);
	meta = OmenPageGetMeta(page);
	meta->nextElem = e + 1;
	if (newextent)
	{
		meta->nextents++;
		if (newdir)
			meta->dirpages[meta->ndirpages++] = dirblk;
	}
	GenericXLogFinish(state);
	UnlockReleaseBuffer(buf);
	return e;
}

/*
 * Write a new element's code and slot.  The code goes first (in records
 * of its own if it spans more than three pages), then one record with the
 * last code page(s) and the slot: the element exists from then on.
 */
static void
OmenWriteElement(Relation index, OmenIndexInfo *info, OmenElem e, const uint8 *code,
				 const OmenSlot slotimage)
{
	OmenCodeLoc loc = OmenElemCodeLoc(info, e);
	int			npages = (loc.off + info->codesize + OMEN_AREA_SPACE - 1) / OMEN_AREA_SPACE;
	BlockNumber slotblk;
	int			slotno;
	int			done = 0;
	int			p = 0;

	OmenElemSlotLoc(info, e, &slotblk, &slotno);
	while (p < npages)
	{
		GenericXLogState *state = GenericXLogStart(index);
		Buffer		bufs[MAX_GENERIC_XLOG_PAGES];
		int			nbufs = 0;
		bool		last = npages - p <= MAX_GENERIC_XLOG_PAGES - 1;

		while (p < npages && nbufs < (last ? MAX_GENERIC_XLOG_PAGES - 1 : MAX_GENERIC_XLOG_PAGES))
		{
			BlockNumber blk = loc.blk + p;
			int			off = p == 0 ? loc.off : 0;
			int			n = Min(info->codesize - done, OMEN_AREA_SPACE - off);
			Page		page;

			bufs[nbufs] = ReadBuffer(index, blk);
			LockBuffer(bufs[nbufs], BUFFER_LOCK_EXCLUSIVE);
			page = GenericXLogRegisterBuffer(state, bufs[nbufs], 0);
			OmenCheckPage(index, page, blk, OMEN_PAGE_CODE);
			memcpy(PageGetContents(page) + off, code + done, n);
			done += n;
			nbufs++;
			p++;
		}
		if (last)
		{
			Page		page;
			OmenSlot	slot;

			bufs[nbufs] = ReadBuffer(index, slotblk);
			LockBuffer(bufs[nbufs], BUFFER_LOCK_EXCLUSIVE);
			page = GenericXLogRegisterBuffer(state, bufs[nbufs], 0);
			OmenCheckPage(index, page, slotblk, OMEN_PAGE_GRAPH);
			if (slotno >= OmenPageGetOpaque(page)->nslots)
				elog(ERROR, "invalid slot for element %u in \"%s\"", e,
					 RelationGetRelationName(index));
			slot = OmenPageGetSlot(page, info->slotsize, slotno);
			if (slot->flags & ~OMEN_SLOT_RESERVED)
				ereport(ERROR,
						(errcode(ERRCODE_INDEX_CORRUPTED),
						 errmsg("index \"%s\" allocated element %u twice",
								RelationGetRelationName(index), e)));
			slotimage->generation = slot->generation + 1;
			memcpy(slot, slotimage, info->slotsize);
			nbufs++;
		}
		GenericXLogFinish(state);
		for (int i = 0; i < nbufs; i++)
			UnlockReleaseBuffer(bufs[i]);
	}
}

/*
 * Choose among candidates with the heuristic.  Their vectors are read (or
 * decoded from their codes), and their distances to the base recomputed
 * from them, so that the choice does not depend on code estimates.
 * Writes the chosen to out/outdist, by increasing distance.  With fill,
 * the room the heuristic leaves (up to maxkeep) is then filled, after
 * them, with the nearest of the candidates it passed over, so that a list
 * is as full as the lists of a build, which fill up with back-links.
 */
int
OmenSelectFromCands(OmenReader *r, const OmenQuery *base, OmenCand *cands, int ncand,
					int maxkeep, bool fill, OmenElem *out, float *outdist)
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
		if (info->quantizer == OMEN_QUANT_NONE)
		{
			/*
			 * The code is the vector, and its header knows about deletion:
			 * no slot to read.  Read without a lock, possibly from the
			 * local cache: a link is only as good as the vectors it was
			 * chosen with, but a torn read cannot break anything.
			 */
			const uint8 *code = OmenReaderCode(r, cands[i].elem);

			if (code == NULL || OmenCodeIsDeleted(code))
				continue;
			OmenDecode(info, code, vecs + (Size) info->dims * n, &cnorm[n]);
			cvec[n] = vecs + (Size) info->dims * n;
		}
		else if (!OmenReadSlot(r, cands[i].elem, slot) ||
				 (slot->flags & (OMEN_SLOT_DELETED | OMEN_SLOT_NOGRAPH)))
			continue;
		else
			cvec[n] = OmenSlotVector(r, cands[i].elem, slot, vecs + (Size) info->dims * n, &cnorm[n]);
		cands[n].elem = cands[i].elem;
		cands[n].dist = OmenDistance(info->metric, base, cvec[n], cnorm[n], info->dims);
		n++;
	}

	/* sort by the exact distances, keeping vectors with their candidates */
	for (int i = 1; i < n; i++)
	{
		OmenCand	c = cands[i];
		const float *v = cvec[i];
		float		nn = cnorm[i];
		int			j = i - 1;

		while (j >= 0 && OmenDistLess(c.dist, cands[j].dist))
		{
			cands[j + 1] = cands[j];
			cvec[j + 1] = cvec[j];
			cnorm[j + 1] = cnorm[j];
			j--;
		}
		cands[j + 1] = c;
		cvec[j + 1] = v;
		cnorm[j + 1] = nn;
	}
	for (int i = 0; i < n; i++)
		cdist[i] = cands[i].dist;

	nkeep = OmenSelectNeighbors(info->metric, info->dims, n, cdist, cvec, cnorm, maxkeep, keep);
	for (int i = 0; i < nkeep; i++)
	{
		out[i] = cands[keep[i]].elem;
		outdist[i] = cands[keep[i]].dist;
	}
	if (fill && nkeep < maxkeep)
	{
		int			nout = nkeep;

		/* room left: the nearest of those the heuristic passed over */
		for (int i = 0; i < n && nout < maxkeep; i++)
		{
			bool		kept = false;

			for (int k = 0; k < nkeep && !kept; k++)
				kept = keep[k] == i;
			if (!kept)
			{
				out[nout] = cands[i].elem;
				outdist[nout] = cands[i].dist;
				nout++;
			}
		}
		nkeep = nout;
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
OmenFindNeighbors(OmenReader *r, const OmenQueryPrep *q, OmenElem entry, int entrylevel,
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
			cands[0].elem = ep;
			cands[0].dist = 0;
			ncand = 1;
			continue;
		}
		{
			OmenCand   *copy = palloc(sizeof(OmenCand) * ncand);

			memcpy(copy, cands, sizeof(OmenCand) * ncand);
			links->n[l] = OmenSelectFromCands(r, &q->q, copy, ncand, maxkeep, false,
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
 * list is full the heuristic decides which links stay.  Returns
 * OMEN_BACKLINK_DONE if the link was written, and OMEN_BACKLINK_GONE if n
 * is deleted or freed, so that q must drop it from its own lists.  A
 * deleted (not yet freed) element still takes the link: VACUUM's repair
 * reconnects the elements that link to it through its neighbours, q among
 * them.
 */
static int
OmenAddBackLink(Relation index, OmenReader *r, OmenElem n, OmenElem q, float dist, int level)
{
	int			linked = 0;
	OmenIndexInfo *info = r->info;
	int			cap = level == 0 ? info->maxm0 : info->m;
	OmenSlot	slot = palloc(info->slotsize);
	OmenElem   *old = palloc(sizeof(OmenElem) * (cap + 1));
	OmenElem   *newlist = palloc(sizeof(OmenElem) * (cap + 1));
	float	   *dists = palloc(sizeof(float) * (cap + 1));
	OmenCand   *cands = palloc(sizeof(OmenCand) * (cap + 1));
	float	   *nvec = palloc(sizeof(float) * info->dims);

	for (int attempt = 0; attempt < OMEN_LINK_RETRIES; attempt++)
	{
		int			nold;
		int			nnew;
		BlockNumber blk;
		int			slotno;
		Buffer		buf;
		Page		page;
		GenericXLogState *state;
		OmenElem   *cur;
		uint32	   *count;
		OmenSlot	pslot;

		if (!OmenReadSlot(r, n, slot) || (slot->flags & OMEN_SLOT_NOGRAPH) || slot->level < level)
		{
			linked = OMEN_BACKLINK_GONE;
			break;
		}
		if (slot->flags & OMEN_SLOT_DELETED)
			linked = OMEN_BACKLINK_GONE;
		nold = OmenReadNeighbors(r, n, slot, level, old);
		for (int i = 0; i < nold; i++)
		{
			/* linked already (by an earlier attempt of this insert) */
			if (old[i] == q)
			{
				linked |= OMEN_BACKLINK_DONE;
				goto done;
			}
		}

		if (nold < cap)
		{
			memcpy(newlist, old, sizeof(OmenElem) * nold);
			newlist[nold] = q;
			nnew = nold + 1;
		}
		else
		{
			/* full: let the heuristic choose among old and new */
			OmenQuery	nq;
			int			ncand = 0;
			bool		haveq = false;

			nq.values = OmenSlotVector(r, n, slot, nvec, &nq.norm);
			for (int i = 0; i < nold; i++)
			{
				if (old[i] == OMEN_INVALID_ELEM)
					continue;
				cands[ncand].elem = old[i];
				cands[ncand].dist = 0;
				ncand++;
			}
			cands[ncand].elem = q;
			cands[ncand].dist = dist;
			ncand++;
			nnew = OmenSelectFromCands(r, &nq, cands, ncand, cap, false, newlist, dists);
			for (int i = 0; i < nnew; i++)
				haveq |= newlist[i] == q;
			if (!haveq)
				break;			/* the new element did not make the cut */
		}

		/* write it, if the list is still what we read */
		if (level == 0)
			OmenElemSlotLoc(info, n, &blk, &slotno);
		else
		{
			blk = slot->upperblk;
			slotno = -1;
		}
		buf = ReadBuffer(index, blk);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, 0);
		if (level == 0)
		{
			OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
			if (slotno >= OmenPageGetOpaque(page)->nslots)
				elog(ERROR, "invalid element %u in index \"%s\"", n, RelationGetRelationName(index));
			pslot = OmenPageGetSlot(page, info->slotsize, slotno);
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
			if (!OmenItemOk(page, slot->upperoff, OmenUpperItemSize(info->m, slot->level)))
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
		linked |= OMEN_BACKLINK_DONE;
		break;
	}
done:
	pfree(slot);
	pfree(old);
	pfree(newlist);
	pfree(dists);
	pfree(cands);
	pfree(nvec);
	return linked;
}

/* Is e among the n elements of list? */
static inline bool
OmenListHas(const OmenElem *list, int n, OmenElem e)
{
	for (int i = 0; i < n; i++)
		if (list[i] == e)
			return true;
	return false;
}

/*
 * Edit a list of at most cap entries in place: drop what is in drop, then
 * append what add holds and the list does not, except self, while there is
 * room.
 * Returns the new count; unused entries are set invalid.
 */
static int
OmenEditList(OmenElem *list, int n, int cap, OmenElem self, const OmenElem *drop, int ndrop,
			 const OmenElem *add, int nadd)
{
	int			k = 0;

	for (int i = 0; i < n; i++)
		if (!OmenListHas(drop, ndrop, list[i]))
			list[k++] = list[i];
	for (int i = 0; i < nadd && k < cap; i++)
		if (add[i] != self && !OmenListHas(list, k, add[i]) && !OmenListHas(drop, ndrop, add[i]))
			list[k++] = add[i];
	for (int i = k; i < cap; i++)
		list[i] = OMEN_INVALID_ELEM;
	return k;
}

/*
 * Edit the new element e's own neighbour lists after its slot is written:
 * drop the neighbours it found deleted or freed while linking back (VACUUM
 * may have repaired the graph before our slot existed, so nobody else
 * would), and add those of a second search.  Other inserts may have linked
 * to e meanwhile; their entries stay.  One record for the level-0 list,
 * one for the upper lists.
 */
static void
OmenEditOwnLists(Relation index, OmenIndexInfo *info, OmenElem e, const OmenSlot myslot,
				 const OmenNewLinks *drop, const OmenNewLinks *add)
{
	bool		upper = false;

	for (int l = 1; l <= myslot->level; l++)
		upper |= drop->n[l] > 0 || add->n[l] > 0;

	if (drop->n[0] > 0 || add->n[0] > 0)
	{
		BlockNumber blk;
		int			slotno;
		Buffer		buf;
		GenericXLogState *state;
		Page		page;
		OmenSlot	pslot;

		OmenElemSlotLoc(info, e, &blk, &slotno);
		buf = ReadBuffer(index, blk);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, 0);
		OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
		pslot = OmenPageGetSlot(page, info->slotsize, slotno);
		if (pslot->generation != myslot->generation || !(pslot->flags & OMEN_SLOT_USED) ||
			pslot->n0 > info->maxm0)
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("index \"%s\" lost element %u while inserting it",
							RelationGetRelationName(index), e),
					 errdetail("Block %u, slot %d.", blk, slotno)));
		pslot->n0 = OmenEditList(pslot->neighbors, pslot->n0, info->maxm0, e,
								 drop->elems[0], drop->n[0], add->elems[0], add->n[0]);
		GenericXLogFinish(state);
		UnlockReleaseBuffer(buf);
	}

	if (upper)
	{
		Buffer		buf = ReadBuffer(index, myslot->upperblk);
		GenericXLogState *state;
		Page		page;
		void	   *item;

		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, 0);
		OmenCheckPage(index, page, myslot->upperblk, OMEN_PAGE_UPPER);
		if (!OmenItemOk(page, myslot->upperoff, OmenUpperItemSize(info->m, myslot->level)))
			elog(ERROR, "invalid upper list of element %u in index \"%s\"",
				 e, RelationGetRelationName(index));
		item = PageGetItem(page, PageGetItemId(page, myslot->upperoff));
		for (int l = 1; l <= myslot->level; l++)
		{
			uint32	   *count = OmenUpperList(item, info->m, l);

			if (count[0] > (uint32) info->m)
				elog(ERROR, "invalid upper list of element %u in index \"%s\"",
					 e, RelationGetRelationName(index));
			count[0] = OmenEditList(count + 1, count[0], info->m, e,
									drop->elems[l], drop->n[l], add->elems[l], add->n[l]);
		}
		GenericXLogFinish(state);
		UnlockReleaseBuffer(buf);
	}
}

/*
 * Link an element that no list links to (VACUUM found it so after
 * repairing the graph, src/README "Vacuum"): search its segment for its
 * neighbours as an insert does, add back-links from them, and add them to
 * its own lists where there is room.  Returns whether any back-link was
 * written.
 */
bool
OmenRelinkElement(Relation index, OmenIndexInfo *info, OmenElem e)
{
	OmenReader	reader;
	OmenMetaPageData meta;
	OmenSegmentData seg;
	OmenSlot	slot = palloc(info->slotsize);
	float	   *vec = palloc(sizeof(float) * info->dims);
	const float *v;
	float		norm;
	OmenQueryPrep q;
	OmenNewLinks links;
	OmenNewLinks none;
	bool		linked = false;

	OmenReaderInit(&reader, info);
	if (!OmenReadSlot(&reader, e, slot) ||
		(slot->flags & (OMEN_SLOT_DELETED | OMEN_SLOT_NOGRAPH)))
	{
		OmenReaderRelease(&reader);
		return false;
	}
	OmenReadMetaPage(index, &meta);
	seg = meta.segments[slot->segment];
	if (seg.entry == OMEN_INVALID_ELEM || seg.entry == e)
	{
		OmenReaderRelease(&reader);
		return false;
	}
	v = OmenSlotVector(&reader, e, slot, vec, &norm);
	OmenPrepareQuery(info, v, &q);

	memset(&links, 0, sizeof(links));
	memset(&none, 0, sizeof(none));
	for (int l = 0; l <= slot->level; l++)
	{
		int			cap = l == 0 ? info->maxm0 : info->m;

		links.elems[l] = palloc(sizeof(OmenElem) * cap);
		links.dists[l] = palloc(sizeof(float) * cap);
	}
	OmenFindNeighbors(&reader, &q, seg.entry, seg.entrylevel, slot->level, &links);
	OmenReaderRelease(&reader);

	for (int l = Min(slot->level, seg.entrylevel); l >= 0; l--)
	{
		for (int i = 0; i < links.n[l]; i++)
		{
			if (links.elems[l][i] == e)
				continue;
			if (OmenAddBackLink(index, &reader, links.elems[l][i], e, links.dists[l][i], l) ==
				OMEN_BACKLINK_DONE)
				linked = true;
		}
	}
	OmenReaderRelease(&reader);
	OmenEditOwnLists(index, info, e, slot, &none, &links);
	return linked;
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
	OmenCheckPage(index, BufferGetPage(buf), OMEN_METAPAGE_BLKNO, OMEN_PAGE_META);
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
 * column has no typmod, or check against them.  The layout of the codes
 * depends on the dimensions, so it is fixed at the same time.
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
			OmenComputeLayout(OmenPageGetMeta(page));
			GenericXLogFinish(state);
		}
		else
			GenericXLogAbort(state);
		memcpy(meta, OmenPageGetMeta(BufferGetPage(buf)), sizeof(OmenMetaPageData));
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
	OmenQueryPrep q;
	OmenNewLinks links;
	int			level;
	int			segment;
	bool		nograph;
	BlockNumber vecblk = InvalidBlockNumber,
				upperblk;
	OffsetNumber vecoff = InvalidOffsetNumber,
				upperoff;
	OmenElem	elem;
	OmenNewLinks dead;
	OmenNewLinks none;
	bool		firstlock = false;
	OmenSegmentData seg;
	uint8	   *code;
	OmenSlot	slot;

	OmenReadMetaPage(index, &meta);
	OmenSetDims(index, &meta, dims);
	OmenInitIndexInfo(&info, index, &meta);

	OmenPrepareQuery(&info, v, &q);
	level = OmenRandomLevel(info.ml);
	nograph = info.metric == OMEN_METRIC_COSINE && q.q.norm == 0;
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
	OmenReaderRelease(&reader);

	if (info.quantizer != OMEN_QUANT_NONE && info.vectors == OMEN_VECTORS_INDEX)
		OmenWriteVector(index, &meta, v, q.q.norm, &vecblk, &vecoff);
	OmenWriteUpper(index, &info, &meta, level, &links, &upperblk, &upperoff);

	elem = OmenReuseElement(index, &info, meta.nextElem);
	if (elem == OMEN_INVALID_ELEM)
		elem = OmenAllocElement(index, &info);
	OmenWaitPoint("insert-after-alloc");
	code = palloc(info.codesize);
	OmenEncode(&info, v, q.q.norm, code);
	slot = palloc(info.slotsize);
	OmenFillSlot(slot, &info, 0, level, segment, nograph, tid, vecblk, vecoff,
				 upperblk, upperoff, &links);
	OmenWriteElement(index, &info, elem, code, slot);
	OmenWaitPoint("insert-after-slot");

	if (firstlock)
	{
		OmenUpdateEntry(index, segment, elem, level);
		UnlockPage(index, OMEN_METAPAGE_BLKNO, ExclusiveLock);
		return;
	}

	memset(&dead, 0, sizeof(dead));
	for (int l = 0; l <= level; l++)
		dead.elems[l] = palloc(sizeof(OmenElem) * (l == 0 ? info.maxm0 : info.m));
	memset(&none, 0, sizeof(none));

	for (int attempt = 0; attempt < 2; attempt++)
	{
		int			nlinked = 0;
		int			nwanted = 0;
		bool		anydead = false;

		memset(dead.n, 0, sizeof(dead.n));
		for (int l = Min(level, seg.entrylevel); l >= 0; l--)
		{
			for (int i = 0; i < links.n[l]; i++)
			{
				OmenElem	n = links.elems[l][i];
				int			res = OMEN_BACKLINK_GONE;

				CHECK_FOR_INTERRUPTS();
				if (n != elem)
				{
					nwanted++;
					res = OmenAddBackLink(index, &reader, n, elem, links.dists[l][i], l);
				}
				if (res == OMEN_BACKLINK_DONE)
					nlinked++;
				if (res & OMEN_BACKLINK_GONE)
				{
					dead.elems[l][dead.n[l]++] = n;
					anydead = true;
				}
			}
		}

		/*
		 * Neighbours deleted since our search: VACUUM's repair may have
		 * passed before our slot existed, and their slots will be reused,
		 * so our own lists must let go of them.  (A neighbour deleted after
		 * the check above is VACUUM's to repair: our slot is there to see.
		 * And no slot freed while we run is reused before we finish: see
		 * OmenReuseElement.)
		 */
		if (anydead)
			OmenEditOwnLists(index, &info, elem, slot, &dead, &none);
		if ((nlinked > 0 && dead.n[0] < links.n[0]) || nwanted == 0 || nograph)
			break;

		/*
		 * Not one live neighbour took a link, or none is left at level 0:
		 * VACUUM removed them meanwhile, and nothing would lead to the new
		 * element, or nothing from it.  Search again, link our element to
		 * what the graph holds now, and from it.
		 */
		OmenReadMetaPage(index, &meta);
		seg = meta.segments[segment];
		if (seg.entry == OMEN_INVALID_ELEM)
			break;
		memset(links.n, 0, sizeof(links.n));
		OmenFindNeighbors(&reader, &q, seg.entry, seg.entrylevel, level, &links);
		OmenReaderRelease(&reader);
		OmenEditOwnLists(index, &info, elem, slot, &none, &links);
	}
	OmenReaderRelease(&reader);
	OmenWaitPoint("insert-after-links");

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
	v = OmenDatumValues(OmenGetMetricInfo(index)->elemtype, values[0], &dims);
	OmenCheckVectorValues(v, dims);
	OmenInsertVector(index, v, dims, heap_tid);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	return false;
}
