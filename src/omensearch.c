/*-------------------------------------------------------------------------
 *
 * omensearch.c
 *	  HNSW graph search on buffer pages, shared by index scans and inserts,
 *	  and the neighbour-selection heuristic shared with the builder.
 *
 * A search reads one page at a time under a share lock and copies out what
 * it needs (a slot, a neighbour list) or computes a distance in place
 * before unlocking, so it never holds two content locks and cannot take
 * part in a deadlock.  Pins are kept in a small cache for the duration of
 * one call into the AM, because a graph search comes back to the same
 * pages again and again.
 *
 * IDENTIFICATION
 *	  src/omensearch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/mman.h>

#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/bufmgr.h"
#include "utils/guc.h"
#include "omen.h"
#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/*
 * The visited set: one flag byte per element, in chunks of 1024 elements
 * allocated as the search touches them.  Element numbers are dense, so
 * this is two array lookups and no hashing; memory grows with the part of
 * the index a search touches, not with the index.
 */
#define OMEN_VISIT_CHUNK_BITS	10
#define OMEN_VISIT_CHUNK		(1 << OMEN_VISIT_CHUNK_BITS)
#define OMEN_VISIT_SEEN			0x80

static inline uint8 *
OmenVisitGet(OmenVisited *v, OmenElem e)
{
	uint32		c = e >> OMEN_VISIT_CHUNK_BITS;

	if (c >= v->nchunks || v->chunks[c] == NULL)
		return NULL;
	return &v->chunks[c][e & (OMEN_VISIT_CHUNK - 1)];
}

static inline uint8 *
OmenVisitAdd(OmenVisited *v, OmenElem e)
{
	uint32		c = e >> OMEN_VISIT_CHUNK_BITS;

	if (unlikely(c >= v->nchunks))
	{
		uint32		n = Max(c + 1, v->nchunks * 2);

		v->chunks = v->chunks ? repalloc(v->chunks, sizeof(uint8 *) * n) :
			palloc(sizeof(uint8 *) * n);
		memset(v->chunks + v->nchunks, 0, sizeof(uint8 *) * (n - v->nchunks));
		v->nchunks = n;
	}
	if (unlikely(v->chunks[c] == NULL))
		v->chunks[c] = palloc0(OMEN_VISIT_CHUNK);
	return &v->chunks[c][e & (OMEN_VISIT_CHUNK - 1)];
}

/* ---- candidate heaps ---- */

void
OmenHeapInit(OmenHeap *h, int cap, bool ismax)
{
	h->cap = Max(cap, 16);
	h->n = 0;
	h->ismax = ismax;
	h->items = palloc(sizeof(OmenCand) * h->cap);
}

/* a sorts above b in this heap? */
static inline bool
OmenHeapAbove(const OmenHeap *h, const OmenCand *a, const OmenCand *b)
{
	return h->ismax ? OmenDistLess(b->dist, a->dist) : OmenDistLess(a->dist, b->dist);
}

void
OmenHeapPush(OmenHeap *h, float dist, OmenElem elem)
{
	int			i;

	if (h->n == h->cap)
	{
		h->cap *= 2;
		h->items = repalloc_huge(h->items, sizeof(OmenCand) * h->cap);
	}
	i = h->n++;
	h->items[i].dist = dist;
	h->items[i].elem = elem;
	while (i > 0)
	{
		int			parent = (i - 1) / 2;
		OmenCand	tmp;

		if (!OmenHeapAbove(h, &h->items[i], &h->items[parent]))
			break;
		tmp = h->items[i];
		h->items[i] = h->items[parent];
		h->items[parent] = tmp;
		i = parent;
	}
}

/*
 * Append without restoring the heap order: for a heap that is only
 * read after an OmenHeapify.
 */
void
OmenHeapAppend(OmenHeap *h, float dist, OmenElem elem)
{
	if (h->n == h->cap)
	{
		h->cap *= 2;
		h->items = repalloc_huge(h->items, sizeof(OmenCand) * h->cap);
	}
	h->items[h->n].dist = dist;
	h->items[h->n].elem = elem;
	h->n++;
}

static void OmenHeapSiftDown(OmenHeap *h, int i);

/* Restore the heap order of items added with OmenHeapAppend: O(n) */
void
OmenHeapify(OmenHeap *h)
{
	for (int i = h->n / 2 - 1; i >= 0; i--)
		OmenHeapSiftDown(h, i);
}

OmenCand
OmenHeapPop(OmenHeap *h)
{
	OmenCand	top = h->items[0];

	h->items[0] = h->items[--h->n];
	OmenHeapSiftDown(h, 0);
	return top;
}

static void
OmenHeapSiftDown(OmenHeap *h, int i)
{
	for (;;)
	{
		int			l = 2 * i + 1;
		int			r = l + 1;
		int			best = i;
		OmenCand	tmp;

		if (l < h->n && OmenHeapAbove(h, &h->items[l], &h->items[best]))
			best = l;
		if (r < h->n && OmenHeapAbove(h, &h->items[r], &h->items[best]))
			best = r;
		if (best == i)
			break;
		tmp = h->items[i];
		h->items[i] = h->items[best];
		h->items[best] = tmp;
		i = best;
	}
}

/* ---- backend-local code cache ---- */

