/*-------------------------------------------------------------------------
 *
 * omenvacuum.c
 *	  VACUUM for omen: mark the elements of dead heap tuples deleted, repair
 *	  the graph around them, free their slots, and report statistics.
 *
 * VACUUM reuses a heap line pointer as soon as ambulkdelete returns, so
 * every reference to a dead TID must be disarmed here and now: the slot is
 * flagged deleted (and its TID cleared) in the same WAL record that looks
 * at it, and scans never return a deleted slot.  The element's code gets
 * the deleted flag too, in a second record, so that searches stop counting
 * it as a result; until then the slot's flag is what protects.
 *
 * Then the graph is repaired: every live element that linked to a deleted
 * one gets a new list, chosen from its other neighbours and the deleted
 * ones' neighbours; deleted entry points are replaced; and the deleted
 * elements' slots are freed for inserts to reuse (their graph pages go to
 * the free space map).
 *
 * IDENTIFICATION
 *	  src/omenvacuum.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "omen.h"
#include "storage/bufmgr.h"
#include "storage/indexfsm.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* Set the deleted flag in the codes of the given elements of one extent */
static void
OmenMarkCodesDeleted(IndexVacuumInfo *info, OmenIndexInfo *oi, OmenElem *elems, int n)
{
	int			i = 0;

	while (i < n)
	{
		OmenCodeLoc loc = OmenElemCodeLoc(oi, elems[i]);
		Buffer		buf = ReadBufferExtended(info->index, MAIN_FORKNUM, loc.blk,
											 RBM_NORMAL, info->strategy);
		GenericXLogState *state;
		Page		page;

		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		state = GenericXLogStart(info->index);
		page = GenericXLogRegisterBuffer(state, buf, 0);
		OmenCheckPage(info->index, page, loc.blk, OMEN_PAGE_CODE);
		/* all elements whose code header is on this page */
		while (i < n)
		{
			loc = OmenElemCodeLoc(oi, elems[i]);
			if (loc.blk != BufferGetBlockNumber(buf))
				break;
			OmenCodeSetDeleted((uint8 *) PageGetContents(page) + loc.off);
			i++;
		}
		GenericXLogFinish(state);
		UnlockReleaseBuffer(buf);
	}
}

/* ---- repairing the graph and freeing slots ---- */

#define OmenBitGet(bits, x)	(((bits)[(x) / 8] >> ((x) % 8)) & 1)

/* Times a list is read and repaired again when inserts change it under us */
#define OMEN_REPAIR_ATTEMPTS	3

static int
OmenElemCmp(const void *a, const void *b)
{
	OmenElem	x = *(const OmenElem *) a;
	OmenElem	y = *(const OmenElem *) b;

	return (x > y) - (x < y);
}

static inline bool
OmenIsDeleted(const OmenElem *set, int n, OmenElem e)
{
	return bsearch(&e, set, n, sizeof(OmenElem), OmenElemCmp) != NULL;
}

/*
 * A new neighbour list for element e at one level, without the deleted
 * elements: its live neighbours and the live neighbours of its deleted
 * ones, chosen among with the usual heuristic.  Returns the count.
 */
