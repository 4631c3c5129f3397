/*-------------------------------------------------------------------------
 *
 * distance_avx512.c
 *	  AVX-512 distance kernels (F/BW/VL, with VPOPCNTDQ and VNNI variants).
 *
 * Like distance_avx2.c, every function carries its own target attribute and
 * the file is compiled without -march flags, so that the library runs on any
 * x86-64; distance.c only installs these kernels after checking the CPU.
 *
 * Three kernels have two variants each, because the extensions they would
 * like to use are not implied by AVX-512F/BW/VL (Skylake-SP has neither,
 * Cascade Lake has VNNI but not VPOPCNTDQ, Ice Lake and Zen 4 have both):
 *	- Hamming and the bit-plane AND-popcount: VPOPCNTQ when
 *	  AVX512_VPOPCNTDQ is present, else a nibble lookup with VPSHUFB +
 *	  VPSADBW (AVX512BW).
 *	- int8 dot: VPDPWSSD when AVX512_VNNI is present, else VPMADDWD + VPADDD.
 * Each variant has a target string that names exactly the extensions it
 * uses, so a CPU without VPOPCNTDQ or VNNI can never execute an instruction
 * of the other variant, even by way of inlining.
 *
 * Tails are handled with masked loads (and stores), which touch nothing (and
 * cannot fault) in the masked-off lanes, so there is no scalar remainder
 * loop.
 *
 * The half -> float conversion uses the EVEX form of VCVTPH2PS, which is
 * part of AVX512F, so unlike the AVX2 one it does not depend on F16C.
 *
 * On non-x86 platforms, or compilers too old for these intrinsics, this file
 * provides no kernels and the dispatcher stops at AVX2.
 *
 * IDENTIFICATION
 *	  src/distance_avx512.c
 *
 *-------------------------------------------------------------------------
 */
#include "distance.h"

#if defined(__x86_64__) || defined(__i386__)

/*
 * The intrinsics used here (masked loads and stores, _mm512_reduce_*,
 * VPOPCNTQ, VPDPWSSD, VCVTPH2PS) all exist in GCC 8 and clang 8; older
 * compilers get no AVX-512 kernels at all rather than a broken build.
 */
#if (defined(__clang__) && __clang_major__ >= 8) || \
	(!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 8)
#define OMEN_HAVE_AVX512 1
#endif

#endif							/* x86 */

#ifdef OMEN_HAVE_AVX512

#include <immintrin.h>

#define OMEN_AVX512_ISA "avx512f,avx512bw,avx512vl,avx2,fma,popcnt"
#define OMEN_AVX512_TARGET __attribute__((target(OMEN_AVX512_ISA)))
#define OMEN_AVX512_VPOPCNT_TARGET \
	__attribute__((target(OMEN_AVX512_ISA ",avx512vpopcntdq")))
#define OMEN_AVX512_VNNI_TARGET \
	__attribute__((target(OMEN_AVX512_ISA ",avx512vnni")))

/* How far ahead, in vectors, the batched kernels prefetch */
#define OMEN_PREFETCH_AHEAD 1

/* The only entry point; see distance.c */
extern int	omen_fill_kernels_avx512(OmenKernels *k, int have_vpopcntdq,
									 int have_vnni);

/* Mask selecting the first rem (0..15) floats of a register */
static inline __mmask16
tail_mask16(int rem)
{
	return (__mmask16) ((1u << rem) - 1u);
}

/* Mask selecting the first rem (0..31) bytes of a 256-bit register */
static inline __mmask32
tail_mask32(int rem)
{
	return (__mmask32) ((1u << rem) - 1u);
}

/* Mask selecting the first rem (0..63) bytes of a 512-bit register */
static inline __mmask64
tail_mask64(int rem)
{
	return (__mmask64) ((((uint64_t) 1) << rem) - 1u);
}

/*
 * Squared L2: four 16-lane accumulators (64 floats per iteration), then one
 * register at a time, then a masked load for the last 0..15 floats.  The
 * zeroed lanes contribute (0 - 0)^2 = 0.
 */
