/*-------------------------------------------------------------------------
 *
 * omenbuild.c
 *	  CREATE INDEX for omen, serial and parallel: load the table's vectors
 *	  into memory, build an HNSW graph over them there, and write it out as
 *	  a segment of extents, vector pages and upper pages.  Also
 *	  omen_merge_segments(), which rebuilds an index's live elements into
 *	  as few new segments as memory allows.
 *
 * A build works in rounds.  It loads vectors into a graph arena until the
 * arena is full (maintenance_work_mem) or the table is exhausted, links
 * the loaded elements into one HNSW graph, writes that graph out as a
 * finished segment, and starts again with an empty arena.  A table that
 * fits in maintenance_work_mem is one round and one segment.
 *
 * A parallel build keeps the arena in dynamic shared memory and runs the
 * same rounds with every participant (the leader and its workers) at
 * once: all of them load vectors from a parallel heap scan, all of them
 * insert elements into the one shared graph, and one of them writes the
 * segment while the others wait.  Inserting into a shared graph needs
 * little locking: vectors never change once loaded, neighbour lists are
 * read without locks (every value a reader can see is a valid element
 * number), and only writers of a list take its spinlock.  src/README,
 * "Parallel build", explains this choice and its measurements.
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
#include <sys/resource.h>
#include <sys/statvfs.h>

#include "access/parallel.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xloginsert.h"
#include "catalog/index.h"
#include "commands/progress.h"
#include "commands/tablecmds.h"
#include "commands/vacuum.h"
#include "common/pg_prng.h"
#include "executor/instrument.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "omen.h"
#include "optimizer/optimizer.h"
#include "optimizer/plancat.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/bufmgr.h"
#include "storage/condition_variable.h"
#include "storage/dsm_impl.h"
#include "storage/lmgr.h"
#include "storage/shm_toc.h"
#include "storage/smgr.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/backend_progress.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Build phases shown in pg_stat_progress_create_index (see omen.c) */
#define OMEN_PHASE_LOAD		2	/* loading tuples */
#define OMEN_PHASE_WRITE	3	/* writing pages */
#define OMEN_PHASE_BUILD	4	/* building graph */

/* Keys of the parallel build's shared memory table of contents */
#define OMEN_KEY_SHARED			UINT64CONST(0xA11CE00000000001)
#define OMEN_KEY_GRAPH			UINT64CONST(0xA11CE00000000002)
#define OMEN_KEY_QUERY_TEXT		UINT64CONST(0xA11CE00000000003)
#define OMEN_KEY_WAL_USAGE		UINT64CONST(0xA11CE00000000004)
#define OMEN_KEY_BUFFER_USAGE	UINT64CONST(0xA11CE00000000005)

/* States of a parallel build's rounds */
#define OMEN_ROUND_LOAD		0	/* loading vectors into the arena */
#define OMEN_ROUND_BUILD	1	/* arena closed: link, then write */
#define OMEN_ROUND_DONE		2	/* every vector is in a written segment */

/* How long a waiting leader sleeps between progress reports (ms) */
#define OMEN_PROGRESS_NAP	200

/* Headroom over the estimated row count when sizing the arena */
#define OMEN_ARENA_SLACK(n)	((n) + (n) / 5 + 1024)

/* OmenBuildElem.flags */
#define OMEN_BELEM_NOGRAPH	0x01	/* zero vector under cosine: not linked */

/*
 * One element of the graph arena.  Everything but the lock and the version
 * is written once, when the element is loaded.  Its vector, level-0 list
 * and upper lists live in the arena's other arrays.
 */
typedef struct OmenBuildElem
{
	ItemPointerData tid;
	uint8		level;
	uint8		flags;			/* OMEN_BELEM_* */
	slock_t		lock;			/* parallel: serialises writers of its lists */
	float		norm;
	float		invnorm;		/* cosine: 1 / norm, 0 for a zero vector */
	uint32		upper;			/* first int of its upper lists in the arena */
	uint32		version;		/* advanced by every rewrite of its lists */
} OmenBuildElem;

/*
 * The graph's entry point and fill counters, in the shared state of a
 * parallel build or in the builder of a serial one.
 */
typedef struct OmenGraphHdr
{
	slock_t		lock;			/* protects entry and maxlevel */
	int32		entry;			/* entry point, or -1 */
	int32		maxlevel;
	uint32		nelems;			/* elements loaded in this round */
	uint32		nupper;			/* ints of the upper arena in use */
	pg_atomic_uint32 nextinsert;	/* next element to link */
} OmenGraphHdr;

/*
 * Shared state of a parallel build, followed in the same chunk by the
 * parallel heap scan.  The graph arena is a chunk of its own.
 */
typedef struct OmenBuildShared
{
	/* set by the leader before launching workers, read-only afterwards */
	Oid			heaprelid;
	Oid			indexrelid;
	bool		isconcurrent;
	uint32		cap;			/* elements the arena holds */
	uint32		uppercap;		/* ints of the upper arena */

	/* rounds; everything below is protected by mutex unless atomic */
	slock_t		mutex;
	ConditionVariable cv;
	int			nparticipants;	/* leader included */
	int			nscanning;		/* participants whose heap scan goes on */
	int			state;			/* OMEN_ROUND_* */
	uint32		nloading;		/* claimed elements still being copied in */
	int			arrived;		/* rendezvous: participants arrived */
	uint32		rvgen;			/* rendezvous: generation */
	bool		writing;		/* a participant is writing a segment */

	OmenGraphHdr graph;

	/* progress, summed over participants; the leader publishes them */
	pg_atomic_uint64 nloaded;
	pg_atomic_uint64 ninserted;
	pg_atomic_uint64 nwritten;

	/* results, added by each participant when it is done */
	int			ndone;
	double		reltuples;
	double		indtuples;
	bool		brokenhotchain;

	/* the metapage being built, updated by whoever writes a segment */
	OmenMetaPageData meta;
} OmenBuildShared;

#define OmenBuildSharedScan(shared) \
	((ParallelTableScanDesc) ((char *) (shared) + BUFFERALIGN(sizeof(OmenBuildShared))))

/* A binary heap of candidates, min- or max-ordered, grown on demand */
typedef struct OmenBuildHeap
{
	OmenCand   *items;
	int			n;
	int			cap;
} OmenBuildHeap;

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

	/* parallel build: the shared state, or NULL */
	OmenBuildShared *shared;

	/* the graph arena: private memory, or arrays in the DSM */
	OmenGraphHdr *graph;
	OmenGraphHdr localgraph;
	OmenBuildElem *elems;
	float	   *vecs;			/* cap x dims */
	int32	   *lists;			/* cap x (maxm0 + 1): level-0 count and ids */
	int32	   *upper;			/* uppercap: per level, count and m ids */
	uint32		cap;
	uint32		uppercap;
	uint32		capmax;			/* serial: what maintenance_work_mem allows */
	double		esttuples;		/* serial: rows the planner expects */
	uint32	   *linkorder;		/* merge: the order to link the elements in */
	MemoryContext graphCtx;

	/* this participant's search scratch */
	uint32	   *visit;
	uint32		visitcap;
	uint32		epoch;
	OmenBuildHeap C;
	OmenBuildHeap W;
	OmenCand   *cands;			/* sorted candidates of one level */
	int32	   *sel;			/* the chosen neighbours */
	float	   *seldist;
	OmenCand   *lcands;			/* pruning a neighbour's list */
	int32	   *lsel;
	int32	   *ids;			/* one batch of distances */
	float	   *dists;
	const float **ptrs;

	/* progress counters: the shared ones, or these */
	pg_atomic_uint64 *nloaded;
	pg_atomic_uint64 *ninserted;
	pg_atomic_uint64 *nwritten;
	pg_atomic_uint64 localcount[3];

	/* results of this participant */
	double		reltuples;
	double		indtuples;

	/* the metapage being built (localmeta, or the shared one) */
	OmenMetaPage meta;
	OmenMetaPageData localmeta;
	OmenIndexInfo info;			/* for encoding codes and locating them */
	BlockNumber merged;			/* merge: first block of the new pages */

	MemoryContext tmpCtx;
} OmenBuildState;

static void BuildRound(OmenBuildState *bs);
static void BuildFirstArena(OmenBuildState *bs);

/* ---- the arena ---- */

static inline float *
BuildVec(OmenBuildState *bs, uint32 i)
{
	return bs->vecs + (Size) i * bs->dims;
}

/* An element's list at a level: a count followed by the ids */
static inline int32 *
BuildList(OmenBuildState *bs, uint32 i, int level)
{
	if (level == 0)
		return bs->lists + (Size) i * (bs->maxm0 + 1);
	return bs->upper + bs->elems[i].upper + (Size) (level - 1) * (bs->m + 1);
}

/*
 * The count of a list that other participants may be rewriting.  Readers
 * take no lock: a writer stores the ids before the count (with a barrier
 * in between), and every int a list ever held is a valid element number of
 * this round, so a reader sees a list that is old, new or a mixture, all
 * of them fine for an approximate search.
 */
static inline int
BuildListCount(const int32 *list, int cap)
{
	int			n = *((volatile const int32 *) list);

	pg_read_barrier();
	return Min(Max(n, 0), cap);
}

/* Bytes of memory one element costs, its share of the upper arena included */
static Size
BuildElemBytes(OmenBuildState *bs, int participants)
{
	return sizeof(OmenBuildElem) + sizeof(float) * bs->dims +
		sizeof(int32) * (bs->maxm0 + 1) +
		sizeof(uint32) * participants +
		sizeof(int32) * (bs->m + 1) * 2 / Max(bs->m - 1, 1);
}

/* Ints of upper arena to give an arena of cap elements */
static uint32
BuildUpperCap(OmenBuildState *bs, uint32 cap)
{
	/* expected levels per element are 1/(m-1); allow twice that */
	uint64		levels = (uint64) cap * 2 / Max(bs->m - 1, 1) + 64;

	return (uint32) Min(levels * (bs->m + 1), (uint64) PG_UINT32_MAX / 2);
}

