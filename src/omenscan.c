/*-------------------------------------------------------------------------
 *
 * omenscan.c
 *	  Ordered index scans for omen: ORDER BY vector <op> constant.
 *
 * An index scan never learns the query's LIMIT, so the scan is resumable.
 * It searches every segment's graph on codes with ef = omen.ef_search,
 * re-ranks the best candidates with exact distances and returns them in
 * that order; when the executor asks for more, each segment's search goes
 * on from where it stopped with twice the ef, and so on until the graphs
 * are exhausted.  Elements no graph search reached (and zero vectors under
 * cosine, which are not linked) are then found by a sweep over the graph
 * pages, so that a scan drained to the end returns every row but those it
 * had to drop to keep the order.
 *
 * Rows come out in non-decreasing exact distance: a row found after a
 * farther one has been returned is dropped rather than returned out of
 * order (omen_last_scan() counts them).
 *
 * IDENTIFICATION
 *	  src/omenscan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/relscan.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "omen.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* A candidate re-ranked and ready to be returned */
typedef struct OmenScanItem
{
	float		dist;			/* exact */
	OmenElem	elem;
	ItemPointerData tid;
} OmenScanItem;

/* The search state of one segment */
typedef struct OmenSegScan
{
	OmenLayerSearch s;
	int			ef;
	OmenScanItem *batch;		/* re-ranked, not yet returned, sorted */
	int			nbatch;
	int			pos;
	bool		started;
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
	OmenQueryPrep qp;
	int			nsegs;
	OmenSegScan *segs;
	float		lastdist;
	bool		havelast;
	/* sweep */
	OmenScanItem *sweep;		/* leftovers, sorted (or physical order) */
	int			nsweep;
	int			sweeppos;
	bool		swept;
	IndexTuple	nulltup;		/* for index-only scans; see omengettuple */
	OmenScanStats stats;
} OmenScanOpaqueData;

typedef OmenScanOpaqueData *OmenScanOpaque;

/* What the last scan in this backend did, for omen_last_scan() */
static OmenScanStats omen_last_stats;

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

/* Publish a scan's statistics as "the last scan" */
static void
OmenScanPublishStats(OmenScanOpaque so)
{
	if (so->phase == OMEN_SCAN_START)
		return;
	so->stats.pages = so->reader.pages;
	so->stats.codedists = so->reader.codedists;
	so->stats.exactdists = so->reader.distances;
	so->stats.expanded = so->reader.expanded;
	omen_last_stats = so->stats;
}

void
omenrescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys)
{
	OmenScanOpaque so = (OmenScanOpaque) scan->opaque;

	OmenScanPublishStats(so);
	if (so->phase != OMEN_SCAN_START)
		OmenReaderHeapEnd(&so->reader);
	MemoryContextReset(so->ctx);
	so->phase = OMEN_SCAN_START;

	if (keys && scan->numberOfKeys > 0)
		memmove(scan->keyData, keys, scan->numberOfKeys * sizeof(ScanKeyData));
	if (orderbys && scan->numberOfOrderBys > 0)
		memmove(scan->orderByData, orderbys, scan->numberOfOrderBys * sizeof(ScanKeyData));
}

/*
 * Start the scan: read the metapage, take the query vector, and enter
 * every segment's graph.
 */
static void
OmenScanStart(IndexScanDesc scan)
{
	OmenScanOpaque so = (OmenScanOpaque) scan->opaque;
	Relation	index = scan->indexRelation;
	const float *values;
	int			dims;

	OmenReadMetaPage(index, &so->meta);
	OmenInitIndexInfo(&so->info, index, &so->meta);
	OmenReaderInit(&so->reader, &so->info);
	OmenReaderHeapBegin(&so->reader, scan->heapRelation);
	so->havelast = false;
	so->swept = false;
	so->nsegs = so->meta.nsegments;
	so->segs = palloc0(sizeof(OmenSegScan) * Max(so->nsegs, 1));
	memset(&so->stats, 0, sizeof(OmenScanStats));
	so->stats.segments = so->nsegs;

	/*
	 * Without an ORDER BY value (ORDER BY v <-> NULL, or a plan that scans
	 * the index for no order at all) every row is returned in physical
	 * order.
	 */
	so->nullquery = scan->numberOfOrderBys == 0 ||
		(scan->orderByData[0].sk_flags & SK_ISNULL) != 0;
	if (so->meta.dims == 0 || so->meta.nextElem == 0)
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

	values = OmenQueryValues(&so->info, scan->orderByData[0].sk_argument, &dims);
	if (dims != so->meta.dims)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different vector dimensions %d and %d", so->meta.dims, dims)));
	OmenPrepareQuery(&so->info, values, &so->qp);

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
		ep = OmenDescend(&so->reader, &so->qp, sd->entry, sd->entrylevel, 0);
		OmenLayerAddEntry(&ss->s, &so->reader, &so->qp, ep);
	}
	so->phase = OMEN_SCAN_GRAPH;
}

