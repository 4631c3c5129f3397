/*-------------------------------------------------------------------------
 *
 * distance_avx2.c
 *	  AVX2 + FMA + POPCNT distance kernels, and an F16C half -> float
 *	  conversion.
 *
 * Every function here carries a target attribute instead of the file being
 * compiled with -mavx2: the shared library must load on any x86-64, and only
 * the dispatcher in distance.c, after checking the CPU, may call into this
 * code.  Nothing in this file may therefore run before that check, which is
 * why the only external entry point just fills in a table of pointers.
 *
 * The float kernels keep several independent accumulators so that the
 * FMA latency (4 cycles, 2 per cycle on most cores) is hidden; the loads are
 * unaligned because vectors live at arbitrary offsets in index pages.  Tails
 * shorter than one register are done in scalar code, which costs little for
 * the dimensions that matter.
 *
 * The results of the float kernels differ from the scalar reference in the
 * last bits (different summation order, float instead of double
 * accumulation).  Integer kernels are exact.
 *
 * f16_to_f32 needs F16C, which is not part of the AVX2 level: it has its own
 * target attribute, and distance.c replaces it by the scalar conversion on a
 * CPU that has AVX2 but not F16C.
 *
 * On non-x86 platforms this file compiles to nothing.
 *
 * IDENTIFICATION
 *	  src/distance_avx2.c
 *
 *-------------------------------------------------------------------------
 */
#include "distance.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#define OMEN_AVX2_TARGET __attribute__((target("avx2,fma,popcnt")))
#define OMEN_AVX2_F16C_TARGET __attribute__((target("avx2,fma,f16c")))

/* How far ahead, in vectors, the batched kernels prefetch */
#define OMEN_PREFETCH_AHEAD 1

/* The only entry point; see distance.c */
extern void omen_fill_kernels_avx2(OmenKernels *k);

/* Sum of the eight floats of a register */
OMEN_AVX2_TARGET static inline float
hsum_ps(__m256 v)
{
	__m128		lo = _mm256_castps256_ps128(v);
	__m128		hi = _mm256_extractf128_ps(v, 1);

	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
}

/* Sum of the eight int32 of a register */
OMEN_AVX2_TARGET static inline int32_t
hsum_epi32(__m256i v)
{
	__m128i		lo = _mm256_castsi256_si128(v);
	__m128i		hi = _mm256_extracti128_si256(v, 1);

	lo = _mm_add_epi32(lo, hi);
	lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, _MM_SHUFFLE(1, 0, 3, 2)));
	lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, _MM_SHUFFLE(2, 3, 0, 1)));
	return (int32_t) _mm_cvtsi128_si32(lo);
}

/* Sum of the four uint64 of a register */
OMEN_AVX2_TARGET static inline uint64_t
hsum_epi64(__m256i v)
{
	__m128i		lo = _mm256_castsi256_si128(v);
	__m128i		hi = _mm256_extracti128_si256(v, 1);
	uint64_t	r[2];

	lo = _mm_add_epi64(lo, hi);
	_mm_storeu_si128((__m128i *) r, lo);
	return r[0] + r[1];
}

/*
 * Squared L2.  Four accumulators of eight lanes (32 floats per iteration)
 * keep the FMA units busy; a single-register loop and a scalar loop finish.
 */
OMEN_AVX2_TARGET static inline float
l2sq_f32_impl(const float *a, const float *b, int n)
{
	__m256		s0 = _mm256_setzero_ps();
	__m256		s1 = _mm256_setzero_ps();
	__m256		s2 = _mm256_setzero_ps();
	__m256		s3 = _mm256_setzero_ps();
	float		tail = 0.0f;
	int			i = 0;

	for (; i + 32 <= n; i += 32)
	{
		__m256		d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
		__m256		d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
		__m256		d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
		__m256		d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));

		s0 = _mm256_fmadd_ps(d0, d0, s0);
		s1 = _mm256_fmadd_ps(d1, d1, s1);
		s2 = _mm256_fmadd_ps(d2, d2, s2);
		s3 = _mm256_fmadd_ps(d3, d3, s3);
	}
	for (; i + 8 <= n; i += 8)
	{
		__m256		d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));

		s0 = _mm256_fmadd_ps(d, d, s0);
	}
	for (; i < n; i++)
	{
		float		d = a[i] - b[i];

		tail += d * d;
	}
	s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
	return hsum_ps(s0) + tail;
}

