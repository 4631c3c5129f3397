/*-------------------------------------------------------------------------
 *
 * omenvacuum.c
 *	  VACUUM for omen: mark the elements of dead heap tuples deleted, and
 *	  report index statistics.
 *
 * VACUUM reuses a heap line pointer as soon as ambulkdelete returns, so
 * every reference to a dead TID must be disarmed here and now: the slot is
 * flagged deleted in the same WAL record that looks at it, and scans never
 * return a deleted slot (they re-read the slot just before returning its
 * TID).  A deleted element stays in the graph as a waypoint, so the graph
 * stays connected; its slot is not reused yet.
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
#include "utils/rel.h"

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
	BlockNumber nblocks;

	if (stats == NULL)
		stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));

	OmenReadMetaPage(index, &meta);
	nblocks = RelationGetNumberOfBlocks(index);
	stats->num_index_tuples = 0;

	for (BlockNumber blk = 1; blk < nblocks; blk++)
	{
		Buffer		buf;
		Page		page;
		GenericXLogState *state;
		int			ndeleted = 0;
		int			nslots;

		vacuum_delay_point();
		buf = ReadBufferExtended(index, MAIN_FORKNUM, blk, RBM_NORMAL, info->strategy);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		page = BufferGetPage(buf);
		if (PageIsNew(page) || OmenPageGetOpaque(page)->type != OMEN_PAGE_GRAPH)
		{
			UnlockReleaseBuffer(buf);
			continue;
		}
		OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);

		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, 0);
		nslots = Min(OmenPageGetOpaque(page)->nslots, meta.slotsperpage);
		for (int s = 0; s < nslots; s++)
		{
			OmenSlot	slot = OmenPageGetSlot(page, meta.slotsize, s);

			if (!(slot->flags & OMEN_SLOT_USED) || (slot->flags & OMEN_SLOT_DELETED))
				continue;
			if (callback(&slot->heaptid, callback_state))
			{
				slot->flags |= OMEN_SLOT_DELETED;
				ItemPointerSetInvalid(&slot->heaptid);
				ndeleted++;
				stats->tuples_removed++;
			}
			else
				stats->num_index_tuples++;
		}
		if (ndeleted > 0)
			GenericXLogFinish(state);
		else
			GenericXLogAbort(state);
		UnlockReleaseBuffer(buf);
	}
	stats->num_pages = nblocks;
	return stats;
}

/*
 * After VACUUM: report the number of pages and live elements.  When no
 * bulk delete ran, count the elements here.
 */
IndexBulkDeleteResult *
omenvacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	Relation	index = info->index;
	OmenMetaPageData meta;
	BlockNumber nblocks;

	if (info->analyze_only)
		return stats;
	if (stats != NULL)
		return stats;

	stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));
	OmenReadMetaPage(index, &meta);
	nblocks = RelationGetNumberOfBlocks(index);
	for (BlockNumber blk = 1; blk < nblocks; blk++)
	{
		Buffer		buf;
		Page		page;

		vacuum_delay_point();
		buf = ReadBufferExtended(index, MAIN_FORKNUM, blk, RBM_NORMAL, info->strategy);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		if (!PageIsNew(page) && OmenPageGetOpaque(page)->type == OMEN_PAGE_GRAPH)
		{
			int			nslots;

			OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
			nslots = Min(OmenPageGetOpaque(page)->nslots, meta.slotsperpage);
			for (int s = 0; s < nslots; s++)
			{
				OmenSlot	slot = OmenPageGetSlot(page, meta.slotsize, s);

				if ((slot->flags & OMEN_SLOT_USED) && !(slot->flags & OMEN_SLOT_DELETED))
					stats->num_index_tuples++;
			}
		}
		UnlockReleaseBuffer(buf);
	}
	stats->num_pages = nblocks;
	return stats;
}
