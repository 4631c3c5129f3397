/*-------------------------------------------------------------------------
 *
 * omen.h
 *	  Shared declarations for the omen index access method: page layout,
 *	  element addressing, options, and the prototypes of the AM callbacks.
 *
 * Read src/README first: it explains the layout drawn here, the WAL and
 * locking protocols, and the search algorithm.
 *
 * IDENTIFICATION
 *	  src/omen.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OMEN_H
#define OMEN_H

#include "postgres.h"

#include <math.h>

#include "access/amapi.h"
#include "access/generic_xlog.h"
#include "access/itup.h"
#include "access/reloptions.h"
#include "access/transam.h"
#include "lib/pairingheap.h"
#include "nodes/execnodes.h"
#include "storage/bufmgr.h"
#include "utils/relcache.h"

#include "distance.h"

/*
 * On-disk format version.  Bump it whenever the layout of any page changes;
 * an index of another version is refused with a hint to REINDEX.
 */
#define OMEN_MAGIC				0x4F4D454E	/* "OMEN" */
#define OMEN_FORMAT_VERSION		1

/* pgvector's limit on vector dimensions, which is also ours */
#define OMEN_MAX_DIM			16000

/* Page identifier in the last two bytes of every page, for pg_filedump */
#define OMEN_PAGE_ID			0xFF9A

#define OMEN_METAPAGE_BLKNO		0

/* Page types (OmenPageOpaque->type) */
#define OMEN_PAGE_META			1
#define OMEN_PAGE_GRAPH			2	/* fixed-size element slots */
#define OMEN_PAGE_VECTOR		3	/* full-precision vectors, as items */
#define OMEN_PAGE_UPPER			4	/* neighbour lists of levels >= 1, items */
#define OMEN_PAGE_CODE			5	/* the codes of an extent, packed */
#define OMEN_PAGE_DIR			6	/* extent directory */
#define OMEN_PAGE_AUX			7	/* quantizer data (the centroid) */

/*
 * Support function numbers.  Procedure 1 is the SQL-callable distance
 * function, kept so that amvalidate and users see what the opclass
 * computes; procedure 2 returns the OmenMetricInfo that the AM uses to run
 * its own kernels without going through the function manager.
 */
#define OMEN_DISTANCE_PROC		1
#define OMEN_METRIC_PROC		2
#define OMEN_NPROC				2

/* Reloption ranges */
#define OMEN_DEFAULT_M			16
#define OMEN_MIN_M				2
#define OMEN_MAX_M				100
#define OMEN_DEFAULT_EF_CONSTRUCTION	64
#define OMEN_MIN_EF_CONSTRUCTION	4
#define OMEN_MAX_EF_CONSTRUCTION	1000
#define OMEN_DEFAULT_EF_SEARCH	40
#define OMEN_MIN_EF_SEARCH		1
#define OMEN_MAX_EF_SEARCH		1000

/* Highest level an element may get; 2^-(m*16) is beyond any table */
#define OMEN_MAX_LEVEL			16

/* Segments: independent HNSW graphs of one index */
#define OMEN_MAX_SEGMENTS		64

/*
 * Quantizers: what the graph is navigated with.  "none" navigates on the
 * float32 vectors themselves; the others on compact codes, re-ranking the
 * final candidates with the full vectors.
 */
#define OMEN_QUANT_NONE			0
#define OMEN_QUANT_SQ8			1	/* int8 per dimension, per-vector scale */
#define OMEN_QUANT_BQ			2	/* 1 bit per rotated dimension */

/* Where the full vectors of a quantized index are kept */
#define OMEN_VECTORS_INDEX		0
#define OMEN_VECTORS_HEAP		1

/*
 * Element numbers are dense: 0, 1, 2, ... in order of allocation.  Elements
 * live in extents of K consecutive numbers; an extent is a run of
 * consecutive blocks, first the code pages (the K codes packed end to end),
 * then the graph pages (the K slots).  Block numbers of extents are kept in
 * the extent directory, so an element's code and slot are found with two
 * divisions and an array lookup, and a neighbour's code without touching
 * its slot.
 */