OMEN_AVX2_TARGET static float
avx2_l2sq_f32(const float *a, const float *b, int n)
{
	return l2sq_f32_impl(a, b, n);
}

/* Inner product, same structure as l2sq */
OMEN_AVX2_TARGET static inline float
dot_f32_impl(const float *a, const float *b, int n)
{
	__m256		s0 = _mm256_setzero_ps();
	__m256		s1 = _mm256_setzero_ps();
	__m256		s2 = _mm256_setzero_ps();
	__m256		s3 = _mm256_setzero_ps();
	float		tail = 0.0f;
	int			i = 0;

	for (; i + 32 <= n; i += 32)
	{
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
		s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
		s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
	for (; i < n; i++)
		tail += a[i] * b[i];
	s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
	return hsum_ps(s0) + tail;
}

OMEN_AVX2_TARGET static float
avx2_dot_f32(const float *a, const float *b, int n)
{
	return dot_f32_impl(a, b, n);
}

/*
 * L1: the absolute value is taken by clearing the sign bit (andnot with
 * -0.0f), which also keeps NaNs NaN.
 */
OMEN_AVX2_TARGET static float
avx2_l1_f32(const float *a, const float *b, int n)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256		s0 = _mm256_setzero_ps();
	__m256		s1 = _mm256_setzero_ps();
	__m256		s2 = _mm256_setzero_ps();
	__m256		s3 = _mm256_setzero_ps();
	float		tail = 0.0f;
	int			i = 0;

	for (; i + 32 <= n; i += 32)
	{
		__m256		d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
		__m256		d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
		__m256		d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
		__m256		d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));

		s0 = _mm256_add_ps(s0, _mm256_andnot_ps(sign, d0));
		s1 = _mm256_add_ps(s1, _mm256_andnot_ps(sign, d1));
		s2 = _mm256_add_ps(s2, _mm256_andnot_ps(sign, d2));
		s3 = _mm256_add_ps(s3, _mm256_andnot_ps(sign, d3));
	}
	for (; i + 8 <= n; i += 8)
	{
		__m256		d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));

		s0 = _mm256_add_ps(s0, _mm256_andnot_ps(sign, d));
	}
	for (; i < n; i++)
		tail += __builtin_fabsf(a[i] - b[i]);
	s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
	return hsum_ps(s0) + tail;
}

/* Squared norm: a dot product with itself, loading each element once */
OMEN_AVX2_TARGET static float
avx2_normsq_f32(const float *a, int n)
{
	__m256		s0 = _mm256_setzero_ps();
	__m256		s1 = _mm256_setzero_ps();
	__m256		s2 = _mm256_setzero_ps();
	__m256		s3 = _mm256_setzero_ps();
	float		tail = 0.0f;
	int			i = 0;

	for (; i + 32 <= n; i += 32)
	{
		__m256		x0 = _mm256_loadu_ps(a + i);
		__m256		x1 = _mm256_loadu_ps(a + i + 8);
		__m256		x2 = _mm256_loadu_ps(a + i + 16);
		__m256		x3 = _mm256_loadu_ps(a + i + 24);

		s0 = _mm256_fmadd_ps(x0, x0, s0);
		s1 = _mm256_fmadd_ps(x1, x1, s1);
		s2 = _mm256_fmadd_ps(x2, x2, s2);
		s3 = _mm256_fmadd_ps(x3, x3, s3);
	}
	for (; i + 8 <= n; i += 8)
	{
		__m256		x = _mm256_loadu_ps(a + i);

		s0 = _mm256_fmadd_ps(x, x, s0);
	}
	for (; i < n; i++)
		tail += a[i] * a[i];
	s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
	return hsum_ps(s0) + tail;
}

/*
 * Hamming distance.  Blocks of 32 bytes use the nibble lookup popcount
 * (pshufb on each 4-bit half, then psadbw to add the byte counts into 64-bit
 * lanes), which beats four scalar POPCNTs per block; shorter codes and the
 * remainder use 64-bit POPCNT, then single bytes.
 */