OMEN_AVX512_TARGET static inline float
l2sq_f32_impl(const float *a, const float *b, int n)
{
	__m512		s0 = _mm512_setzero_ps();
	__m512		s1 = _mm512_setzero_ps();
	__m512		s2 = _mm512_setzero_ps();
	__m512		s3 = _mm512_setzero_ps();
	__m512		d;
	__mmask16	m;
	int			i = 0;

	for (; i + 64 <= n; i += 64)
	{
		__m512		d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
		__m512		d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
		__m512		d2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
		__m512		d3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));

		s0 = _mm512_fmadd_ps(d0, d0, s0);
		s1 = _mm512_fmadd_ps(d1, d1, s1);
		s2 = _mm512_fmadd_ps(d2, d2, s2);
		s3 = _mm512_fmadd_ps(d3, d3, s3);
	}
	for (; i + 16 <= n; i += 16)
	{
		d = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
		s0 = _mm512_fmadd_ps(d, d, s0);
	}
	m = tail_mask16(n - i);
	d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
	s1 = _mm512_fmadd_ps(d, d, s1);

	s0 = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
	return _mm512_reduce_add_ps(s0);
}

OMEN_AVX512_TARGET static float
avx512_l2sq_f32(const float *a, const float *b, int n)
{
	return l2sq_f32_impl(a, b, n);
}

/* Inner product, same structure as l2sq */
OMEN_AVX512_TARGET static inline float
dot_f32_impl(const float *a, const float *b, int n)
{
	__m512		s0 = _mm512_setzero_ps();
	__m512		s1 = _mm512_setzero_ps();
	__m512		s2 = _mm512_setzero_ps();
	__m512		s3 = _mm512_setzero_ps();
	__mmask16	m;
	int			i = 0;

	for (; i + 64 <= n; i += 64)
	{
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
		s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
		s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
		s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
	}
	for (; i + 16 <= n; i += 16)
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
	m = tail_mask16(n - i);
	s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i),
						 _mm512_maskz_loadu_ps(m, b + i), s1);

	s0 = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
	return _mm512_reduce_add_ps(s0);
}

OMEN_AVX512_TARGET static float
avx512_dot_f32(const float *a, const float *b, int n)
{
	return dot_f32_impl(a, b, n);
}

/*
 * L1.  _mm512_abs_ps clears the sign bit with an integer AND, so it needs
 * only AVX512F (the float AND/ANDN instructions would need AVX512DQ).
 */
OMEN_AVX512_TARGET static float
avx512_l1_f32(const float *a, const float *b, int n)
{
	__m512		s0 = _mm512_setzero_ps();
	__m512		s1 = _mm512_setzero_ps();
	__m512		s2 = _mm512_setzero_ps();
	__m512		s3 = _mm512_setzero_ps();
	__m512		d;
	__mmask16	m;
	int			i = 0;

	for (; i + 64 <= n; i += 64)
	{
		__m512		d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
		__m512		d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
		__m512		d2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
		__m512		d3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));

		s0 = _mm512_add_ps(s0, _mm512_abs_ps(d0));
		s1 = _mm512_add_ps(s1, _mm512_abs_ps(d1));
		s2 = _mm512_add_ps(s2, _mm512_abs_ps(d2));
		s3 = _mm512_add_ps(s3, _mm512_abs_ps(d3));
	}
	for (; i + 16 <= n; i += 16)
	{
		d = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
		s0 = _mm512_add_ps(s0, _mm512_abs_ps(d));
	}
	m = tail_mask16(n - i);
	d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
	s1 = _mm512_add_ps(s1, _mm512_abs_ps(d));

	s0 = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
	return _mm512_reduce_add_ps(s0);
}

/* Squared norm, each element loaded once */
OMEN_AVX512_TARGET static float
avx512_normsq_f32(const float *a, int n)
{
	__m512		s0 = _mm512_setzero_ps();
	__m512		s1 = _mm512_setzero_ps();
	__m512		s2 = _mm512_setzero_ps();
	__m512		s3 = _mm512_setzero_ps();
	__m512		x;
	int			i = 0;

	for (; i + 64 <= n; i += 64)
	{
		__m512		x0 = _mm512_loadu_ps(a + i);
		__m512		x1 = _mm512_loadu_ps(a + i + 16);
		__m512		x2 = _mm512_loadu_ps(a + i + 32);
		__m512		x3 = _mm512_loadu_ps(a + i + 48);

		s0 = _mm512_fmadd_ps(x0, x0, s0);
		s1 = _mm512_fmadd_ps(x1, x1, s1);
		s2 = _mm512_fmadd_ps(x2, x2, s2);
		s3 = _mm512_fmadd_ps(x3, x3, s3);
	}
	for (; i + 16 <= n; i += 16)
	{
		x = _mm512_loadu_ps(a + i);
		s0 = _mm512_fmadd_ps(x, x, s0);
	}
	x = _mm512_maskz_loadu_ps(tail_mask16(n - i), a + i);
	s1 = _mm512_fmadd_ps(x, x, s1);

	s0 = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
	return _mm512_reduce_add_ps(s0);
}