typedef uint32 OmenElem;

#define OMEN_INVALID_ELEM		((OmenElem) 0xFFFFFFFF)
#define OMEN_MAX_ELEMS			((OmenElem) 0xFFFFFF00)

/* Bytes of data an area page (code, directory, aux) holds after its header */
#define OMEN_AREA_SPACE \
	((int) (BLCKSZ - MAXALIGN(SizeOfPageHeaderData) - MAXALIGN(sizeof(OmenPageOpaqueData))))
#define OMEN_DIR_ENTRIES		((int) (OMEN_AREA_SPACE / sizeof(BlockNumber)))
#define OMEN_MAX_DIR_PAGES		512

/* Metrics and element types, as told by the opclass's metric procedure */
typedef enum OmenMetric
{
	OMEN_METRIC_L2 = 1,			/* <->, internally squared */
	OMEN_METRIC_IP = 2,			/* <#>, negative inner product */
	OMEN_METRIC_COSINE = 3,		/* <=>, 1 - cosine similarity */
	OMEN_METRIC_L1 = 4			/* <+> */
} OmenMetric;

typedef enum OmenElemType
{
	OMEN_TYPE_VECTOR = 1,		/* pgvector's vector: float4 values */
	OMEN_TYPE_HALFVEC = 2		/* pgvector's halfvec: IEEE half values */
} OmenElemType;

typedef struct OmenMetricInfo
{
	int32		metric;			/* OmenMetric */
	int32		elemtype;		/* OmenElemType */
} OmenMetricInfo;

/*
 * Special space of every page.
 */
typedef struct OmenPageOpaqueData
{
	BlockNumber nextblkno;		/* aux pages: next page of the chain;
								 * graph pages: number of their extent */
	uint16		type;			/* OMEN_PAGE_* */
	uint16		nslots;			/* graph pages: number of slots */
	uint32		unused;
	uint16		unused2;
	uint16		page_id;		/* OMEN_PAGE_ID, the page's last two bytes */
} OmenPageOpaqueData;

typedef OmenPageOpaqueData *OmenPageOpaque;

StaticAssertDecl(sizeof(OmenPageOpaqueData) == 16,
				 "the page id must be the last two bytes of the page");

#define OmenPageGetOpaque(page) ((OmenPageOpaque) PageGetSpecialPointer(page))

/*
 * One segment: an independent HNSW graph.  Scans search every segment and
 * merge; inserts go to the newest.
 */
typedef struct OmenSegmentData
{
	OmenElem	entry;			/* entry point, or OMEN_INVALID_ELEM */
	int16		entrylevel;		/* its level, -1 if none */
	uint16		flags;
	uint32		nelements;		/* elements at build or last vacuum */
} OmenSegmentData;

/*
 * The metapage.  Everything that shapes the on-disk structure is frozen
 * here at build time; reloptions changed later with ALTER INDEX only take
 * effect at the next REINDEX.
 */
typedef struct OmenMetaPageData
{
	uint32		magic;
	uint32		version;
	int32		dims;			/* 0 until the first vector is seen */
	int16		metric;			/* OmenMetric, for omen_verify and checks */
	int16		elemtype;
	int16		m;
	int16		ef_construction;
	int16		quantizer;		/* OMEN_QUANT_* */
	int16		vectors;		/* OMEN_VECTORS_* */
	int16		slotsize;		/* bytes per graph slot */
	int16		slotsperpage;
	int32		codesize;		/* bytes per code (0 until dims are known) */
	int32		extentElems;	/* K: elements per extent */
	int32		extentCodePages;	/* code pages per extent */
	int32		extentGraphPages;	/* graph pages per extent */
	int32		paddims;		/* bq: dimensions after padding, a power of 2 */
	uint32		rotseed;		/* random per build; bq: seed of the rotation */
	uint32		codegen;		/* advanced whenever a code is rewritten */
	BlockNumber centroidBlk;	/* bq: first aux page of the centroid */
	OmenElem	nextElem;		/* next element number to allocate */
	uint32		nextents;		/* extents allocated */
	BlockNumber vectorInsertBlk;	/* hints: where inserts look for space */
	BlockNumber upperInsertBlk;
	uint16		nsegments;
	uint16		ndirpages;
	OmenSegmentData segments[OMEN_MAX_SEGMENTS];
	BlockNumber dirpages[OMEN_MAX_DIR_PAGES];
} OmenMetaPageData;

