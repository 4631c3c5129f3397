/*-------------------------------------------------------------------------
 *
 * omenverify.c
 *	  SQL functions that look inside an omen index: omen_index_info()
 *	  reports what the metapage and the graph pages hold; omen_verify()
 *	  checks every page, slot, code and neighbour list, in the manner of
 *	  contrib/amcheck, and optionally that every row of the table is
 *	  indexed.
 *
 * IDENTIFICATION
 *	  src/omenverify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xlog.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "commands/defrem.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "omen.h"
#include "port/pg_bitutils.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/*
 * Open an index by OID, checking that it is an omen index that this
 * session may read.  Other sessions' temporary indexes are refused, as
 * their pages live in another backend's local buffers.
 */
Relation
OmenOpenIndex(Oid indexoid, LOCKMODE lockmode)
{
	Relation	index = relation_open(indexoid, lockmode);

	if (index->rd_rel->relkind != RELKIND_INDEX ||
		index->rd_rel->relam != get_index_am_oid("omen", false))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not an omen index",
						RelationGetRelationName(index))));
	if (RELATION_IS_OTHER_TEMP(index))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot access temporary indexes of other sessions")));
	if (!index->rd_index->indisvalid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index \"%s\" is not valid",
						RelationGetRelationName(index))));
	return index;
}

static const char *
OmenMetricName(int metric)
{
	switch (metric)
	{
		case OMEN_METRIC_L2:
			return "l2";
		case OMEN_METRIC_IP:
			return "inner_product";
		case OMEN_METRIC_COSINE:
			return "cosine";
		case OMEN_METRIC_L1:
			return "l1";
	}
	return "unknown";
}

/*
 * omen_index_info(regclass): the metapage's settings and a count of the
 * elements on the graph pages.
 */
PG_FUNCTION_INFO_V1(omen_index_info);
Datum
omen_index_info(PG_FUNCTION_ARGS)
{
	Oid			indexoid = PG_GETARG_OID(0);
	Relation	index;
	OmenMetaPageData meta;
	OmenIndexInfo oi;
	TupleDesc	tupdesc;
	Datum		values[10];
	bool		nulls[10] = {false};
	static const char *const quantizers[] = {"none", "sq8", "bq"};
	BlockNumber nblocks;
	int64		live = 0;
	int64		deleted = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	index = OmenOpenIndex(indexoid, AccessShareLock);
	OmenReadMetaPage(index, &meta);
	OmenInitIndexInfo(&oi, index, &meta);
	nblocks = RelationGetNumberOfBlocks(index);

	for (uint32 x = 0; x < meta.nextents; x++)
	{
		BlockNumber start = OmenExtentStart(&oi, x);

		for (int g = 0; g < oi.G; g++)
		{
			BlockNumber blk = start + oi.C + g;
			Buffer		buf;
			Page		page;

			CHECK_FOR_INTERRUPTS();
			buf = ReadBuffer(index, blk);
			LockBuffer(buf, BUFFER_LOCK_SHARE);
			page = BufferGetPage(buf);
			OmenCheckPage(index, page, blk, OMEN_PAGE_GRAPH);
			for (int s = 0; s < Min(OmenPageGetOpaque(page)->nslots, meta.slotsperpage); s++)
			{
				OmenSlot	slot = OmenPageGetSlot(page, meta.slotsize, s);

				if (!(slot->flags & OMEN_SLOT_USED))
					continue;
				if (slot->flags & OMEN_SLOT_DELETED)
					deleted++;
				else
					live++;
			}
			UnlockReleaseBuffer(buf);
		}
	}
	relation_close(index, AccessShareLock);

	values[0] = Int32GetDatum(OMEN_FORMAT_VERSION);
	values[1] = Int32GetDatum(meta.dims);
	values[2] = CStringGetTextDatum(OmenMetricName(meta.metric));
	values[3] = Int32GetDatum(meta.m);
	values[4] = Int32GetDatum(meta.ef_construction);
	values[5] = Int32GetDatum(meta.nsegments);
	values[6] = Int64GetDatum(live);
	values[7] = Int64GetDatum(deleted);
	values[8] = Int64GetDatum(nblocks);
	values[9] = CStringGetTextDatum(quantizers[meta.quantizer]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
