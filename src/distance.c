/*-------------------------------------------------------------------------
 *
 * distance.c
 *	  Scalar reference distance kernels and run-time selection of the SIMD
 *	  implementation.
 *
 * The scalar kernels here are deliberately plain loops: they are the
 * reference the SIMD variants are tested against (test/kernels.c) and the
 * fallback on CPUs, or builds, without AVX2.  The float kernels accumulate in
 * double so that they are accurate rather than fast.
 *
 * The SIMD variants live in distance_avx2.c and distance_avx512.c, compiled
 * with per-function target attributes rather than -march flags, so the
 * shared library loads and runs on any x86-64.  Which variant is used is
 * decided once, by omen_simd_init(), from what the CPU (and the OS, which
 * must save the wide registers) supports; the choice is published by copying
 * a kernel table into omen_kernels, so callers pay an indirect call and never
 * a test of the CPU type.
 *
 * Before omen_simd_init() runs, omen_kernels holds the scalar table, so the
 * kernels can be used from any code path without worrying about ordering.
 *
 * IDENTIFICATION
 *	  src/distance.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "distance.h"

#if defined(__x86_64__) || defined(__i386__)
#define OMEN_X86 1

#include <cpuid.h>

/*
 * Table fillers exported by the SIMD translation units.  They are declared
 * here rather than in distance.h because nothing but the dispatcher may call
 * them: filling a table for a level the CPU lacks is harmless, but calling
 * its kernels is not.  The AVX-512 filler returns 0 if the compiler could
 * not build those kernels.  Keep in sync with distance_avx2.c and
 * distance_avx512.c.
 */
extern void omen_fill_kernels_avx2(OmenKernels *k);
extern int	omen_fill_kernels_avx512(OmenKernels *k, int have_vpopcntdq,
									 int have_vnni);
#endif

/* ------------------------------------------------------------------------
 * Scalar reference kernels
 * ------------------------------------------------------------------------
 */

/*
 * Squared Euclidean distance.  The difference is formed in double, not in
 * float, so that the reference does not lose the low bits of nearly equal
 * inputs.
 */
static float
scalar_l2sq_f32(const float *a, const float *b, int n)
{
	double		sum = 0.0;

	for (int i = 0; i < n; i++)
	{
		double		d = (double) a[i] - (double) b[i];

		sum += d * d;
	}
	return (float) sum;
}

/* Inner product; double accumulation keeps cancellation errors out. */
static float
scalar_dot_f32(const float *a, const float *b, int n)
{
	double		sum = 0.0;

	for (int i = 0; i < n; i++)
		sum += (double) a[i] * (double) b[i];
	return (float) sum;
}

/*
 * Manhattan distance.  fabs() rather than a comparison: it compiles to a
 * mask, where a branch on the sign of random data mispredicts half the time
 * (an order of magnitude slower).
 */
static float
scalar_l1_f32(const float *a, const float *b, int n)
{
	double		sum = 0.0;

	for (int i = 0; i < n; i++)
		sum += fabs((double) a[i] - (double) b[i]);
	return (float) sum;
}

/* Squared norm, used for normalisation and for the cosine distance. */
static float
scalar_normsq_f32(const float *a, int n)
{
	double		sum = 0.0;

	for (int i = 0; i < n; i++)
		sum += (double) a[i] * (double) a[i];
	return (float) sum;
}

/*
 * Hamming distance between two bit codes of nbytes bytes.  Eight bytes at a
 * time through memcpy, because the codes need not be 8-byte aligned and a
 * cast would be undefined behaviour (and a SIGBUS on strict platforms).
 */
static uint64_t
scalar_hamming(const uint8_t *a, const uint8_t *b, int nbytes)
{
	uint64_t	count = 0;
	int			i = 0;

	for (; i + 8 <= nbytes; i += 8)
	{
		uint64_t	x,
					y;

		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		count += (uint64_t) __builtin_popcountll(x ^ y);
	}
	for (; i < nbytes; i++)
		count += (uint64_t) __builtin_popcount((unsigned) (a[i] ^ b[i]));
	return count;
}

/*
 * Inner product of int8 vectors, exact in int32.  Each product is at most
 * 2^14 in magnitude, so the sum cannot overflow for n < 2^17.
 */
