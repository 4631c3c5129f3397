/*-------------------------------------------------------------------------
 *
 * omenscan.c
 *	  Ordered index scans for omen: ORDER BY vector <op> constant.
 *
 * An index scan never learns the query's LIMIT, so the scan is resumable:
 * it first searches every segment with ef = omen.ef_search and returns
 * what it found in order of distance; when the executor asks for more, it
 * continues each segment's search from where it stopped with twice the ef,
 * and so on until the graphs are exhausted.  Elements no graph search
 * reached (and zero vectors under cosine, which are not linked into the
 * graph) are then found by a sweep over the graph pages, so that a scan
 * drained to the end returns every row.
 *
 * Rows come out in non-decreasing distance: a row found after a farther
 * one has been returned is dropped rather than returned out of order.
 * Distances are exact (computed on the full vectors), so this only ever
 * drops rows that an approximate search found late.
 *
 * IDENTIFICATION
 *	  src/omenscan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relscan.h"
#include "miscadmin.h"
#include "omen.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* The search state of one segment */
typedef struct OmenSegScan
{
	OmenLayerSearch s;
	int			ef;
	OmenCand   *batch;			/* found, not yet returned, sorted */
	int			nbatch;
	int			pos;
	bool		exhausted;
} OmenSegScan;

typedef enum OmenScanPhase
{
	OMEN_SCAN_START,
	OMEN_SCAN_GRAPH,			/* returning what graph searches find */
	OMEN_SCAN_SWEEP,			/* returning what they did not reach */
	OMEN_SCAN_DONE
} OmenScanPhase;

typedef struct OmenScanOpaqueData
{
	MemoryContext ctx;			/* reset at every rescan */
	OmenScanPhase phase;
	OmenMetaPageData meta;
	OmenIndexInfo info;
	OmenReader	reader;
	bool		nullquery;
	OmenQuery	q;
	int			nsegs;
	OmenSegScan *segs;
	float		lastdist;
	bool		havelast;
	/* sweep */
	OmenHeap	sweep;			/* min-heap of leftovers, by distance */
	OmenCand   *sweepnull;		/* leftovers in physical order (NULL query) */
	int			nsweepnull;
	int			sweeppos;
	IndexTuple	nulltup;		/* for index-only scans; see omengettuple */
	/* statistics */
	uint64		dropped;
	uint64		returned;
} OmenScanOpaqueData;

typedef OmenScanOpaqueData *OmenScanOpaque;

IndexScanDesc
omenbeginscan(Relation index, int nkeys, int norderbys)
{
	IndexScanDesc scan = RelationGetIndexScan(index, nkeys, norderbys);
	OmenScanOpaque so = palloc0(sizeof(OmenScanOpaqueData));

	so->ctx = AllocSetContextCreate(CurrentMemoryContext, "omen scan", ALLOCSET_DEFAULT_SIZES);
	so->phase = OMEN_SCAN_START;
	scan->opaque = so;
	return scan;
}

void
omenrescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys)
{
	OmenScanOpaque so = (OmenScanOpaque) scan->opaque;

	if (so->phase != OMEN_SCAN_START && so->phase != OMEN_SCAN_DONE)
		OmenReaderRelease(&so->reader);
	MemoryContextReset(so->ctx);
	so->phase = OMEN_SCAN_START;

	if (keys && scan->numberOfKeys > 0)
		memmove(scan->keyData, keys, scan->numberOfKeys * sizeof(ScanKeyData));
	if (orderbys && scan->numberOfOrderBys > 0)
		memmove(scan->orderByData, orderbys, scan->numberOfOrderBys * sizeof(ScanKeyData));
}

/*
 * Start the scan: read the metapage, take the query vector, and run the
 * first round of every segment's search.
 */