/* How many elements the arena may hold within maintenance_work_mem */
static uint32
BuildCapForMemory(OmenBuildState *bs, int participants)
{
	Size		cap = ((Size) maintenance_work_mem * 1024) / BuildElemBytes(bs, participants);

	return (uint32) Max(Min(cap, (Size) OMEN_MAX_ELEMS / 2), 64);
}

/*
 * Point the arena arrays into one block of memory (the DSM chunk), laid
 * out as elements, vectors, level-0 lists, upper arena.
 */
static Size
BuildArenaLayout(OmenBuildState *bs, uint32 cap, uint32 uppercap, char *base)
{
	Size		off = 0;

	if (base)
		bs->elems = (OmenBuildElem *) (base + off);
	off += CACHELINEALIGN(sizeof(OmenBuildElem) * (Size) cap);
	if (base)
		bs->vecs = (float *) (base + off);
	off += CACHELINEALIGN(sizeof(float) * (Size) bs->dims * cap);
	if (base)
		bs->lists = (int32 *) (base + off);
	off += CACHELINEALIGN(sizeof(int32) * (Size) (bs->maxm0 + 1) * cap);
	if (base)
		bs->upper = (int32 *) (base + off);
	off += CACHELINEALIGN(sizeof(int32) * (Size) uppercap);
	if (base)
	{
		bs->cap = cap;
		bs->uppercap = uppercap;
	}
	return off;
}

/* Per-participant search scratch (the visited marks come with the arena) */
static void
BuildInitScratch(OmenBuildState *bs)
{
	int			maxcand = Max(bs->efc, bs->maxm0) + 2;

	bs->epoch = 1;
	bs->C.cap = bs->efc * 4;
	bs->C.items = palloc(sizeof(OmenCand) * bs->C.cap);
	bs->W.cap = bs->efc + 2;
	bs->W.items = palloc(sizeof(OmenCand) * bs->W.cap);
	bs->cands = palloc(sizeof(OmenCand) * maxcand);
	bs->sel = palloc(sizeof(int32) * maxcand);
	bs->seldist = palloc(sizeof(float) * maxcand);
	bs->lcands = palloc(sizeof(OmenCand) * maxcand);
	bs->lsel = palloc(sizeof(int32) * maxcand);
	bs->ids = palloc(sizeof(int32) * maxcand);
	bs->dists = palloc(sizeof(float) * maxcand);
	bs->ptrs = palloc(sizeof(float *) * maxcand);
}

/*
 * Serial build: allocate (or grow) the arena in private memory.  It starts
 * at the estimated row count and doubles up to capmax, so a small table
 * does not allocate maintenance_work_mem.
 */
static void
BuildGrowArena(OmenBuildState *bs, uint32 newcap, uint32 newuppercap)
{
	MemoryContext old = MemoryContextSwitchTo(bs->graphCtx);

	if (bs->elems == NULL)
	{
		bs->elems = MemoryContextAllocHuge(bs->graphCtx, sizeof(OmenBuildElem) * (Size) newcap);
		bs->vecs = MemoryContextAllocHuge(bs->graphCtx, sizeof(float) * (Size) bs->dims * newcap);
		bs->lists = MemoryContextAllocHuge(bs->graphCtx, sizeof(int32) * (Size) (bs->maxm0 + 1) * newcap);
		bs->upper = MemoryContextAllocHuge(bs->graphCtx, sizeof(int32) * (Size) newuppercap);
		bs->visit = MemoryContextAllocHuge(bs->graphCtx, sizeof(uint32) * (Size) newcap);
		memset(bs->visit, 0, sizeof(uint32) * (Size) newcap);
	}
	else
	{
		if (newcap > bs->cap)
		{
			bs->elems = repalloc_huge(bs->elems, sizeof(OmenBuildElem) * (Size) newcap);
			bs->vecs = repalloc_huge(bs->vecs, sizeof(float) * (Size) bs->dims * newcap);
			bs->lists = repalloc_huge(bs->lists, sizeof(int32) * (Size) (bs->maxm0 + 1) * newcap);
			bs->visit = repalloc_huge(bs->visit, sizeof(uint32) * (Size) newcap);
			memset(bs->visit + bs->cap, 0, sizeof(uint32) * (Size) (newcap - bs->cap));
		}
		if (newuppercap > bs->uppercap)
			bs->upper = repalloc_huge(bs->upper, sizeof(int32) * (Size) newuppercap);
	}
	bs->cap = Max(bs->cap, newcap);
	bs->visitcap = bs->cap;
	bs->uppercap = Max(bs->uppercap, newuppercap);
	MemoryContextSwitchTo(old);
}

/* ---- distances ---- */

/*
 * The build's distance between a vector q (with 1/|q| for cosine) and
 * element j.  The kernels are called directly: this is the inner loop of
 * the build, and cosine uses the stored inverse norms instead of a
 * division.  Only the graph's shape depends on these values; what scans
 * return is ranked by OmenDistance.
 */
static inline float
BuildDist(OmenBuildState *bs, const float *q, float qinv, uint32 j)
{
	const float *v = BuildVec(bs, j);

	switch (bs->metric)
	{
		case OMEN_METRIC_L2:
			return omen_kernels.l2sq_f32(q, v, bs->dims);
		case OMEN_METRIC_IP:
			return -omen_kernels.dot_f32(q, v, bs->dims);
		case OMEN_METRIC_COSINE:
			return 1.0f - omen_kernels.dot_f32(q, v, bs->dims) * qinv * bs->elems[j].invnorm;
		case OMEN_METRIC_L1:
			break;
	}
	return omen_kernels.l1_f32(q, v, bs->dims);
}

/* Distances from q to n elements, with the batched kernels where there are */
static void
BuildDistBatch(OmenBuildState *bs, const float *q, float qinv, const int32 *ids,
			   int n, float *out)
{
	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
		bs->ptrs[i] = BuildVec(bs, ids[i]);
	switch (bs->metric)
	{
		case OMEN_METRIC_L2:
			omen_kernels.l2sq_f32_batch(q, bs->ptrs, n, bs->dims, out);
			break;
		case OMEN_METRIC_IP:
			omen_kernels.dot_f32_batch(q, bs->ptrs, n, bs->dims, out);
			for (int i = 0; i < n; i++)
				out[i] = -out[i];
			break;
		case OMEN_METRIC_COSINE:
			omen_kernels.dot_f32_batch(q, bs->ptrs, n, bs->dims, out);
			for (int i = 0; i < n; i++)
				out[i] = 1.0f - out[i] * qinv * bs->elems[ids[i]].invnorm;
			break;
		case OMEN_METRIC_L1:
			for (int i = 0; i < n; i++)
				out[i] = omen_kernels.l1_f32(q, bs->ptrs[i], bs->dims);
			break;
	}
}

/* ---- candidate heaps ---- */

/* Is a above b in the heap: nearer for a min-heap, farther for a max-heap */
static inline bool
BuildHeapAbove(const OmenCand *a, const OmenCand *b, bool ismax)
{
	return ismax ? a->dist > b->dist : a->dist < b->dist;
}

static inline void
BuildHeapPush(OmenBuildHeap *h, float dist, uint32 elem, bool ismax)
{
	int			i;

	if (h->n == h->cap)
	{
		h->cap *= 2;
		h->items = repalloc_huge(h->items, sizeof(OmenCand) * h->cap);
	}
	i = h->n++;
	while (i > 0)
	{
		int			parent = (i - 1) / 2;
		OmenCand	c = {dist, elem};

		if (!BuildHeapAbove(&c, &h->items[parent], ismax))
			break;
		h->items[i] = h->items[parent];
		i = parent;
	}
	h->items[i].dist = dist;
	h->items[i].elem = elem;
}

static inline OmenCand
BuildHeapPop(OmenBuildHeap *h, bool ismax)
{
	OmenCand	top = h->items[0];
	OmenCand	last = h->items[--h->n];
	int			i = 0;

	for (;;)
	{
		int			l = 2 * i + 1;
		int			best;

		if (l >= h->n)
			break;
		best = l;
		if (l + 1 < h->n && BuildHeapAbove(&h->items[l + 1], &h->items[l], ismax))
			best = l + 1;
		if (!BuildHeapAbove(&h->items[best], &last, ismax))
			break;
		h->items[i] = h->items[best];
		i = best;
	}
	if (h->n > 0)
		h->items[i] = last;
	return top;
}

/* Sort a few candidates by distance, then element, in place */
static void
BuildSortCands(OmenCand *c, int n)
{
	for (int i = 1; i < n; i++)
	{
		OmenCand	x = c[i];
		int			j = i - 1;

		while (j >= 0 && (c[j].dist > x.dist || (c[j].dist == x.dist && c[j].elem > x.elem)))
		{
			c[j + 1] = c[j];
			j--;
		}
		c[j + 1] = x;
	}
}

/* ---- linking ---- */

static void
BuildNewEpoch(OmenBuildState *bs)
{
	if (++bs->epoch == 0)
	{
		memset(bs->visit, 0, sizeof(uint32) * bs->visitcap);
		bs->epoch = 1;
	}
}

/*
 * Search one level of the in-memory graph: the classic HNSW search with a
 * candidate min-heap C and a result max-heap W of size ef.  W holds the
 * entry points on entry and the ef nearest found on exit.  The unvisited
 * neighbours of each expanded candidate go through one batched distance
 * call, which overlaps their memory loads.
 */