/*
 * A backend keeps copies of the code pages of the indexes it searches,
 * as one array per index indexed by element number, so that a search
 * computes a neighbour's distance from local memory instead of pinning a
 * shared buffer.  Copies are taken extent by extent under a share lock.
 *
 * A copy is never wrong for an element that was reachable when it was
 * taken: codes do not change while their element is reachable (see
 * src/README).  Elements written after the copy have no OMEN_CODE_VALID
 * flag in it, which sends the reader back to the page.  A deleted flag set
 * later is missed, which only costs a slot read when the element reaches
 * the results, where the slot's own flag is checked.  A cache is tied to
 * one build of one relfilenode (its rotation seed) and to the metapage's
 * code generation, which anything that rewrites a code must advance.
 *
 * A reader keeps a pointer to its index's cache for as long as it lives,
 * and several readers can be alive at once (a Merge Append over many
 * partitions, a scan beside an insert).  So a cache that is replaced or
 * evicted is not freed at once but retired, and retired caches are freed
 * at the end of the transaction, which no reader outlives.
 */
typedef struct OmenCodeCache
{
	RelFileNode node;
	uint32		buildid;
	int			codesize;
	int			K;
	uint32		nalloc;			/* extents there is room for */
	uint8	   *codes;
	bool	   *filled;
	uint64		lastuse;
	Size		bytes;			/* length of the mapping of codes */

	/*
	 * The buffer each block of the index was last found in: a hint for
	 * ReadRecentBuffer, which pins a buffer that still holds the block
	 * without a lookup in the shared buffer mapping table.
	 */
	Buffer	   *recent;
	BlockNumber nrecent;

	struct OmenCodeCache *nextretired;
} OmenCodeCache;

#define OMEN_MAX_CODE_CACHES 8

static OmenCodeCache *omen_caches[OMEN_MAX_CODE_CACHES];
static OmenCodeCache *omen_retired_caches = NULL;
static bool omen_cache_callback = false;
static uint64 omen_cache_tick = 0;

/*
 * The codes of a cache live in their own anonymous mapping.  From 2 MB on
 * it is aligned to 2 MB and offered to the kernel for transparent huge
 * pages: a search touches codes at random all over a cache of tens of
 * megabytes, and with 4 kB pages nearly every code costs a TLB miss and a
 * page walk on top of the cache miss.  Where the kernel gives no huge pages
 * this is an ordinary allocation.  The mapping's whole length counts
 * against omen.code_cache.
 */
#define OMEN_HUGE_PAGE ((Size) 2 * 1024 * 1024)
#define OMEN_SMALL_PAGE ((Size) 4096)

/* The length of the mapping that holds bytes of codes */
static Size
OmenCodeMapLen(Size bytes)
{
	return bytes >= OMEN_HUGE_PAGE ? TYPEALIGN(OMEN_HUGE_PAGE, bytes) :
		TYPEALIGN(OMEN_SMALL_PAGE, bytes);
}

/* A mapping of len bytes (from OmenCodeMapLen), or NULL if there is no memory */
static uint8 *
OmenCodeMapAlloc(Size len)
{
	char	   *p;
	char	   *aligned;
	Size		head;
	Size		tail;

	if (len < OMEN_HUGE_PAGE)
	{
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		return p == MAP_FAILED ? NULL : (uint8 *) p;
	}

	/* over-allocate by one huge page, then trim to an aligned range */
	p = mmap(NULL, len + OMEN_HUGE_PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	aligned = (char *) TYPEALIGN(OMEN_HUGE_PAGE, p);
	head = aligned - p;
	tail = OMEN_HUGE_PAGE - head;
	if (head > 0)
		munmap(p, head);
	if (tail > 0)
		munmap(aligned + len, tail);
#ifdef MADV_HUGEPAGE
	(void) madvise(aligned, len, MADV_HUGEPAGE);
#endif
	return (uint8 *) aligned;
}

static void
OmenCodeMapFree(uint8 *p, Size len)
{
	if (p != NULL)
		munmap(p, len);
}

static void
OmenCodeCacheDestroy(OmenCodeCache *c)
{
	if (c->codes)
		OmenCodeMapFree(c->codes, c->bytes);
	if (c->filled)
		pfree(c->filled);
	if (c->recent)
		pfree(c->recent);
	pfree(c);
}

/* Free the retired caches: no reader is left at the end of a transaction */
static void
OmenCodeCacheXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			while (omen_retired_caches != NULL)
			{
				OmenCodeCache *c = omen_retired_caches;

				omen_retired_caches = c->nextretired;
				OmenCodeCacheDestroy(c);
			}
			break;
		default:
			break;
	}
}

/* Take cache i out of use; it is freed at the end of the transaction */
static void
OmenCodeCacheRetire(int i)
{
	if (omen_caches[i] == NULL)
		return;
	if (!omen_cache_callback)
	{
		RegisterXactCallback(OmenCodeCacheXactCallback, NULL);
		omen_cache_callback = true;
	}
	omen_caches[i]->nextretired = omen_retired_caches;
	omen_retired_caches = omen_caches[i];
	omen_caches[i] = NULL;
}

static Size
OmenCodeCacheBytes(void)
{
	Size		total = 0;

	for (int i = 0; i < OMEN_MAX_CODE_CACHES; i++)
		if (omen_caches[i])
			total += omen_caches[i]->bytes;
	return total;
}