static int
OmenRepairList(OmenReader *r, OmenElem e, const OmenSlot eslot, int level,
			   const OmenElem *old, int nold, const OmenElem *deleted, int ndeleted,
			   OmenElem *out)
{
	OmenIndexInfo *info = r->info;
	int			cap = level == 0 ? info->maxm0 : info->m;
	int			maxcand = 4 * info->maxm0;
	OmenCand   *cands = palloc(sizeof(OmenCand) * maxcand);
	OmenElem   *nbrs = palloc(sizeof(OmenElem) * info->maxm0);
	float	   *dists = palloc(sizeof(float) * maxcand);
	float	   *base = palloc(sizeof(float) * info->dims);
	OmenSlot	dslot = palloc(info->slotsize);
	OmenQuery	q;
	int			ncand = 0;
	int			n;

	/* add a candidate once, and never e itself or a deleted element */
#define ADD_CAND(x) \
	do { \
		bool		dup_ = (x) == e || (x) == OMEN_INVALID_ELEM || \
			OmenIsDeleted(deleted, ndeleted, (x)); \
		for (int k_ = 0; k_ < ncand && !dup_; k_++) \
			dup_ = cands[k_].elem == (x); \
		if (!dup_ && ncand < maxcand) \
		{ \
			cands[ncand].elem = (x); \
			cands[ncand].dist = 0; \
			ncand++; \
		} \
	} while (0)

	for (int i = 0; i < nold; i++)
		if (!OmenIsDeleted(deleted, ndeleted, old[i]))
			ADD_CAND(old[i]);
	for (int i = 0; i < nold; i++)
	{
		if (!OmenIsDeleted(deleted, ndeleted, old[i]) || !OmenReadSlot(r, old[i], dslot))
			continue;
		n = OmenReadNeighbors(r, old[i], dslot, level, nbrs);
		for (int j = 0; j < n; j++)
			ADD_CAND(nbrs[j]);
	}
#undef ADD_CAND

	q.values = OmenSlotVector(r, e, eslot, base, &q.norm);
	n = OmenSelectFromCands(r, &q, cands, ncand, cap, true, out, dists);
	pfree(cands);
	pfree(nbrs);
	pfree(dists);
	pfree(base);
	pfree(dslot);
	return n;
}

/*
 * Write a repaired list, if the list is still what we read; returns false
 * if an insert changed it meanwhile (the caller reads it again).
 */
static bool
OmenWriteRepairedList(Relation index, OmenIndexInfo *info, OmenElem e, const OmenSlot eslot,
					  int level, const OmenElem *old, int nold, const OmenElem *newlist, int nnew)
{
	BlockNumber blk;
	int			slotno;
	Buffer		buf;
	Page		page;
	GenericXLogState *state;

	if (level == 0)
		OmenElemSlotLoc(info, e, &blk, &slotno);
	else
		blk = eslot->upperblk;
	buf = ReadBuffer(index, blk);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(state, buf, 0);
	if (level == 0)
	{
		OmenSlot	pslot;

		OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
		pslot = OmenPageGetSlot(page, info->slotsize, slotno);
		if (pslot->generation != eslot->generation || pslot->n0 != nold ||
			memcmp(pslot->neighbors, old, sizeof(OmenElem) * nold) != 0)
		{
			GenericXLogAbort(state);
			UnlockReleaseBuffer(buf);
			return false;
		}
		pslot->n0 = nnew;
		for (int j = 0; j < info->maxm0; j++)
			pslot->neighbors[j] = j < nnew ? newlist[j] : OMEN_INVALID_ELEM;
	}
	else
	{
		uint32	   *count;

		OmenCheckPage(index, page, blk, OMEN_PAGE_UPPER);
		if (!OmenItemOk(page, eslot->upperoff, OmenUpperItemSize(info->m, eslot->level)))
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("index \"%s\" has an invalid upper neighbour list",
							RelationGetRelationName(index)),
					 errdetail("Block %u, offset %u.", blk, eslot->upperoff)));
		count = OmenUpperList(PageGetItem(page, PageGetItemId(page, eslot->upperoff)),
							  info->m, level);
		if (count[0] != (uint32) nold || memcmp(count + 1, old, sizeof(OmenElem) * nold) != 0)
		{
			GenericXLogAbort(state);
			UnlockReleaseBuffer(buf);
			return false;
		}
		count[0] = nnew;
		for (int j = 0; j < info->m; j++)
			count[j + 1] = j < nnew ? newlist[j] : OMEN_INVALID_ELEM;
	}
	GenericXLogFinish(state);
	UnlockReleaseBuffer(buf);
	return true;
}

