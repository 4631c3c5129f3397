/*-------------------------------------------------------------------------
 *
 * omenquant.c
 *	  Codes that the graph is navigated with: float32 ("none"), 8-bit
 *	  scalar ("sq8") and 1-bit ("bq"), with their distance estimators.
 *
 * Every code starts with a 4-byte header (flags, and for bq the number of
 * set bits) followed by the quantizer's payload:
 *
 *	none	float norm, float values[dims]
 *	sq8		float scale, float normsq, float norm, int8 values[dims]
 *			(value = scale * code, scale = max|v| / 127)
 *	bq		float r, float ipxo, bits[paddims / 8]
 *
 * The 1-bit code follows RaBitQ (Gao and Long, SIGMOD 2024): the vector is
 * centred on the data's centroid, normalised, and rotated by a random
 * orthogonal transform; the code keeps the sign of each rotated
 * coordinate.  The inner product between the unit vector o and a unit
 * query q is estimated as <x, q'> / <x, o'>, where x is the code read as a
 * vector of +-1/sqrt(D) and q', o' are the rotated vectors; the estimator
 * is unbiased and its error shrinks as 1/sqrt(D).  <x, o'> is stored with
 * the code; <x, q'> is computed with popcounts against a 4-bit scalar
 * quantization of q' held as four bit planes.  The rotation is not a dense
 * matrix (which would take a gigabyte at 16,000 dimensions) but three
 * rounds of random sign flips and a fast Walsh-Hadamard transform, on the
 * vector zero-padded to a power of two: O(D log D) per vector.
 *
 * For cosine, vectors are normalised before anything else, so that the
 * Euclidean estimate gives the cosine distance as |a - b|^2 / 2.  For
 * inner product the centroid is zero, so that <v, q> = |v| |q| <o, q/|q|>.
 * L1 has no estimator of its own: the graph is navigated with the
 * Euclidean estimate and the candidates are re-ranked with exact L1.
 *
 * IDENTIFICATION
 *	  src/omenquant.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "omen.h"
#include "utils/float.h"

/* Offsets into a code */
#define CODE_HDR			4
#define CODE_FLAGS(code)	(*(uint16 *) (code))
#define CODE_POPCOUNT(code) (*(uint16 *) ((code) + 2))
#define CODE_F(code, i)		(((float *) ((code) + CODE_HDR))[i])

/* bq query: bit planes of the 4-bit quantized rotated query */
#define BQ_PLANES			4

static int
OmenPadDims(int dims)
{
	int			p = 64;

	while (p < dims)
		p *= 2;
	return p;
}

/*
 * Fill in the layout fields of a metapage that depend on the dimensions:
 * code size, and how many elements, code pages and graph pages make an
 * extent.  An extent holds at least 256 elements where the codes allow, so
 * that the extent directory stays small; huge codes get smaller extents so
 * that one extent stays below 64 code pages.
 */
void
OmenComputeLayout(OmenMetaPage meta)
{
	int			dims = meta->dims;
	int			spp = meta->slotsperpage;
	int			G;
	int64		K;

	if (dims <= 0)
	{
		meta->codesize = 0;
		meta->extentElems = 0;
		meta->extentCodePages = 0;
		meta->extentGraphPages = 0;
		meta->paddims = 0;
		return;
	}

	switch (meta->quantizer)
	{
		case OMEN_QUANT_SQ8:
			meta->codesize = TYPEALIGN(4, CODE_HDR + 3 * sizeof(float) + dims);
			meta->paddims = 0;
			break;
		case OMEN_QUANT_BQ:
			meta->paddims = OmenPadDims(dims);
			meta->codesize = CODE_HDR + 2 * sizeof(float) + meta->paddims / 8;
			break;
		default:
			meta->codesize = CODE_HDR + sizeof(float) * (1 + dims);
			meta->paddims = 0;
			break;
	}

	G = (256 + spp - 1) / spp;
	while (G > 1 && (int64) G * spp * meta->codesize > (int64) 64 * OMEN_AREA_SPACE)
		G--;
	K = (int64) G * spp;
	meta->extentElems = (int32) K;
	meta->extentGraphPages = G;
	meta->extentCodePages = (int32) ((K * meta->codesize + OMEN_AREA_SPACE - 1) / OMEN_AREA_SPACE);
}

/* ---- the random rotation ---- */