/* The cache of an index, created empty if there is none */
static OmenCodeCache *
OmenCodeCacheGet(OmenIndexInfo *info)
{
	RelFileNode node = info->index->rd_node;
	int			victim = 0;

	if (omen_code_cache_mb <= 0 || info->codesize <= 0 || info->K <= 0)
		return NULL;
	for (int i = 0; i < OMEN_MAX_CODE_CACHES; i++)
	{
		OmenCodeCache *c = omen_caches[i];

		if (c != NULL && RelFileNodeEquals(c->node, node))
		{
			if (c->buildid == info->rotseed + info->codegen && c->codesize == info->codesize &&
				c->K == info->K)
			{
				c->lastuse = ++omen_cache_tick;
				return c;
			}
			OmenCodeCacheRetire(i);
		}
	}
	for (int i = 0; i < OMEN_MAX_CODE_CACHES; i++)
	{
		if (omen_caches[i] == NULL)
		{
			victim = i;
			break;
		}
		if (omen_caches[i]->lastuse < omen_caches[victim]->lastuse)
			victim = i;
	}
	OmenCodeCacheRetire(victim);
	omen_caches[victim] = MemoryContextAllocZero(TopMemoryContext, sizeof(OmenCodeCache));
	omen_caches[victim]->node = node;
	omen_caches[victim]->buildid = info->rotseed + info->codegen;
	omen_caches[victim]->codesize = info->codesize;
	omen_caches[victim]->K = info->K;
	omen_caches[victim]->lastuse = ++omen_cache_tick;
	return omen_caches[victim];
}

/*
 * Copy extent x's codes into the cache, growing it if the budget allows.
 * Returns false if it does not.
 */
static bool
OmenCodeCacheFill(OmenReader *r, OmenCodeCache *c, uint32 x)
{
	OmenIndexInfo *info = r->info;
	Size		extbytes = (Size) c->K * c->codesize;
	uint8	   *dst;
	uint8	   *codes;
	BlockNumber start;

	if (x >= c->nalloc)
	{
		uint32		want = Max(x + 1, Max(c->nalloc * 2, 16));
		Size		budget = (Size) omen_code_cache_mb * 1024 * 1024;
		Size		others = OmenCodeCacheBytes() - c->bytes;
		Size		usable;
		Size		len;
		bool	   *filled;

		if (others >= budget)
			return false;
		usable = budget - others;
		usable = usable >= OMEN_HUGE_PAGE ? TYPEALIGN_DOWN(OMEN_HUGE_PAGE, usable) :
			TYPEALIGN_DOWN(OMEN_SMALL_PAGE, usable);
		want = Min(want, usable / extbytes);
		if (want < x + 1)
			return false;

		/* nothing may throw between the new mapping and its adoption */
		len = OmenCodeMapLen((Size) want * extbytes);
		codes = OmenCodeMapAlloc(len);
		if (codes == NULL)
			return false;
		filled = MemoryContextAllocExtended(TopMemoryContext, want,
											MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
		if (filled == NULL)
		{
			OmenCodeMapFree(codes, len);
			return false;
		}
		if (c->codes != NULL)
		{
			memcpy(codes, c->codes, (Size) c->nalloc * extbytes);
			memcpy(filled, c->filled, c->nalloc);
			OmenCodeMapFree(c->codes, c->bytes);
			pfree(c->filled);
		}
		c->codes = codes;
		c->filled = filled;
		c->nalloc = want;
		c->bytes = len;
	}

	start = OmenExtentStart(info, x);
	dst = c->codes + (Size) x * extbytes;
	for (int p = 0; p < info->C; p++)
	{
		Buffer		buf = ReadBuffer(r->index, start + p);
		Page		page;
		Size		n = Min((Size) OMEN_AREA_SPACE, extbytes - (Size) p * OMEN_AREA_SPACE);

		r->pages++;
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		OmenCheckPage(r->index, page, start + p, OMEN_PAGE_CODE);
		memcpy(dst + (Size) p * OMEN_AREA_SPACE, PageGetContents(page), n);
		UnlockReleaseBuffer(buf);
	}
	c->filled[x] = true;
	return true;
}

/* ---- page reader ---- */

void
OmenReaderInit(OmenReader *r, OmenIndexInfo *info)
{
	r->index = info->index;
	r->info = info;

	/*
	 * Keep a backend from pinning more than its share of a small buffer
	 * pool: every backend may be scanning at once.
	 */
	r->npins = NBuffers / (2 * (MaxBackends + 1));
	r->npins = Max(4, Min(OMEN_PIN_CACHE_SIZE, r->npins));
	for (int i = 0; i < OMEN_PIN_CACHE_SIZE; i++)
	{
		r->blks[i] = InvalidBlockNumber;
		r->bufs[i] = InvalidBuffer;
	}
	r->scratch = palloc(sizeof(float) * Max(info->dims, 1));
	r->codebuf = palloc(Max(info->codesize, 1));
	r->slot = palloc(info->slotsize);
	r->upper = palloc(sizeof(uint32) * (info->m + 1));
	r->pages = 0;
	r->distances = 0;
	r->codedists = 0;
	r->expanded = 0;
	r->cache = OmenCodeCacheGet(info);
	r->heapfetch = NULL;
	r->nohints = VacuumCostActive;	/* see OmenReadBufferHinted */
	r->nhinted = 0;
}

void
OmenReaderRelease(OmenReader *r)
{
	for (int i = 0; i < OMEN_PIN_CACHE_SIZE; i++)
	{
		if (r->bufs[i] != InvalidBuffer)
			ReleaseBuffer(r->bufs[i]);
		r->bufs[i] = InvalidBuffer;
		r->blks[i] = InvalidBlockNumber;
	}
}

/*
 * ReadBuffer, but first try the buffer the block was in last time: a
 * search pins the same few thousand graph pages over and over, and a
 * buffer still holding the block is pinned without hashing its tag and
 * taking a mapping partition lock.  The hint is only a hint:
 * ReadRecentBuffer checks the buffer's tag under its header lock.  Temporary
 * indexes do without: their local buffer lookup takes no lock anyway.  So
 * does VACUUM, whose cost accounting counts the pages ReadBuffer reads.
 */
static Buffer
OmenReadBufferHinted(OmenReader *r, BlockNumber blk)
{
	OmenCodeCache *c = (RelationUsesLocalBuffers(r->index) || r->nohints) ? NULL : r->cache;
	Buffer		buf;

	/*
	 * ReadRecentBuffer does not raise the buffer's usage count, which the
	 * clock sweep goes by: every eighth pin goes the long way, so that the
	 * pages searches keep coming back to stay hot.
	 */
	if (c != NULL && (++r->nhinted & 7) != 0 &&
		blk < c->nrecent && c->recent[blk] != InvalidBuffer &&
		ReadRecentBuffer(r->index->rd_node, MAIN_FORKNUM, blk, c->recent[blk]))
	{
		/* what ReadBuffer would have counted */
		pgstat_count_buffer_read(r->index);
		pgstat_count_buffer_hit(r->index);
		return c->recent[blk];
	}
	buf = ReadBuffer(r->index, blk);
	if (c != NULL)
	{
		if (blk >= c->nrecent)
		{
			BlockNumber n = Max(blk + 1, Max(c->nrecent * 2, 1024));

			if (n > MaxAllocSize / sizeof(Buffer))
				return buf;
			c->recent = c->recent ?
				repalloc(c->recent, sizeof(Buffer) * n) :
				MemoryContextAlloc(TopMemoryContext, sizeof(Buffer) * n);
			for (BlockNumber b = c->nrecent; b < n; b++)
				c->recent[b] = InvalidBuffer;
			c->nrecent = n;
		}
		c->recent[blk] = buf;
	}
	return buf;
}

/* A pinned (not locked) buffer for blk, from the cache if possible */
Buffer
OmenReaderPin(OmenReader *r, BlockNumber blk)
{
	int			i = blk % r->npins;

	if (unlikely(blk == InvalidBlockNumber))
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" refers to an invalid block",
						RelationGetRelationName(r->index))));
	if (r->blks[i] == blk && r->bufs[i] != InvalidBuffer)
		return r->bufs[i];
	r->pages++;
	if (r->bufs[i] != InvalidBuffer)
		ReleaseBuffer(r->bufs[i]);
	r->blks[i] = InvalidBlockNumber;
	r->bufs[i] = OmenReadBufferHinted(r, blk);
	r->blks[i] = blk;
	return r->bufs[i];
}