/*
 * Batched squared L2.  Four vectors at a time share each query load and give
 * eight independent FMA chains (two per vector); the tail of all four is one
 * masked step.  The cache lines of the next group that correspond to the
 * ones being read are prefetched, because the vectors are scattered over
 * index pages where the hardware prefetcher cannot follow.
 */
OMEN_AVX512_TARGET static void
avx512_l2sq_f32_batch(const float *q, const float *const *v, int count, int n,
					  float *out)
{
	int			c = 0;

	for (; c + 4 <= count; c += 4)
	{
		const float *p0 = v[c];
		const float *p1 = v[c + 1];
		const float *p2 = v[c + 2];
		const float *p3 = v[c + 3];

		/* next group's vectors, or this group's where there are none */
		const float *n0 = c + 4 < count ? v[c + 4] : p0;
		const float *n1 = c + 5 < count ? v[c + 5] : p1;
		const float *n2 = c + 6 < count ? v[c + 6] : p2;
		const float *n3 = c + 7 < count ? v[c + 7] : p3;
		__m512		s00 = _mm512_setzero_ps(),
					s01 = _mm512_setzero_ps();
		__m512		s10 = _mm512_setzero_ps(),
					s11 = _mm512_setzero_ps();
		__m512		s20 = _mm512_setzero_ps(),
					s21 = _mm512_setzero_ps();
		__m512		s30 = _mm512_setzero_ps(),
					s31 = _mm512_setzero_ps();
		__m512		q0,
					d;
		__mmask16	m;
		int			i = 0;

		for (; i + 32 <= n; i += 32)
		{
			__m512		q1;

			__builtin_prefetch(n0 + i);
			__builtin_prefetch(n1 + i);
			__builtin_prefetch(n2 + i);
			__builtin_prefetch(n3 + i);
			__builtin_prefetch(n0 + i + 16);
			__builtin_prefetch(n1 + i + 16);
			__builtin_prefetch(n2 + i + 16);
			__builtin_prefetch(n3 + i + 16);

			q0 = _mm512_loadu_ps(q + i);
			q1 = _mm512_loadu_ps(q + i + 16);
			d = _mm512_sub_ps(_mm512_loadu_ps(p0 + i), q0);
			s00 = _mm512_fmadd_ps(d, d, s00);
			d = _mm512_sub_ps(_mm512_loadu_ps(p0 + i + 16), q1);
			s01 = _mm512_fmadd_ps(d, d, s01);
			d = _mm512_sub_ps(_mm512_loadu_ps(p1 + i), q0);
			s10 = _mm512_fmadd_ps(d, d, s10);
			d = _mm512_sub_ps(_mm512_loadu_ps(p1 + i + 16), q1);
			s11 = _mm512_fmadd_ps(d, d, s11);
			d = _mm512_sub_ps(_mm512_loadu_ps(p2 + i), q0);
			s20 = _mm512_fmadd_ps(d, d, s20);
			d = _mm512_sub_ps(_mm512_loadu_ps(p2 + i + 16), q1);
			s21 = _mm512_fmadd_ps(d, d, s21);
			d = _mm512_sub_ps(_mm512_loadu_ps(p3 + i), q0);
			s30 = _mm512_fmadd_ps(d, d, s30);
			d = _mm512_sub_ps(_mm512_loadu_ps(p3 + i + 16), q1);
			s31 = _mm512_fmadd_ps(d, d, s31);
		}
		for (; i + 16 <= n; i += 16)
		{
			q0 = _mm512_loadu_ps(q + i);
			d = _mm512_sub_ps(_mm512_loadu_ps(p0 + i), q0);
			s00 = _mm512_fmadd_ps(d, d, s00);
			d = _mm512_sub_ps(_mm512_loadu_ps(p1 + i), q0);
			s10 = _mm512_fmadd_ps(d, d, s10);
			d = _mm512_sub_ps(_mm512_loadu_ps(p2 + i), q0);
			s20 = _mm512_fmadd_ps(d, d, s20);
			d = _mm512_sub_ps(_mm512_loadu_ps(p3 + i), q0);
			s30 = _mm512_fmadd_ps(d, d, s30);
		}
		m = tail_mask16(n - i);
		q0 = _mm512_maskz_loadu_ps(m, q + i);
		d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, p0 + i), q0);
		s01 = _mm512_fmadd_ps(d, d, s01);
		d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, p1 + i), q0);
		s11 = _mm512_fmadd_ps(d, d, s11);
		d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, p2 + i), q0);
		s21 = _mm512_fmadd_ps(d, d, s21);
		d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, p3 + i), q0);
		s31 = _mm512_fmadd_ps(d, d, s31);

		out[c] = _mm512_reduce_add_ps(_mm512_add_ps(s00, s01));
		out[c + 1] = _mm512_reduce_add_ps(_mm512_add_ps(s10, s11));
		out[c + 2] = _mm512_reduce_add_ps(_mm512_add_ps(s20, s21));
		out[c + 3] = _mm512_reduce_add_ps(_mm512_add_ps(s30, s31));
	}
	for (; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
			__builtin_prefetch(v[c + OMEN_PREFETCH_AHEAD]);
		out[c] = l2sq_f32_impl(q, v[c], n);
	}
}