static void
OmenScanStart(IndexScanDesc scan)
{
	OmenScanOpaque so = (OmenScanOpaque) scan->opaque;
	Relation	index = scan->indexRelation;
	int			dims;

	OmenReadMetaPage(index, &so->meta);
	OmenInitIndexInfo(&so->info, index, &so->meta);
	OmenReaderInit(&so->reader, &so->info);
	so->havelast = false;
	so->nsegs = so->meta.nsegments;
	so->segs = palloc0(sizeof(OmenSegScan) * Max(so->nsegs, 1));

	/*
	 * Without an ORDER BY value (ORDER BY v <-> NULL, or a plan that scans
	 * the index for no order at all) every row is returned in physical
	 * order.
	 */
	so->nullquery = scan->numberOfOrderBys == 0 ||
		(scan->orderByData[0].sk_flags & SK_ISNULL) != 0;
	if (so->meta.dims == 0)
	{
		/* no vector was ever indexed */
		so->phase = OMEN_SCAN_DONE;
		return;
	}
	if (so->nullquery)
	{
		so->phase = OMEN_SCAN_SWEEP;
		return;
	}

	so->q.values = OmenVectorValues(scan->orderByData[0].sk_argument, &dims);
	if (dims != so->meta.dims)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different vector dimensions %d and %d", so->meta.dims, dims)));
	/* copy: the argument may be freed before the scan ends */
	so->q.values = memcpy(palloc(sizeof(float) * dims), so->q.values, sizeof(float) * dims);
	so->q.norm = OmenNorm(so->q.values, dims);

	for (int i = 0; i < so->nsegs; i++)
	{
		OmenSegScan *ss = &so->segs[i];
		OmenSegmentData *sd = &so->meta.segments[i];
		OmenElem	ep;

		OmenLayerInit(&ss->s, &so->reader, 0);
		ss->s.segment = i;
		ss->ef = omen_ef_search;
		if (sd->entry == OMEN_INVALID_ELEM)
		{
			ss->exhausted = true;
			continue;
		}
		ep = OmenDescend(&so->reader, &so->q, sd->entry, sd->entrylevel, 0);
		OmenLayerAddEntry(&ss->s, &so->reader, &so->q, ep);
	}
	so->phase = OMEN_SCAN_GRAPH;
}

/*
 * Make sure a segment has something to return, running further rounds of
 * its search as needed.  Returns false once it is exhausted.
 */
static bool
OmenSegFill(OmenScanOpaque so, OmenSegScan *ss)
{
	while (!ss->exhausted && ss->pos >= ss->nbatch)
	{
		int			n;

		if (ss->batch != NULL)
		{
			/* the last round's results are used up: widen the search */
			if (ss->s.C.n == 0 && ss->s.D.n == 0)
			{
				ss->exhausted = true;
				break;
			}
			ss->ef = (ss->ef > INT_MAX / 2) ? INT_MAX : ss->ef * 2;
			pfree(ss->batch);
		}
		OmenLayerRun(&ss->s, &so->reader, &so->q, ss->ef);
		ss->batch = palloc(sizeof(OmenCand) * Max(ss->s.W.n, 1));
		n = OmenLayerResults(&ss->s, ss->batch);

		/* keep what was not returned yet */
		ss->nbatch = 0;
		ss->pos = 0;
		for (int i = 0; i < n; i++)
		{
			uint8	   *flags = OmenLayerFlags(&ss->s, ss->batch[i].elem);

			if (flags && !(*flags & (OMEN_VISIT_EMITTED | OMEN_VISIT_SKIP)))
				ss->batch[ss->nbatch++] = ss->batch[i];
		}
	}
	return !ss->exhausted;
}

/* Was this element already handled by its segment's graph search? */
static bool
OmenScanSeen(OmenScanOpaque so, OmenElem elem, int segment)
{
	uint8	   *flags;

	if (so->nullquery || segment >= so->nsegs || so->segs[segment].s.visited == NULL)
		return false;
	flags = OmenLayerFlags(&so->segs[segment].s, elem);
	return flags != NULL && (*flags & OMEN_VISIT_EMITTED);
}

/*
 * Collect every live element the graph searches did not return, reading
 * the graph pages in physical order.
 */
static void
OmenSweepCollect(OmenScanOpaque so)
{
	Relation	index = so->info.index;
	BlockNumber nblocks = RelationGetNumberOfBlocks(index);
	OmenReader *r = &so->reader;
	int			cap = 1024;

	OmenHeapInit(&so->sweep, 1024, false);
	if (so->nullquery)
		so->sweepnull = palloc(sizeof(OmenCand) * cap);

	for (BlockNumber blk = 1; blk < nblocks; blk++)
	{
		Buffer		buf;
		Page		page;
		int			nslots;
		OmenCand   *live = NULL;
		int			nlive = 0;

		CHECK_FOR_INTERRUPTS();
		buf = OmenReaderPin(r, blk);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		if (PageIsNew(page) || OmenPageGetOpaque(page)->type != OMEN_PAGE_GRAPH)
		{
			LockBuffer(buf, BUFFER_LOCK_UNLOCK);
			continue;
		}
		OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
		nslots = OmenPageGetOpaque(page)->nslots;
		live = palloc(sizeof(OmenCand) * nslots);
		for (int s = 0; s < nslots && s < so->info.slotsperpage; s++)
		{
			OmenSlot	slot = OmenPageGetSlot(page, so->info.slotsize, s);
			OmenElem	elem = OmenElemMake(blk, s);

			if ((slot->flags & OMEN_SLOT_USED) && !(slot->flags & OMEN_SLOT_DELETED) &&
				!OmenScanSeen(so, elem, slot->segment))
			{
				live[nlive].elem = elem;
				live[nlive].dist = 0;
				nlive++;
			}
		}
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);

		for (int i = 0; i < nlive; i++)
		{
			if (so->nullquery)
			{
				if (so->nsweepnull == cap)
				{
					cap *= 2;
					so->sweepnull = repalloc_huge(so->sweepnull, sizeof(OmenCand) * cap);
				}
				so->sweepnull[so->nsweepnull++] = live[i];
			}
			else if (OmenReadSlot(r, live[i].elem, r->slot))
				OmenHeapPush(&so->sweep, OmenSlotDistance(r, r->slot, &so->q), live[i].elem);
		}
		pfree(live);
	}
	so->sweeppos = 0;
}