/*
 * Take the deleted elements out of every live element's neighbour lists,
 * reconnecting each such element through its deleted neighbours' own
 * neighbours, so that what was reachable through them stays reachable.
 * Also notes, per segment, the highest live element, to replace a deleted
 * entry point.  A list that inserts kept changing under us is left as it
 * is, and the deleted elements it holds are flagged in keep[]: they must
 * not be freed yet (the next VACUUM tries again).
 */
static void
OmenRepairGraph(IndexVacuumInfo *vinfo, OmenIndexInfo *info, uint32 nextents,
				const OmenElem *deleted, int ndeleted, bool *keep,
				OmenElem *best, int *bestlevel)
{
	OmenReader	r;
	OmenSlot	slot = palloc(info->slotsize);
	OmenElem   *old = palloc(sizeof(OmenElem) * info->maxm0);
	OmenElem   *newlist = palloc(sizeof(OmenElem) * info->maxm0);
	MemoryContext tmp = AllocSetContextCreate(CurrentMemoryContext, "omen repair",
											  ALLOCSET_DEFAULT_SIZES);

	OmenReaderInit(&r, info);
	r.nohints = true;			/* VACUUM counts what ReadBuffer reads */
	for (uint32 x = 0; x < nextents; x++)
	{
		for (int i = 0; i < info->K; i++)
		{
			OmenElem	e = x * info->K + i;
			MemoryContext oldcxt;

			if (!OmenReadSlot(&r, e, slot) || (slot->flags & (OMEN_SLOT_DELETED | OMEN_SLOT_NOGRAPH)))
				continue;
			if (best[slot->segment] == OMEN_INVALID_ELEM || slot->level > bestlevel[slot->segment])
			{
				best[slot->segment] = e;
				bestlevel[slot->segment] = slot->level;
			}
			for (int level = 0; level <= slot->level; level++)
			{
				int			nold = 0;
				bool		done = false;

				/* an insert may change the list under us: then again */
				for (int attempt = 0; attempt < OMEN_REPAIR_ATTEMPTS && !done; attempt++)
				{
					bool		hit = false;
					int			nnew;

					if (attempt > 0 &&
						(!OmenReadSlot(&r, e, slot) || (slot->flags & OMEN_SLOT_DELETED)))
					{
						done = true;
						break;
					}
					nold = OmenReadNeighbors(&r, e, slot, level, old);
					for (int j = 0; j < nold && !hit; j++)
						hit = OmenIsDeleted(deleted, ndeleted, old[j]);
					if (!hit)
					{
						done = true;
						break;
					}
					vacuum_delay_point();
					oldcxt = MemoryContextSwitchTo(tmp);
					nnew = OmenRepairList(&r, e, slot, level, old, nold, deleted, ndeleted, newlist);
					MemoryContextSwitchTo(oldcxt);
					MemoryContextReset(tmp);
					OmenReaderRelease(&r);
					done = OmenWriteRepairedList(vinfo->index, info, e, slot, level, old, nold,
												 newlist, nnew);
				}
				if (!done)
				{
					/* still linked from this list: keep them for next time */
					for (int j = 0; j < nold; j++)
					{
						const OmenElem *hit = bsearch(&old[j], deleted, ndeleted,
												  sizeof(OmenElem), OmenElemCmp);

						if (hit)
							keep[hit - deleted] = true;
					}
				}
			}
		}
		OmenReaderRelease(&r);
	}
	MemoryContextDelete(tmp);
	pfree(slot);
	pfree(old);
	pfree(newlist);
}

/*
 * Free the slots of deleted elements: first their codes lose the valid
 * flag (searches then skip them), then the slots are cleared, and their
 * graph pages go to the free space map for inserts to reuse.  Replaces
 * deleted entry points and advances the code generation, so that
 * backends drop their cached copies of codes.
 */