static void
OmenBadElement(Relation index, OmenElem elem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("index \"%s\" references an invalid element",
					RelationGetRelationName(index)),
			 errdetail("Element %u has no valid slot or code.", elem)));
}

/*
 * Copy the slot of an element into out.  Returns false if the slot holds
 * no element (a slot freed by vacuum).
 */
bool
OmenReadSlot(OmenReader *r, OmenElem elem, OmenSlot out)
{
	BlockNumber blk;
	int			slotno;
	Buffer		buf;
	Page		page;

	if (elem == OMEN_INVALID_ELEM)
		OmenBadElement(r->index, elem);
	OmenElemSlotLoc(r->info, elem, &blk, &slotno);
	buf = OmenReaderPin(r, blk);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (PageIsNew(page) || PageGetSpecialSize(page) != MAXALIGN(sizeof(OmenPageOpaqueData)) ||
		OmenPageGetOpaque(page)->type != OMEN_PAGE_GRAPH ||
		slotno >= OmenPageGetOpaque(page)->nslots)
	{
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		OmenBadElement(r->index, elem);
	}
	memcpy(out, OmenPageGetSlot(page, r->info->slotsize, slotno), r->info->slotsize);
	LockBuffer(buf, BUFFER_LOCK_UNLOCK);

	if (!(out->flags & OMEN_SLOT_USED))
		return false;
	if (out->n0 > r->info->maxm0 || out->level > OMEN_MAX_LEVEL ||
		out->segment >= OMEN_MAX_SEGMENTS)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has an invalid element slot",
						RelationGetRelationName(r->index)),
				 errdetail("Block %u, slot %d.", blk, slotno)));
	return true;
}

/*
 * The code of an element, copied into r->codebuf under share locks: the
 * careful path, for pages an unlocked read found not ready.
 */