OMEN_AVX2_TARGET static inline uint64_t
hamming_impl(const uint8_t *a, const uint8_t *b, int nbytes)
{
	uint64_t	count = 0;
	int			i = 0;

	if (nbytes >= 64)
	{
		const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3,
											 1, 2, 2, 3, 2, 3, 3, 4,
											 0, 1, 1, 2, 1, 2, 2, 3,
											 1, 2, 2, 3, 2, 3, 3, 4);
		const __m256i low4 = _mm256_set1_epi8(0x0f);
		__m256i		acc = _mm256_setzero_si256();

		for (; i + 32 <= nbytes; i += 32)
		{
			__m256i		x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *) (a + i)),
											 _mm256_loadu_si256((const __m256i *) (b + i)));
			__m256i		lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low4));
			__m256i		hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low4));

			acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_add_epi8(lo, hi),
														_mm256_setzero_si256()));
		}
		count = hsum_epi64(acc);
	}
	for (; i + 8 <= nbytes; i += 8)
	{
		uint64_t	x,
					y;

		__builtin_memcpy(&x, a + i, 8);
		__builtin_memcpy(&y, b + i, 8);
		count += (uint64_t) __builtin_popcountll(x ^ y);
	}
	for (; i < nbytes; i++)
		count += (uint64_t) __builtin_popcount((unsigned) (a[i] ^ b[i]));
	return count;
}

OMEN_AVX2_TARGET static uint64_t
avx2_hamming(const uint8_t *a, const uint8_t *b, int nbytes)
{
	return hamming_impl(a, b, nbytes);
}

/*
 * int8 inner product, exact: sign-extend 16 values to int16, then
 * vpmaddwd multiplies pairs and adds adjacent products into int32 (at most
 * 2 * 128 * 128 = 32768 per lane per step, far from overflow).
 */
OMEN_AVX2_TARGET static inline int32_t
dot_i8_impl(const int8_t *a, const int8_t *b, int n)
{
	__m256i		s0 = _mm256_setzero_si256();
	__m256i		s1 = _mm256_setzero_si256();
	int32_t		tail = 0;
	int			i = 0;

	for (; i + 32 <= n; i += 32)
	{
		__m256i		a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) (a + i)));
		__m256i		b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) (b + i)));
		__m256i		a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) (a + i + 16)));
		__m256i		b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) (b + i + 16)));

		s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(a0, b0));
		s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(a1, b1));
	}
	for (; i + 16 <= n; i += 16)
	{
		__m256i		a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) (a + i)));
		__m256i		b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) (b + i)));

		s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(a0, b0));
	}
	for (; i < n; i++)
		tail += (int32_t) a[i] * (int32_t) b[i];
	return hsum_epi32(_mm256_add_epi32(s0, s1)) + tail;
}

OMEN_AVX2_TARGET static int32_t
avx2_dot_i8(const int8_t *a, const int8_t *b, int n)
{
	return dot_i8_impl(a, b, n);
}

/*
 * Batched squared L2.  Vectors are taken four at a time so that each query
 * load is shared by four FMAs and the four chains are independent; each
 * vector gets two accumulators, for eight chains in all.  While working on
 * one group, the corresponding cache line of the next group is prefetched:
 * the vectors are scattered over index pages, so the hardware prefetcher
 * cannot guess where the next one starts.
 */
