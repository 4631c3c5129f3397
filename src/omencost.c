/*-------------------------------------------------------------------------
 *
 * omencost.c
 *	  amcostestimate for omen.
 *
 * An omen scan is resumable: its first row costs one ef_search graph
 * search, and every further row comes from continuing that search.  So the
 * startup cost is one search and the total cost is the cost of draining
 * the whole index; the planner interpolates between them with the
 * fraction of rows a LIMIT (and the filter selectivity) needs.  Pricing
 * the whole scan as one search would make a selective filter look free.
 *
 * The work is counted in graph pages read (each element expanded reads
 * its neighbour list from one), distances on codes (each element visited
 * once; codes mostly come from the backend's local copy, not from pages)
 * and per-element overhead.  A search expands about 1.5 * ef_search
 * elements and visits 2*m for each; draining visits every element once and
 * reads every graph page.  A quantized index also re-ranks ef_search *
 * omen.rerank_factor candidates per search, each a slot and a vector read.
 *
 * Two calibrations, against what the plans we compete with are charged.
 * A distance costs cpu_operator_cost per 64 dimensions: a SIMD distance on
 * 64 floats takes about as long as the executor's cheapest operator call,
 * and pricing it higher (we once charged per 16 dimensions) made a search
 * on 784-d vectors look dearer than a sequential scan computing 20,000
 * distances, which the planner charges one cpu_operator_cost each.  And
 * graph pages are charged seq_page_cost, not random_page_cost, while the
 * index fits in effective_cache_size: every search starts at the same
 * entry point and walks the same upper levels, so the pages it reads are
 * the ones the searches before it read, and they are in the cache.  A
 * sequential scan is charged for its heap pages but not for detoasting
 * every vector, which for vectors above about 500 dimensions is most of
 * its real cost; charging a cached search for random reads on top made
 * the planner pick a sequential scan 20-50 times slower on such tables.
 *
 * IDENTIFICATION
 *	  src/omencost.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/relation.h"
#include "omen.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "utils/rel.h"
#include "utils/selfuncs.h"
#include "utils/spccache.h"

void
omencostestimate(struct PlannerInfo *root, struct IndexPath *path, double loop_count,
				 Cost *indexStartupCost, Cost *indexTotalCost,
				 Selectivity *indexSelectivity, double *indexCorrelation,
				 double *indexPages)
{
	IndexOptInfo *index = path->indexinfo;
	GenericCosts costs;
	double		ntuples = Max(index->tuples, 1);
	double		m = OMEN_DEFAULT_M;
	double		dims = 0;
	int			quantizer = OMEN_QUANT_NONE;
	double		spc_random_page_cost;
	double		spc_seq_page_cost;
	double		pagecost;
	double		expansions;
	double		visited;
	double		perdistance;
	double		gpages;
	double		slotsperpage = 50;
	double		rerank = 0;
	Relation	rel;

	/* without ORDER BY the index is useless: make sure it is not chosen */
	if (path->indexorderbys == NIL)
	{
		*indexStartupCost = disable_cost;
		*indexTotalCost = disable_cost;
		*indexSelectivity = 0;
		*indexCorrelation = 0;
		*indexPages = 0;
		return;
	}

	/* selectivity, correlation and argument costs as usual */
	MemSet(&costs, 0, sizeof(costs));
	costs.numIndexTuples = ntuples;
	genericcostestimate(root, path, loop_count, &costs);

	/* the index's shape, from its metapage (planning holds a lock) */
	rel = index_open(index->indexoid, NoLock);
	if (RelationGetNumberOfBlocks(rel) > 0)
	{
		OmenMetaPageData meta;

		OmenReadMetaPage(rel, &meta);
		m = meta.m;
		dims = meta.dims;
		slotsperpage = meta.slotsperpage;
		quantizer = meta.quantizer;
	}
	index_close(rel, NoLock);
	if (dims <= 0)
		dims = 128;

	get_tablespace_page_costs(index->reltablespace, &spc_random_page_cost, &spc_seq_page_cost);

	gpages = ceil(ntuples / Max(slotsperpage, 1));
	/* graph pages: cached while the index fits in effective_cache_size */
	pagecost = (double) index->pages <= (double) effective_cache_size ?
		spc_seq_page_cost : spc_random_page_cost;
	perdistance = cpu_operator_cost * Max(1.0, dims / 64.0);
	expansions = Min(ntuples, 1.5 * omen_ef_search + log(ntuples) / log(Max(m, 2)));
	visited = Min(ntuples, expansions * 2 * m);
	if (quantizer != OMEN_QUANT_NONE)
		rerank = Min(ntuples, omen_ef_search * omen_rerank_factor) *
			(2 * pagecost + perdistance);

	*indexStartupCost = costs.indexStartupCost +
		Min(expansions, gpages) * pagecost +
		expansions * cpu_index_tuple_cost + visited * perdistance + rerank;
	*indexTotalCost = *indexStartupCost +
		gpages * pagecost +
		ntuples * (cpu_index_tuple_cost + perdistance) +
		(quantizer != OMEN_QUANT_NONE ? ntuples * 2 * pagecost : 0);
	*indexSelectivity = costs.indexSelectivity;
	*indexCorrelation = 0;
	*indexPages = costs.numIndexPages;
}