typedef OmenMetaPageData *OmenMetaPage;

#define OmenPageGetMeta(page)	((OmenMetaPage) PageGetContents(page))

/*
 * A graph slot.  Slots have a fixed size per index (it depends on m) and
 * sit in an array right after the page header; pd_lower covers the whole
 * array so that WAL and full-page images keep it.
 *
 * "generation" is bumped whenever a slot is freed, so a reader that
 * remembered (element, generation) can tell that the slot now holds
 * another element.
 */
typedef struct OmenSlotData
{
	uint32		generation;
	uint8		flags;			/* OMEN_SLOT_* */
	uint8		level;			/* highest level of this element */
	uint8		segment;		/* segment (graph) it belongs to */
	uint8		n0;				/* number of level-0 neighbours */
	ItemPointerData heaptid;
	uint16		vecoff;			/* first chunk of the full vector, if kept */
	BlockNumber vecblk;
	BlockNumber upperblk;		/* neighbour lists of levels 1..level */
	uint16		upperoff;
	uint16		unused;
	OmenElem	neighbors[FLEXIBLE_ARRAY_MEMBER];	/* 2*m level-0 */
} OmenSlotData;

typedef OmenSlotData *OmenSlot;

#define OMEN_SLOT_USED			0x01	/* slot holds an element */
#define OMEN_SLOT_DELETED		0x02	/* heap tuple gone: never returned */
#define OMEN_SLOT_NOGRAPH		0x04	/* not linked (e.g. zero vector under
										 * cosine): found only by sweeping */
#define OMEN_SLOT_RESERVED		0x08	/* freed slot taken by an insert that
										 * has not written it yet */
#define OMEN_SLOT_FREE			0x10	/* freed by VACUUM, for reuse; a slot
										 * the allocator handed out but not yet
										 * written has flags 0 instead */

/*
 * A free slot keeps, in its first two neighbour entries, the newest
 * transaction ID assigned when VACUUM freed it.  An insert takes it only
 * once that transaction is older than every running one
 * (GlobalVisCheckRemovableFullXid), that is, once every insert that might
 * have chosen the element as a neighbour has finished and cleaned its
 * lists (see src/README, Vacuum).  m >= 2 gives room for both halves.
 */
#define OmenSlotSetFreeXid(slot, fxid) \
	((slot)->neighbors[0] = (uint32) (U64FromFullTransactionId(fxid) & 0xFFFFFFFF), \
	 (slot)->neighbors[1] = (uint32) (U64FromFullTransactionId(fxid) >> 32))
#define OmenSlotGetFreeXid(slot) \
	FullTransactionIdFromU64(((uint64) (slot)->neighbors[1] << 32) | (slot)->neighbors[0])

#define OmenSlotSize(m)			MAXALIGN(offsetof(OmenSlotData, neighbors) + sizeof(OmenElem) * 2 * (m))
#define OmenPageGetSlot(page, slotsize, i) \
	((OmenSlot) (PageGetContents(page) + (Size) (slotsize) * (i)))

/*
 * Upper-level neighbour lists of one element, stored as an item on an
 * upper page: for each level 1..L, a count followed by m element numbers.
 */
#define OmenUpperItemSize(m, levels)	(sizeof(uint32) * ((m) + 1) * (levels))
#define OmenUpperList(item, m, level)	(((uint32 *) (item)) + ((m) + 1) * ((level) - 1))

/*
 * A vector chunk, stored as an item on a vector page.  A vector that does
 * not fit on one page is a chain of chunks; only the first one carries the
 * norm.
 */