/* The next candidate to return, or false when there is none */
static bool
OmenScanNext(OmenScanOpaque so, OmenCand *next)
{
	if (so->phase == OMEN_SCAN_GRAPH)
	{
		OmenSegScan *best = NULL;

		for (int i = 0; i < so->nsegs; i++)
		{
			OmenSegScan *ss = &so->segs[i];

			if (!OmenSegFill(so, ss))
				continue;
			if (best == NULL || OmenDistLess(ss->batch[ss->pos].dist, best->batch[best->pos].dist))
				best = ss;
		}
		if (best != NULL)
		{
			uint8	   *flags = OmenLayerFlags(&best->s, best->batch[best->pos].elem);

			*next = best->batch[best->pos++];
			*flags |= OMEN_VISIT_EMITTED;
			return true;
		}
		OmenSweepCollect(so);
		so->phase = OMEN_SCAN_SWEEP;
		return OmenScanNext(so, next);
	}
	if (so->phase == OMEN_SCAN_SWEEP)
	{
		if (so->sweep.items == NULL)
			OmenSweepCollect(so);
		if (so->nullquery)
		{
			if (so->sweeppos < so->nsweepnull)
			{
				*next = so->sweepnull[so->sweeppos++];
				return true;
			}
		}
		else if (so->sweep.n > 0)
		{
			*next = OmenHeapPop(&so->sweep);
			return true;
		}
		so->phase = OMEN_SCAN_DONE;
	}
	return false;
}

bool
omengettuple(IndexScanDesc scan, ScanDirection dir)
{
	OmenScanOpaque so = (OmenScanOpaque) scan->opaque;
	MemoryContext old = MemoryContextSwitchTo(so->ctx);
	OmenCand	c;
	bool		found = false;

	if (so->phase == OMEN_SCAN_START)
	{
		pgstat_count_index_scan(scan->indexRelation);
		OmenScanStart(scan);
	}

	while (OmenScanNext(so, &c))
	{
		OmenSlot	slot = so->reader.slot;

		CHECK_FOR_INTERRUPTS();
		if (!so->nullquery && so->havelast && OmenDistLess(c.dist, so->lastdist))
		{
			/* found after a farther row was returned: cannot go out in order */
			so->dropped++;
			continue;
		}
		/* re-read: vacuum may have removed it since the search saw it */
		if (!OmenReadSlot(&so->reader, c.elem, slot) || (slot->flags & OMEN_SLOT_DELETED))
			continue;
		scan->xs_heaptid = slot->heaptid;
		if (scan->xs_want_itup)
		{
			/*
			 * The planner picks an index-only scan when a query needs no
			 * column at all (SELECT count(*) ... ORDER BY v <-> NULL): give
			 * it a tuple with a null key, since we cannot return vectors.
			 */
			if (so->nulltup == NULL)
			{
				MemoryContext oldcxt = MemoryContextSwitchTo(GetMemoryChunkContext(so));
				Datum		value = (Datum) 0;
				bool		isnull = true;

				so->nulltup = index_form_tuple(RelationGetDescr(scan->indexRelation), &value, &isnull);
				MemoryContextSwitchTo(oldcxt);
			}
			scan->xs_itup = so->nulltup;
			scan->xs_itupdesc = RelationGetDescr(scan->indexRelation);
		}
		scan->xs_recheck = false;
		scan->xs_recheckorderby = false;
		if (!so->nullquery)
		{
			so->lastdist = c.dist;
			so->havelast = true;
		}
		so->returned++;
		found = true;
		break;
	}

	/* no pins are held between calls */
	if (so->phase != OMEN_SCAN_START)
		OmenReaderRelease(&so->reader);
	MemoryContextSwitchTo(old);
	return found;
}

void
omenendscan(IndexScanDesc scan)
{
	OmenScanOpaque so = (OmenScanOpaque) scan->opaque;

	if (so->phase != OMEN_SCAN_START && so->phase != OMEN_SCAN_DONE)
		OmenReaderRelease(&so->reader);
	MemoryContextDelete(so->ctx);
	pfree(so);
	scan->opaque = NULL;
}
