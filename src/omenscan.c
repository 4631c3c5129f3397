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

#include "access/htup_details.h"
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

/* A min-heap of re-ranked candidates, by exact distance */
typedef struct OmenItemHeap
{
	OmenScanItem *items;
	int			n;
	int			cap;
} OmenItemHeap;

/*
 * The search state of one segment.  R holds what the graph search found
 * and nobody has re-ranked yet, by code distance; P what has been
 * re-ranked and not returned, by exact distance.
 */
typedef struct OmenSegScan
{
	OmenLayerSearch s;
	int			ef;
	OmenHeap	R;
	OmenItemHeap P;
	int			mustrerank;		/* still to re-rank before P may go out */
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
		OmenHeapInit(&ss->R, 64, false);
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

static void
OmenItemHeapPush(OmenItemHeap *h, const OmenScanItem *item)
{
	int			i;

	if (h->n == h->cap)
	{
		h->cap = Max(16, h->cap * 2);
		h->items = h->items ? repalloc_huge(h->items, sizeof(OmenScanItem) * h->cap) :
			palloc(sizeof(OmenScanItem) * h->cap);
	}
	i = h->n++;
	h->items[i] = *item;
	while (i > 0 && OmenScanItemCmp(&h->items[i], &h->items[(i - 1) / 2]) < 0)
	{
		OmenScanItem tmp = h->items[i];

		h->items[i] = h->items[(i - 1) / 2];
		h->items[(i - 1) / 2] = tmp;
		i = (i - 1) / 2;
	}
}

static OmenScanItem
OmenItemHeapPop(OmenItemHeap *h)
{
	OmenScanItem top = h->items[0];
	int			i = 0;

	h->items[0] = h->items[--h->n];
	for (;;)
	{
		int			l = 2 * i + 1;
		int			best = i;
		OmenScanItem tmp;

		if (l < h->n && OmenScanItemCmp(&h->items[l], &h->items[best]) < 0)
			best = l;
		if (l + 1 < h->n && OmenScanItemCmp(&h->items[l + 1], &h->items[best]) < 0)
			best = l + 1;
		if (best == i)
			break;
		tmp = h->items[i];
		h->items[i] = h->items[best];
		h->items[best] = tmp;
		i = best;
	}
	return top;
}

/*
 * After a round of graph search: what it found that is not re-ranked yet
 * goes to R.  That is the best ef (W), and also the rest (D) once the
 * graph is exhausted, or when a quantized index must re-rank more than
 * what W holds that is not re-ranked yet (omen.rerank_factor).  Otherwise
 * D can wait for the next round: all of it lies at or beyond the round's
 * radius, where nothing goes out before a wider round, which collects R
 * afresh.
 */
static void
OmenSegCollect(OmenScanOpaque so, OmenSegScan *ss, int mustrerank)
{
	OmenLayerSearch *s = &ss->s;
	OmenHeap   *heaps[2] = {&s->W, &s->D};

	ss->R.n = 0;
	for (int h = 0; h < 2; h++)
	{
		/* W's part falls short of what must be re-ranked: D too */
		if (h == 1 && s->C.n > 0 && ss->R.n >= mustrerank)
			break;
		for (int i = 0; i < heaps[h]->n; i++)
		{
			OmenCand	c = heaps[h]->items[i];
			uint8	   *flags = OmenLayerFlags(s, c.elem);

			if (flags && !(*flags & (OMEN_VISIT_EMITTED | OMEN_VISIT_SKIP)))
				OmenHeapAppend(&ss->R, c.dist, c.elem);
		}
	}
	OmenHeapify(&ss->R);
}

/*
 * Re-rank the best candidate of R: read its slot (for the TID, and to
 * skip it if it was deleted meanwhile) and its exact distance.
 */
static void
OmenSegRerankOne(OmenScanOpaque so, OmenSegScan *ss)
{
	OmenCand	c = OmenHeapPop(&ss->R);
	uint8	   *flags = OmenLayerFlags(&ss->s, c.elem);
	OmenSlot	slot = so->reader.slot;
	OmenScanItem item;

	if (flags == NULL || (*flags & (OMEN_VISIT_EMITTED | OMEN_VISIT_SKIP)))
		return;
	*flags |= OMEN_VISIT_EMITTED;
	if (!OmenReadSlot(&so->reader, c.elem, slot) || (slot->flags & OMEN_SLOT_DELETED))
		return;
	item.elem = c.elem;
	item.tid = slot->heaptid;
	/* exact, and read under a lock: a reused slot must not mix two rows */
	item.dist = OmenExactDistance(&so->reader, c.elem, slot, &so->qp);
	if (so->info.quantizer != OMEN_QUANT_NONE)
		so->stats.reranked++;
	OmenItemHeapPush(&ss->P, &item);
}

/*
 * Has the scan outgrown its memory bound?  Checked before each widening
 * round and before the sweep, the steps that grow the scan's state.
 */
static bool
OmenScanOverMemory(OmenScanOpaque so)
{
	double		limit = (double) work_mem * 1024.0 * omen_scan_mem_multiplier;

	if ((double) MemoryContextMemAllocated(so->ctx, true) <= limit)
		return false;
	so->stats.stopped = OMEN_STOP_MEMORY;
	so->phase = OMEN_SCAN_DONE;
	elog(DEBUG1, "omen index scan stopped: it needs more than work_mem * omen.scan_mem_multiplier");
	return true;
}

/*
 * Bring a segment to where its next row is known.  A round of graph search
 * with list size ef vouches for the candidates within its radius, the
 * code distance of the worst of its best ef (W); beyond it, a wider round
 * may still find closer rows.  So the best re-ranked candidate goes out
 * once it is within the radius and no candidate still to re-rank has a
 * smaller code distance (code distances estimate exact ones).  Each round
 * first re-ranks ef * omen.rerank_factor candidates regardless, which is
 * what trades speed for recall.  When nothing more can go out, the next
 * round doubles ef; when the graph has nothing left to expand, whatever
 * remains goes out in order.  Returns false once the segment is exhausted.
 */
static bool
OmenSegReady(OmenScanOpaque so, OmenSegScan *ss)
{
	while (!ss->exhausted)
	{
		bool		flush = ss->started && ss->s.C.n == 0;
		float		radius = ss->s.W.n > 0 ? OmenHeapTop(&ss->s.W)->dist : 0;

		if (ss->P.n > 0 && ss->mustrerank <= 0 &&
			(flush || !OmenDistLess(radius, ss->P.items[0].dist)) &&
			(ss->R.n == 0 || !OmenDistLess(OmenHeapTop(&ss->R)->dist, ss->P.items[0].dist)))
			return true;
		if (ss->R.n > 0 &&
			(ss->mustrerank > 0 || flush || !OmenDistLess(radius, OmenHeapTop(&ss->R)->dist)))
		{
			CHECK_FOR_INTERRUPTS();
			OmenSegRerankOne(so, ss);
			ss->mustrerank--;
			continue;
		}
		if (ss->started && flush)
		{
			if (ss->P.n > 0)
				return true;
			ss->exhausted = true;
			break;
		}

		/* nothing more can go out: search wider */
		if (ss->started)
		{
			if (OmenScanOverMemory(so))
				return false;
			ss->ef = (ss->ef > INT_MAX / 2) ? INT_MAX : ss->ef * 2;
			so->stats.rounds++;
		}
		ss->started = true;
		OmenLayerRun(&ss->s, &so->reader, &so->qp, ss->ef);
		ss->mustrerank = so->info.quantizer == OMEN_QUANT_NONE ? 0 :
			(int) Min((double) (INT_MAX / 2), ceil(ss->ef * omen_rerank_factor));
		OmenSegCollect(so, ss, ss->mustrerank);
		/* no more than was found can be re-ranked */
		ss->mustrerank = Min(ss->mustrerank, ss->R.n);
	}
	return false;
}

/* Was this element already handed out by its segment's graph search? */
static bool
OmenScanSeen(OmenScanOpaque so, OmenElem elem, int segment)
{
	uint8	   *flags;

	if (so->nullquery || segment >= so->nsegs)
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

			if (!OmenSegReady(so, ss))
				continue;
			if (best == NULL || OmenDistLess(ss->P.items[0].dist, best->P.items[0].dist))
				best = ss;
		}
		if (best != NULL)
		{
			*next = OmenItemHeapPop(&best->P);
			return true;
		}
		if (so->phase == OMEN_SCAN_DONE)
			return false;		/* stopped by a bound */
		so->phase = OMEN_SCAN_SWEEP;
	}
	if (so->phase == OMEN_SCAN_SWEEP)
	{
		if (!so->swept)
		{
			if (!so->nullquery && OmenScanOverMemory(so))
				return false;
			OmenSweepCollect(so);
		}
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

	while (so->phase != OMEN_SCAN_DONE && OmenScanNext(so, &c))
	{
		CHECK_FOR_INTERRUPTS();
		if (!so->nullquery && so->havelast && OmenDistLess(c.dist, so->lastdist))
		{
			/* found after a farther row was returned: cannot go out in order */
			so->stats.dropped++;
			continue;
		}
		OmenCheckHeapTid(scan->indexRelation, &c.tid, c.elem);
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
		if (omen_max_scan_tuples > 0 && so->stats.returned >= (uint64) omen_max_scan_tuples)
		{
			/* this row still goes out; the next call ends the scan */
			so->stats.stopped = OMEN_STOP_TUPLES;
			so->phase = OMEN_SCAN_DONE;
			elog(DEBUG1, "omen index scan stopped after %d rows (omen.max_scan_tuples)",
				 omen_max_scan_tuples);
		}
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
	Datum		values[11];
	bool		nulls[11] = {false};
	static const char *const reasons[] = {NULL, "max_scan_tuples", "memory"};
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
	if (st->stopped > 0)
		values[10] = CStringGetTextDatum(reasons[st->stopped]);
	else
		nulls[10] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