static int
OmenScanItemCmp(const void *a, const void *b)
{
	const OmenScanItem *x = a;
	const OmenScanItem *y = b;

	if (OmenDistLess(x->dist, y->dist))
		return -1;
	if (OmenDistLess(y->dist, x->dist))
		return 1;
	return (x->elem > y->elem) - (x->elem < y->elem);
}

static int
OmenCandCmp(const void *a, const void *b)
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
 * Re-rank a segment's best candidates not yet handed out: the current best
 * ef (W), plus, for a quantized index, the next best by code distance
 * found on the way (D) up to ef * omen.rerank_factor in all.  Their exact
 * distances order the batch.
 */
static void
OmenSegRerank(OmenScanOpaque so, OmenSegScan *ss)
{
	OmenLayerSearch *s = &ss->s;
	int			ncand = 0;
	int			want = s->W.n;
	OmenCand   *cands;
	OmenSlot	slot = so->reader.slot;

	if (so->info.quantizer != OMEN_QUANT_NONE)
		want = (int) Min((double) (INT_MAX / 2), ceil(ss->ef * omen_rerank_factor));
	cands = palloc(sizeof(OmenCand) * Max(Max(want, s->W.n), 1));

	/* W is small: sort it; then the best of D, from a copy of its heap */
	memcpy(cands, s->W.items, sizeof(OmenCand) * s->W.n);
	ncand = s->W.n;
	qsort(cands, ncand, sizeof(OmenCand), OmenCandCmp);
	if (want > ncand && s->D.n > 0)
	{
		OmenHeap	d;

		d.n = s->D.n;
		d.cap = s->D.n;
		d.ismax = false;
		d.items = palloc(sizeof(OmenCand) * d.n);
		memcpy(d.items, s->D.items, sizeof(OmenCand) * d.n);
		while (ncand < want && d.n > 0)
		{
			OmenCand	c = OmenHeapPop(&d);
			uint8	   *flags = OmenLayerFlags(s, c.elem);

			if (flags && !(*flags & (OMEN_VISIT_EMITTED | OMEN_VISIT_SKIP)))
				cands[ncand++] = c;
		}
		pfree(d.items);
	}

	ss->batch = palloc(sizeof(OmenScanItem) * Max(ncand, 1));
	ss->nbatch = 0;
	ss->pos = 0;
	for (int i = 0, taken = 0; i < ncand && taken < want; i++)
	{
		uint8	   *flags = OmenLayerFlags(s, cands[i].elem);
		OmenScanItem *item;

		if (flags == NULL || (*flags & (OMEN_VISIT_EMITTED | OMEN_VISIT_SKIP)))
			continue;
		*flags |= OMEN_VISIT_EMITTED;
		taken++;
		if (!OmenReadSlot(&so->reader, cands[i].elem, slot) || (slot->flags & OMEN_SLOT_DELETED))
			continue;
		item = &ss->batch[ss->nbatch++];
		item->elem = cands[i].elem;
		item->tid = slot->heaptid;
		if (so->info.quantizer == OMEN_QUANT_NONE)
			item->dist = cands[i].dist;
		else
		{
			item->dist = OmenExactDistance(&so->reader, cands[i].elem, slot, &so->qp);
			so->stats.reranked++;
		}
	}
	qsort(ss->batch, ss->nbatch, sizeof(OmenScanItem), OmenScanItemCmp);
	pfree(cands);
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
		if (ss->started)
		{
			/* the last round's results are used up: widen the search */
			if (ss->s.C.n == 0 && ss->s.D.n == 0)
			{
				ss->exhausted = true;
				break;
			}
			ss->ef = (ss->ef > INT_MAX / 2) ? INT_MAX : ss->ef * 2;
			pfree(ss->batch);
			so->stats.rounds++;
		}
		ss->started = true;
		OmenLayerRun(&ss->s, &so->reader, &so->qp, ss->ef);
		OmenSegRerank(so, ss);

		/*
		 * A round that found nothing new, with the frontier empty, ends the
		 * segment; one that found nothing but has a frontier widens again.
		 */
		if (ss->nbatch == 0 && ss->s.C.n == 0)
		{
			bool		left = false;

			for (int i = 0; i < ss->s.D.n && !left; i++)
			{
				uint8	   *flags = OmenLayerFlags(&ss->s, ss->s.D.items[i].elem);

				left = flags && !(*flags & (OMEN_VISIT_EMITTED | OMEN_VISIT_SKIP));
			}
			if (!left)
				ss->exhausted = true;
		}
	}
	return !ss->exhausted;
}

/* Was this element already handed out by its segment's graph search? */
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
 * Collect every live element the graph searches did not hand out, reading
 * the graph pages of every extent in order; for a real query, with exact
 * distances, sorted.
 */