static pg_noinline const uint8 *
OmenReaderCodeLocked(OmenReader *r, OmenElem elem)
{
	OmenIndexInfo *info = r->info;
	OmenCodeLoc loc = OmenElemCodeLoc(info, elem);
	int			left = info->codesize;
	uint8	   *dst = r->codebuf;

	while (left > 0)
	{
		Buffer		buf = OmenReaderPin(r, loc.blk);
		Page		page;
		int			n = Min(left, OMEN_AREA_SPACE - loc.off);

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		if (PageIsNew(page) || PageGetSpecialSize(page) != MAXALIGN(sizeof(OmenPageOpaqueData)) ||
			OmenPageGetOpaque(page)->type != OMEN_PAGE_CODE)
		{
			LockBuffer(buf, BUFFER_LOCK_UNLOCK);
			OmenBadElement(r->index, elem);
		}
		memcpy(dst, PageGetContents(page) + loc.off, n);
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		dst += n;
		left -= n;
		loc.blk++;
		loc.off = 0;
	}
	/* a slot VACUUM freed: a stale link, not corruption */
	if (!(*(const uint16 *) r->codebuf & OMEN_CODE_VALID))
		return NULL;
	return r->codebuf;
}

/*
 * Ask the CPU to start loading an element's code, if it is in the local
 * cache (prefetching shared buffers would need a pin first).
 */
void
OmenReaderPrefetch(OmenReader *r, OmenElem elem)
{
	OmenCodeCache *c = r->cache;

	if (c != NULL && elem / c->K < c->nalloc)
	{
		const char *p = (const char *) c->codes + (Size) elem * c->codesize;
		const char *end = p + c->codesize - 1;

		/* every cache line the code covers */
		for (; p <= end; p += 64)
			__builtin_prefetch(p);
		__builtin_prefetch(end);
	}
}

/*
 * The code of an element, or NULL if its slot is free (a link that VACUUM
 * has not removed yet, or one an insert made to an element deleted
 * meanwhile).  Codes are read with a pin and no lock: a code
 * is written before its element becomes reachable through any neighbour
 * list, and its bytes do not change while it is reachable (src/README,
 * "Reading codes without a lock").  A code that straddles two pages is
 * copied into r->codebuf.
 */
const uint8 *
OmenReaderCode(OmenReader *r, OmenElem elem)
{
	OmenIndexInfo *info = r->info;
	OmenCodeLoc loc;
	int			left = info->codesize;
	uint8	   *dst = r->codebuf;
	OmenCodeCache *c = r->cache;

	if (c != NULL)
	{
		uint32		x = elem / c->K;
		const uint8 *p = c->codes + (Size) elem * c->codesize;

		if (x < c->nalloc && c->filled[x] && (*(const uint16 *) p & OMEN_CODE_VALID))
			return p;
		if (OmenCodeCacheFill(r, c, x))
		{
			p = c->codes + (Size) elem * c->codesize;
			if (*(const uint16 *) p & OMEN_CODE_VALID)
				return p;
		}
	}

	loc = OmenElemCodeLoc(info, elem);
	for (;;)
	{
		Buffer		buf = OmenReaderPin(r, loc.blk);
		Page		page = BufferGetPage(buf);
		int			n;

		/*
		 * Without a lock we may see a page that redo on a standby has just
		 * zeroed before writing its full image, or a code not yet valid:
		 * read those under a share lock instead.
		 */
		if (unlikely(PageIsNew(page) ||
					 PageGetSpecialSize(page) != MAXALIGN(sizeof(OmenPageOpaqueData)) ||
					 OmenPageGetOpaque(page)->type != OMEN_PAGE_CODE ||
					 (left == info->codesize &&
					  !(*(const uint16 *) (PageGetContents(page) + loc.off) & OMEN_CODE_VALID))))
			return OmenReaderCodeLocked(r, elem);
		if (left == info->codesize && loc.off + left <= OMEN_AREA_SPACE)
			return (const uint8 *) PageGetContents(page) + loc.off;
		n = Min(left, OMEN_AREA_SPACE - loc.off);
		memcpy(dst, PageGetContents(page) + loc.off, n);
		dst += n;
		left -= n;
		if (left == 0)
			return r->codebuf;
		loc.blk++;
		loc.off = 0;
	}
}

/*
 * The neighbours of an element at one level, copied into out (which must
 * hold 2*m entries).  Level 0 is in the slot itself; higher levels are in
 * the element's upper item.
 */
int
OmenReadNeighbors(OmenReader *r, OmenElem elem, const OmenSlot slot, int level, OmenElem *out)
{
	Buffer		buf;
	Page		page;
	ItemId		iid;
	uint32	   *list;
	int			n;
	int			m = r->info->m;

	if (level == 0)
	{
		memcpy(out, slot->neighbors, sizeof(OmenElem) * slot->n0);
		return slot->n0;
	}
	if (level > slot->level)
		return 0;

	buf = OmenReaderPin(r, slot->upperblk);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (PageIsNew(page) || PageGetSpecialSize(page) != MAXALIGN(sizeof(OmenPageOpaqueData)) ||
		OmenPageGetOpaque(page)->type != OMEN_PAGE_UPPER ||
		!OmenItemOk(page, slot->upperoff, OmenUpperItemSize(m, slot->level)))
	{
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has an invalid upper neighbour list",
						RelationGetRelationName(r->index)),
				 errdetail("Element %u refers to block %u, offset %u.",
						   elem, slot->upperblk, slot->upperoff)));
	}
	iid = PageGetItemId(page, slot->upperoff);
	list = OmenUpperList(PageGetItem(page, iid), m, level);
	n = list[0] <= (uint32) m ? (int) list[0] : m;
	memcpy(out, list + 1, sizeof(OmenElem) * n);
	LockBuffer(buf, BUFFER_LOCK_UNLOCK);
	return n;
}