/* Batched inner product; the same grouping and prefetching as l2sq */
OMEN_AVX512_TARGET static void
avx512_dot_f32_batch(const float *q, const float *const *v, int count, int n,
					 float *out)
{
	int			c = 0;

	for (; c + 4 <= count; c += 4)
	{
		const float *p0 = v[c];
		const float *p1 = v[c + 1];
		const float *p2 = v[c + 2];
		const float *p3 = v[c + 3];

		/* next group's vectors, or this group's where there are none */
		const float *n0 = c + 4 < count ? v[c + 4] : p0;
		const float *n1 = c + 5 < count ? v[c + 5] : p1;
		const float *n2 = c + 6 < count ? v[c + 6] : p2;
		const float *n3 = c + 7 < count ? v[c + 7] : p3;
		__m512		s00 = _mm512_setzero_ps(),
					s01 = _mm512_setzero_ps();
		__m512		s10 = _mm512_setzero_ps(),
					s11 = _mm512_setzero_ps();
		__m512		s20 = _mm512_setzero_ps(),
					s21 = _mm512_setzero_ps();
		__m512		s30 = _mm512_setzero_ps(),
					s31 = _mm512_setzero_ps();
		__m512		q0;
		__mmask16	m;
		int			i = 0;

		for (; i + 32 <= n; i += 32)
		{
			__m512		q1;

			__builtin_prefetch(n0 + i);
			__builtin_prefetch(n1 + i);
			__builtin_prefetch(n2 + i);
			__builtin_prefetch(n3 + i);
			__builtin_prefetch(n0 + i + 16);
			__builtin_prefetch(n1 + i + 16);
			__builtin_prefetch(n2 + i + 16);
			__builtin_prefetch(n3 + i + 16);

			q0 = _mm512_loadu_ps(q + i);
			q1 = _mm512_loadu_ps(q + i + 16);
			s00 = _mm512_fmadd_ps(_mm512_loadu_ps(p0 + i), q0, s00);
			s01 = _mm512_fmadd_ps(_mm512_loadu_ps(p0 + i + 16), q1, s01);
			s10 = _mm512_fmadd_ps(_mm512_loadu_ps(p1 + i), q0, s10);
			s11 = _mm512_fmadd_ps(_mm512_loadu_ps(p1 + i + 16), q1, s11);
			s20 = _mm512_fmadd_ps(_mm512_loadu_ps(p2 + i), q0, s20);
			s21 = _mm512_fmadd_ps(_mm512_loadu_ps(p2 + i + 16), q1, s21);
			s30 = _mm512_fmadd_ps(_mm512_loadu_ps(p3 + i), q0, s30);
			s31 = _mm512_fmadd_ps(_mm512_loadu_ps(p3 + i + 16), q1, s31);
		}
		for (; i + 16 <= n; i += 16)
		{
			q0 = _mm512_loadu_ps(q + i);
			s00 = _mm512_fmadd_ps(_mm512_loadu_ps(p0 + i), q0, s00);
			s10 = _mm512_fmadd_ps(_mm512_loadu_ps(p1 + i), q0, s10);
			s20 = _mm512_fmadd_ps(_mm512_loadu_ps(p2 + i), q0, s20);
			s30 = _mm512_fmadd_ps(_mm512_loadu_ps(p3 + i), q0, s30);
		}
		m = tail_mask16(n - i);
		q0 = _mm512_maskz_loadu_ps(m, q + i);
		s01 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p0 + i), q0, s01);
		s11 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p1 + i), q0, s11);
		s21 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p2 + i), q0, s21);
		s31 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p3 + i), q0, s31);

		out[c] = _mm512_reduce_add_ps(_mm512_add_ps(s00, s01));
		out[c + 1] = _mm512_reduce_add_ps(_mm512_add_ps(s10, s11));
		out[c + 2] = _mm512_reduce_add_ps(_mm512_add_ps(s20, s21));
		out[c + 3] = _mm512_reduce_add_ps(_mm512_add_ps(s30, s31));
	}
	for (; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
			__builtin_prefetch(v[c + OMEN_PREFETCH_AHEAD]);
		out[c] = dot_f32_impl(q, v[c], n);
	}
}