static void
OmenFreeDeleted(IndexVacuumInfo *vinfo, OmenIndexInfo *info, const OmenElem *deleted,
				int ndeleted, const bool *keep, const OmenElem *best, const int *bestlevel,
				int nsegments)
{
	Relation	index = vinfo->index;
	Buffer		buf;
	GenericXLogState *state;
	OmenMetaPage meta;
	Page		page;
	FullTransactionId freexid;

	/* entry points first: no scan may start from a freed slot */
	buf = ReadBuffer(index, OMEN_METAPAGE_BLKNO);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(state, buf, 0);
	OmenCheckPage(index, page, OMEN_METAPAGE_BLKNO, OMEN_PAGE_META);
	meta = OmenPageGetMeta(page);
	for (int s = 0; s < nsegments && s < meta->nsegments; s++)
	{
		if (meta->segments[s].entry != OMEN_INVALID_ELEM &&
			OmenIsDeleted(deleted, ndeleted, meta->segments[s].entry))
		{
			meta->segments[s].entry = best[s];
			meta->segments[s].entrylevel = best[s] == OMEN_INVALID_ELEM ? -1 : bestlevel[s];
		}
	}
	GenericXLogFinish(state);
	UnlockReleaseBuffer(buf);

	/*
	 * The newest transaction an insert running now can belong to: each has
	 * its transaction ID (it inserted into the heap first), and nothing but
	 * CREATE INDEX CONCURRENTLY inserts without one, which VACUUM cannot
	 * run beside.  A slot freed now is reused only once that transaction is
	 * older than every one still running.
	 */
	freexid = ReadNextFullTransactionId();
	FullTransactionIdRetreat(&freexid);

	for (int i = 0; i < ndeleted; i++)
	{
		OmenCodeLoc loc = OmenElemCodeLoc(info, deleted[i]);
		BlockNumber blk;
		int			slotno;
		OmenSlot	slot;

		if (keep[i])
			continue;
		vacuum_delay_point();
		buf = ReadBufferExtended(index, MAIN_FORKNUM, loc.blk, RBM_NORMAL, vinfo->strategy);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, 0);
		OmenCheckPage(index, page, loc.blk, OMEN_PAGE_CODE);
		*(uint16 *) (PageGetContents(page) + loc.off) = 0;
		GenericXLogFinish(state);
		UnlockReleaseBuffer(buf);

		OmenElemSlotLoc(info, deleted[i], &blk, &slotno);
		buf = ReadBufferExtended(index, MAIN_FORKNUM, blk, RBM_NORMAL, vinfo->strategy);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, 0);
		OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
		slot = OmenPageGetSlot(page, info->slotsize, slotno);
		if (slot->flags & OMEN_SLOT_DELETED)
		{
			slot->flags = OMEN_SLOT_FREE;
			slot->n0 = 0;
			OmenSlotSetFreeXid(slot, freexid);
			GenericXLogFinish(state);
			RecordFreeIndexPage(index, blk);
		}
		else
			GenericXLogAbort(state);
		UnlockReleaseBuffer(buf);
	}

	/* cached copies of codes are stale now */
	buf = ReadBuffer(index, OMEN_METAPAGE_BLKNO);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(state, buf, 0);
	OmenPageGetMeta(page)->codegen++;
	GenericXLogFinish(state);
	UnlockReleaseBuffer(buf);
}

/*
 * Mark in reached[] (a bitmap of nelems bits) every element that a walk
 * over every neighbour list, at every level, from the entry points reaches.
 */