typedef struct OmenVectorChunkData
{
	BlockNumber nextblk;		/* next chunk, or InvalidBlockNumber */
	uint16		nextoff;
	uint16		nvalues;		/* float values in this chunk */
	float4		norm;			/* first chunk: Euclidean norm of the vector */
	float4		values[FLEXIBLE_ARRAY_MEMBER];
} OmenVectorChunkData;

typedef OmenVectorChunkData *OmenVectorChunk;

/* Largest vector chunk payload that fits on an empty vector page */
#define OMEN_VECTOR_PAGE_FREE \
	(BLCKSZ - MAXALIGN(SizeOfPageHeaderData) - MAXALIGN(sizeof(OmenPageOpaqueData)) - sizeof(ItemIdData))
#define OMEN_MAX_CHUNK_VALUES \
	((int) ((MAXALIGN_DOWN(OMEN_VECTOR_PAGE_FREE) - offsetof(OmenVectorChunkData, values)) / sizeof(float4)))

/* Relation options */
typedef struct OmenOptions
{
	int32		vl_len_;
	int			m;
	int			ef_construction;
	int			quantizer;		/* OMEN_QUANT_* */
	int			vectors;		/* OMEN_VECTORS_* */
} OmenOptions;

/* GUCs */
extern int	omen_ef_search;
extern double omen_rerank_factor;
extern int	omen_code_cache_mb;
extern int	omen_max_scan_tuples;
extern double omen_scan_mem_multiplier;
extern char *omen_debug_wait_point;

/*
 * Per-index information derived from the catalogs and the metapage, built
 * once per operation.
 */
typedef struct OmenIndexInfo
{
	Relation	index;
	OmenMetric	metric;
	OmenElemType elemtype;
	int			dims;
	int			m;
	int			maxm0;			/* 2*m */
	int			ef_construction;
	int			slotsize;
	int			slotsperpage;
	double		ml;				/* level multiplier 1/ln(m) */
	int			quantizer;
	int			vectors;
	int			codesize;
	int			K;				/* elements per extent */
	int			C;				/* code pages per extent */
	int			G;				/* graph pages per extent */
	int			paddims;
	uint32		rotseed;
	uint32		codegen;
	BlockNumber centroidBlk;
	float	   *centroid;		/* bq: the data's centroid, or NULL */
	uint8	   *rotsigns;		/* bq: sign flips of the rotation, lazily */
	MemoryContext mcxt;			/* where the lazily loaded parts live */
	/* extent directory, loaded lazily one directory page at a time */
	int			ndirpages;
	BlockNumber dirpages[OMEN_MAX_DIR_PAGES];
	BlockNumber **dircache;		/* per directory page, or NULL */
} OmenIndexInfo;

/* Where an element's code starts: a block and a byte offset in its area */
typedef struct OmenCodeLoc
{
	BlockNumber blk;
	int			off;
} OmenCodeLoc;

/*
 * A query or element vector in backend memory, with what the distance
 * needs besides the values.
 */
typedef struct OmenQuery
{
	const float *values;
	float		norm;			/* Euclidean norm (for cosine) */
} OmenQuery;

/* A query prepared for distances on codes (omenquant.c) */
typedef struct OmenQueryPrep
{
	OmenQuery	q;				/* the float query, for exact distances */
	/* sq8 */
	int8	   *i8;
	float		scale;
	float		normsq;
	/* bq */
	uint8	   *planes;			/* 4 bit planes of the quantized query */
	float		lo;
	float		delta;
	float		sumq;
	float		r;				/* |q - centroid| */
	float		invsqrtn;
} OmenQueryPrep;

/* Flags in a code's header */
#define OMEN_CODE_DELETED		0x0001
#define OMEN_CODE_VALID			0x0002	/* written: tells a cached copy
										 * taken before the code from one
										 * taken after */