/*
 * Prefetch the first lines of the next code in a batch.  Codes are short
 * (a 1536-bit code is three cache lines), so a few lines cover most of them.
 */
static inline void
prefetch_code(const void *p, int nbytes)
{
	const char *c = (const char *) p;

	for (int off = 0; off < nbytes && off < 256; off += 64)
		__builtin_prefetch(c + off);
}

/*
 * Hamming with VPOPCNTQ: XOR and count 64 bytes per instruction, two
 * accumulators for the long codes, one masked step for the tail.
 */
OMEN_AVX512_VPOPCNT_TARGET static inline uint64_t
hamming_vpopcnt_impl(const uint8_t *a, const uint8_t *b, int nbytes)
{
	__m512i		s0 = _mm512_setzero_si512();
	__m512i		s1 = _mm512_setzero_si512();
	__m512i		x;
	__mmask64	m;
	int			i = 0;

	for (; i + 128 <= nbytes; i += 128)
	{
		__m512i		x0 = _mm512_xor_si512(_mm512_loadu_si512(a + i),
										  _mm512_loadu_si512(b + i));
		__m512i		x1 = _mm512_xor_si512(_mm512_loadu_si512(a + i + 64),
										  _mm512_loadu_si512(b + i + 64));

		s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(x0));
		s1 = _mm512_add_epi64(s1, _mm512_popcnt_epi64(x1));
	}
	for (; i + 64 <= nbytes; i += 64)
	{
		x = _mm512_xor_si512(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));
		s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(x));
	}
	m = tail_mask64(nbytes - i);
	x = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, a + i),
						 _mm512_maskz_loadu_epi8(m, b + i));
	s1 = _mm512_add_epi64(s1, _mm512_popcnt_epi64(x));

	return (uint64_t) _mm512_reduce_add_epi64(_mm512_add_epi64(s0, s1));
}

OMEN_AVX512_VPOPCNT_TARGET static uint64_t
avx512_hamming_vpopcnt(const uint8_t *a, const uint8_t *b, int nbytes)
{
	return hamming_vpopcnt_impl(a, b, nbytes);
}

OMEN_AVX512_VPOPCNT_TARGET static void
avx512_hamming_batch_vpopcnt(const uint8_t *q, const uint8_t *const *v,
							 int count, int nbytes, uint64_t *out)
{
	for (int c = 0; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
			prefetch_code(v[c + OMEN_PREFETCH_AHEAD], nbytes);
		out[c] = hamming_vpopcnt_impl(q, v[c], nbytes);
	}
}

/*
 * Count the bits of one register by nibble lookup: VPSHUFB looks up the
 * count of each 4-bit half, VPSADBW adds the byte counts of each 64-bit lane.
 */
OMEN_AVX512_TARGET static inline __m512i
popcnt_lut_epi64(__m512i x)
{
	const __m512i lut = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3,
															 1, 2, 2, 3, 2, 3, 3, 4));
	const __m512i low4 = _mm512_set1_epi8(0x0f);
	__m512i		lo = _mm512_shuffle_epi8(lut, _mm512_and_si512(x, low4));
	__m512i		hi = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(x, 4), low4));

	return _mm512_sad_epu8(_mm512_add_epi8(lo, hi), _mm512_setzero_si512());
}