static int32_t
scalar_dot_i8(const int8_t *a, const int8_t *b, int n)
{
	int32_t		sum = 0;

	for (int i = 0; i < n; i++)
		sum += (int32_t) a[i] * (int32_t) b[i];
	return sum;
}

/*
 * The scalar batched kernels simply loop; the reference has no loads to
 * share, and simplicity is what makes it a reference.
 */
static void
scalar_l2sq_f32_batch(const float *q, const float *const *v, int count, int n,
					  float *out)
{
	for (int i = 0; i < count; i++)
		out[i] = scalar_l2sq_f32(q, v[i], n);
}

static void
scalar_dot_f32_batch(const float *q, const float *const *v, int count, int n,
					 float *out)
{
	for (int i = 0; i < count; i++)
		out[i] = scalar_dot_f32(q, v[i], n);
}

static void
scalar_hamming_batch(const uint8_t *q, const uint8_t *const *v, int count,
					 int nbytes, uint64_t *out)
{
	for (int i = 0; i < count; i++)
		out[i] = scalar_hamming(q, v[i], nbytes);
}

static void
scalar_dot_i8_batch(const int8_t *q, const int8_t *const *v, int count, int n,
					int32_t *out)
{
	for (int i = 0; i < count; i++)
		out[i] = scalar_dot_i8(q, v[i], n);
}

/*
 * Bit-plane AND-popcount: for each plane, the popcount of code AND plane,
 * weighted by the plane's bit value.  Eight bytes at a time through memcpy,
 * as in scalar_hamming.
 */
static uint32_t
scalar_andpop_planes(const uint8_t *code, const uint8_t *planes, int nbytes,
					 int nplanes)
{
	uint32_t	sum = 0;

	for (int j = 0; j < nplanes; j++)
	{
		const uint8_t *plane = planes + (size_t) j * nbytes;
		uint32_t	count = 0;
		int			i = 0;

		for (; i + 8 <= nbytes; i += 8)
		{
			uint64_t	x,
						y;

			memcpy(&x, code + i, 8);
			memcpy(&y, plane + i, 8);
			count += (uint32_t) __builtin_popcountll(x & y);
		}
		for (; i < nbytes; i++)
			count += (uint32_t) __builtin_popcount((unsigned) (code[i] & plane[i]));
		sum += count << j;
	}
	return sum;
}

static void
scalar_andpop_planes_batch(const uint8_t *const *codes, int count,
						   const uint8_t *planes, int nbytes, int nplanes,
						   uint32_t *out)
{
	for (int i = 0; i < count; i++)
		out[i] = scalar_andpop_planes(codes[i], planes, nbytes, nplanes);
}

/*
 * IEEE binary16 to binary32 by moving the fields: the exponent is rebiased
 * (15 -> 127) and the 10-bit mantissa becomes the top of the 23-bit one.
 * Subnormal halves (value mant * 2^-24) are normal floats, so they are
 * normalised by shifting the mantissa up until its leading bit reaches the
 * implicit position.  Inf and NaN keep the maximum exponent; a NaN is made
 * quiet with its payload kept, which is what F16C's VCVTPH2PS does, so all
 * implementations give the same bits.
 */
static void
scalar_f16_to_f32(const uint16_t *in, float *out, int n)
{
	for (int i = 0; i < n; i++)
	{
		uint32_t	h = in[i];
		uint32_t	sign = (h & 0x8000) << 16;
		uint32_t	exp = (h >> 10) & 0x1f;
		uint32_t	mant = h & 0x3ff;
		uint32_t	bits;

		if (exp == 0x1f)
			bits = sign | 0x7f800000 | (mant << 13) | (mant ? 0x00400000 : 0);
		else if (exp != 0)
			bits = sign | ((exp + 112) << 23) | (mant << 13);
		else if (mant == 0)
			bits = sign;
		else
		{
			/* mant * 2^-24 = (mant << s) * 2^-(24 + s), leading bit at 2^10 */
			uint32_t	s = 0;

			while ((mant & 0x400) == 0)
			{
				mant <<= 1;
				s++;
			}
			bits = sign | ((113 - s) << 23) | ((mant & 0x3ff) << 13);
		}
		memcpy(&out[i], &bits, sizeof(float));
	}
}