/* What one index scan did, for omen_last_scan() */
typedef struct OmenScanStats
{
	uint64		returned;		/* rows returned */
	uint64		expanded;		/* elements whose neighbour lists were read */
	uint64		codedists;		/* distances on codes */
	uint64		exactdists;		/* distances on full vectors */
	uint64		reranked;		/* candidates re-ranked */
	uint64		pages;			/* buffers pinned: omen's own count, as
								 * EXPLAIN (BUFFERS) misses the pin cache */
	int32		segments;		/* segments searched */
	int32		rounds;			/* rounds after the first */
	uint64		dropped;		/* rows dropped to keep the order */
	uint64		swept;			/* rows found by the final sweep */
	int32		stopped;		/* 0, or why the scan stopped early */
} OmenScanStats;

#define OMEN_STOP_TUPLES		1	/* omen.max_scan_tuples */
#define OMEN_STOP_MEMORY		2	/* work_mem * omen.scan_mem_multiplier */

/* omenquant.c */
extern void OmenComputeLayout(OmenMetaPage meta);
extern void OmenEncode(OmenIndexInfo *info, const float *v, float norm, uint8 *code);
extern void OmenDecode(OmenIndexInfo *info, const uint8 *code, float *out, float *norm);
extern bool OmenCodeIsDeleted(const uint8 *code);
extern void OmenCodeSetDeleted(uint8 *code);
extern void OmenPrepareQuery(OmenIndexInfo *info, const float *values, OmenQueryPrep *qp);
extern float OmenCodeDistance(OmenIndexInfo *info, const OmenQueryPrep *qp, const uint8 *code);

/* omen.c */
extern void _PG_init(void);
extern Datum omenhandler(PG_FUNCTION_ARGS);
extern bytea *omenoptions(Datum reloptions, bool validate);

/* omenbuild.c */
extern IndexBuildResult *omenbuild(Relation heap, Relation index, IndexInfo *indexInfo);
extern void omenbuildempty(Relation index);

/* omeninsert.c */
extern bool omeninsert(Relation index, Datum *values, bool *isnull,
					   ItemPointer heap_tid, Relation heap,
					   IndexUniqueCheck checkUnique, bool indexUnchanged,
					   IndexInfo *indexInfo);

/* omenscan.c */
extern IndexScanDesc omenbeginscan(Relation index, int nkeys, int norderbys);
extern void omenrescan(IndexScanDesc scan, ScanKey keys, int nkeys,
					   ScanKey orderbys, int norderbys);
extern bool omengettuple(IndexScanDesc scan, ScanDirection dir);
extern void omenendscan(IndexScanDesc scan);

/* omenvacuum.c */
extern IndexBulkDeleteResult *omenbulkdelete(IndexVacuumInfo *info,
											 IndexBulkDeleteResult *stats,
											 IndexBulkDeleteCallback callback,
											 void *callback_state);
extern IndexBulkDeleteResult *omenvacuumcleanup(IndexVacuumInfo *info,
												IndexBulkDeleteResult *stats);

/* omencost.c */
extern void omencostestimate(struct PlannerInfo *root, struct IndexPath *path,
							 double loop_count, Cost *indexStartupCost,
							 Cost *indexTotalCost, Selectivity *indexSelectivity,
							 double *indexCorrelation, double *indexPages);

/* omenvalidate.c */
extern bool omenvalidate(Oid opclassoid);

/* omenverify.c */
extern Relation OmenOpenIndex(Oid indexoid, LOCKMODE lockmode);

/* omenvector.c: reading pgvector's types */
extern const float *OmenVectorValues(Datum value, int *dims);
extern const float *OmenDatumValues(int elemtype, Datum value, int *dims);
#define OmenQueryValues(info, value, dims) OmenDatumValues((info)->elemtype, (value), (dims))
extern void OmenCheckVectorValues(const float *values, int dims);
extern float OmenNorm(const float *values, int dims);