static void
OmenWalkGraph(Relation index, OmenReader *r, uint8 *reached, uint64 nelems)
{
	OmenIndexInfo *info = r->info;
	OmenMetaPageData meta;
	OmenSlot	slot = palloc(info->slotsize);
	OmenElem   *nbrs = palloc(sizeof(OmenElem) * info->maxm0);
	OmenElem   *queue = MemoryContextAllocExtended(CurrentMemoryContext,
												   sizeof(OmenElem) * Max(nelems, 1),
												   MCXT_ALLOC_HUGE);
	uint64		head = 0;
	uint64		tail = 0;

#define REACH(x) \
	do { \
		if ((uint64) (x) < nelems && !OmenBitGet(reached, (x))) \
		{ \
			reached[(x) / 8] |= 1 << ((x) % 8); \
			queue[tail++] = (x); \
		} \
	} while (0)

	memset(reached, 0, (nelems + 7) / 8);
	OmenReadMetaPage(index, &meta);
	for (int s = 0; s < meta.nsegments && s < OMEN_MAX_SEGMENTS; s++)
		if (meta.segments[s].entry != OMEN_INVALID_ELEM)
			REACH(meta.segments[s].entry);

	/* breadth first, over all levels */
	while (head < tail)
	{
		OmenElem	e = queue[head++];

		if (head % 1024 == 0)
		{
			OmenReaderRelease(r);
			vacuum_delay_point();
		}
		if (!OmenReadSlot(r, e, slot) || (slot->flags & OMEN_SLOT_NOGRAPH))
			continue;
		for (int level = 0; level <= slot->level; level++)
		{
			int			n = OmenReadNeighbors(r, e, slot, level, nbrs);

			for (int j = 0; j < n; j++)
				REACH(nbrs[j]);
		}
	}
	OmenReaderRelease(r);
#undef REACH
	pfree(queue);
	pfree(nbrs);
	pfree(slot);
}

/*
 * Find the live elements that a walk of the graph from the entry points
 * does not reach, and link them again (OmenRelinkElement).  Repair can
 * leave such elements when most of a neighbourhood was deleted: the
 * elements that linked to one were deleted, and the heuristic did not pick
 * it for the lists of their live neighbours.  CREATE INDEX runs it too:
 * HNSW pruning leaves a few in any build.  Relinking links as an insert
 * does, heuristic included, so an element the heuristic keeps no link to
 * stays unreached (many copies of one vector are the usual case).  Inserts
 * may run meanwhile; an element they add after our walk may look unreached
 * and get a few more links, which does no harm.  Returns the number of
 * elements relinked.
 */
int64
OmenRelinkOrphans(Relation index, OmenIndexInfo *info, uint32 nextents)
{
	OmenReader	r;
	OmenSlot	slot = palloc(info->slotsize);
	uint64		nelems = (uint64) nextents * info->K;
	uint8	   *reached = MemoryContextAllocExtended(CurrentMemoryContext, (nelems + 7) / 8,
													 MCXT_ALLOC_HUGE);
	int64		relinked = 0;
	MemoryContext tmp = AllocSetContextCreate(CurrentMemoryContext, "omen relink",
											  ALLOCSET_DEFAULT_SIZES);

	OmenReaderInit(&r, info);
	r.nohints = true;			/* VACUUM counts what ReadBuffer reads */
	OmenWalkGraph(index, &r, reached, nelems);
	for (uint64 e = 0; e < nelems; e++)
	{
		MemoryContext oldcxt;

		if (e % info->K == 0)
		{
			OmenReaderRelease(&r);
			vacuum_delay_point();
		}
		if (OmenBitGet(reached, e) || !OmenReadSlot(&r, (OmenElem) e, slot) ||
			(slot->flags & (OMEN_SLOT_DELETED | OMEN_SLOT_NOGRAPH)))
			continue;
		OmenReaderRelease(&r);
		oldcxt = MemoryContextSwitchTo(tmp);
		if (OmenRelinkElement(index, info, (OmenElem) e))
			relinked++;
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(tmp);
	}
	OmenReaderRelease(&r);
	MemoryContextDelete(tmp);
	pfree(reached);
	pfree(slot);
	return relinked;
}

/*
 * Reconnect the graph around the deleted elements (sorted here), then free
 * their slots for reuse, and link again the elements that lost every link
 * to them.
 */