/* Listed twice, once const for omen_kernels_for_level, once as the default */
#define OMEN_SCALAR_KERNELS \
	{ \
		"scalar", \
		scalar_l2sq_f32, \
		scalar_dot_f32, \
		scalar_l1_f32, \
		scalar_normsq_f32, \
		scalar_hamming, \
		scalar_dot_i8, \
		scalar_l2sq_f32_batch, \
		scalar_dot_f32_batch, \
		scalar_hamming_batch, \
		scalar_dot_i8_batch, \
		scalar_andpop_planes, \
		scalar_andpop_planes_batch, \
		scalar_f16_to_f32 \
	}

static const OmenKernels scalar_kernels = OMEN_SCALAR_KERNELS;

/* The active table: scalar until omen_simd_init() picks something better */
OmenKernels omen_kernels = OMEN_SCALAR_KERNELS;

/* ------------------------------------------------------------------------
 * CPU detection and dispatch
 * ------------------------------------------------------------------------
 */

static int	detected = 0;
static OmenSimdLevel best_level = OMEN_SIMD_SCALAR;
static OmenSimdLevel active_level = OMEN_SIMD_SCALAR;
static char cpu_features[256] = "";

#ifdef OMEN_X86
static OmenKernels avx2_kernels;
static OmenKernels avx512_kernels;

/* Append one feature name to cpu_features (the buffer is ample for all) */
static void
add_feature(const char *name)
{
	size_t		len = strlen(cpu_features);

	if (len + strlen(name) + 2 > sizeof(cpu_features))
		return;
	if (len > 0)
		cpu_features[len++] = ' ';
	strcpy(cpu_features + len, name);
}
#endif

/*
 * Find out, once, what this CPU can run, and build the tables for the levels
 * it supports.  __builtin_cpu_supports also checks that the OS saves the
 * YMM/ZMM state (XGETBV), so a level reported here is really usable.
 *
 * A level is only enabled if everything below it is too: the AVX-512 code
 * also uses AVX2/FMA/POPCNT instructions, and no real CPU has the one
 * without the other, but a hypervisor may mask features arbitrarily.
 *
 * F16C is not part of any level: only the AVX2 f16_to_f32 kernel uses it
 * (the AVX-512 one uses the AVX512F form of VCVTPH2PS), so an AVX2 CPU
 * without it keeps the scalar conversion in its table.  It is read from
 * CPUID directly because older compilers (clang before 16, GCC before 11)
 * do not accept "f16c" in __builtin_cpu_supports; the OS support for the
 * YMM state it needs is already implied by AVX2.
 *
 * Not thread-safe, and need not be: PostgreSQL backends are single-threaded
 * and the first call happens at library load.
 */
static void
simd_detect(void)
{
#ifdef OMEN_X86
	int			has_avx2,
				has_fma,
				has_popcnt,
				has_avx512f,
				has_avx512bw,
				has_avx512vl,
				has_vpopcntdq,
				has_vnni,
				has_f16c;
	unsigned int eax,
				ebx,
				ecx,
				edx;
#endif

	if (detected)
		return;
	detected = 1;
	cpu_features[0] = '\0';
	best_level = OMEN_SIMD_SCALAR;

#ifdef OMEN_X86
	__builtin_cpu_init();
	has_avx2 = __builtin_cpu_supports("avx2") != 0;
	has_fma = __builtin_cpu_supports("fma") != 0;
	has_popcnt = __builtin_cpu_supports("popcnt") != 0;
	has_avx512f = __builtin_cpu_supports("avx512f") != 0;
	has_avx512bw = __builtin_cpu_supports("avx512bw") != 0;
	has_avx512vl = __builtin_cpu_supports("avx512vl") != 0;
	has_vpopcntdq = __builtin_cpu_supports("avx512vpopcntdq") != 0;
	has_vnni = __builtin_cpu_supports("avx512vnni") != 0;
	has_f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;

	if (has_popcnt)
		add_feature("popcnt");
	if (has_avx2)
		add_feature("avx2");
	if (has_fma)
		add_feature("fma");
	if (has_f16c)
		add_feature("f16c");
	if (has_avx512f)
		add_feature("avx512f");
	if (has_avx512bw)
		add_feature("avx512bw");
	if (has_avx512vl)
		add_feature("avx512vl");
	if (has_vpopcntdq)
		add_feature("avx512vpopcntdq");
	if (has_vnni)
		add_feature("avx512vnni");

	if (has_avx2 && has_fma && has_popcnt)
	{
		omen_fill_kernels_avx2(&avx2_kernels);
		if (!has_f16c)
			avx2_kernels.f16_to_f32 = scalar_f16_to_f32;
		best_level = OMEN_SIMD_AVX2;

		if (has_avx512f && has_avx512bw && has_avx512vl &&
			omen_fill_kernels_avx512(&avx512_kernels, has_vpopcntdq, has_vnni))
			best_level = OMEN_SIMD_AVX512;
	}
#endif

	if (cpu_features[0] == '\0')
		strcpy(cpu_features, "none");
}