static pg_noinline void
OmenBadChunk(Relation index, BlockNumber blk, OffsetNumber off)
{
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("index \"%s\" has an invalid vector",
					RelationGetRelationName(index)),
			 errdetail("Block %u, offset %u.", blk, off)));
}

/*
 * Lock the vector page holding (blk, off) and return its chunk, checked.
 * The caller unlocks the returned buffer.
 */
static OmenVectorChunk
OmenLockChunk(OmenReader *r, BlockNumber blk, OffsetNumber off, int remaining, Buffer *bufp)
{
	Buffer		buf;
	Page		page;
	ItemId		iid;
	OmenVectorChunk chunk;

	if (blk == OMEN_METAPAGE_BLKNO || blk == InvalidBlockNumber)
		OmenBadChunk(r->index, blk, off);
	buf = OmenReaderPin(r, blk);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (PageIsNew(page) || PageGetSpecialSize(page) != MAXALIGN(sizeof(OmenPageOpaqueData)) ||
		OmenPageGetOpaque(page)->type != OMEN_PAGE_VECTOR ||
		!OmenItemOk(page, off, offsetof(OmenVectorChunkData, values)))
	{
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		OmenBadChunk(r->index, blk, off);
	}
	iid = PageGetItemId(page, off);
	chunk = (OmenVectorChunk) PageGetItem(page, iid);
	if (chunk->nvalues == 0 || chunk->nvalues > remaining ||
		ItemIdGetLength(iid) < offsetof(OmenVectorChunkData, values) + sizeof(float4) * chunk->nvalues)
	{
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		OmenBadChunk(r->index, blk, off);
	}
	*bufp = buf;
	return chunk;
}

/*
 * Copy an element's full vector into dest (dims floats) and return dest,
 * with its norm: from its vector item, or from its code when the index
 * keeps no vectors (exact for "none", approximate otherwise).
 */
const float *
OmenSlotVector(OmenReader *r, OmenElem elem, const OmenSlot slot, float *dest, float *norm)
{
	int			dims = r->info->dims;
	int			done = 0;
	BlockNumber blk = slot->vecblk;
	OffsetNumber off = slot->vecoff;

	if (blk == InvalidBlockNumber)
	{
		const uint8 *code = OmenReaderCodeLocked(r, elem);

		if (code == NULL)
		{
			memset(dest, 0, sizeof(float) * dims);
			*norm = 0;
			return dest;
		}
		OmenDecode(r->info, code, dest, norm);
		return dest;
	}
	while (done < dims)
	{
		Buffer		buf;
		OmenVectorChunk chunk = OmenLockChunk(r, blk, off, dims - done, &buf);

		if (done == 0)
			*norm = chunk->norm;
		memcpy(dest + done, chunk->values, sizeof(float4) * chunk->nvalues);
		done += chunk->nvalues;
		blk = chunk->nextblk;
		off = chunk->nextoff;
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
	}
	return dest;
}

/*
 * Reading full vectors from the table, for an index built with
 * vectors = heap.  The TID in a slot is the root of a HOT chain whose
 * versions all hold the same indexed vector, so any version will do:
 * SnapshotAny.
 */
typedef struct OmenHeapFetch
{
	IndexFetchTableData *fetch;
	TupleTableSlot *slot;
	AttrNumber	attno;
} OmenHeapFetch;

void
OmenReaderHeapBegin(OmenReader *r, Relation heap)
{
	OmenHeapFetch *hf;
	AttrNumber	attno = r->index->rd_index->indkey.values[0];

	if (r->info->quantizer == OMEN_QUANT_NONE || r->info->vectors != OMEN_VECTORS_HEAP ||
		heap == NULL || attno == 0)
		return;
	hf = palloc(sizeof(OmenHeapFetch));
	hf->fetch = table_index_fetch_begin(heap);
	hf->slot = table_slot_create(heap, NULL);
	hf->attno = attno;
	r->heapfetch = hf;
}

void
OmenReaderHeapEnd(OmenReader *r)
{
	if (r->heapfetch == NULL)
		return;
	table_index_fetch_end(r->heapfetch->fetch);
	ExecDropSingleTupleTableSlot(r->heapfetch->slot);
	r->heapfetch = NULL;
}

/* The exact distance to a row's vector in the table; NaN if it is gone */
static float
OmenHeapDistance(OmenReader *r, const OmenSlot slot, const OmenQueryPrep *qp)
{
	OmenHeapFetch *hf = r->heapfetch;
	ItemPointerData tid = slot->heaptid;
	bool		call_again = false;
	bool		all_dead = false;
	bool		isnull;
	Datum		value;
	const float *v;
	int			dims;
	float		d;

	r->distances++;
	OmenCheckHeapTid(r->index, &tid, OMEN_INVALID_ELEM);
	if (!table_index_fetch_tuple(hf->fetch, &tid, SnapshotAny, hf->slot, &call_again, &all_dead))
		return get_float4_nan();
	value = slot_getattr(hf->slot, hf->attno, &isnull);
	if (isnull)
	{
		ExecClearTuple(hf->slot);
		return get_float4_nan();
	}
	v = OmenDatumValues(r->info->elemtype, value, &dims);
	if (dims != r->info->dims)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %d dimensions, not %d", r->info->dims, dims)));
	d = OmenDistance(r->info->metric, &qp->q, v, OmenNorm(v, dims), dims);
	ExecClearTuple(hf->slot);
	return d;
}