/* Hamming without VPOPCNTDQ: the same loop over popcnt_lut_epi64 */
OMEN_AVX512_TARGET static inline uint64_t
hamming_lut_impl(const uint8_t *a, const uint8_t *b, int nbytes)
{
	__m512i		s0 = _mm512_setzero_si512();
	__m512i		x;
	__mmask64	m;
	int			i = 0;

	for (; i + 64 <= nbytes; i += 64)
	{
		x = _mm512_xor_si512(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));
		s0 = _mm512_add_epi64(s0, popcnt_lut_epi64(x));
	}
	m = tail_mask64(nbytes - i);
	x = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, a + i),
						 _mm512_maskz_loadu_epi8(m, b + i));
	s0 = _mm512_add_epi64(s0, popcnt_lut_epi64(x));

	return (uint64_t) _mm512_reduce_add_epi64(s0);
}

OMEN_AVX512_TARGET static uint64_t
avx512_hamming_lut(const uint8_t *a, const uint8_t *b, int nbytes)
{
	return hamming_lut_impl(a, b, nbytes);
}

OMEN_AVX512_TARGET static void
avx512_hamming_batch_lut(const uint8_t *q, const uint8_t *const *v,
						 int count, int nbytes, uint64_t *out)
{
	for (int c = 0; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
			prefetch_code(v[c + OMEN_PREFETCH_AHEAD], nbytes);
		out[c] = hamming_lut_impl(q, v[c], nbytes);
	}
}

/*
 * Bit-plane AND-popcount with VPOPCNTQ: one pass over the code per plane,
 * 64 bytes per step, each plane's counts shifted left by the plane number
 * into one accumulator, so there is a single horizontal sum at the end.
 * The masked tail of the code is loaded once for all planes and done first:
 * on 128..1536-bit codes that took a fifth to a quarter off the time of
 * doing the tail last and loading it again for each plane.
 */
OMEN_AVX512_VPOPCNT_TARGET static inline uint32_t
andpop_planes_vpopcnt_impl(const uint8_t *code, const uint8_t *planes,
						   int nbytes, int nplanes)
{
	int			nblocks = nbytes & ~63;
	__mmask64	m = tail_mask64(nbytes - nblocks);
	__m512i		tail = _mm512_maskz_loadu_epi8(m, code + nblocks);
	__m512i		acc = _mm512_setzero_si512();

	for (int j = 0; j < nplanes; j++)
	{
		const uint8_t *p = planes + (size_t) j * nbytes;
		__m512i		x = _mm512_and_si512(tail, _mm512_maskz_loadu_epi8(m, p + nblocks));
		__m512i		s = _mm512_popcnt_epi64(x);

		for (int i = 0; i < nblocks; i += 64)
		{
			x = _mm512_and_si512(_mm512_loadu_si512(code + i), _mm512_loadu_si512(p + i));
			s = _mm512_add_epi64(s, _mm512_popcnt_epi64(x));
		}
		acc = _mm512_add_epi64(acc, _mm512_sll_epi64(s, _mm_cvtsi32_si128(j)));
	}
	return (uint32_t) _mm512_reduce_add_epi64(acc);
}

OMEN_AVX512_VPOPCNT_TARGET static uint32_t
avx512_andpop_planes_vpopcnt(const uint8_t *code, const uint8_t *planes,
							 int nbytes, int nplanes)
{
	return andpop_planes_vpopcnt_impl(code, planes, nbytes, nplanes);
}

OMEN_AVX512_VPOPCNT_TARGET static void
avx512_andpop_planes_batch_vpopcnt(const uint8_t *const *codes, int count,
								   const uint8_t *planes, int nbytes,
								   int nplanes, uint32_t *out)
{
	for (int c = 0; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
			prefetch_code(codes[c + OMEN_PREFETCH_AHEAD], nbytes);
		out[c] = andpop_planes_vpopcnt_impl(codes[c], planes, nbytes, nplanes);
	}
}

