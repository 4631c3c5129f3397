/*-------------------------------------------------------------------------
 *
 * omenvector.c
 *	  Reading pgvector's vector type, and omen's SQL-callable distance
 *	  functions on it.
 *
 * Omen defines no type of its own: it indexes pgvector's `vector`, whose
 * on-disk layout is a varlena header, an int16 dimension count, an unused
 * int16 and then the float4 values.  We read that layout directly rather
 * than linking against pgvector, and validate what we read, because an
 * index must not trust bytes it did not write.
 *
 * The SQL functions here are the opclasses' distance support functions.
 * They use omen's own kernels (the same ones the index uses), so comparing
 * them with pgvector's operators checks the kernels end to end.
 *
 * IDENTIFICATION
 *	  src/omenvector.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "omen.h"
#include "utils/builtins.h"
#include "utils/float.h"

/* pgvector's vector header; the values follow */
typedef struct PgVectorHeader
{
	int32		vl_len_;
	int16		dim;
	int16		unused;
	float4		x[FLEXIBLE_ARRAY_MEMBER];
} PgVectorHeader;

/*
 * Return the values of a (detoasted) vector datum and its dimension count,
 * checking that the varlena size agrees with the dimension count.
 */
const float *
OmenVectorValues(Datum value, int *dims)
{
	PgVectorHeader *v = (PgVectorHeader *) PG_DETOAST_DATUM(value);
	Size		size = VARSIZE_ANY(v);
	int			dim = v->dim;

	if (dim < 1 || dim > OMEN_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("vector has %d dimensions, which is outside the range 1 to %d",
						dim, OMEN_MAX_DIM)));
	if (size != offsetof(PgVectorHeader, x) + sizeof(float4) * dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("vector of %d dimensions has an invalid size of %zu bytes",
						dim, size)));
	*dims = dim;
	return v->x;
}

/* pgvector's halfvec header; IEEE binary16 values follow */
typedef struct PgHalfvecHeader
{
	int32		vl_len_;
	int16		dim;
	int16		unused;
	uint16		x[FLEXIBLE_ARRAY_MEMBER];
} PgHalfvecHeader;

/*
 * The values of a halfvec datum, converted to float in palloc'd memory.
 */
static const float *
OmenHalfvecValues(Datum value, int *dims)
{
	PgHalfvecHeader *v = (PgHalfvecHeader *) PG_DETOAST_DATUM(value);
	Size		size = VARSIZE_ANY(v);
	int			dim = v->dim;
	float	   *out;

	if (dim < 1 || dim > OMEN_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("halfvec has %d dimensions, which is outside the range 1 to %d",
						dim, OMEN_MAX_DIM)));
	if (size != offsetof(PgHalfvecHeader, x) + sizeof(uint16) * dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("halfvec of %d dimensions has an invalid size of %zu bytes",
						dim, size)));
	out = palloc(sizeof(float) * dim);
	omen_kernels.f16_to_f32(v->x, out, dim);
	*dims = dim;
	return out;
}

/* The float values of a datum of the indexed type */
const float *
OmenDatumValues(int elemtype, Datum value, int *dims)
{
	if (elemtype == OMEN_TYPE_HALFVEC)
		return OmenHalfvecValues(value, dims);
	return OmenVectorValues(value, dims);
}

/*
 * pgvector rejects NaN and infinity at input, so these can only come from
 * old or damaged data; an index built on them would rank garbage.
 */
void
OmenCheckVectorValues(const float *values, int dims)
{
	for (int i = 0; i < dims; i++)
	{
		if (unlikely(isnan(values[i])))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("NaN not allowed in vector")));
		if (unlikely(isinf(values[i])))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("infinite value not allowed in vector")));
	}
}

/* Euclidean norm, accumulated in double as pgvector's vector_norm does */
float
OmenNorm(const float *values, int dims)
{
	double		s = 0.0;

	for (int i = 0; i < dims; i++)
		s += (double) values[i] * (double) values[i];
	return (float) sqrt(s);
}

/* Fetch both arguments of a binary distance function and check them */
static void
OmenGetPair(FunctionCallInfo fcinfo, const float **a, const float **b, int *dims)
{
	int			da,
				db;

	*a = OmenVectorValues(PG_GETARG_DATUM(0), &da);
	*b = OmenVectorValues(PG_GETARG_DATUM(1), &db);
	if (da != db)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different vector dimensions %d and %d", da, db)));
	*dims = da;
}