static void
BuildSearchLayer(OmenBuildState *bs, const float *q, float qinv, int level, int ef)
{
	uint32		epoch = bs->epoch;
	int			cap = level == 0 ? bs->maxm0 : bs->m;

	bs->C.n = 0;
	for (int i = 0; i < bs->W.n; i++)
	{
		bs->visit[bs->W.items[i].elem] = epoch;
		BuildHeapPush(&bs->C, bs->W.items[i].dist, bs->W.items[i].elem, false);
	}

	while (bs->C.n > 0)
	{
		OmenCand	c = BuildHeapPop(&bs->C, false);
		const int32 *list;
		int			n;
		int			nnew = 0;

		if (bs->W.n >= ef && c.dist > bs->W.items[0].dist)
			break;
		/* the next candidate's list is most likely needed next: fetch it */
		if (bs->C.n > 0)
		{
			const char *next = (const char *) BuildList(bs, bs->C.items[0].elem, level);

			__builtin_prefetch(next);
			__builtin_prefetch(next + 64);
		}
		list = BuildList(bs, c.elem, level);
		n = BuildListCount(list, cap);
		for (int i = 1; i <= n; i++)
			__builtin_prefetch(&bs->visit[list[i]]);
		for (int i = 1; i <= n; i++)
		{
			int32		e = list[i];

			if (bs->visit[e] == epoch)
				continue;
			bs->visit[e] = epoch;
			bs->ids[nnew++] = e;
			__builtin_prefetch(BuildVec(bs, e));
		}
		BuildDistBatch(bs, q, qinv, bs->ids, nnew, bs->dists);
		for (int i = 0; i < nnew; i++)
		{
			float		d = bs->dists[i];

			if (bs->W.n < ef || d < bs->W.items[0].dist)
			{
				BuildHeapPush(&bs->C, d, bs->ids[i], false);
				BuildHeapPush(&bs->W, d, bs->ids[i], true);
				if (bs->W.n > ef)
					(void) BuildHeapPop(&bs->W, true);
			}
		}
	}
}

/*
 * The HNSW neighbour-selection heuristic: walk the candidates (sorted, in
 * cands) from the nearest and keep one unless a neighbour already kept is
 * nearer to it than the base element is.  Writes the kept ids (and their
 * distances to the base) to sel/seldist; returns how many.
 */
static int
BuildSelect(OmenBuildState *bs, const OmenCand *cands, int ncand, int maxkeep,
			int32 *sel, float *seldist)
{
	int			nkeep = 0;

	for (int i = 0; i < ncand && nkeep < maxkeep; i++)
	{
		uint32		ci = cands[i].elem;
		const float *v = BuildVec(bs, ci);
		float		vinv = bs->elems[ci].invnorm;
		bool		good = true;

		for (int j = 0; j < nkeep; j++)
		{
			if (BuildDist(bs, v, vinv, sel[j]) < cands[i].dist)
			{
				good = false;
				break;
			}
		}
		if (good)
		{
			sel[nkeep] = ci;
			if (seldist)
				seldist[nkeep] = cands[i].dist;
			nkeep++;
		}
	}
	return nkeep;
}

/* Store ids as the list of element e: ids first, then the count */
static void
BuildStoreList(OmenBuildState *bs, uint32 e, int level, const int32 *ids, int n)
{
	int32	   *list = BuildList(bs, e, level);

	memcpy(list + 1, ids, sizeof(int32) * n);
	pg_write_barrier();
	list[0] = n;
	bs->elems[e].version++;
}

/*
 * Add a link from element n to element q at a level.  A list with room
 * gets q appended; a full one is pruned with the heuristic over its
 * members and q.  In a parallel build the pruning runs without the lock,
 * on a copy, and is stored only if nobody changed the list meanwhile;
 * otherwise it starts again.
 */
static void
BuildAddLink(OmenBuildState *bs, uint32 n, uint32 q, float dist, int level)
{
	OmenBuildElem *ne = &bs->elems[n];
	int32	   *list = BuildList(bs, n, level);
	int			cap = level == 0 ? bs->maxm0 : bs->m;
	bool		locked = bs->shared != NULL;

	for (;;)
	{
		int			cnt;
		uint32		version;
		int			nkeep;

		if (locked)
			SpinLockAcquire(&ne->lock);
		cnt = list[0];

		/*
		 * Already there: in a parallel build, n may have chosen q itself
		 * while q was being linked, having reached it on the level above.
		 */
		for (int i = 1; i <= cnt; i++)
		{
			if (list[i] == (int32) q)
			{
				if (locked)
					SpinLockRelease(&ne->lock);
				return;
			}
		}
		if (cnt < cap)
		{
			list[cnt + 1] = q;
			pg_write_barrier();
			list[0] = cnt + 1;
			ne->version++;
			if (locked)
				SpinLockRelease(&ne->lock);
			return;
		}
		version = ne->version;
		memcpy(bs->ids, list + 1, sizeof(int32) * cnt);
		if (locked)
			SpinLockRelease(&ne->lock);

		BuildDistBatch(bs, BuildVec(bs, n), ne->invnorm, bs->ids, cnt, bs->dists);
		for (int i = 0; i < cnt; i++)
		{
			bs->lcands[i].elem = bs->ids[i];
			bs->lcands[i].dist = bs->dists[i];
		}
		bs->lcands[cnt].elem = q;
		bs->lcands[cnt].dist = dist;
		BuildSortCands(bs->lcands, cnt + 1);
		nkeep = BuildSelect(bs, bs->lcands, cnt + 1, cap, bs->lsel, NULL);

		if (locked)
			SpinLockAcquire(&ne->lock);
		if (ne->version == version)
		{
			BuildStoreList(bs, n, level, bs->lsel, nkeep);
			if (locked)
				SpinLockRelease(&ne->lock);
			return;
		}
		if (locked)
			SpinLockRelease(&ne->lock);
	}
}

/*
 * Link element q into the graph: descend greedily through the levels above
 * its own, then on each of its levels search with ef_construction, choose
 * its neighbours and link them back.  Safe to run in several processes at
 * once on the shared arena.
 */
static void
BuildInsert(OmenBuildState *bs, uint32 q)
{
	OmenBuildElem *e = &bs->elems[q];
	const float *qv = BuildVec(bs, q);
	float		qinv = e->invnorm;
	OmenGraphHdr *g = bs->graph;
	bool		locked = bs->shared != NULL;
	int32		ep;
	int			maxlevel;
	float		epdist;

	if (e->flags & OMEN_BELEM_NOGRAPH)
		return;

	if (locked)
		SpinLockAcquire(&g->lock);
	ep = g->entry;
	maxlevel = g->maxlevel;
	if (ep < 0)
	{
		g->entry = q;
		g->maxlevel = e->level;
	}
	if (locked)
		SpinLockRelease(&g->lock);
	if (ep < 0)
		return;

	epdist = BuildDist(bs, qv, qinv, ep);
	for (int level = maxlevel; level > e->level; level--)
	{
		bool		changed = true;

		while (changed)
		{
			const int32 *list = BuildList(bs, ep, level);
			int			n = BuildListCount(list, bs->m);

			changed = false;
			for (int i = 1; i <= n; i++)
			{
				int32		c = list[i];
				float		d = BuildDist(bs, qv, qinv, c);

				if (d < epdist)
				{
					ep = c;
					epdist = d;
					changed = true;
				}
			}
		}
	}

	bs->W.n = 0;
	BuildHeapPush(&bs->W, epdist, ep, true);
	for (int level = Min(e->level, maxlevel); level >= 0; level--)
	{
		int			ncand;
		int			nkeep;

		/*
		 * In a parallel build another participant may already have linked
		 * to q at this level (having reached q on the level above): never
		 * let q find itself.
		 */
		BuildNewEpoch(bs);
		bs->visit[q] = bs->epoch;
		BuildSearchLayer(bs, qv, qinv, level, bs->efc);

		/*
		 * W stays as the entry points of the next level down; sort a copy
		 * of it by popping it as a heap.
		 */
		ncand = bs->W.n;
		{
			OmenBuildHeap h = {bs->lcands, ncand, ncand};

			memcpy(bs->lcands, bs->W.items, sizeof(OmenCand) * ncand);
			for (int k = ncand - 1; k >= 0; k--)
				bs->cands[k] = BuildHeapPop(&h, true);
		}
		nkeep = BuildSelect(bs, bs->cands, ncand, level == 0 ? bs->maxm0 : bs->m,
							bs->sel, bs->seldist);
		/*
		 * q's list is empty, unless another participant that reached q on
		 * the level above has chosen it as a neighbour and linked back to
		 * it meanwhile; then add ours to those rather than overwrite them,
		 * which could leave that element without a way in.
		 */
		if (locked)
			SpinLockAcquire(&e->lock);
		if (BuildList(bs, q, level)[0] == 0)
		{
			BuildStoreList(bs, q, level, bs->sel, nkeep);
			if (locked)
				SpinLockRelease(&e->lock);
		}
		else
		{
			if (locked)
				SpinLockRelease(&e->lock);
			for (int i = 0; i < nkeep; i++)
				BuildAddLink(bs, q, bs->sel[i], bs->seldist[i], level);
		}
		for (int i = 0; i < nkeep; i++)
			BuildAddLink(bs, bs->sel[i], q, bs->seldist[i], level);
	}

	if (e->level > maxlevel)
	{
		if (locked)
			SpinLockAcquire(&g->lock);
		if (e->level > g->maxlevel)
		{
			g->entry = q;
			g->maxlevel = e->level;
		}
		if (locked)
			SpinLockRelease(&g->lock);
	}
}

/* ---- progress ---- */