static void
OmenRepairAndFree(IndexVacuumInfo *info, OmenIndexInfo *oi, const OmenMetaPageData *meta,
				  OmenElem *deleted, int ndeleted)
{
	OmenElem	best[OMEN_MAX_SEGMENTS];
	int			bestlevel[OMEN_MAX_SEGMENTS];
	bool	   *keep = palloc0(sizeof(bool) * ndeleted);

	for (int i = 0; i < OMEN_MAX_SEGMENTS; i++)
	{
		best[i] = OMEN_INVALID_ELEM;
		bestlevel[i] = -1;
	}
	qsort(deleted, ndeleted, sizeof(OmenElem), OmenElemCmp);
	OmenRepairGraph(info, oi, meta->nextents, deleted, ndeleted, keep, best, bestlevel);
	OmenFreeDeleted(info, oi, deleted, ndeleted, keep, best, bestlevel, meta->nsegments);
	pfree(keep);
	OmenRelinkOrphans(info->index, oi, meta->nextents);
}

/*
 * Walk every graph page, calling the callback once for each indexed heap
 * TID (CREATE INDEX CONCURRENTLY relies on seeing each one exactly once),
 * and flag the elements it reports dead.
 */
IndexBulkDeleteResult *
omenbulkdelete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
			   IndexBulkDeleteCallback callback, void *callback_state)
{
	Relation	index = info->index;
	OmenMetaPageData meta;
	OmenIndexInfo oi;
	OmenElem   *deleted;
	OmenElem   *alldeleted;
	int			nalldeleted = 0;
	int			allcap = 1024;

	if (stats == NULL)
		stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));

	OmenReadMetaPage(index, &meta);
	OmenInitIndexInfo(&oi, index, &meta);
	stats->num_index_tuples = 0;
	deleted = palloc(sizeof(OmenElem) * Max(oi.K, 1));
	alldeleted = palloc(sizeof(OmenElem) * allcap);

	for (uint32 x = 0; x < meta.nextents; x++)
	{
		BlockNumber start = OmenExtentStart(&oi, x);
		int			ndeleted = 0;

		for (int g = 0; g < oi.G; g++)
		{
			BlockNumber blk = start + oi.C + g;
			Buffer		buf;
			Page		page;
			GenericXLogState *state;
			int			nslots;
			int			before = ndeleted;

			vacuum_delay_point();
			buf = ReadBufferExtended(index, MAIN_FORKNUM, blk, RBM_NORMAL, info->strategy);
			LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
			state = GenericXLogStart(index);
			page = GenericXLogRegisterBuffer(state, buf, 0);
			OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
			nslots = Min(OmenPageGetOpaque(page)->nslots, oi.slotsperpage);
			for (int s = 0; s < nslots; s++)
			{
				OmenSlot	slot = OmenPageGetSlot(page, oi.slotsize, s);
				OmenElem	e = x * oi.K + g * oi.slotsperpage + s;
				bool		dead = false;

				if (!(slot->flags & OMEN_SLOT_USED))
					continue;
				if (slot->flags & OMEN_SLOT_DELETED)
					dead = true;	/* left by an interrupted VACUUM */
				else if (callback(&slot->heaptid, callback_state))
				{
					slot->flags |= OMEN_SLOT_DELETED;
					ItemPointerSetInvalid(&slot->heaptid);
					deleted[ndeleted++] = e;
					stats->tuples_removed++;
					dead = true;
				}
				else
					stats->num_index_tuples++;
				if (dead)
				{
					if (nalldeleted == allcap)
					{
						allcap *= 2;
						alldeleted = repalloc_huge(alldeleted, sizeof(OmenElem) * allcap);
					}
					alldeleted[nalldeleted++] = e;
				}
			}
			if (ndeleted > before)
				GenericXLogFinish(state);
			else
				GenericXLogAbort(state);
			UnlockReleaseBuffer(buf);
		}
		if (ndeleted > 0)
		{
			OmenWaitPoint("vacuum-after-slots");
			OmenMarkCodesDeleted(info, &oi, deleted, ndeleted);
		}
	}

	/*
	 * Reconnect the graph around the deleted elements, then free their
	 * slots for reuse.  The heap TIDs are disarmed already; this part may be
	 * interrupted and is picked up by the next VACUUM.
	 */
	if (nalldeleted > 0)
		OmenRepairAndFree(info, &oi, &meta, alldeleted, nalldeleted);

	stats->num_pages = RelationGetNumberOfBlocks(index);
	pfree(deleted);
	pfree(alldeleted);
	return stats;
}