/*
 * The exact distance between the query and an element: from its code for
 * "none", else from its full vector, in the index or in the table.
 */
float
OmenExactDistance(OmenReader *r, OmenElem elem, const OmenSlot slot, const OmenQueryPrep *qp)
{
	int			dims = r->info->dims;
	Buffer		buf;
	OmenVectorChunk chunk;
	float		d;
	float		norm;

	if (r->info->quantizer == OMEN_QUANT_NONE ||
		(slot->vecblk == InvalidBlockNumber && r->heapfetch == NULL))
	{
		/* under a lock: the slot may have been freed and reused meanwhile */
		const uint8 *code = OmenReaderCodeLocked(r, elem);

		return code ? OmenCodeDistance(r->info, qp, code) : get_float4_nan();
	}
	if (slot->vecblk == InvalidBlockNumber)
		return OmenHeapDistance(r, slot, qp);

	r->distances++;
	chunk = OmenLockChunk(r, slot->vecblk, slot->vecoff, dims, &buf);
	if (chunk->nvalues == dims)
	{
		d = OmenDistance(r->info->metric, &qp->q, chunk->values, chunk->norm, dims);
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		return d;
	}
	LockBuffer(buf, BUFFER_LOCK_UNLOCK);
	OmenSlotVector(r, elem, slot, r->scratch, &norm);
	return OmenDistance(r->info->metric, &qp->q, r->scratch, norm, dims);
}

/* ---- layer search ---- */

void
OmenLayerInit(OmenLayerSearch *s, OmenReader *r, int level)
{
	s->level = level;
	s->segment = 0;
	OmenHeapInit(&s->C, 64, false);
	OmenHeapInit(&s->W, 64, true);
	OmenHeapInit(&s->D, 64, false);
	s->visited.chunks = NULL;
	s->visited.nchunks = 0;
	s->nbrs = palloc(sizeof(OmenElem) * 2 * r->info->m);
}

void
OmenLayerFree(OmenLayerSearch *s)
{
	pfree(s->C.items);
	pfree(s->W.items);
	pfree(s->D.items);
	for (uint32 c = 0; c < s->visited.nchunks; c++)
		if (s->visited.chunks[c])
			pfree(s->visited.chunks[c]);
	if (s->visited.chunks)
		pfree(s->visited.chunks);
	pfree(s->nbrs);
}

uint8 *
OmenLayerFlags(OmenLayerSearch *s, OmenElem elem)
{
	uint8	   *f = OmenVisitGet(&s->visited, elem);

	return (f && (*f & OMEN_VISIT_SEEN)) ? f : NULL;
}

/*
 * Visit an element: compute its distance on its code and file it in the
 * heaps.  Its slot is not read: the code carries the deleted flag.
 * Returns false if it was seen before.
 */
static bool
OmenLayerVisit(OmenLayerSearch *s, OmenReader *r, const OmenQueryPrep *q,
			   OmenElem elem, int ef)
{
	uint8	   *flags = OmenVisitAdd(&s->visited, elem);
	const uint8 *code;
	float		d;

	if (*flags & OMEN_VISIT_SEEN)
		return false;
	*flags = OMEN_VISIT_SEEN;
	code = OmenReaderCode(r, elem);
	if (code == NULL)
	{
		*flags |= OMEN_VISIT_SKIP | OMEN_VISIT_EXPANDED;
		return false;
	}
	d = OmenCodeDistance(r->info, q, code);
	r->codedists++;

	if (OmenCodeIsDeleted(code))
	{
		/* a deleted element still helps navigation, but is no result */
		*flags |= OMEN_VISIT_SKIP;
		if (s->W.n < ef || OmenDistLess(d, OmenHeapTop(&s->W)->dist))
			OmenHeapPush(&s->C, d, elem);
		return true;
	}

	if (s->W.n < ef || OmenDistLess(d, OmenHeapTop(&s->W)->dist))
	{
		OmenHeapPush(&s->C, d, elem);
		OmenHeapPush(&s->W, d, elem);
		if (s->W.n > ef)
		{
			OmenCand	x = OmenHeapPop(&s->W);

			OmenHeapAppend(&s->D, x.dist, x.elem);
		}
	}
	else
		OmenHeapAppend(&s->D, d, elem);
	return true;
}

void
OmenLayerAddEntry(OmenLayerSearch *s, OmenReader *r, const OmenQueryPrep *q, OmenElem elem)
{
	OmenLayerVisit(s, r, q, elem, INT_MAX);
}

/*
 * Run (or continue) the search on this layer until no candidate can
 * improve the best ef.  Called again with a larger ef, it first lets the
 * best of what an earlier round pushed aside back into play, then carries
 * on from the old frontier: a resumable scan pays for each element once.
 */