/* CPU time of this process, and wall time since a start, for DEBUG2 */
static double
BuildCpuSeconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
		(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double
BuildSecondsSince(TimestampTz start)
{
	return (GetCurrentTimestamp() - start) / 1e6;
}

/*
 * Publish a phase and its count in pg_stat_progress_create_index.  Only
 * the leader (or a serial build) has a progress entry; workers add to the
 * shared counters, which the leader publishes.  count < 0 takes the
 * counter that belongs to the phase.
 */
static void
BuildReport(OmenBuildState *bs, int phase, int64 count)
{
	const int	index[2] = {PROGRESS_CREATEIDX_SUBPHASE, PROGRESS_CREATEIDX_TUPLES_DONE};
	int64		val[2];

	if (IsParallelWorker() || bs->merged != InvalidBlockNumber)
		return;
	if (count < 0)
	{
		pg_atomic_uint64 *c = phase == OMEN_PHASE_LOAD ? bs->nloaded :
			phase == OMEN_PHASE_BUILD ? bs->ninserted : bs->nwritten;

		count = (int64) pg_atomic_read_u64(c);
	}
	val[0] = phase;
	val[1] = count;
	pgstat_progress_update_multi_param(2, index, val);
}

/* The leader, while waiting: show what the participants are doing */
static void
BuildReportShared(OmenBuildState *bs)
{
	OmenBuildShared *s = bs->shared;
	int			state;
	bool		writing;

	SpinLockAcquire(&s->mutex);
	state = s->state;
	writing = s->writing;
	SpinLockRelease(&s->mutex);
	BuildReport(bs, state == OMEN_ROUND_LOAD ? OMEN_PHASE_LOAD :
				writing ? OMEN_PHASE_WRITE : OMEN_PHASE_BUILD, -1);
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
	int			dims = bs->meta->dims;
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
 * and its entry in the directory.  Only one process writes pages at a
 * time, so the blocks P_NEW hands out are consecutive.
 */
static void
BuildNewExtent(OmenBuildState *bs)
{
	OmenMetaPage meta = bs->meta;
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
 * The centroid of the loaded vectors (normalised first for cosine), which
 * centres the 1-bit codes.  Computed from the first segment and kept for
 * the life of the index.
 */
static void
BuildCentroid(OmenBuildState *bs)
{
	int			dims = bs->dims;
	double	   *sum = palloc0(sizeof(double) * dims);
	float	   *c = MemoryContextAlloc(bs->info.mcxt, sizeof(float) * dims);
	int			n = 0;

	for (uint32 i = 0; i < bs->graph->nelems; i++)
	{
		const float *v = BuildVec(bs, i);
		float		norm = bs->elems[i].norm;

		if (bs->metric == OMEN_METRIC_COSINE)
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
	bs->meta->centroidBlk = BuildWriteAux(bs, c, dims);
	bs->info.centroidBlk = bs->meta->centroidBlk;
}

/*
 * The order to number the elements of the in-memory graph in: breadth
 * first over level 0 from the entry point, so that the neighbours an
 * element links to when it is expanded mostly sit together, and a search
 * reads their codes from few pages.  Returns order[] (position -> element)
 * and fills pos[] (element -> position).
 */
static uint32 *
BuildOrder(OmenBuildState *bs, uint32 *pos)
{
	uint32		n = bs->graph->nelems;
	uint32	   *order = palloc_extended(sizeof(uint32) * Max(n, 1), MCXT_ALLOC_HUGE);
	uint32		head = 0;
	uint32		tail = 0;
	uint32		next = 0;

	for (uint32 i = 0; i < n; i++)
		pos[i] = PG_UINT32_MAX;
	while (tail < n)
	{
		if (head == tail)
		{
			uint32		start;

			if (tail == 0 && bs->graph->entry >= 0)
				start = bs->graph->entry;
			else
			{
				while (pos[next] != PG_UINT32_MAX)
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
				if (pos[list[j]] == PG_UINT32_MAX)
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
 * Bring this process's OmenIndexInfo up to date with the metapage image,
 * which another participant may have advanced by writing segments.
 */
static void
BuildSyncInfo(OmenBuildState *bs)
{
	OmenMetaPage meta = bs->meta;

	bs->info.dims = meta->dims;
	bs->info.codesize = meta->codesize;
	bs->info.K = meta->extentElems;
	bs->info.C = meta->extentCodePages;
	bs->info.G = meta->extentGraphPages;
	bs->info.paddims = meta->paddims;
	bs->info.rotseed = meta->rotseed;
	bs->info.codegen = meta->codegen;
	bs->info.centroidBlk = meta->centroidBlk;
	if (meta->centroidBlk != InvalidBlockNumber && bs->info.centroid == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(bs->info.mcxt);

		bs->info.centroid = OmenReadAux(bs->index, meta->centroidBlk, meta->dims);
		MemoryContextSwitchTo(old);
	}
	bs->info.ndirpages = meta->ndirpages;
	memcpy(bs->info.dirpages, meta->dirpages, sizeof(BlockNumber) * meta->ndirpages);
	for (int d = 0; d < OMEN_MAX_DIR_PAGES; d++)
	{
		if (bs->info.dircache[d])
		{
			pfree(bs->info.dircache[d]);
			bs->info.dircache[d] = NULL;
		}
	}
}

/*
 * Write the arena's graph out as a new segment.  Its elements get the next
 * element numbers, in BuildOrder's order; extents are allocated as the
 * numbers need them.  Runs in one process at a time, with the graph
 * complete and nobody changing it.
 */
static void
BuildWriteSegment(OmenBuildState *bs)
{
	OmenMetaPage meta = bs->meta;
	uint32		nelems = bs->graph->nelems;
	int			seg = meta->nsegments;
	OmenElem	base = meta->nextElem;
	Buffer		vbuf = InvalidBuffer;
	Buffer		ubuf = InvalidBuffer;
	uint32	   *upper = palloc(OmenUpperItemSize(meta->m, OMEN_MAX_LEVEL));
	uint8	   *code;
	OmenSegmentData *sd = &meta->segments[seg];
	bool		keepvectors = meta->quantizer != OMEN_QUANT_NONE &&
		meta->vectors == OMEN_VECTORS_INDEX;
	uint32	   *pos;
	uint32	   *order;
	BlockNumber *vecblk;
	OffsetNumber *vecoff;
	BlockNumber *upperblk;
	OffsetNumber *upperoff;
	TimestampTz start;

	if (seg >= OMEN_MAX_SEGMENTS)
		elog(ERROR, "too many segments in omen build");
	if ((uint64) base + nelems > OMEN_MAX_ELEMS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("index \"%s\" has too many elements", RelationGetRelationName(bs->index))));

	start = GetCurrentTimestamp();
	BuildSyncInfo(bs);
	BuildReport(bs, OMEN_PHASE_WRITE, -1);

	if (meta->quantizer == OMEN_QUANT_BQ && nelems > 0 && meta->centroidBlk == InvalidBlockNumber)
		BuildCentroid(bs);
	code = palloc(Max(meta->codesize, 1));
	pos = palloc_extended(sizeof(uint32) * Max(nelems, 1), MCXT_ALLOC_HUGE);
	order = BuildOrder(bs, pos);
	vecblk = palloc_extended(sizeof(BlockNumber) * Max(nelems, 1), MCXT_ALLOC_HUGE);
	vecoff = palloc_extended(sizeof(OffsetNumber) * Max(nelems, 1), MCXT_ALLOC_HUGE);
	upperblk = palloc_extended(sizeof(BlockNumber) * Max(nelems, 1), MCXT_ALLOC_HUGE);
	upperoff = palloc_extended(sizeof(OffsetNumber) * Max(nelems, 1), MCXT_ALLOC_HUGE);

	/* vectors and upper lists first: the slots point to them */
	for (uint32 i = 0; i < nelems; i++)
	{
		OmenBuildElem *e = &bs->elems[i];

		if ((i & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
		vecblk[i] = InvalidBlockNumber;
		vecoff[i] = InvalidOffsetNumber;
		upperblk[i] = InvalidBlockNumber;
		upperoff[i] = InvalidOffsetNumber;
		if (keepvectors)
			BuildWriteVector(bs, &vbuf, BuildVec(bs, i), e->norm, &vecblk[i], &vecoff[i]);
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
						 OmenUpperItemSize(meta->m, e->level), &upperblk[i], &upperoff[i], false);
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
	for (uint32 k = 0; k < nelems; k++)
	{
		uint32		i = order[k];
		OmenBuildElem *e = &bs->elems[i];
		OmenElem	elem = base + k;
		int32	   *list = BuildList(bs, i, 0);
		BlockNumber blk;
		int			slotno;
		Buffer		buf;
		OmenSlot	slot;

		if ((k & 255) == 0)
		{
			CHECK_FOR_INTERRUPTS();
			BuildReport(bs, OMEN_PHASE_WRITE, -1);
		}
		if (elem / meta->extentElems >= meta->nextents)
			BuildNewExtent(bs);

		OmenEncode(&bs->info, BuildVec(bs, i), e->norm, code);
		BuildWriteCode(bs, OmenElemCodeLoc(&bs->info, elem), code, meta->codesize);

		OmenElemSlotLoc(&bs->info, elem, &blk, &slotno);
		buf = ReadBuffer(bs->index, blk);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		slot = OmenPageGetSlot(BufferGetPage(buf), meta->slotsize, slotno);
		slot->generation = 0;
		slot->flags = OMEN_SLOT_USED | ((e->flags & OMEN_BELEM_NOGRAPH) ? OMEN_SLOT_NOGRAPH : 0);
		slot->level = e->level;
		slot->segment = seg;
		slot->n0 = list[0];
		slot->heaptid = e->tid;
		slot->vecblk = vecblk[i];
		slot->vecoff = vecoff[i];
		slot->upperblk = upperblk[i];
		slot->upperoff = upperoff[i];
		for (int j = 0; j < bs->maxm0; j++)
			slot->neighbors[j] = j < list[0] ? base + pos[list[j + 1]] : OMEN_INVALID_ELEM;
		BuildFinishPage(buf);
		pg_atomic_fetch_add_u64(bs->nwritten, 1);
	}

	sd->entry = bs->graph->entry >= 0 ? base + pos[bs->graph->entry] : OMEN_INVALID_ELEM;
	sd->entrylevel = bs->graph->entry >= 0 ? bs->graph->maxlevel : -1;
	sd->flags = 0;
	sd->nelements = nelems;
	meta->nsegments++;
	meta->nextElem = base + nelems;
	pfree(upper);
	pfree(code);
	pfree(pos);
	pfree(order);
	pfree(vecblk);
	pfree(vecoff);
	pfree(upperblk);
	pfree(upperoff);
	ereport(DEBUG2,
			(errmsg_internal("omen: wrote segment %d (%u elements) in %.3f s",
							 seg, nelems, BuildSecondsSince(start))));
}

/* Empty the arena for the next round */
static void
BuildResetGraph(OmenBuildState *bs)
{
	OmenGraphHdr *g = bs->graph;

	g->entry = -1;
	g->maxlevel = -1;
	g->nelems = 0;
	g->nupper = 0;
	pg_atomic_write_u32(&g->nextinsert, 0);
}

/*
 * A merge loads the elements in the order of their old segments, breadth
 * first from each entry point, so that neighbours come one after another.
 * HNSW graphs depend on the order elements are linked in: linked so, or in
 * a random order, GloVe's graph has a recall at ef_search 40 half a point
 * lower, and a couple of hundred elements unreachable, than linked in the
 * table's order, which is what CREATE INDEX does.  So a merge links in
 * heap TID order.
 */
static OmenBuildElem *build_sort_elems;

static int
BuildTidCmp(const void *a, const void *b)
{
	return ItemPointerCompare(&build_sort_elems[*(const uint32 *) a].tid,
							  &build_sort_elems[*(const uint32 *) b].tid);
}

static void
BuildSortByTid(OmenBuildState *bs)
{
	uint32		n = bs->graph->nelems;

	if (bs->linkorder != NULL)
		pfree(bs->linkorder);
	bs->linkorder = MemoryContextAllocHuge(bs->graphCtx, sizeof(uint32) * Max(n, 1));
	for (uint32 i = 0; i < n; i++)
		bs->linkorder[i] = i;
	build_sort_elems = bs->elems;
	qsort(bs->linkorder, n, sizeof(uint32), BuildTidCmp);
	build_sort_elems = NULL;
}

/*
 * Link every loaded element that nobody has claimed yet.  Participants of
 * a parallel build take elements from one shared counter, so they share
 * the work however unevenly the heap scan gave out the rows.
 */
static void
BuildLinkAll(OmenBuildState *bs)
{
	OmenGraphHdr *g = bs->graph;
	uint32		n = g->nelems;
	uint32		mine = 0;
	TimestampTz start = GetCurrentTimestamp();
	double		cpu = BuildCpuSeconds();

	for (;;)
	{
		uint32		i = pg_atomic_fetch_add_u32(&g->nextinsert, 1);

		if (i >= n)
			break;
		CHECK_FOR_INTERRUPTS();
		BuildInsert(bs, bs->linkorder ? bs->linkorder[i] : i);
		mine++;
		pg_atomic_fetch_add_u64(bs->ninserted, 1);
		if ((i & 63) == 0)
			BuildReport(bs, OMEN_PHASE_BUILD, -1);
	}
	ereport(DEBUG2,
			(errmsg_internal("omen: %s linked %u of %u elements in %.3f s (%.3f s of CPU)",
							 IsParallelWorker() ? "worker" : "leader", mine, n,
							 BuildSecondsSince(start), BuildCpuSeconds() - cpu)));
}

/* ---- rounds of a parallel build ---- */

/*
 * Sleep on the shared condition variable; a leader wakes now and then to
 * publish progress.  The caller re-checks its condition and finally calls
 * ConditionVariableCancelSleep.
 */
static void
BuildWait(OmenBuildState *bs)
{
	if (IsParallelWorker())
		ConditionVariableSleep(&bs->shared->cv, PG_WAIT_EXTENSION);
	else
	{
		(void) ConditionVariableTimedSleep(&bs->shared->cv, OMEN_PROGRESS_NAP, PG_WAIT_EXTENSION);
		BuildReportShared(bs);
	}
}

/*
 * Wait until every participant has arrived here.  Returns true in exactly
 * one of them, the last to arrive.
 */
static bool
BuildArrive(OmenBuildState *bs)
{
	OmenBuildShared *s = bs->shared;
	uint32		gen;
	bool		last = false;

	SpinLockAcquire(&s->mutex);
	gen = s->rvgen;
	if (++s->arrived == s->nparticipants)
	{
		s->arrived = 0;
		s->rvgen++;
		last = true;
	}
	SpinLockRelease(&s->mutex);
	if (last)
	{
		ConditionVariableBroadcast(&s->cv);
		return true;
	}
	for (;;)
	{
		bool		done;

		SpinLockAcquire(&s->mutex);
		done = s->rvgen != gen;
		SpinLockRelease(&s->mutex);
		if (done)
			break;
		BuildWait(bs);
	}
	ConditionVariableCancelSleep();
	return false;
}

/*
 * One round's graph work, in every participant of a parallel build (or in
 * the serial builder): link the loaded elements, write them out as a
 * segment, empty the arena.  In a parallel build every participant calls
 * this once the arena is closed; one of them writes, and all leave
 * together, the state set to LOAD again or, when no participant has rows
 * left to read, to DONE.
 */
static void
BuildRound(OmenBuildState *bs)
{
	OmenBuildShared *s = bs->shared;

	if (s == NULL)
	{
		BuildReport(bs, OMEN_PHASE_BUILD, -1);
		if (bs->merged != InvalidBlockNumber)
			BuildSortByTid(bs);
		BuildLinkAll(bs);
		if (bs->graph->nelems > 0 || bs->meta->nsegments == 0)
			BuildWriteSegment(bs);
		BuildResetGraph(bs);
		BuildReport(bs, OMEN_PHASE_LOAD, -1);
		return;
	}

	/* wait for the elements claimed before the arena closed */
	for (;;)
	{
		bool		copied;

		SpinLockAcquire(&s->mutex);
		copied = s->nloading == 0;
		SpinLockRelease(&s->mutex);
		if (copied)
			break;
		BuildWait(bs);
	}
	ConditionVariableCancelSleep();

	BuildLinkAll(bs);

	if (BuildArrive(bs))
	{
		bool		last;

		SpinLockAcquire(&s->mutex);
		s->writing = true;
		last = s->nscanning == 0;
		SpinLockRelease(&s->mutex);
		if (bs->graph->nelems > 0 || bs->meta->nsegments == 0)
			BuildWriteSegment(bs);
		BuildResetGraph(bs);
		SpinLockAcquire(&s->mutex);
		s->writing = false;
		s->state = last ? OMEN_ROUND_DONE : OMEN_ROUND_LOAD;
		SpinLockRelease(&s->mutex);
	}
	(void) BuildArrive(bs);
	BuildReportShared(bs);
}

/*
 * Claim a place in the arena for one element of a level.  Returns false if
 * the arena is full; a parallel build then closes it for everyone.  A
 * serial arena grows first, up to what maintenance_work_mem allows, and
 * without limit once the index has its last possible segment.
 */
static bool
BuildClaim(OmenBuildState *bs, int level, uint32 *idx, uint32 *up)
{
	OmenGraphHdr *g = bs->graph;
	uint32		need = level * (bs->m + 1);
	OmenBuildShared *s = bs->shared;
	bool		ok = false;

	if (s == NULL)
	{
		bool		last = bs->meta->nsegments >= OMEN_MAX_SEGMENTS - 1;

		if (g->nelems == bs->cap && (bs->cap < bs->capmax || last))
		{
			uint64		newcap = Min((uint64) bs->cap * 2, (uint64) OMEN_MAX_ELEMS);

			if (!last)
				newcap = Min(newcap, bs->capmax);
			if (newcap > bs->cap)
				BuildGrowArena(bs, (uint32) newcap, Max(bs->uppercap, BuildUpperCap(bs, newcap)));
		}
		if (g->nupper + need > bs->uppercap && (g->nelems < bs->cap || last))
			BuildGrowArena(bs, bs->cap, Max(bs->uppercap * 2, g->nupper + need));
		if (g->nelems < bs->cap && g->nupper + need <= bs->uppercap)
		{
			*idx = g->nelems++;
			*up = g->nupper;
			g->nupper += need;
			return true;
		}
		return false;
	}

	SpinLockAcquire(&s->mutex);
	if (s->state == OMEN_ROUND_LOAD && g->nelems < bs->cap && g->nupper + need <= bs->uppercap)
	{
		*idx = g->nelems++;
		*up = g->nupper;
		g->nupper += need;
		s->nloading++;
		ok = true;
	}
	else if (s->state == OMEN_ROUND_LOAD)
	{
		if (bs->meta->nsegments >= OMEN_MAX_SEGMENTS - 1)
		{
			SpinLockRelease(&s->mutex);
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("index \"%s\" needs more than %d segments",
							RelationGetRelationName(bs->index), OMEN_MAX_SEGMENTS),
					 errhint("Raise maintenance_work_mem, or build the index serially (max_parallel_maintenance_workers = 0).")));
		}
		s->state = OMEN_ROUND_BUILD;
	}
	SpinLockRelease(&s->mutex);
	if (!ok)
		ConditionVariableBroadcast(&s->cv);
	return ok;
}

/*
 * Load one vector into the arena, running a round first if it is full.
 */
static void
BuildLoadVector(OmenBuildState *bs, const float *v, ItemPointer tid)
{
	int			level = OmenRandomLevel(bs->ml);
	uint32		i;
	uint32		up;
	OmenBuildElem *e;
	int32	   *list;

	while (!BuildClaim(bs, level, &i, &up))
		BuildRound(bs);

	e = &bs->elems[i];
	e->tid = *tid;
	e->level = level;
	e->norm = OmenNorm(v, bs->dims);
	e->flags = 0;
	e->invnorm = e->norm > 0 ? 1.0f / e->norm : 0.0f;
	if (bs->metric == OMEN_METRIC_COSINE && e->norm == 0)
		e->flags |= OMEN_BELEM_NOGRAPH;
	e->upper = up;
	e->version = 0;
	SpinLockInit(&e->lock);
	memcpy(BuildVec(bs, i), v, sizeof(float) * bs->dims);
	list = BuildList(bs, i, 0);
	list[0] = 0;
	for (int l = 1; l <= level; l++)
		BuildList(bs, i, l)[0] = 0;

	if (bs->shared)
	{
		OmenBuildShared *s = bs->shared;
		bool		wake;

		SpinLockAcquire(&s->mutex);
		wake = --s->nloading == 0 && s->state != OMEN_ROUND_LOAD;
		SpinLockRelease(&s->mutex);
		if (wake)
			ConditionVariableBroadcast(&s->cv);
	}
	pg_atomic_fetch_add_u64(bs->nloaded, 1);
}

/* Check a vector's dimensions against the index's, fixing them on first use */
static void
BuildCheckDims(OmenBuildState *bs, int dims)
{
	if (bs->dims == 0)
	{
		/* a serial build of a column without a typmod: size it now */
		bs->dims = dims;
		bs->meta->dims = dims;
		bs->info.dims = dims;
		OmenComputeLayout(bs->meta);
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
	v = OmenDatumValues(bs->meta->elemtype, values[0], &dims);
	BuildCheckDims(bs, dims);
	OmenCheckVectorValues(v, dims);
	MemoryContextSwitchTo(old);

	if (bs->elems == NULL)
		BuildFirstArena(bs);
	BuildLoadVector(bs, v, tid);
	bs->indtuples++;
	BuildReport(bs, OMEN_PHASE_LOAD, -1);
	MemoryContextReset(bs->tmpCtx);
}

/* Fill a metapage image */
static void
OmenFillMetaPage(Page page, OmenMetaPage meta)
{
	OmenInitPage(page, OMEN_PAGE_META);
	memcpy(OmenPageGetMeta(page), meta, sizeof(OmenMetaPageData));
	((PageHeader) page)->pd_lower =
		((char *) OmenPageGetMeta(page) + sizeof(OmenMetaPageData)) - (char *) page;
}

/*
 * Set up the build state and the metapage image from the reloptions and
 * the column.  Used by ambuildempty too, with no heap, and by parallel
 * workers, which then use the leader's metapage image instead of theirs.
 */
static void
BuildInitState(OmenBuildState *bs, Relation heap, Relation index, IndexInfo *indexInfo,
			   const OmenMetaPageData *from)
{
	OmenOptions *opts = (OmenOptions *) index->rd_options;
	OmenMetaPage meta = &bs->localmeta;

	memset(bs, 0, sizeof(OmenBuildState));
	bs->heap = heap;
	bs->index = index;
	bs->indexInfo = indexInfo;
	bs->metric = (OmenMetric) OmenGetMetricInfo(index)->metric;
	bs->dims = from ? from->dims : OmenColumnDims(index);
	bs->m = from ? from->m : opts ? opts->m : OMEN_DEFAULT_M;
	bs->efc = from ? from->ef_construction : opts ? opts->ef_construction : OMEN_DEFAULT_EF_CONSTRUCTION;
	bs->maxm0 = 2 * bs->m;
	bs->ml = 1.0 / log((double) bs->m);
	bs->slotsize = OmenSlotSize(bs->m);
	bs->slotsperpage = OMEN_AREA_SPACE / bs->slotsize;
	bs->meta = meta;
	bs->graph = &bs->localgraph;
	bs->merged = InvalidBlockNumber;
	SpinLockInit(&bs->localgraph.lock);
	pg_atomic_init_u32(&bs->localgraph.nextinsert, 0);
	bs->localgraph.entry = -1;
	bs->localgraph.maxlevel = -1;
	for (int i = 0; i < 3; i++)
		pg_atomic_init_u64(&bs->localcount[i], 0);
	bs->nloaded = &bs->localcount[0];
	bs->ninserted = &bs->localcount[1];
	bs->nwritten = &bs->localcount[2];

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

	if (from)
	{
		/*
		 * A merge: the index's settings, layout, rotation and centroid stay;
		 * the elements, extents and segments start afresh, and the code
		 * generation advances so that backends drop their cached codes.
		 */
		memcpy(meta, from, sizeof(OmenMetaPageData));
		meta->codegen++;
		memset(meta->dirpages, 0, sizeof(meta->dirpages));
	}
	else
	{
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
	}
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
		meta->segments[i].flags = 0;
		meta->segments[i].nelements = 0;
	}
	if (!from)
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
	bs->info.mcxt = CurrentMemoryContext;
	bs->info.dircache = palloc0(sizeof(BlockNumber *) * OMEN_MAX_DIR_PAGES);
	BuildSyncInfo(bs);

	bs->tmpCtx = AllocSetContextCreate(CurrentMemoryContext, "omen build tuple",
									   ALLOCSET_DEFAULT_SIZES);
}

/*
 * Serial build (and merge): a private arena, allocated at the first vector,
 * when the dimensions are sure to be known.
 */
static void
BuildInitSerial(OmenBuildState *bs, double esttuples)
{
	bs->graphCtx = AllocSetContextCreate(CurrentMemoryContext, "omen build graph",
										 ALLOCSET_DEFAULT_SIZES);
	bs->esttuples = esttuples;
	BuildInitScratch(bs);
}

/* Serial build: allocate the arena for the row estimate */
static void
BuildFirstArena(OmenBuildState *bs)
{
	uint32		cap;

	bs->capmax = BuildCapForMemory(bs, 1);
	cap = (uint32) Min((double) bs->capmax, OMEN_ARENA_SLACK(bs->esttuples));
	cap = Max(cap, 64);
	BuildGrowArena(bs, cap, BuildUpperCap(bs, cap));
}

/* ---- parallel build ---- */

/* The row count the planner would assume for the table */
static double
BuildEstimateTuples(Relation heap)
{
	BlockNumber pages;
	double		tuples;
	double		allvisfrac;

	estimate_rel_size(heap, NULL, &pages, &tuples, &allvisfrac);
	return Max(tuples, 0);
}

/*
 * How many workers to ask for.  plan_create_index_workers applies the
 * planner's rules (max_parallel_maintenance_workers, the table's
 * parallel_workers option, its size, parallel safety of expressions) and
 * then nbtree's rule of at least 32MB of maintenance_work_mem per
 * participant, which is about sorting and does not apply to a graph that
 * all participants share: we hide maintenance_work_mem from it.
 */
static int
BuildPlanWorkers(Relation heap, Relation index)
{
	int			saved = maintenance_work_mem;
	int			nworkers;

	maintenance_work_mem = MAX_KILOBYTES;
	PG_TRY();
	{
		nworkers = plan_create_index_workers(RelationGetRelid(heap), RelationGetRelid(index));
	}
	PG_FINALLY();
	{
		maintenance_work_mem = saved;
	}
	PG_END_TRY();
	return nworkers;
}

/*
 * Free space of the file system that holds POSIX shared memory segments,
 * or -1 if it cannot be told.
 */
static double
BuildShmFree(void)
{
	struct statvfs st;

	if (statvfs("/dev/shm", &st) != 0)
		return -1;
	return (double) st.f_bavail * (double) st.f_frsize;
}

/*
 * Whether a parallel build may use size bytes of dynamic shared memory:
 * no more than omen.max_build_shared_memory, and, for POSIX segments that
 * do not fit in min_dynamic_shared_memory, no more than /dev/shm has free,
 * since running out there is an ERROR, not a fallback.  Says why not in a
 * NOTICE.
 */
static bool
BuildSharedMemoryOk(OmenBuildState *bs, Size size)
{
	double		mb = (double) size / (1024.0 * 1024.0);
	Size		limit = (Size) omen_max_build_shared_memory * 1024 * 1024;

	if (size > limit)
	{
		ereport(NOTICE,
				(errmsg("building index \"%s\" without parallel workers",
						RelationGetRelationName(bs->index)),
				 errdetail("A parallel build would need %.0f MB of shared memory, more than omen.max_build_shared_memory (%d MB).",
						   ceil(mb), omen_max_build_shared_memory),
				 errhint("Raise omen.max_build_shared_memory, or lower maintenance_work_mem.")));
		return false;
	}
	if (dynamic_shared_memory_type == DSM_IMPL_POSIX &&
		size > (Size) min_dynamic_shared_memory * 1024 * 1024)
	{
		double		avail = BuildShmFree();

		/* leave room for other segments */
		if (avail >= 0 && (double) size > avail * 0.9)
		{
			ereport(NOTICE,
					(errmsg("building index \"%s\" without parallel workers",
							RelationGetRelationName(bs->index)),
					 errdetail("A parallel build would need %.0f MB of shared memory, but /dev/shm has %.0f MB free.",
							   ceil(mb), floor(avail / (1024.0 * 1024.0))),
					 errhint("Lower maintenance_work_mem, or give /dev/shm more space.")));
			return false;
		}
	}
	return true;
}

/* Attach a participant's build state to the shared state and arena */
static void
BuildAttachShared(OmenBuildState *bs, OmenBuildShared *shared, char *arena)
{
	bs->shared = shared;
	bs->meta = &shared->meta;
	bs->graph = &shared->graph;
	bs->nloaded = &shared->nloaded;
	bs->ninserted = &shared->ninserted;
	bs->nwritten = &shared->nwritten;
	(void) BuildArenaLayout(bs, shared->cap, shared->uppercap, arena);
	BuildInitScratch(bs);
	bs->visitcap = bs->cap;
	bs->visit = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(uint32) * (Size) bs->visitcap);
	memset(bs->visit, 0, sizeof(uint32) * (Size) bs->visitcap);
}

/*
 * A participant's whole share of a parallel build: read its part of the
 * table through the parallel scan (loading vectors, and joining a round
 * whenever the arena closes), then keep joining rounds until the build is
 * done, then add its counts to the shared results.
 */
static void
BuildParticipate(OmenBuildState *bs, bool progress)
{
	OmenBuildShared *s = bs->shared;
	TableScanDesc scan;
	bool		last;

	scan = table_beginscan_parallel(bs->heap, OmenBuildSharedScan(s));
	bs->reltuples = table_index_build_scan(bs->heap, bs->index, bs->indexInfo,
										   true, progress, BuildCallback,
										   (void *) bs, scan);

	SpinLockAcquire(&s->mutex);
	last = --s->nscanning == 0;
	if (last && s->state == OMEN_ROUND_LOAD)
		s->state = OMEN_ROUND_BUILD;
	SpinLockRelease(&s->mutex);
	ConditionVariableBroadcast(&s->cv);

	for (;;)
	{
		int			state;

		SpinLockAcquire(&s->mutex);
		state = s->state;
		SpinLockRelease(&s->mutex);
		if (state == OMEN_ROUND_DONE)
			break;
		if (state == OMEN_ROUND_BUILD)
		{
			BuildRound(bs);
			continue;
		}
		BuildWait(bs);
	}
	ConditionVariableCancelSleep();

	SpinLockAcquire(&s->mutex);
	s->ndone++;
	s->reltuples += bs->reltuples;
	s->indtuples += bs->indtuples;
	if (bs->indexInfo->ii_BrokenHotChain)
		s->brokenhotchain = true;
	SpinLockRelease(&s->mutex);
}

/*
 * Entry point of a parallel build worker, found by name through
 * CreateParallelContext("omen", "OmenParallelBuildMain", ...).
 */
void
OmenParallelBuildMain(dsm_segment *seg, shm_toc *toc)
{
	OmenBuildShared *shared;
	char	   *arena;
	char	   *sharedquery;
	Relation	heap;
	Relation	index;
	LOCKMODE	heapLockmode;
	LOCKMODE	indexLockmode;
	IndexInfo  *indexInfo;
	OmenBuildState bs;
	BufferUsage *bufferusage;
	WalUsage   *walusage;

	sharedquery = shm_toc_lookup(toc, OMEN_KEY_QUERY_TEXT, true);
	debug_query_string = sharedquery;
	pgstat_report_activity(STATE_RUNNING, debug_query_string);

	shared = shm_toc_lookup(toc, OMEN_KEY_SHARED, false);
	arena = shm_toc_lookup(toc, OMEN_KEY_GRAPH, false);

	/* the lock modes index.c took in the leader; group locking lets us in */
	if (!shared->isconcurrent)
	{
		heapLockmode = ShareLock;
		indexLockmode = AccessExclusiveLock;
	}
	else
	{
		heapLockmode = ShareUpdateExclusiveLock;
		indexLockmode = RowExclusiveLock;
	}
	heap = table_open(shared->heaprelid, heapLockmode);
	index = index_open(shared->indexrelid, indexLockmode);
	indexInfo = BuildIndexInfo(index);
	indexInfo->ii_Concurrent = shared->isconcurrent;

	InstrStartParallelQuery();

	BuildInitState(&bs, heap, index, indexInfo, NULL);
	BuildAttachShared(&bs, shared, arena);
	BuildParticipate(&bs, false);

	bufferusage = shm_toc_lookup(toc, OMEN_KEY_BUFFER_USAGE, false);
	walusage = shm_toc_lookup(toc, OMEN_KEY_WAL_USAGE, false);
	InstrEndParallelQuery(&bufferusage[ParallelWorkerNumber],
						  &walusage[ParallelWorkerNumber]);

	index_close(index, indexLockmode);
	table_close(heap, heapLockmode);
}

/*
 * Try to build in parallel with up to nworkers workers.  Returns false,
 * having done nothing, if shared memory or workers are not to be had;
 * the caller then builds serially.
 */
static bool
BuildParallel(OmenBuildState *bs, int nworkers, double esttuples)
{
	ParallelContext *pcxt;
	Snapshot	snapshot;
	Size		estshared;
	Size		estarena;
	uint32		cap;
	uint32		capmem;
	uint32		uppercap;
	OmenBuildShared *shared;
	char	   *arena;
	WalUsage   *walusage;
	BufferUsage *bufferusage;
	int			querylen = 0;
	bool		isconcurrent = bs->indexInfo->ii_Concurrent;
	int			launched;

	/*
	 * The arena is sized from the table, within maintenance_work_mem for
	 * all participants together.  A table much larger than that would make
	 * more segments than an index may have, if the estimate is off.
	 */
	capmem = BuildCapForMemory(bs, nworkers + 1);
	if (esttuples > (double) capmem * (OMEN_MAX_SEGMENTS / 2))
	{
		ereport(NOTICE,
				(errmsg("building index \"%s\" without parallel workers",
						RelationGetRelationName(bs->index)),
				 errdetail("maintenance_work_mem holds %u of the table's %.0f rows; a parallel build would need more than %d segments.",
						   capmem, esttuples, OMEN_MAX_SEGMENTS / 2),
				 errhint("Raise maintenance_work_mem.")));
		return false;
	}
	cap = (uint32) Min((double) capmem, OMEN_ARENA_SLACK(esttuples));
	uppercap = BuildUpperCap(bs, cap);
	estarena = BuildArenaLayout(bs, cap, uppercap, NULL);

	EnterParallelMode();
	pcxt = CreateParallelContext("omen", "OmenParallelBuildMain", nworkers);

	if (!isconcurrent)
		snapshot = SnapshotAny;
	else
		snapshot = RegisterSnapshot(GetTransactionSnapshot());

	estshared = BUFFERALIGN(sizeof(OmenBuildShared)) +
		table_parallelscan_estimate(bs->heap, snapshot);
	shm_toc_estimate_chunk(&pcxt->estimator, estshared);
	shm_toc_estimate_chunk(&pcxt->estimator, estarena);
	shm_toc_estimate_chunk(&pcxt->estimator, mul_size(sizeof(WalUsage), pcxt->nworkers));
	shm_toc_estimate_chunk(&pcxt->estimator, mul_size(sizeof(BufferUsage), pcxt->nworkers));
	shm_toc_estimate_keys(&pcxt->estimator, 4);
	if (debug_query_string)
	{
		querylen = strlen(debug_query_string);
		shm_toc_estimate_chunk(&pcxt->estimator, querylen + 1);
		shm_toc_estimate_keys(&pcxt->estimator, 1);
	}

	if (!BuildSharedMemoryOk(bs, shm_toc_estimate(&pcxt->estimator)))
		goto fail;

	InitializeParallelDSM(pcxt);
	if (pcxt->seg == NULL)
		goto fail;

	shared = shm_toc_allocate(pcxt->toc, estshared);
	memset(shared, 0, sizeof(OmenBuildShared));
	shared->heaprelid = RelationGetRelid(bs->heap);
	shared->indexrelid = RelationGetRelid(bs->index);
	shared->isconcurrent = isconcurrent;
	shared->cap = cap;
	shared->uppercap = uppercap;
	SpinLockInit(&shared->mutex);
	ConditionVariableInit(&shared->cv);
	/* upper bounds until the leader knows how many workers started */
	shared->nparticipants = pcxt->nworkers + 1;
	shared->nscanning = pcxt->nworkers + 1;
	shared->state = OMEN_ROUND_LOAD;
	SpinLockInit(&shared->graph.lock);
	shared->graph.entry = -1;
	shared->graph.maxlevel = -1;
	pg_atomic_init_u32(&shared->graph.nextinsert, 0);
	pg_atomic_init_u64(&shared->nloaded, 0);
	pg_atomic_init_u64(&shared->ninserted, 0);
	pg_atomic_init_u64(&shared->nwritten, 0);
	memcpy(&shared->meta, &bs->localmeta, sizeof(OmenMetaPageData));
	table_parallelscan_initialize(bs->heap, OmenBuildSharedScan(shared), snapshot);
	shm_toc_insert(pcxt->toc, OMEN_KEY_SHARED, shared);

	arena = shm_toc_allocate(pcxt->toc, estarena);
	shm_toc_insert(pcxt->toc, OMEN_KEY_GRAPH, arena);

	if (debug_query_string)
	{
		char	   *sharedquery = shm_toc_allocate(pcxt->toc, querylen + 1);

		memcpy(sharedquery, debug_query_string, querylen + 1);
		shm_toc_insert(pcxt->toc, OMEN_KEY_QUERY_TEXT, sharedquery);
	}
	walusage = shm_toc_allocate(pcxt->toc, mul_size(sizeof(WalUsage), pcxt->nworkers));
	shm_toc_insert(pcxt->toc, OMEN_KEY_WAL_USAGE, walusage);
	bufferusage = shm_toc_allocate(pcxt->toc, mul_size(sizeof(BufferUsage), pcxt->nworkers));
	shm_toc_insert(pcxt->toc, OMEN_KEY_BUFFER_USAGE, bufferusage);

	LaunchParallelWorkers(pcxt);
	launched = pcxt->nworkers_launched;
	if (launched == 0)
	{
		WaitForParallelWorkersToFinish(pcxt);
		goto fail;
	}
	/* a worker that failed to start would otherwise be waited for forever */
	WaitForParallelWorkersToAttach(pcxt);

	SpinLockAcquire(&shared->mutex);
	shared->nparticipants = launched + 1;
	shared->nscanning -= pcxt->nworkers - launched;
	SpinLockRelease(&shared->mutex);
	ConditionVariableBroadcast(&shared->cv);

	ereport(DEBUG1,
			(errmsg_internal("omen: building index \"%s\" with %d parallel workers",
							 RelationGetRelationName(bs->index), launched)));

	/* the leader is a participant too */
	BuildAttachShared(bs, shared, arena);
	BuildParticipate(bs, true);

	WaitForParallelWorkersToFinish(pcxt);
	for (int i = 0; i < launched; i++)
		InstrAccumParallelQuery(&bufferusage[i], &walusage[i]);

	bs->reltuples = shared->reltuples;
	bs->indtuples = shared->indtuples;
	if (shared->brokenhotchain)
		bs->indexInfo->ii_BrokenHotChain = true;
	memcpy(&bs->localmeta, &shared->meta, sizeof(OmenMetaPageData));
	bs->meta = &bs->localmeta;
	bs->shared = NULL;

	if (IsMVCCSnapshot(snapshot))
		UnregisterSnapshot(snapshot);
	DestroyParallelContext(pcxt);
	ExitParallelMode();
	return true;

fail:
	if (IsMVCCSnapshot(snapshot))
		UnregisterSnapshot(snapshot);
	DestroyParallelContext(pcxt);
	ExitParallelMode();
	return false;
}

/* ---- ambuild ---- */

IndexBuildResult *
omenbuild(Relation heap, Relation index, IndexInfo *indexInfo)
{
	IndexBuildResult *result;
	OmenBuildState bs;
	Buffer		metabuf;
	double		esttuples;
	int			nworkers = 0;
	bool		parallel = false;

	if (RelationGetNumberOfBlocks(index) != 0)
		elog(ERROR, "index \"%s\" already contains data", RelationGetRelationName(index));

	BuildInitState(&bs, heap, index, indexInfo, NULL);

	/* the metapage is block 0; it is filled in at the end */
	metabuf = ReadBufferExtended(index, MAIN_FORKNUM, P_NEW, RBM_NORMAL, NULL);
	Assert(BufferGetBlockNumber(metabuf) == OMEN_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	OmenInitPage(BufferGetPage(metabuf), OMEN_PAGE_META);
	MarkBufferDirty(metabuf);
	LockBuffer(metabuf, BUFFER_LOCK_UNLOCK);

	esttuples = BuildEstimateTuples(heap);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, (int64) esttuples);
	BuildReport(&bs, OMEN_PHASE_LOAD, 0);

	/*
	 * Parallel only when the arena can be sized before the first row is
	 * read: that needs the dimensions from the column's type.
	 */
	if (bs.dims > 0 && IsNormalProcessingMode() && !IsInParallelMode())
		nworkers = BuildPlanWorkers(heap, index);
	if (nworkers > 0)
		parallel = BuildParallel(&bs, nworkers, esttuples);

	if (!parallel)
	{
		ereport(DEBUG1,
				(errmsg_internal("omen: building index \"%s\" serially",
								 RelationGetRelationName(index))));
		BuildInitSerial(&bs, esttuples);
		bs.reltuples = table_index_build_scan(heap, index, indexInfo, true, true,
											  BuildCallback, (void *) &bs, NULL);
		/* the last (or only) segment; an empty index still gets segment 0 */
		if (bs.graph->nelems > 0 || bs.meta->nsegments == 0)
			BuildRound(&bs);
	}

	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	OmenFillMetaPage(BufferGetPage(metabuf), bs.meta);
	MarkBufferDirty(metabuf);
	UnlockReleaseBuffer(metabuf);

	if (RelationNeedsWAL(index))
		log_newpage_range(index, MAIN_FORKNUM, 0, RelationGetNumberOfBlocks(index), true);

	/*
	 * Pruning leaves a few elements that no list links to: link them from
	 * their neighbours, through the pages (and WAL) like an insert.
	 */
	if (bs.indtuples > 0)
	{
		OmenMetaPageData meta;
		OmenIndexInfo info;

		OmenReadMetaPage(index, &meta);
		OmenInitIndexInfo(&info, index, &meta);
		OmenRelinkOrphans(index, &info, meta.nextents);
	}

	if (bs.graphCtx)
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

	BuildInitState(&bs, NULL, index, NULL, NULL);
	bs.meta->nsegments = 1;

	page = (Page) palloc(BLCKSZ);
	OmenFillMetaPage(page, bs.meta);
	PageSetChecksumInplace(page, OMEN_METAPAGE_BLKNO);
	smgrwrite(RelationGetSmgr(index), INIT_FORKNUM, OMEN_METAPAGE_BLKNO, (char *) page, true);
	log_newpage(&(RelationGetSmgr(index))->smgr_rnode.node, INIT_FORKNUM,
				OMEN_METAPAGE_BLKNO, page, true);
	smgrimmedsync(RelationGetSmgr(index), INIT_FORKNUM);
	pfree(page);
}

/* ---- omen_merge_segments ---- */

/*
 * A merge reads the vector of a live element: from its code (quantizer
 * none, where the code is the vector), from the index's vector pages, or
 * from the table (vectors = heap).  Returns NULL for an element whose row
 * is gone from the table.
 */
typedef struct OmenMergeReader
{
	OmenReader	r;
	IndexFetchTableData *fetch;
	TupleTableSlot *slot;
	AttrNumber	attno;
	float	   *vec;
} OmenMergeReader;

static const float *
MergeVector(OmenBuildState *bs, OmenMergeReader *mr, OmenElem elem, OmenSlot slot)
{
	OmenIndexInfo *info = mr->r.info;
	float		norm;

	if (mr->fetch != NULL)
	{
		ItemPointerData tid = slot->heaptid;
		bool		call_again = false;
		bool		all_dead = false;
		bool		isnull;
		Datum		value;
		const float *v;
		int			dims;

		/* any version of the HOT chain holds the indexed vector */
		if (!table_index_fetch_tuple(mr->fetch, &tid, SnapshotAny, mr->slot,
									 &call_again, &all_dead))
			return NULL;
		value = slot_getattr(mr->slot, mr->attno, &isnull);
		if (isnull)
		{
			ExecClearTuple(mr->slot);
			return NULL;
		}
		v = OmenDatumValues(info->elemtype, value, &dims);
		if (dims != info->dims)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("expected %d dimensions, not %d", info->dims, dims)));
		memcpy(mr->vec, v, sizeof(float) * dims);
		ExecClearTuple(mr->slot);
		return mr->vec;
	}
	return OmenSlotVector(&mr->r, elem, slot, mr->vec, &norm);
}

/*
 * omen_merge_segments(regclass): rebuild the live elements of an omen
 * index into as few segments as maintenance_work_mem allows (one, if they
 * fit), so that scans search one graph instead of several.  Returns the
 * number of segments the index has afterwards.
 *
 * The new segments go into new extents, directory and item pages at the
 * end of the relation, written without WAL and logged as full images, like
 * a build; then one GenericXLog record of the metapage switches the index
 * over.  A crash before that record leaves unreferenced pages behind, one
 * after it the merged index; the old pages stay unreferenced until the
 * next REINDEX.  ShareRowExclusiveLock on the index keeps out inserts,
 * VACUUM and other merges but not scans; the switch waits for the scans
 * that began before the merge, which could otherwise meet elements added
 * after they read the metapage and look them up in the new directory.
 */
PG_FUNCTION_INFO_V1(omen_merge_segments);
Datum
omen_merge_segments(PG_FUNCTION_ARGS)
{
	Oid			indexoid = PG_GETARG_OID(0);
	char	   *name;
	Oid			heapoid;
	Relation	heap;
	Relation	index;
	LOCKTAG		tag;
	VirtualTransactionId *scans;
	OmenMetaPageData oldmeta;
	OmenIndexInfo rinfo;
	OmenMergeReader mr;
	OmenBuildState bs;
	OmenSlot	slots;
	double		live = 0;
	Buffer		metabuf;
	GenericXLogState *state;
	Page		page;

	name = get_rel_name(indexoid);
	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", indexoid)));
	heapoid = IndexGetRelation(indexoid, true);
	if (!OidIsValid(heapoid))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not an omen index", name)));
	if (!pg_class_ownercheck(indexoid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_INDEX, name);

	/* table first, as everyone locks them */
	heap = table_open(heapoid, AccessShareLock);
	index = OmenOpenIndex(indexoid, ShareRowExclusiveLock);
	CheckTableNotInUse(index, "merge segments of");
	SET_LOCKTAG_RELATION(tag, MyDatabaseId, indexoid);
	scans = GetLockConflicts(&tag, AccessExclusiveLock, NULL);

	OmenReadMetaPage(index, &oldmeta);
	OmenInitIndexInfo(&rinfo, index, &oldmeta);
	for (int i = 0; i < oldmeta.nsegments; i++)
		live += oldmeta.segments[i].nelements;

	BuildInitState(&bs, heap, index, NULL, &oldmeta);
	bs.merged = RelationGetNumberOfBlocks(index);
	BuildInitSerial(&bs, live);

	memset(&mr, 0, sizeof(mr));
	OmenReaderInit(&mr.r, &rinfo);
	mr.vec = palloc(sizeof(float) * Max(rinfo.dims, 1));
	if (rinfo.quantizer != OMEN_QUANT_NONE && rinfo.vectors == OMEN_VECTORS_HEAP)
	{
		mr.fetch = table_index_fetch_begin(heap);
		mr.slot = table_slot_create(heap, NULL);
		mr.attno = index->rd_index->indkey.values[0];
	}

	/* every live element, extent by extent, graph page by graph page */
	slots = palloc(BLCKSZ);
	for (uint32 x = 0; x < oldmeta.nextents; x++)
	{
		BlockNumber start = OmenExtentStart(&rinfo, x);

		vacuum_delay_point();
		for (int g = 0; g < rinfo.G; g++)
		{
			Buffer		buf = ReadBuffer(index, start + rinfo.C + g);
			int			nslots;
			OmenElem	first = x * rinfo.K + g * rinfo.slotsperpage;

			LockBuffer(buf, BUFFER_LOCK_SHARE);
			OmenCheckPage(index, BufferGetPage(buf), start + rinfo.C + g, OMEN_PAGE_GRAPH);
			nslots = OmenPageGetOpaque(BufferGetPage(buf))->nslots;
			memcpy(slots, PageGetContents(BufferGetPage(buf)), (Size) nslots * rinfo.slotsize);
			UnlockReleaseBuffer(buf);

			for (int i = 0; i < nslots && first + i < oldmeta.nextElem; i++)
			{
				OmenSlot	slot = (OmenSlot) ((char *) slots + (Size) i * rinfo.slotsize);
				const float *v;

				if (!(slot->flags & OMEN_SLOT_USED) || (slot->flags & OMEN_SLOT_DELETED))
					continue;
				CHECK_FOR_INTERRUPTS();
				OmenCheckHeapTid(index, &slot->heaptid, first + i);
				v = MergeVector(&bs, &mr, first + i, slot);
				if (v == NULL)
					continue;
				if (bs.elems == NULL)
					BuildFirstArena(&bs);
				BuildLoadVector(&bs, v, &slot->heaptid);
				bs.indtuples++;
			}
		}
		OmenReaderRelease(&mr.r);
	}
	if (bs.graph->nelems > 0 || bs.meta->nsegments == 0)
		BuildRound(&bs);
	if (mr.fetch)
	{
		table_index_fetch_end(mr.fetch);
		ExecDropSingleTupleTableSlot(mr.slot);
	}

	if (RelationNeedsWAL(index))
		log_newpage_range(index, MAIN_FORKNUM, bs.merged, RelationGetNumberOfBlocks(index), true);

	/* scans that began before us must not see the switch */
	for (; VirtualTransactionIdIsValid(*scans); scans++)
		(void) VirtualXactLock(*scans, true);

	metabuf = ReadBuffer(index, OMEN_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(state, metabuf, GENERIC_XLOG_FULL_IMAGE);
	OmenFillMetaPage(page, bs.meta);
	GenericXLogFinish(state);
	UnlockReleaseBuffer(metabuf);

	MemoryContextDelete(bs.graphCtx);
	MemoryContextDelete(bs.tmpCtx);
	/* the locks stay until the end of the transaction */
	index_close(index, NoLock);
	table_close(heap, NoLock);
	PG_RETURN_INT32(bs.localmeta.nsegments);
}