/*
 * After VACUUM: report the number of pages and live elements.  When no
 * bulk delete ran, count the elements here, and finish what an earlier
 * VACUUM left: deleted elements it could not free yet (a list that inserts
 * kept changing, or an interrupted VACUUM), and graph pages with free
 * slots the free space map forgot (it is not WAL-logged, so a crash or a
 * promoted standby loses it).
 */
IndexBulkDeleteResult *
omenvacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	Relation	index = info->index;
	OmenMetaPageData meta;
	OmenIndexInfo oi;
	OmenElem   *deleted;
	int			ndeleted = 0;
	int			cap = 1024;

	if (info->analyze_only)
		return stats;
	if (stats != NULL)
	{
		IndexFreeSpaceMapVacuum(index);
		return stats;
	}

	stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));
	OmenReadMetaPage(index, &meta);
	OmenInitIndexInfo(&oi, index, &meta);
	deleted = palloc(sizeof(OmenElem) * cap);
	for (uint32 x = 0; x < meta.nextents; x++)
	{
		BlockNumber start = OmenExtentStart(&oi, x);

		for (int g = 0; g < oi.G; g++)
		{
			BlockNumber blk = start + oi.C + g;
			Buffer		buf;
			Page		page;
			int			nslots;
			bool		freeslots = false;

			vacuum_delay_point();
			buf = ReadBufferExtended(index, MAIN_FORKNUM, blk, RBM_NORMAL, info->strategy);
			LockBuffer(buf, BUFFER_LOCK_SHARE);
			page = BufferGetPage(buf);
			OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
			nslots = Min(OmenPageGetOpaque(page)->nslots, oi.slotsperpage);
			for (int s = 0; s < nslots; s++)
			{
				OmenSlot	slot = OmenPageGetSlot(page, oi.slotsize, s);

				if ((slot->flags & OMEN_SLOT_USED) && !(slot->flags & OMEN_SLOT_DELETED))
					stats->num_index_tuples++;
				else if (slot->flags & OMEN_SLOT_USED)
				{
					if (ndeleted == cap)
					{
						cap *= 2;
						deleted = repalloc_huge(deleted, sizeof(OmenElem) * cap);
					}
					deleted[ndeleted++] = x * oi.K + g * oi.slotsperpage + s;
				}
				else if (slot->flags == OMEN_SLOT_FREE)
					freeslots = true;
			}
			UnlockReleaseBuffer(buf);
			if (freeslots)
				RecordFreeIndexPage(index, blk);
		}
	}
	if (ndeleted > 0)
		OmenRepairAndFree(info, &oi, &meta, deleted, ndeleted);
	else if (stats->num_index_tuples > 0)
	{
		/*
		 * Nothing to delete, but the inserts since the last VACUUM may have
		 * left elements nobody links to any more (a later insert's
		 * back-link pruned away the only link to one): link them again.
		 */
		OmenRelinkOrphans(index, &oi, meta.nextents);
	}
	IndexFreeSpaceMapVacuum(index);
	pfree(deleted);
	stats->num_pages = RelationGetNumberOfBlocks(index);
	return stats;
}
