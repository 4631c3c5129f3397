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
 * IDENTIFICATION
 *	  src/omencost.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "omen.h"
#include "optimizer/cost.h"
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
	double		visited;
	double		m = OMEN_DEFAULT_M;
	double		searchcost;
	double		levels;

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

	/*
	 * One search visits about ef_search * 2m elements at level 0 (each
	 * expanded candidate reads a list of up to 2m), plus a few per upper
	 * level; each visit is a slot read and a distance.
	 */
	levels = log(ntuples) / log(m);
	visited = Min(ntuples, omen_ef_search * 2 * m + levels * m);

	MemSet(&costs, 0, sizeof(costs));
	costs.numIndexTuples = visited;
	genericcostestimate(root, path, loop_count, &costs);
	searchcost = costs.indexTotalCost;

	/* draining the index costs the rest of the elements the same way */
	MemSet(&costs, 0, sizeof(costs));
	costs.numIndexTuples = ntuples;
	genericcostestimate(root, path, loop_count, &costs);

	*indexStartupCost = searchcost;
	*indexTotalCost = Max(costs.indexTotalCost, searchcost);
	*indexSelectivity = costs.indexSelectivity;
	*indexCorrelation = 0;
	*indexPages = costs.numIndexPages;
}