/* Bit-plane AND-popcount without VPOPCNTDQ: the same loop over popcnt_lut_epi64 */
OMEN_AVX512_TARGET static inline uint32_t
andpop_planes_lut_impl(const uint8_t *code, const uint8_t *planes,
					   int nbytes, int nplanes)
{
	int			nblocks = nbytes & ~63;
	__mmask64	m = tail_mask64(nbytes - nblocks);
	__m512i		tail = _mm512_maskz_loadu_epi8(m, code + nblocks);
	__m512i		acc = _mm512_setzero_si512();

	for (int j = 0; j < nplanes; j++)
	{
		const uint8_t *p = planes + (size_t) j * nbytes;
		__m512i		x = _mm512_and_si512(tail, _mm512_maskz_loadu_epi8(m, p + nblocks));
		__m512i		s = popcnt_lut_epi64(x);

		for (int i = 0; i < nblocks; i += 64)
		{
			x = _mm512_and_si512(_mm512_loadu_si512(code + i), _mm512_loadu_si512(p + i));
			s = _mm512_add_epi64(s, popcnt_lut_epi64(x));
		}
		acc = _mm512_add_epi64(acc, _mm512_sll_epi64(s, _mm_cvtsi32_si128(j)));
	}
	return (uint32_t) _mm512_reduce_add_epi64(acc);
}

OMEN_AVX512_TARGET static uint32_t
avx512_andpop_planes_lut(const uint8_t *code, const uint8_t *planes,
						 int nbytes, int nplanes)
{
	return andpop_planes_lut_impl(code, planes, nbytes, nplanes);
}

OMEN_AVX512_TARGET static void
avx512_andpop_planes_batch_lut(const uint8_t *const *codes, int count,
							   const uint8_t *planes, int nbytes, int nplanes,
							   uint32_t *out)
{
	for (int c = 0; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
			prefetch_code(codes[c + OMEN_PREFETCH_AHEAD], nbytes);
		out[c] = andpop_planes_lut_impl(codes[c], planes, nbytes, nplanes);
	}
}

/*
 * Half -> float, 16 per VCVTPH2PS, exact (NaNs are made quiet with their
 * payload kept, like the scalar reference).  The last 0..15 halves are one
 * masked load and one masked store.
 */
OMEN_AVX512_TARGET static void
avx512_f16_to_f32(const uint16_t *in, float *out, int n)
{
	__mmask16	m;
	int			i = 0;

	for (; i + 32 <= n; i += 32)
	{
		__m512		x0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (in + i)));
		__m512		x1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (in + i + 16)));

		_mm512_storeu_ps(out + i, x0);
		_mm512_storeu_ps(out + i + 16, x1);
	}
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(out + i,
						 _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (in + i))));
	m = tail_mask16(n - i);
	_mm512_mask_storeu_ps(out + i, m,
						  _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, in + i)));
}

/*
 * Sign-extend 32 int8 values (the first "take" of them when masked) to
 * int16.  Working on int16 makes the products exact for the whole int8 range
 * including -128, which the unsigned-by-signed VPDPBUSD would not be without
 * a bias correction.
 */
OMEN_AVX512_TARGET static inline __m512i
load_i8_as_i16(const int8_t *p)
{
	return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *) p));
}

OMEN_AVX512_TARGET static inline __m512i
load_i8_as_i16_masked(const int8_t *p, __mmask32 m)
{
	return _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, p));
}

/* int8 dot with VNNI: VPDPWSSD multiplies and accumulates in one step */
OMEN_AVX512_VNNI_TARGET static inline int32_t
dot_i8_vnni_impl(const int8_t *a, const int8_t *b, int n)
{
	__m512i		s0 = _mm512_setzero_si512();
	__m512i		s1 = _mm512_setzero_si512();
	__mmask32	m;
	int			i = 0;

	for (; i + 64 <= n; i += 64)
	{
		s0 = _mm512_dpwssd_epi32(s0, load_i8_as_i16(a + i), load_i8_as_i16(b + i));
		s1 = _mm512_dpwssd_epi32(s1, load_i8_as_i16(a + i + 32),
								 load_i8_as_i16(b + i + 32));
	}
	for (; i + 32 <= n; i += 32)
		s0 = _mm512_dpwssd_epi32(s0, load_i8_as_i16(a + i), load_i8_as_i16(b + i));
	m = tail_mask32(n - i);
	s1 = _mm512_dpwssd_epi32(s1, load_i8_as_i16_masked(a + i, m),
							 load_i8_as_i16_masked(b + i, m));

	return (int32_t) _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
}

OMEN_AVX512_VNNI_TARGET static int32_t
avx512_dot_i8_vnni(const int8_t *a, const int8_t *b, int n)
{
	return dot_i8_vnni_impl(a, b, n);
}