void
OmenLayerRun(OmenLayerSearch *s, OmenReader *r, const OmenQueryPrep *q, int ef)
{
	/* D is in heap order only while this first loop runs */
	OmenHeapify(&s->D);
	while (s->D.n > 0 &&
		   (s->W.n < ef || OmenDistLess(OmenHeapTop(&s->D)->dist, OmenHeapTop(&s->W)->dist)))
	{
		OmenCand	c = OmenHeapPop(&s->D);
		uint8	   *f = OmenLayerFlags(s, c.elem);

		OmenHeapPush(&s->W, c.dist, c.elem);
		if (f && !(*f & OMEN_VISIT_EXPANDED))
			OmenHeapPush(&s->C, c.dist, c.elem);
		if (s->W.n > ef)
		{
			OmenCand	x = OmenHeapPop(&s->W);

			OmenHeapPush(&s->D, x.dist, x.elem);
		}
	}

	while (s->C.n > 0)
	{
		OmenCand	c = *OmenHeapTop(&s->C);
		uint8	   *f;
		OmenSlot	slot = r->slot;
		int			n;
		int			m;

		if (s->W.n >= ef && OmenDistLess(OmenHeapTop(&s->W)->dist, c.dist))
			break;
		OmenHeapPop(&s->C);
		f = OmenLayerFlags(s, c.elem);
		if (f == NULL || (*f & OMEN_VISIT_EXPANDED))
			continue;
		*f |= OMEN_VISIT_EXPANDED;

		CHECK_FOR_INTERRUPTS();
		if (!OmenReadSlot(r, c.elem, slot))
			continue;
		r->expanded++;
		n = OmenReadNeighbors(r, c.elem, slot, s->level, s->nbrs);

		/*
		 * Drop the neighbours seen before, and start fetching the codes of
		 * the others: their distances are memory-bound, and by the time
		 * the loop below reaches them they are in cache.
		 */
		m = 0;
		for (int i = 0; i < n; i++)
		{
			if (s->nbrs[i] == OMEN_INVALID_ELEM ||
				OmenLayerFlags(s, s->nbrs[i]) != NULL)
				continue;
			s->nbrs[m++] = s->nbrs[i];
			OmenReaderPrefetch(r, s->nbrs[i]);
		}
		for (int i = 0; i < m; i++)
			OmenLayerVisit(s, r, q, s->nbrs[i], ef);
	}
}

/* qsort comparator: by distance (NaN last), then element number */
int
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

/* The current best (W), sorted by increasing distance; returns the count */
int
OmenLayerResults(OmenLayerSearch *s, OmenCand *out)
{
	memcpy(out, s->W.items, sizeof(OmenCand) * s->W.n);
	qsort(out, s->W.n, sizeof(OmenCand), OmenCandCmp);
	return s->W.n;
}

/*
 * Greedy descent through the upper levels: from entry at fromlevel, move
 * to a closer neighbour while there is one, level by level, down to level
 * tolevel + 1.  Returns the element to start level tolevel from.
 */
OmenElem
OmenDescend(OmenReader *r, const OmenQueryPrep *q, OmenElem entry, int fromlevel, int tolevel)
{
	OmenSlot	slot = r->slot;
	OmenElem   *nbrs = palloc(sizeof(OmenElem) * 2 * r->info->m);
	OmenElem	cur = entry;
	float		curdist;

	{
		const uint8 *code = OmenReaderCode(r, cur);

		curdist = code ? OmenCodeDistance(r->info, q, code) : get_float4_infinity();
	}
	for (int level = fromlevel; level > tolevel; level--)
	{
		bool		changed = true;

		while (changed)
		{
			int			n;

			CHECK_FOR_INTERRUPTS();
			changed = false;
			if (!OmenReadSlot(r, cur, slot))
				break;
			r->expanded++;
			n = OmenReadNeighbors(r, cur, slot, level, nbrs);
			for (int i = 0; i < n; i++)
			{
				float		d;
				const uint8 *code;

				if (nbrs[i] == OMEN_INVALID_ELEM ||
					(code = OmenReaderCode(r, nbrs[i])) == NULL)
					continue;
				d = OmenCodeDistance(r->info, q, code);
				r->codedists++;
				if (OmenDistLess(d, curdist))
				{
					cur = nbrs[i];
					curdist = d;
					changed = true;
				}
			}
		}
	}
	pfree(nbrs);
	return cur;
}

/*
 * The HNSW neighbour-selection heuristic: walk the candidates from the
 * closest, and keep one only if it is closer to the base element than to
 * every candidate already kept.  This spreads the links over directions,
 * which is what keeps clustered data navigable.  Candidates must come
 * sorted by cdist (distance to the base).  Writes the indexes of the kept
 * candidates to keep[] and returns how many.
 */
int
OmenSelectNeighbors(OmenMetric metric, int dims, int ncand,
					const float *cdist, const float *const *cvec,
					const float *cnorm, int maxkeep, int *keep)
{
	int			nkeep = 0;

	for (int i = 0; i < ncand && nkeep < maxkeep; i++)
	{
		OmenQuery	qi;
		bool		good = true;

		qi.values = cvec[i];
		qi.norm = cnorm[i];
		for (int j = 0; j < nkeep; j++)
		{
			int			k = keep[j];
			float		d = OmenDistance(metric, &qi, cvec[k], cnorm[k], dims);

			if (OmenDistLess(d, cdist[i]))
			{
				good = false;
				break;
			}
		}
		if (good)
			keep[nkeep++] = i;
	}
	return nkeep;
}