/* omenutils.c */
extern const OmenMetricInfo *OmenGetMetricInfo(Relation index);
extern void OmenInitPage(Page page, uint16 type);
extern void OmenInitIndexInfo(OmenIndexInfo *info, Relation index, OmenMetaPage meta);
extern void OmenReadMetaPage(Relation index, OmenMetaPageData *meta);
extern void OmenCheckMetaPage(Relation index, OmenMetaPage meta);
extern void OmenCheckPage(Relation index, Page page, BlockNumber blkno, uint16 type);
extern int	OmenColumnDims(Relation index);
extern int	OmenRandomLevel(double ml);
extern float OmenDistance(OmenMetric metric, const OmenQuery *q,
						  const float *v, float vnorm, int dims);
extern double OmenDistanceToOperator(OmenMetric metric, float d);
extern Buffer OmenNewBuffer(Relation index, ForkNumber fork);
extern void OmenInitAreaPage(Page page, uint16 type);
extern BlockNumber OmenExtentStart(OmenIndexInfo *info, uint32 x);
extern void OmenElemSlotLoc(OmenIndexInfo *info, OmenElem e, BlockNumber *blk, int *slotno);
extern OmenCodeLoc OmenElemCodeLoc(OmenIndexInfo *info, OmenElem e);
extern float *OmenReadAux(Relation index, BlockNumber blk, int n);
extern void OmenWaitPoint(const char *name);
extern void OmenCheckHeapTid(Relation index, ItemPointer tid, OmenElem elem);
extern bool OmenItemOk(Page page, OffsetNumber off, Size size);

/* omensearch.c: graph search on pages, shared by scans and inserts */

/* A candidate: an element and its distance to the query */
typedef struct OmenCand
{
	float		dist;
	OmenElem	elem;
} OmenCand;

/* A binary heap of candidates, min- or max-ordered by distance */
typedef struct OmenHeap
{
	OmenCand   *items;
	int			n;
	int			cap;
	bool		ismax;
} OmenHeap;

extern int	OmenCandCmp(const void *a, const void *b);
extern void OmenHeapInit(OmenHeap *h, int cap, bool ismax);
extern void OmenHeapPush(OmenHeap *h, float dist, OmenElem elem);
extern OmenCand OmenHeapPop(OmenHeap *h);
extern void OmenHeapAppend(OmenHeap *h, float dist, OmenElem elem);
extern void OmenHeapify(OmenHeap *h);
static inline const OmenCand *
OmenHeapTop(const OmenHeap *h)
{
	return h->n > 0 ? &h->items[0] : NULL;
}

/*
 * Reads graph, vector and upper pages for one search, keeping a small
 * cache of pinned buffers so that a page visited again costs no buffer
 * lookup.  Pins only: every read takes a share lock for the time of the
 * copy.  OmenReaderRelease drops all pins; a scan calls it before
 * amgettuple returns.
 */
#define OMEN_PIN_CACHE_SIZE 128

typedef struct OmenReader
{
	Relation	index;
	OmenIndexInfo *info;
	int			npins;			/* cache size in use: see OmenReaderInit */
	BlockNumber blks[OMEN_PIN_CACHE_SIZE];
	Buffer		bufs[OMEN_PIN_CACHE_SIZE];
	float	   *scratch;		/* dims floats, for chained vectors */
	uint8	   *codebuf;		/* one code, when it straddles pages */
	OmenSlot	slot;			/* one slot, for copies */
	uint32	   *upper;			/* one level's list: count + m */
	struct OmenCodeCache *cache;	/* backend-local copy of codes, or NULL */
	struct OmenHeapFetch *heapfetch;	/* vectors = heap: reads the table */
	bool		nohints;		/* pin with ReadBuffer only (VACUUM) */
	uint32		nhinted;		/* pins tried through buffer hints */
	/* statistics, for omen_last_scan() */
	uint64		pages;			/* buffers pinned (pin cache misses) */
	uint64		distances;		/* full-precision distances computed */
	uint64		codedists;		/* distances computed on codes */
	uint64		expanded;		/* elements whose neighbours were read */
} OmenReader;

extern bool OmenRelinkElement(Relation index, OmenIndexInfo *info, OmenElem e);
extern int64 OmenRelinkOrphans(Relation index, OmenIndexInfo *info, uint32 nextents);