OMEN_AVX512_VNNI_TARGET static void
avx512_dot_i8_batch_vnni(const int8_t *q, const int8_t *const *v, int count,
						 int n, int32_t *out)
{
	for (int c = 0; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
			prefetch_code(v[c + OMEN_PREFETCH_AHEAD], n);
		out[c] = dot_i8_vnni_impl(q, v[c], n);
	}
}

/* int8 dot without VNNI: VPMADDWD then VPADDD, same exactness */
OMEN_AVX512_TARGET static inline int32_t
dot_i8_madd_impl(const int8_t *a, const int8_t *b, int n)
{
	__m512i		s0 = _mm512_setzero_si512();
	__m512i		s1 = _mm512_setzero_si512();
	__mmask32	m;
	int			i = 0;

	for (; i + 64 <= n; i += 64)
	{
		s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(load_i8_as_i16(a + i),
													load_i8_as_i16(b + i)));
		s1 = _mm512_add_epi32(s1, _mm512_madd_epi16(load_i8_as_i16(a + i + 32),
													load_i8_as_i16(b + i + 32)));
	}
	for (; i + 32 <= n; i += 32)
		s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(load_i8_as_i16(a + i),
													load_i8_as_i16(b + i)));
	m = tail_mask32(n - i);
	s1 = _mm512_add_epi32(s1, _mm512_madd_epi16(load_i8_as_i16_masked(a + i, m),
												load_i8_as_i16_masked(b + i, m)));

	return (int32_t) _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
}

OMEN_AVX512_TARGET static int32_t
avx512_dot_i8_madd(const int8_t *a, const int8_t *b, int n)
{
	return dot_i8_madd_impl(a, b, n);
}

OMEN_AVX512_TARGET static void
avx512_dot_i8_batch_madd(const int8_t *q, const int8_t *const *v, int count,
						 int n, int32_t *out)
{
	for (int c = 0; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
			prefetch_code(v[c + OMEN_PREFETCH_AHEAD], n);
		out[c] = dot_i8_madd_impl(q, v[c], n);
	}
}

/*
 * Fill in the AVX-512 kernel table, choosing the popcount and int8 variants
 * by what the CPU has.  Only stores pointers, so it is safe on any CPU; it
 * returns 1 to say this build has AVX-512 kernels.
 */
int
omen_fill_kernels_avx512(OmenKernels *k, int have_vpopcntdq, int have_vnni)
{
	k->name = "avx512";
	k->l2sq_f32 = avx512_l2sq_f32;
	k->dot_f32 = avx512_dot_f32;
	k->l1_f32 = avx512_l1_f32;
	k->normsq_f32 = avx512_normsq_f32;
	k->l2sq_f32_batch = avx512_l2sq_f32_batch;
	k->dot_f32_batch = avx512_dot_f32_batch;
	k->f16_to_f32 = avx512_f16_to_f32;

	if (have_vpopcntdq)
	{
		k->hamming = avx512_hamming_vpopcnt;
		k->hamming_batch = avx512_hamming_batch_vpopcnt;
		k->andpop_planes = avx512_andpop_planes_vpopcnt;
		k->andpop_planes_batch = avx512_andpop_planes_batch_vpopcnt;
	}
	else
	{
		k->hamming = avx512_hamming_lut;
		k->hamming_batch = avx512_hamming_batch_lut;
		k->andpop_planes = avx512_andpop_planes_lut;
		k->andpop_planes_batch = avx512_andpop_planes_batch_lut;
	}

	if (have_vnni)
	{
		k->dot_i8 = avx512_dot_i8_vnni;
		k->dot_i8_batch = avx512_dot_i8_batch_vnni;
	}
	else
	{
		k->dot_i8 = avx512_dot_i8_madd;
		k->dot_i8_batch = avx512_dot_i8_batch_madd;
	}
	return 1;
}

#elif defined(__x86_64__) || defined(__i386__)

/* Compiler too old for the AVX-512 intrinsics: no kernels, see distance.c */
extern int	omen_fill_kernels_avx512(OmenKernels *k, int have_vpopcntdq,
									 int have_vnni);

int
omen_fill_kernels_avx512(OmenKernels *k, int have_vpopcntdq, int have_vnni)
{
	(void) k;
	(void) have_vpopcntdq;
	(void) have_vnni;
	return 0;
}

#else							/* not x86 */

/* ISO C wants at least one declaration in a translation unit */
typedef int omen_distance_avx512_unused;

#endif