OMEN_AVX2_TARGET static void
avx2_l2sq_f32_batch(const float *q, const float *const *v, int count, int n,
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
		__m256		s00 = _mm256_setzero_ps(),
					s01 = _mm256_setzero_ps();
		__m256		s10 = _mm256_setzero_ps(),
					s11 = _mm256_setzero_ps();
		__m256		s20 = _mm256_setzero_ps(),
					s21 = _mm256_setzero_ps();
		__m256		s30 = _mm256_setzero_ps(),
					s31 = _mm256_setzero_ps();
		float		t0 = 0.0f,
					t1 = 0.0f,
					t2 = 0.0f,
					t3 = 0.0f;
		int			i = 0;

		for (; i + 16 <= n; i += 16)
		{
			__m256		q0 = _mm256_loadu_ps(q + i);
			__m256		q1 = _mm256_loadu_ps(q + i + 8);
			__m256		d;

			__builtin_prefetch(n0 + i);
			__builtin_prefetch(n1 + i);
			__builtin_prefetch(n2 + i);
			__builtin_prefetch(n3 + i);
			d = _mm256_sub_ps(_mm256_loadu_ps(p0 + i), q0);
			s00 = _mm256_fmadd_ps(d, d, s00);
			d = _mm256_sub_ps(_mm256_loadu_ps(p0 + i + 8), q1);
			s01 = _mm256_fmadd_ps(d, d, s01);
			d = _mm256_sub_ps(_mm256_loadu_ps(p1 + i), q0);
			s10 = _mm256_fmadd_ps(d, d, s10);
			d = _mm256_sub_ps(_mm256_loadu_ps(p1 + i + 8), q1);
			s11 = _mm256_fmadd_ps(d, d, s11);
			d = _mm256_sub_ps(_mm256_loadu_ps(p2 + i), q0);
			s20 = _mm256_fmadd_ps(d, d, s20);
			d = _mm256_sub_ps(_mm256_loadu_ps(p2 + i + 8), q1);
			s21 = _mm256_fmadd_ps(d, d, s21);
			d = _mm256_sub_ps(_mm256_loadu_ps(p3 + i), q0);
			s30 = _mm256_fmadd_ps(d, d, s30);
			d = _mm256_sub_ps(_mm256_loadu_ps(p3 + i + 8), q1);
			s31 = _mm256_fmadd_ps(d, d, s31);
		}
		for (; i + 8 <= n; i += 8)
		{
			__m256		q0 = _mm256_loadu_ps(q + i);
			__m256		d;

			d = _mm256_sub_ps(_mm256_loadu_ps(p0 + i), q0);
			s00 = _mm256_fmadd_ps(d, d, s00);
			d = _mm256_sub_ps(_mm256_loadu_ps(p1 + i), q0);
			s10 = _mm256_fmadd_ps(d, d, s10);
			d = _mm256_sub_ps(_mm256_loadu_ps(p2 + i), q0);
			s20 = _mm256_fmadd_ps(d, d, s20);
			d = _mm256_sub_ps(_mm256_loadu_ps(p3 + i), q0);
			s30 = _mm256_fmadd_ps(d, d, s30);
		}
		for (; i < n; i++)
		{
			float		d0 = p0[i] - q[i];
			float		d1 = p1[i] - q[i];
			float		d2 = p2[i] - q[i];
			float		d3 = p3[i] - q[i];

			t0 += d0 * d0;
			t1 += d1 * d1;
			t2 += d2 * d2;
			t3 += d3 * d3;
		}
		out[c] = hsum_ps(_mm256_add_ps(s00, s01)) + t0;
		out[c + 1] = hsum_ps(_mm256_add_ps(s10, s11)) + t1;
		out[c + 2] = hsum_ps(_mm256_add_ps(s20, s21)) + t2;
		out[c + 3] = hsum_ps(_mm256_add_ps(s30, s31)) + t3;
	}
	for (; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
			__builtin_prefetch(v[c + OMEN_PREFETCH_AHEAD]);
		out[c] = l2sq_f32_impl(q, v[c], n);
	}
}

/* Batched inner product; the same grouping and prefetching as l2sq */
OMEN_AVX2_TARGET static void
avx2_dot_f32_batch(const float *q, const float *const *v, int count, int n,
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
		__m256		s00 = _mm256_setzero_ps(),
					s01 = _mm256_setzero_ps();
		__m256		s10 = _mm256_setzero_ps(),
					s11 = _mm256_setzero_ps();
		__m256		s20 = _mm256_setzero_ps(),
					s21 = _mm256_setzero_ps();
		__m256		s30 = _mm256_setzero_ps(),
					s31 = _mm256_setzero_ps();
		float		t0 = 0.0f,
					t1 = 0.0f,
					t2 = 0.0f,
					t3 = 0.0f;
		int			i = 0;

		for (; i + 16 <= n; i += 16)
		{
			__m256		q0 = _mm256_loadu_ps(q + i);
			__m256		q1 = _mm256_loadu_ps(q + i + 8);

			__builtin_prefetch(n0 + i);
			__builtin_prefetch(n1 + i);
			__builtin_prefetch(n2 + i);
			__builtin_prefetch(n3 + i);
			s00 = _mm256_fmadd_ps(_mm256_loadu_ps(p0 + i), q0, s00);
			s01 = _mm256_fmadd_ps(_mm256_loadu_ps(p0 + i + 8), q1, s01);
			s10 = _mm256_fmadd_ps(_mm256_loadu_ps(p1 + i), q0, s10);
			s11 = _mm256_fmadd_ps(_mm256_loadu_ps(p1 + i + 8), q1, s11);
			s20 = _mm256_fmadd_ps(_mm256_loadu_ps(p2 + i), q0, s20);
			s21 = _mm256_fmadd_ps(_mm256_loadu_ps(p2 + i + 8), q1, s21);
			s30 = _mm256_fmadd_ps(_mm256_loadu_ps(p3 + i), q0, s30);
			s31 = _mm256_fmadd_ps(_mm256_loadu_ps(p3 + i + 8), q1, s31);
		}
		for (; i + 8 <= n; i += 8)
		{
			__m256		q0 = _mm256_loadu_ps(q + i);

			s00 = _mm256_fmadd_ps(_mm256_loadu_ps(p0 + i), q0, s00);
			s10 = _mm256_fmadd_ps(_mm256_loadu_ps(p1 + i), q0, s10);
			s20 = _mm256_fmadd_ps(_mm256_loadu_ps(p2 + i), q0, s20);
			s30 = _mm256_fmadd_ps(_mm256_loadu_ps(p3 + i), q0, s30);
		}
		for (; i < n; i++)
		{
			t0 += p0[i] * q[i];
			t1 += p1[i] * q[i];
			t2 += p2[i] * q[i];
			t3 += p3[i] * q[i];
		}
		out[c] = hsum_ps(_mm256_add_ps(s00, s01)) + t0;
		out[c + 1] = hsum_ps(_mm256_add_ps(s10, s11)) + t1;
		out[c + 2] = hsum_ps(_mm256_add_ps(s20, s21)) + t2;
		out[c + 3] = hsum_ps(_mm256_add_ps(s30, s31)) + t3;
	}
	for (; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
			__builtin_prefetch(v[c + OMEN_PREFETCH_AHEAD]);
		out[c] = dot_f32_impl(q, v[c], n);
	}
}

