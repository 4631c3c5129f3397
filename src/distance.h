/*-------------------------------------------------------------------------
 *
 * distance.h
 *	  Distance kernels for omen: a scalar reference and SIMD variants chosen
 *	  once at load time from the CPU.
 *
 * This header is plain C (no PostgreSQL headers) so that the kernels can be
 * unit-tested and benchmarked outside the server (test/kernels.c,
 * bench/kernels.c).  Every kernel exists once per implementation level; the
 * active set is a table of function pointers, OmenKernels, so a caller pays
 * one indirect call per distance (or per batch) and never a branch on the
 * CPU type.
 *
 * Conventions shared by all implementations:
 *	- "n" is a count of elements (floats, int8 values, halves) or, for bit
 *	  codes, of bytes.  n may be any value >= 0, pointers need not be aligned.
 *	- Float kernels may differ from the scalar reference in the last bits
 *	  because SIMD sums in a different order; callers compare with a relative
 *	  tolerance, never for exact equality.
 *	- Integer kernels (Hamming, int8 dot, bit-plane AND-popcount) are exact in
 *	  every implementation.
 *	- The half -> float conversion is exact in every implementation (every
 *	  binary16 value is representable as a float).
 *	- Batched kernels compute one query against "count" vectors given by an
 *	  array of pointers (vectors in an index live in scattered buffer pages)
 *	  and write count results to out[].
 *
 * IDENTIFICATION
 *	  src/distance.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OMEN_DISTANCE_H
#define OMEN_DISTANCE_H

#include <stdint.h>

/* Implementation levels, in increasing order of capability */
typedef enum OmenSimdLevel
{
	OMEN_SIMD_SCALAR = 0,
	OMEN_SIMD_AVX2 = 1,			/* AVX2 + FMA + POPCNT (+F16C if present) */
	OMEN_SIMD_AVX512 = 2,		/* AVX-512 F/BW/VL (+VPOPCNTDQ, VNNI if present) */
	OMEN_SIMD_NLEVELS = 3
} OmenSimdLevel;

typedef struct OmenKernels
{
	const char *name;			/* "scalar", "avx2", "avx512", ... */

	/* float32 */
	float		(*l2sq_f32) (const float *a, const float *b, int n);	/* sum (a-b)^2 */
	float		(*dot_f32) (const float *a, const float *b, int n);	/* sum a*b */
	float		(*l1_f32) (const float *a, const float *b, int n);	/* sum |a-b| */
	float		(*normsq_f32) (const float *a, int n);	/* sum a^2 */

	/* quantized codes */
	uint64_t	(*hamming) (const uint8_t *a, const uint8_t *b, int nbytes);
	int32_t		(*dot_i8) (const int8_t *a, const int8_t *b, int n);

	/* batched: one query against count vectors */
	void		(*l2sq_f32_batch) (const float *q, const float *const *v,
								   int count, int n, float *out);
	void		(*dot_f32_batch) (const float *q, const float *const *v,
								  int count, int n, float *out);
	void		(*hamming_batch) (const uint8_t *q, const uint8_t *const *v,
								  int count, int nbytes, uint64_t *out);
	void		(*dot_i8_batch) (const int8_t *q, const int8_t *const *v,
								 int count, int n, int32_t *out);

	/*
	 * Members below were added later; they are kept at the end so that
	 * initialisers of the members above stay valid.
	 */

	/*
	 * RaBitQ-style estimator: a 1-bit code of nbytes bytes against a query
	 * quantized to nplanes (1..8) bits per dimension and stored as bit
	 * planes, plane j (bit j of every dimension) at planes[j * nbytes].
	 * Returns sum over j of 2^j * popcount(code AND plane j), which is the
	 * inner product of the 0/1 code with the unsigned quantized query.
	 * Exact for nbytes < 2^21 (the sum is below 2040 * nbytes).
	 */
	uint32_t	(*andpop_planes) (const uint8_t *code, const uint8_t *planes,
								  int nbytes, int nplanes);
	void		(*andpop_planes_batch) (const uint8_t *const *codes, int count,
										const uint8_t *planes, int nbytes,
										int nplanes, uint32_t *out);

	/*
	 * IEEE binary16 (pgvector's halfvec) to float, exact for every value
	 * including subnormals and infinities.  A NaN comes out as a NaN (quiet,
	 * with sign and payload kept, in every implementation here).
	 */
	void		(*f16_to_f32) (const uint16_t *in, float *out, int n);
} OmenKernels;

/*
 * The active kernels.  Valid after omen_simd_init(); before it, the scalar
 * reference is active.
 */
extern OmenKernels omen_kernels;

/*
 * Pick the best implementation the CPU supports, capped at max_level.
 * The environment variable OMEN_SIMD ("scalar", "avx2", "avx512") lowers the
 * cap further; it is read on every call.  Returns the level chosen.
 */
extern OmenSimdLevel omen_simd_init(OmenSimdLevel max_level);

/* The level currently active, and the best one this CPU supports */
extern OmenSimdLevel omen_simd_active_level(void);
extern OmenSimdLevel omen_simd_best_level(void);

/* Name of a level ("scalar", "avx2", "avx512") */
extern const char *omen_simd_level_name(OmenSimdLevel level);

/* Parse a level name; returns -1 if unknown */
extern int	omen_simd_parse_level(const char *name);

/*
 * The kernel table for one level, or NULL if this CPU cannot run it (the
 * kernel test uses this to try every implementation).
 */
extern const OmenKernels *omen_kernels_for_level(OmenSimdLevel level);

/*
 * Human-readable description of the CPU features detected, e.g.
 * "popcnt avx2 fma f16c avx512f avx512bw avx512vl avx512vpopcntdq avx512vnni".
 */
extern const char *omen_simd_cpu_features(void);

#endif							/* OMEN_DISTANCE_H */