/* splitmix64: the sign flips of the rotation, reproducible from the seed */
static inline uint64
OmenMix(uint64 *state)
{
	uint64		z = (*state += UINT64CONST(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64CONST(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64CONST(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* In-place fast Walsh-Hadamard transform, scaled to be orthonormal */
static void
OmenFWHT(float *x, int n)
{
	float		scale = 1.0f / sqrtf((float) n);

	for (int h = 1; h < n; h *= 2)
	{
		for (int i = 0; i < n; i += 2 * h)
		{
			for (int j = i; j < i + h; j++)
			{
				float		a = x[j];
				float		b = x[j + h];

				x[j] = a + b;
				x[j + h] = a - b;
			}
		}
	}
	for (int i = 0; i < n; i++)
		x[i] *= scale;
}

#define OMEN_ROT_ROUNDS 3

static void
OmenRotationSigns(OmenIndexInfo *info)
{
	int			n = info->paddims;
	uint64		state = info->rotseed;

	if (info->rotsigns != NULL)
		return;
	info->rotsigns = MemoryContextAlloc(info->mcxt, OMEN_ROT_ROUNDS * n);
	for (int i = 0; i < OMEN_ROT_ROUNDS * n; i += 64)
	{
		uint64		bits = OmenMix(&state);

		for (int j = 0; j < 64 && i + j < OMEN_ROT_ROUNDS * n; j++)
			info->rotsigns[i + j] = (bits >> j) & 1;
	}
}

/* out (paddims floats) = P * in (dims floats, zero-padded) */
static void
OmenRotate(OmenIndexInfo *info, const float *in, float *out)
{
	int			n = info->paddims;

	OmenRotationSigns(info);
	memcpy(out, in, sizeof(float) * info->dims);
	memset(out + info->dims, 0, sizeof(float) * (n - info->dims));
	for (int r = 0; r < OMEN_ROT_ROUNDS; r++)
	{
		const uint8 *signs = info->rotsigns + r * n;

		for (int i = 0; i < n; i++)
			if (signs[i])
				out[i] = -out[i];
		OmenFWHT(out, n);
	}
}

/* out (dims floats) = P^T * in (paddims floats); in is clobbered */
static void
OmenRotateBack(OmenIndexInfo *info, float *in, float *out)
{
	int			n = info->paddims;

	OmenRotationSigns(info);
	for (int r = OMEN_ROT_ROUNDS - 1; r >= 0; r--)
	{
		const uint8 *signs = info->rotsigns + r * n;

		OmenFWHT(in, n);
		for (int i = 0; i < n; i++)
			if (signs[i])
				in[i] = -in[i];
	}
	memcpy(out, in, sizeof(float) * info->dims);
}

/*
 * The vector the bq code describes, before centring: for cosine the
 * normalised vector, else the vector itself.  Writes dims floats to out.
 */
static void
OmenBqInput(OmenIndexInfo *info, const float *v, float norm, float *out)
{
	if (info->metric == OMEN_METRIC_COSINE && norm > 0)
	{
		for (int i = 0; i < info->dims; i++)
			out[i] = v[i] / norm;
	}
	else
		memcpy(out, v, sizeof(float) * info->dims);
	if (info->centroid != NULL && info->metric != OMEN_METRIC_IP)
	{
		for (int i = 0; i < info->dims; i++)
			out[i] -= info->centroid[i];
	}
}

/* ---- encoding ---- */

/*
 * Write the code of vector v (dims floats, Euclidean norm "norm") into
 * code (info->codesize bytes).
 */
void
OmenEncode(OmenIndexInfo *info, const float *v, float norm, uint8 *code)
{
	int			dims = info->dims;

	memset(code, 0, info->codesize);
	CODE_FLAGS(code) = OMEN_CODE_VALID;
	switch (info->quantizer)
	{
		case OMEN_QUANT_NONE:
			CODE_F(code, 0) = norm;
			memcpy(&CODE_F(code, 1), v, sizeof(float) * dims);
			break;
		case OMEN_QUANT_SQ8:
			{
				float		maxabs = 0;
				int8	   *c = (int8 *) (code + CODE_HDR + 3 * sizeof(float));
				float		scale;

				for (int i = 0; i < dims; i++)
					maxabs = Max(maxabs, fabsf(v[i]));
				scale = maxabs > 0 ? maxabs / 127.0f : 1.0f;
				for (int i = 0; i < dims; i++)
				{
					long		q = lrintf(v[i] / scale);

					c[i] = (int8) Max(-127, Min(127, q));
				}
				CODE_F(code, 0) = scale;
				CODE_F(code, 1) = norm * norm;
				CODE_F(code, 2) = norm;
				break;
			}
		case OMEN_QUANT_BQ:
			{
				int			n = info->paddims;
				float	   *tmp = palloc(sizeof(float) * dims);
				float	   *rot = palloc(sizeof(float) * n);
				uint8	   *bits = code + CODE_HDR + 2 * sizeof(float);
				double		r = 0;
				double		absum = 0;
				int			pc = 0;

				OmenBqInput(info, v, norm, tmp);
				for (int i = 0; i < dims; i++)
					r += (double) tmp[i] * tmp[i];
				r = sqrt(r);
				OmenRotate(info, tmp, rot);
				for (int i = 0; i < n; i++)
				{
					absum += fabs(rot[i]);
					if (rot[i] > 0)
					{
						bits[i / 8] |= 1 << (i % 8);
						pc++;
					}
				}
				CODE_F(code, 0) = (float) r;
				/* <x, o'> with x = +-1/sqrt(n) and o' = rot / r */
				CODE_F(code, 1) = r > 0 ? (float) (absum / (r * sqrt((double) n))) : 1.0f;
				CODE_POPCOUNT(code) = pc;
				pfree(tmp);
				pfree(rot);
				break;
			}
	}
}

/*
 * An approximate vector back from a code, for the neighbour-selection
 * heuristic when the full vectors are not in the index.  For cosine the
 * result is normalised, which the heuristic does not mind.
 */
void
OmenDecode(OmenIndexInfo *info, const uint8 *code, float *out, float *norm)
{
	int			dims = info->dims;

	switch (info->quantizer)
	{
		case OMEN_QUANT_NONE:
			memcpy(out, &CODE_F(code, 1), sizeof(float) * dims);
			*norm = CODE_F(code, 0);
			return;
		case OMEN_QUANT_SQ8:
			{
				const int8 *c = (const int8 *) (code + CODE_HDR + 3 * sizeof(float));
				float		scale = CODE_F(code, 0);

				for (int i = 0; i < dims; i++)
					out[i] = scale * c[i];
				*norm = CODE_F(code, 2);
				return;
			}
		case OMEN_QUANT_BQ:
			{
				int			n = info->paddims;
				float	   *x = palloc(sizeof(float) * n);
				const uint8 *bits = code + CODE_HDR + 2 * sizeof(float);
				float		r = CODE_F(code, 0);
				float		unit = 1.0f / sqrtf((float) n);

				for (int i = 0; i < n; i++)
					x[i] = (bits[i / 8] >> (i % 8)) & 1 ? unit : -unit;
				OmenRotateBack(info, x, out);
				for (int i = 0; i < dims; i++)
				{
					out[i] *= r;
					if (info->centroid != NULL && info->metric != OMEN_METRIC_IP)
						out[i] += info->centroid[i];
				}
				*norm = OmenNorm(out, dims);
				pfree(x);
				return;
			}
	}
}

bool
OmenCodeIsDeleted(const uint8 *code)
{
	return (CODE_FLAGS(code) & OMEN_CODE_DELETED) != 0;
}

void
OmenCodeSetDeleted(uint8 *code)
{
	CODE_FLAGS(code) |= OMEN_CODE_DELETED;
}

/* ---- queries ---- */

/*
 * Prepare a query for distances on codes.  The query's float values stay
 * available for exact distances (re-ranking).
 */
void
OmenPrepareQuery(OmenIndexInfo *info, const float *values, OmenQueryPrep *qp)
{
	int			dims = info->dims;

	qp->q.values = values;
	qp->q.norm = OmenNorm(values, dims);

	if (info->quantizer == OMEN_QUANT_SQ8)
	{
		float		maxabs = 0;

		qp->i8 = palloc(dims);
		for (int i = 0; i < dims; i++)
			maxabs = Max(maxabs, fabsf(values[i]));
		qp->scale = maxabs > 0 ? maxabs / 127.0f : 1.0f;
		for (int i = 0; i < dims; i++)
		{
			long		q = lrintf(values[i] / qp->scale);

			qp->i8[i] = (int8) Max(-127, Min(127, q));
		}
		qp->normsq = qp->q.norm * qp->q.norm;
	}
	else if (info->quantizer == OMEN_QUANT_BQ)
	{
		int			n = info->paddims;
		int			nbytes = n / 8;
		float	   *tmp = palloc(sizeof(float) * dims);
		float	   *rot = palloc(sizeof(float) * n);
		double		r = 0;
		float		lo = FLT_MAX;
		float		hi = -FLT_MAX;
		double		sum = 0;

		OmenBqInput(info, values, qp->q.norm, tmp);
		for (int i = 0; i < dims; i++)
			r += (double) tmp[i] * tmp[i];
		r = sqrt(r);
		OmenRotate(info, tmp, rot);
		if (r > 0)
			for (int i = 0; i < n; i++)
				rot[i] /= r;
		for (int i = 0; i < n; i++)
		{
			lo = Min(lo, rot[i]);
			hi = Max(hi, rot[i]);
			sum += rot[i];
		}
		qp->lo = lo;
		qp->delta = hi > lo ? (hi - lo) / 15.0f : 1.0f;
		qp->planes = palloc0(nbytes * BQ_PLANES);
		for (int i = 0; i < n; i++)
		{
			int			u = (int) lrintf((rot[i] - lo) / qp->delta);

			u = Max(0, Min(15, u));
			for (int j = 0; j < BQ_PLANES; j++)
				if (u & (1 << j))
					qp->planes[j * nbytes + i / 8] |= 1 << (i % 8);
		}
		/* the sum of the quantized values, so the estimate is consistent */
		sum = 0;
		for (int i = 0; i < n; i++)
		{
			int			u = (int) lrintf((rot[i] - lo) / qp->delta);

			sum += lo + qp->delta * Max(0, Min(15, u));
		}
		qp->sumq = (float) sum;
		qp->r = (float) r;
		qp->invsqrtn = 1.0f / sqrtf((float) n);
		pfree(tmp);
		pfree(rot);
	}
}

/*
 * Distance between a prepared query and a code: exact for "none", an
 * estimate otherwise, in the same internal units as OmenDistance.
 */
float
OmenCodeDistance(OmenIndexInfo *info, const OmenQueryPrep *qp, const uint8 *code)
{
	int			dims = info->dims;

	switch (info->quantizer)
	{
		case OMEN_QUANT_NONE:
			return OmenDistance(info->metric, &qp->q, &CODE_F(code, 1), CODE_F(code, 0), dims);
		case OMEN_QUANT_SQ8:
			{
				const int8 *c = (const int8 *) (code + CODE_HDR + 3 * sizeof(float));
				float		scale = CODE_F(code, 0);
				float		dot;

				if (info->metric == OMEN_METRIC_L1)
				{
					float		s = 0;

					for (int i = 0; i < dims; i++)
						s += fabsf(qp->q.values[i] - scale * c[i]);
					return s;
				}
				dot = qp->scale * scale * (float) omen_kernels.dot_i8(qp->i8, c, dims);
				switch (info->metric)
				{
					case OMEN_METRIC_L2:
						return Max(0.0f, qp->normsq + CODE_F(code, 1) - 2 * dot);
					case OMEN_METRIC_IP:
						return -dot;
					default:
						{
							float		denom = qp->q.norm * CODE_F(code, 2);

							return denom > 0 ? 1.0f - dot / denom : get_float4_nan();
						}
				}
			}
		case OMEN_QUANT_BQ:
			{
				int			nbytes = info->paddims / 8;
				const uint8 *bits = code + CODE_HDR + 2 * sizeof(float);
				uint32		a = omen_kernels.andpop_planes(bits, qp->planes, nbytes, BQ_PLANES);
				float		setsum = qp->lo * CODE_POPCOUNT(code) + qp->delta * (float) a;
				float		xq = (2 * setsum - qp->sumq) * qp->invsqrtn;
				float		est = xq / CODE_F(code, 1);
				float		r = CODE_F(code, 0);

				if (info->metric == OMEN_METRIC_IP)
					return -r * qp->r * est;
				else
				{
					float		d2 = r * r + qp->r * qp->r - 2 * r * qp->r * est;

					d2 = Max(0.0f, d2);
					return info->metric == OMEN_METRIC_COSINE ? d2 / 2 : d2;
				}
			}
	}
	return 0;
}