/*
 * Batched Hamming.  Codes are short (a 1536-bit code is 192 bytes, three
 * cache lines), so the win is in inlining the kernel and prefetching the
 * whole next code, not in sharing query loads.
 */
OMEN_AVX2_TARGET static void
avx2_hamming_batch(const uint8_t *q, const uint8_t *const *v, int count,
				   int nbytes, uint64_t *out)
{
	for (int c = 0; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
		{
			const uint8_t *next = v[c + OMEN_PREFETCH_AHEAD];

			for (int off = 0; off < nbytes && off < 256; off += 64)
				__builtin_prefetch(next + off);
		}
		out[c] = hamming_impl(q, v[c], nbytes);
	}
}

/* Batched int8 inner product, inlined kernel plus prefetch of the next */
OMEN_AVX2_TARGET static void
avx2_dot_i8_batch(const int8_t *q, const int8_t *const *v, int count, int n,
				  int32_t *out)
{
	for (int c = 0; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
		{
			const int8_t *next = v[c + OMEN_PREFETCH_AHEAD];

			for (int off = 0; off < n && off < 256; off += 64)
				__builtin_prefetch(next + off);
		}
		out[c] = dot_i8_impl(q, v[c], n);
	}
}

/*
 * Bit-plane AND-popcount.  The whole 32-byte blocks go plane by plane
 * through the nibble lookup (as in hamming_impl), each plane's 64-bit lane
 * counts shifted left by the plane number into one accumulator, so there is
 * a single horizontal sum.  The last 0..31 bytes go word by word with
 * 64-bit POPCNT, each code word loaded once for all planes.  POPCNT
 * throughout was half as fast on 768- and 1536-bit codes; this split beat
 * hamming_impl's (lookup from 64 bytes, POPCNT plane by plane below) by a
 * quarter on 128-bit codes and was no slower on long ones.
 */
OMEN_AVX2_TARGET static inline uint32_t
andpop_planes_impl(const uint8_t *code, const uint8_t *planes, int nbytes,
				   int nplanes)
{
	int			nblocks = nbytes & ~31;
	uint64_t	sum = 0;
	int			i;

	if (nblocks > 0)
	{
		const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3,
											 1, 2, 2, 3, 2, 3, 3, 4,
											 0, 1, 1, 2, 1, 2, 2, 3,
											 1, 2, 2, 3, 2, 3, 3, 4);
		const __m256i low4 = _mm256_set1_epi8(0x0f);
		__m256i		acc = _mm256_setzero_si256();

		for (int j = 0; j < nplanes; j++)
		{
			const uint8_t *p = planes + (size_t) j * nbytes;
			__m256i		s = _mm256_setzero_si256();

			for (i = 0; i < nblocks; i += 32)
			{
				__m256i		x = _mm256_and_si256(_mm256_loadu_si256((const __m256i *) (code + i)),
												 _mm256_loadu_si256((const __m256i *) (p + i)));
				__m256i		lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low4));
				__m256i		hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low4));

				s = _mm256_add_epi64(s, _mm256_sad_epu8(_mm256_add_epi8(lo, hi),
														_mm256_setzero_si256()));
			}
			acc = _mm256_add_epi64(acc, _mm256_sll_epi64(s, _mm_cvtsi32_si128(j)));
		}
		sum = hsum_epi64(acc);
	}
	for (i = nblocks; i + 8 <= nbytes; i += 8)
	{
		uint64_t	x;

		__builtin_memcpy(&x, code + i, 8);
		for (int j = 0; j < nplanes; j++)
		{
			uint64_t	y;

			__builtin_memcpy(&y, planes + (size_t) j * nbytes + i, 8);
			sum += (uint64_t) __builtin_popcountll(x & y) << j;
		}
	}
	for (; i < nbytes; i++)
	{
		for (int j = 0; j < nplanes; j++)
		{
			unsigned	y = planes[(size_t) j * nbytes + i];

			sum += (uint64_t) __builtin_popcount((unsigned) code[i] & y) << j;
		}
	}
	return (uint32_t) sum;
}