/*
 * Choose the best level the CPU supports, capped by the caller and by the
 * OMEN_SIMD environment variable (re-read on each call, so tests can force a
 * level).  An unrecognised OMEN_SIMD value is ignored rather than treated as
 * an error: this runs at library load time, where there is no good way to
 * report one.
 */
OmenSimdLevel
omen_simd_init(OmenSimdLevel max_level)
{
	OmenSimdLevel level;
	const char *env;
	const OmenKernels *k;

	simd_detect();

	if ((int) max_level < (int) OMEN_SIMD_SCALAR)
		max_level = OMEN_SIMD_SCALAR;
	level = best_level < max_level ? best_level : max_level;

	env = getenv("OMEN_SIMD");
	if (env != NULL)
	{
		int			cap = omen_simd_parse_level(env);

		if (cap >= 0 && cap < (int) level)
			level = (OmenSimdLevel) cap;
	}

	k = omen_kernels_for_level(level);
	if (k == NULL)
	{
		/* cannot happen, level <= best_level; be safe anyway */
		level = OMEN_SIMD_SCALAR;
		k = &scalar_kernels;
	}
	omen_kernels = *k;
	active_level = level;
	return level;
}

/* The level whose kernels are in omen_kernels */
OmenSimdLevel
omen_simd_active_level(void)
{
	return active_level;
}

/* The best level this CPU can run, regardless of any cap */
OmenSimdLevel
omen_simd_best_level(void)
{
	simd_detect();
	return best_level;
}

/* Names used by OMEN_SIMD, the kernel tables, and diagnostics */
const char *
omen_simd_level_name(OmenSimdLevel level)
{
	switch (level)
	{
		case OMEN_SIMD_SCALAR:
			return "scalar";
		case OMEN_SIMD_AVX2:
			return "avx2";
		case OMEN_SIMD_AVX512:
			return "avx512";
		case OMEN_SIMD_NLEVELS:
			break;
	}
	return "unknown";
}

/* Inverse of omen_simd_level_name, case-insensitive; -1 if unknown */
int
omen_simd_parse_level(const char *name)
{
	if (name == NULL)
		return -1;
	for (int i = 0; i < (int) OMEN_SIMD_NLEVELS; i++)
	{
		if (strcasecmp(name, omen_simd_level_name((OmenSimdLevel) i)) == 0)
			return i;
	}
	return -1;
}

/*
 * The kernel table for a given level, or NULL if the CPU cannot run it.
 * This ignores OMEN_SIMD on purpose: the kernel test wants to exercise every
 * implementation the hardware allows.
 */
const OmenKernels *
omen_kernels_for_level(OmenSimdLevel level)
{
	simd_detect();

	if ((int) level < 0 || level > best_level)
		return NULL;

	switch (level)
	{
		case OMEN_SIMD_SCALAR:
			return &scalar_kernels;
#ifdef OMEN_X86
		case OMEN_SIMD_AVX2:
			return &avx2_kernels;
		case OMEN_SIMD_AVX512:
			return &avx512_kernels;
#endif
		default:
			break;
	}
	return NULL;
}

/* Space-separated list of the relevant CPU features found, or "none" */
const char *
omen_simd_cpu_features(void)
{
	simd_detect();
	return cpu_features;
}