PG_FUNCTION_INFO_V1(omen_l2_distance);
Datum
omen_l2_distance(PG_FUNCTION_ARGS)
{
	const float *a,
			   *b;
	int			dims;

	OmenGetPair(fcinfo, &a, &b, &dims);
	PG_RETURN_FLOAT8(sqrt((double) omen_kernels.l2sq_f32(a, b, dims)));
}

PG_FUNCTION_INFO_V1(omen_l2_squared_distance);
Datum
omen_l2_squared_distance(PG_FUNCTION_ARGS)
{
	const float *a,
			   *b;
	int			dims;

	OmenGetPair(fcinfo, &a, &b, &dims);
	PG_RETURN_FLOAT8((double) omen_kernels.l2sq_f32(a, b, dims));
}

PG_FUNCTION_INFO_V1(omen_negative_inner_product);
Datum
omen_negative_inner_product(PG_FUNCTION_ARGS)
{
	const float *a,
			   *b;
	int			dims;

	OmenGetPair(fcinfo, &a, &b, &dims);
	PG_RETURN_FLOAT8(-(double) omen_kernels.dot_f32(a, b, dims));
}

/*
 * Cosine distance.  Like pgvector, a zero vector gives NaN, and the
 * similarity is clamped to [-1, 1] so that rounding cannot produce a
 * distance below 0 or above 2.
 */
PG_FUNCTION_INFO_V1(omen_cosine_distance);
Datum
omen_cosine_distance(PG_FUNCTION_ARGS)
{
	const float *a,
			   *b;
	int			dims;
	double		dot,
				na,
				nb,
				sim;

	OmenGetPair(fcinfo, &a, &b, &dims);
	dot = omen_kernels.dot_f32(a, b, dims);
	na = omen_kernels.normsq_f32(a, dims);
	nb = omen_kernels.normsq_f32(b, dims);
	sim = dot / sqrt(na * nb);
	if (isnan(sim))
		PG_RETURN_FLOAT8(get_float8_nan());
	if (sim > 1.0)
		sim = 1.0;
	else if (sim < -1.0)
		sim = -1.0;
	PG_RETURN_FLOAT8(1.0 - sim);
}

PG_FUNCTION_INFO_V1(omen_l1_distance);
Datum
omen_l1_distance(PG_FUNCTION_ARGS)
{
	const float *a,
			   *b;
	int			dims;

	OmenGetPair(fcinfo, &a, &b, &dims);
	PG_RETURN_FLOAT8((double) omen_kernels.l1_f32(a, b, dims));
}

/*
 * The metric procedures (support function 2): each returns a pointer to a
 * static description of its opclass's metric.  The argument is unused; it
 * exists so that the function cannot be called from SQL with a value.
 */
#define OMEN_METRIC_FUNCTION(name, m, t) \
PG_FUNCTION_INFO_V1(name); \
Datum \
name(PG_FUNCTION_ARGS) \
{ \
	static const OmenMetricInfo info = {m, t}; \
	PG_RETURN_POINTER(&info); \
}

OMEN_METRIC_FUNCTION(omen_vector_l2_metric, OMEN_METRIC_L2, OMEN_TYPE_VECTOR)
OMEN_METRIC_FUNCTION(omen_vector_ip_metric, OMEN_METRIC_IP, OMEN_TYPE_VECTOR)
OMEN_METRIC_FUNCTION(omen_vector_cosine_metric, OMEN_METRIC_COSINE, OMEN_TYPE_VECTOR)
OMEN_METRIC_FUNCTION(omen_vector_l1_metric, OMEN_METRIC_L1, OMEN_TYPE_VECTOR)
OMEN_METRIC_FUNCTION(omen_halfvec_l2_metric, OMEN_METRIC_L2, OMEN_TYPE_HALFVEC)
OMEN_METRIC_FUNCTION(omen_halfvec_ip_metric, OMEN_METRIC_IP, OMEN_TYPE_HALFVEC)
OMEN_METRIC_FUNCTION(omen_halfvec_cosine_metric, OMEN_METRIC_COSINE, OMEN_TYPE_HALFVEC)
OMEN_METRIC_FUNCTION(omen_halfvec_l1_metric, OMEN_METRIC_L1, OMEN_TYPE_HALFVEC)