OMEN_AVX2_TARGET static uint32_t
avx2_andpop_planes(const uint8_t *code, const uint8_t *planes, int nbytes,
				   int nplanes)
{
	return andpop_planes_impl(code, planes, nbytes, nplanes);
}

/* Batched bit-plane AND-popcount, inlined kernel plus prefetch of the next */
OMEN_AVX2_TARGET static void
avx2_andpop_planes_batch(const uint8_t *const *codes, int count,
						 const uint8_t *planes, int nbytes, int nplanes,
						 uint32_t *out)
{
	for (int c = 0; c < count; c++)
	{
		if (c + OMEN_PREFETCH_AHEAD < count)
		{
			const uint8_t *next = codes[c + OMEN_PREFETCH_AHEAD];

			for (int off = 0; off < nbytes && off < 256; off += 64)
				__builtin_prefetch(next + off);
		}
		out[c] = andpop_planes_impl(codes[c], planes, nbytes, nplanes);
	}
}

/*
 * Half -> float with VCVTPH2PS, which is exact (and quiets NaNs, keeping the
 * payload, like the scalar reference).  The last 0..7 halves go through a
 * zero-padded buffer, so that the tail is converted by the same instruction
 * and nothing is read or written past the ends.
 */
OMEN_AVX2_F16C_TARGET static void
avx2_f16_to_f32(const uint16_t *in, float *out, int n)
{
	int			i = 0;

	for (; i + 16 <= n; i += 16)
	{
		__m256		x0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (in + i)));
		__m256		x1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (in + i + 8)));

		_mm256_storeu_ps(out + i, x0);
		_mm256_storeu_ps(out + i + 8, x1);
	}
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(out + i,
						 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (in + i))));
	if (i < n)
	{
		uint16_t	h[8] = {0};
		float		f[8];

		__builtin_memcpy(h, in + i, (size_t) (n - i) * sizeof(uint16_t));
		_mm256_storeu_ps(f, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) h)));
		__builtin_memcpy(out + i, f, (size_t) (n - i) * sizeof(float));
	}
}

/*
 * Fill in the AVX2 kernel table.  Only stores pointers, so it is safe to call
 * on any CPU; distance.c calls it only once AVX2/FMA/POPCNT are known to be
 * present, and puts the scalar f16_to_f32 in its place if F16C is not.
 */
void
omen_fill_kernels_avx2(OmenKernels *k)
{
	k->name = "avx2";
	k->l2sq_f32 = avx2_l2sq_f32;
	k->dot_f32 = avx2_dot_f32;
	k->l1_f32 = avx2_l1_f32;
	k->normsq_f32 = avx2_normsq_f32;
	k->hamming = avx2_hamming;
	k->dot_i8 = avx2_dot_i8;
	k->l2sq_f32_batch = avx2_l2sq_f32_batch;
	k->dot_f32_batch = avx2_dot_f32_batch;
	k->hamming_batch = avx2_hamming_batch;
	k->dot_i8_batch = avx2_dot_i8_batch;
	k->andpop_planes = avx2_andpop_planes;
	k->andpop_planes_batch = avx2_andpop_planes_batch;
	k->f16_to_f32 = avx2_f16_to_f32;	/* needs F16C, see above */
}

#else							/* not x86 */

/* ISO C wants at least one declaration in a translation unit */
typedef int omen_distance_avx2_unused;

#endif
