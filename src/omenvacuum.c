/*-------------------------------------------------------------------------
 *
 * omenvacuum.c
 *	  VACUUM for omen: mark the elements of dead heap tuples deleted, and
 *	  report index statistics.
 *
 * VACUUM reuses a heap line pointer as soon as ambulkdelete returns, so
 * every reference to a dead TID must be disarmed here and now: the slot is
 * flagged deleted (and its TID cleared) in the same WAL record that looks
 * at it, and scans never return a deleted slot.  The element's code gets
 * the deleted flag too, in a second record, so that searches stop counting
 * it as a result; until then the slot's flag is what protects.  A deleted
 * element stays in the graph as a waypoint, so the graph stays connected.
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

	if (stats == NULL)
		stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));

	OmenReadMetaPage(index, &meta);
	OmenInitIndexInfo(&oi, index, &meta);
	stats->num_index_tuples = 0;
	deleted = palloc(sizeof(OmenElem) * Max(oi.K, 1));

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

				if (!(slot->flags & OMEN_SLOT_USED) || (slot->flags & OMEN_SLOT_DELETED))
					continue;
				if (callback(&slot->heaptid, callback_state))
				{
					slot->flags |= OMEN_SLOT_DELETED;
					ItemPointerSetInvalid(&slot->heaptid);
					deleted[ndeleted++] = x * oi.K + g * oi.slotsperpage + s;
					stats->tuples_removed++;
				}
				else
					stats->num_index_tuples++;
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
	stats->num_pages = RelationGetNumberOfBlocks(index);
	pfree(deleted);
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
	OmenIndexInfo oi;

	if (info->analyze_only)
		return stats;
	if (stats != NULL)
		return stats;

	stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));
	OmenReadMetaPage(index, &meta);
	OmenInitIndexInfo(&oi, index, &meta);
	for (uint32 x = 0; x < meta.nextents; x++)
	{
		BlockNumber start = OmenExtentStart(&oi, x);

		for (int g = 0; g < oi.G; g++)
		{
			BlockNumber blk = start + oi.C + g;
			Buffer		buf;
			Page		page;
			int			nslots;

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
			}
			UnlockReleaseBuffer(buf);
		}
	}
	stats->num_pages = RelationGetNumberOfBlocks(index);
	return stats;
}