extern void OmenReaderInit(OmenReader *r, OmenIndexInfo *info);
extern void OmenReaderRelease(OmenReader *r);
extern Buffer OmenReaderPin(OmenReader *r, BlockNumber blk);
extern bool OmenReadSlot(OmenReader *r, OmenElem elem, OmenSlot out);
extern int	OmenReadNeighbors(OmenReader *r, OmenElem elem, const OmenSlot slot,
							  int level, OmenElem *out);
extern const uint8 *OmenReaderCode(OmenReader *r, OmenElem elem);
extern void OmenReaderHeapBegin(OmenReader *r, Relation heap);
extern void OmenReaderHeapEnd(OmenReader *r);
extern void OmenReaderPrefetch(OmenReader *r, OmenElem elem);
extern float OmenExactDistance(OmenReader *r, OmenElem elem, const OmenSlot slot,
							   const OmenQueryPrep *qp);
extern const float *OmenSlotVector(OmenReader *r, OmenElem elem, const OmenSlot slot,
								   float *dest, float *norm);

/* Visited-set entry flags */
#define OMEN_VISIT_EXPANDED		0x01	/* neighbours were read */
#define OMEN_VISIT_EMITTED		0x02	/* returned by the scan */
#define OMEN_VISIT_SKIP			0x04	/* deleted: navigate, never return */

/* Per-element flags of one search (omensearch.c) */
typedef struct OmenVisited
{
	uint8	  **chunks;
	uint32		nchunks;
} OmenVisited;

/*
 * The state of a search on one graph level.  C holds candidates still to
 * be expanded, W the best ef found so far (its worst is the search bound),
 * D everything found but pushed out of W or never let in, so that a later
 * round with a larger ef can pick up where this one stopped.  Most of what
 * a search visits ends in D and few searches ever resume, so D is kept as
 * a plain array and put in heap order only when a round resumes.
 */
typedef struct OmenLayerSearch
{
	int			level;
	int			segment;
	OmenHeap	C;
	OmenHeap	W;
	OmenHeap	D;
	OmenVisited visited;
	OmenElem   *nbrs;			/* scratch: one neighbour list */
} OmenLayerSearch;

extern void OmenLayerInit(OmenLayerSearch *s, OmenReader *r, int level);
extern void OmenLayerFree(OmenLayerSearch *s);
extern void OmenLayerAddEntry(OmenLayerSearch *s, OmenReader *r,
							  const OmenQueryPrep *q, OmenElem elem);
extern void OmenLayerRun(OmenLayerSearch *s, OmenReader *r, const OmenQueryPrep *q, int ef);
extern uint8 *OmenLayerFlags(OmenLayerSearch *s, OmenElem elem);
extern int	OmenLayerResults(OmenLayerSearch *s, OmenCand *out);
extern OmenElem OmenDescend(OmenReader *r, const OmenQueryPrep *q, OmenElem entry,
							int fromlevel, int tolevel);

extern int	OmenSelectFromCands(OmenReader *r, const OmenQuery *base, OmenCand *cands,
								int ncand, int maxkeep, bool fill, OmenElem *out,
								float *outdist);
extern int	OmenSelectNeighbors(OmenMetric metric, int dims, int ncand,
								const float *cdist, const float *const *cvec,
								const float *cnorm, int maxkeep, int *keep);

/*
 * Sorting distances with NaN last, as a sequential scan does: all our
 * comparisons go through this.
 */
static inline bool
OmenDistLess(float a, float b)
{
	if (isnan(a))
		return false;
	if (isnan(b))
		return true;
	return a < b;
}

/*
 * Parallel build and segment merge (omenbuild.c)
 */
struct dsm_segment;
struct shm_toc;
extern int	omen_max_build_shared_memory;
extern PGDLLEXPORT void OmenParallelBuildMain(struct dsm_segment *seg, struct shm_toc *toc);
extern Datum omen_merge_segments(PG_FUNCTION_ARGS);

#endif							/* OMEN_H */