static void
OmenSweepCollect(OmenScanOpaque so)
{
	OmenIndexInfo *info = &so->info;
	OmenReader *r = &so->reader;
	int			cap = 1024;
	uint32		nextents;
	OmenMetaPageData meta;

	so->swept = true;
	so->nsweep = 0;
	so->sweeppos = 0;
	so->sweep = palloc(sizeof(OmenScanItem) * cap);

	/* elements added since the scan started are not ours to return */
	OmenReadMetaPage(info->index, &meta);
	nextents = meta.nextents;

	for (uint32 x = 0; x < nextents; x++)
	{
		BlockNumber start = OmenExtentStart(info, x);

		for (int g = 0; g < info->G; g++)
		{
			BlockNumber blk = start + info->C + g;
			Buffer		buf;
			Page		page;
			int			nslots;

			CHECK_FOR_INTERRUPTS();
			buf = OmenReaderPin(r, blk);
			LockBuffer(buf, BUFFER_LOCK_SHARE);
			page = BufferGetPage(buf);
			if (PageIsNew(page) || PageGetSpecialSize(page) != MAXALIGN(sizeof(OmenPageOpaqueData)) ||
				OmenPageGetOpaque(page)->type != OMEN_PAGE_GRAPH)
			{
				LockBuffer(buf, BUFFER_LOCK_UNLOCK);
				OmenCheckPage(info->index, page, blk, OMEN_PAGE_GRAPH);
			}
			nslots = Min(OmenPageGetOpaque(page)->nslots, info->slotsperpage);
			for (int s = 0; s < nslots; s++)
			{
				OmenSlot	slot = OmenPageGetSlot(page, info->slotsize, s);
				OmenElem	elem = x * info->K + g * info->slotsperpage + s;

				if (!(slot->flags & OMEN_SLOT_USED) || (slot->flags & OMEN_SLOT_DELETED) ||
					OmenScanSeen(so, elem, slot->segment))
					continue;
				if (so->nsweep == cap)
				{
					cap *= 2;
					so->sweep = repalloc_huge(so->sweep, sizeof(OmenScanItem) * cap);
				}
				so->sweep[so->nsweep].elem = elem;
				so->sweep[so->nsweep].tid = slot->heaptid;
				so->sweep[so->nsweep].dist = 0;
				so->nsweep++;
			}
			LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		}
	}

	if (!so->nullquery)
	{
		for (int i = 0; i < so->nsweep; i++)
		{
			CHECK_FOR_INTERRUPTS();
			if (!OmenReadSlot(r, so->sweep[i].elem, r->slot))
			{
				so->sweep[i].dist = get_float4_nan();
				continue;
			}
			so->sweep[i].dist = OmenExactDistance(r, so->sweep[i].elem, r->slot, &so->qp);
		}
		qsort(so->sweep, so->nsweep, sizeof(OmenScanItem), OmenScanItemCmp);
	}
	so->stats.swept = so->nsweep;
}

/* The next candidate to return, or false when there is none */
static bool
OmenScanNext(OmenScanOpaque so, OmenScanItem *next)
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
			*next = best->batch[best->pos++];
			return true;
		}
		so->phase = OMEN_SCAN_SWEEP;
	}
	if (so->phase == OMEN_SCAN_SWEEP)
	{
		if (!so->swept)
			OmenSweepCollect(so);
		if (so->sweeppos < so->nsweep)
		{
			*next = so->sweep[so->sweeppos++];
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
	OmenScanItem c;
	bool		found = false;

	if (so->phase == OMEN_SCAN_START)
	{
		pgstat_count_index_scan(scan->indexRelation);
		OmenScanStart(scan);
	}
	else
		OmenWaitPoint("scan-next");

	while (OmenScanNext(so, &c))
	{
		CHECK_FOR_INTERRUPTS();
		if (!so->nullquery && so->havelast && OmenDistLess(c.dist, so->lastdist))
		{
			/* found after a farther row was returned: cannot go out in order */
			so->stats.dropped++;
			continue;
		}
		scan->xs_heaptid = c.tid;
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
		so->stats.returned++;
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

	OmenScanPublishStats(so);
	if (so->phase != OMEN_SCAN_START)
		OmenReaderHeapEnd(&so->reader);
	MemoryContextDelete(so->ctx);
	if (so->nulltup)
		pfree(so->nulltup);
	pfree(so);
	scan->opaque = NULL;
}

/*
 * omen_last_scan(): what the last omen index scan in this session did.
 * PostgreSQL 15 gives an index AM no EXPLAIN hook, so this is how to see
 * inside a scan.
 */
PG_FUNCTION_INFO_V1(omen_last_scan);
Datum
omen_last_scan(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[10];
	bool		nulls[10] = {false};
	OmenScanStats *st = &omen_last_stats;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum((int64) st->returned);
	values[1] = Int64GetDatum((int64) st->expanded);
	values[2] = Int64GetDatum((int64) st->codedists);
	values[3] = Int64GetDatum((int64) st->exactdists);
	values[4] = Int64GetDatum((int64) st->reranked);
	values[5] = Int64GetDatum((int64) st->pages);
	values[6] = Int32GetDatum(st->segments);
	values[7] = Int32GetDatum(st->rounds);
	values[8] = Int64GetDatum((int64) st->dropped);
	values[9] = Int64GetDatum((int64) st->swept);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
