/*-------------------------------------------------------------------------
 *
 * omenvalidate.c
 *	  amvalidate for omen: check an operator class's members.
 *
 * Run only by the SQL function amvalidate(); it reports problems as INFO
 * messages and returns false, as the core validators do.
 *
 * IDENTIFICATION
 *	  src/omenvalidate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/amvalidate.h"
#include "access/htup_details.h"
#include "catalog/pg_amop.h"
#include "catalog/pg_amproc.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_opfamily.h"
#include "catalog/pg_type.h"
#include "omen.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

static bool
OmenInvalid(const char *opfamily, const char *what)
{
	ereport(INFO,
			(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
			 errmsg("omen operator family \"%s\" %s", opfamily, what)));
	return false;
}

bool
omenvalidate(Oid opclassoid)
{
	bool		result = true;
	HeapTuple	classtup;
	HeapTuple	familytup;
	Form_pg_opclass classform;
	Oid			opfamilyoid;
	Oid			opcintype;
	char	   *opfamilyname;
	CatCList   *proclist;
	CatCList   *oprlist;
	bool		seen[OMEN_NPROC + 1] = {false};

	classtup = SearchSysCache1(CLAOID, ObjectIdGetDatum(opclassoid));
	if (!HeapTupleIsValid(classtup))
		elog(ERROR, "cache lookup failed for operator class %u", opclassoid);
	classform = (Form_pg_opclass) GETSTRUCT(classtup);
	opfamilyoid = classform->opcfamily;
	opcintype = classform->opcintype;

	familytup = SearchSysCache1(OPFAMILYOID, ObjectIdGetDatum(opfamilyoid));
	if (!HeapTupleIsValid(familytup))
		elog(ERROR, "cache lookup failed for operator family %u", opfamilyoid);
	opfamilyname = pstrdup(NameStr(((Form_pg_opfamily) GETSTRUCT(familytup))->opfname));

	proclist = SearchSysCacheList1(AMPROCNUM, ObjectIdGetDatum(opfamilyoid));
	for (int i = 0; i < proclist->n_members; i++)
	{
		Form_pg_amproc procform = (Form_pg_amproc) GETSTRUCT(&proclist->members[i]->tuple);
		bool		ok;

		if (procform->amproclefttype != opcintype || procform->amprocrighttype != opcintype)
		{
			result = OmenInvalid(opfamilyname, "contains a cross-type support function");
			continue;
		}
		switch (procform->amprocnum)
		{
			case OMEN_DISTANCE_PROC:
				ok = check_amproc_signature(procform->amproc, FLOAT8OID, true,
											2, 2, opcintype, opcintype);
				break;
			case OMEN_METRIC_PROC:
				ok = check_amproc_signature(procform->amproc, INTERNALOID, true,
											1, 1, INTERNALOID);
				break;
			default:
				result = OmenInvalid(opfamilyname, "contains a support function with an invalid number");
				continue;
		}
		if (!ok)
			result = OmenInvalid(opfamilyname, "contains a support function with a wrong signature");
		seen[procform->amprocnum] = true;
	}
	for (int p = 1; p <= OMEN_NPROC; p++)
		if (!seen[p])
			result = OmenInvalid(opfamilyname, "is missing a support function");

	oprlist = SearchSysCacheList1(AMOPSTRATEGY, ObjectIdGetDatum(opfamilyoid));
	for (int i = 0; i < oprlist->n_members; i++)
	{
		Form_pg_amop oprform = (Form_pg_amop) GETSTRUCT(&oprlist->members[i]->tuple);

		if (oprform->amoppurpose != AMOP_ORDER ||
			!check_amop_signature(oprform->amopopr, FLOAT8OID,
								  oprform->amoplefttype, oprform->amoprighttype) ||
			!opfamily_can_sort_type(oprform->amopsortfamily, FLOAT8OID))
			result = OmenInvalid(opfamilyname,
								 "contains an operator that is not an ORDER BY operator returning double precision");
	}

	ReleaseCatCacheList(oprlist);
	ReleaseCatCacheList(proclist);
	ReleaseSysCache(familytup);
	ReleaseSysCache(classtup);
	return result;
}
