/*-------------------------------------------------------------------------
 *
 * kernels.c
 *	  Unit test of the distance kernels: every implementation the CPU can
 *	  run against an independent double-precision reference.
 *
 * The SIMD kernels are where an off-by-one in a tail, a wrong mask or a
 * missed lane would silently give wrong distances, so every kernel of every
 * level (and both variants of the AVX-512 Hamming, bit-plane and int8
 * kernels) is checked for every dimension from 0 to 300 and for a few large
 * ones, with misaligned pointers and with each input ending flush against an
 * inaccessible guard page, so that a kernel reading past the end of a vector
 * crashes here instead of in the server.  The bit-plane kernels are checked
 * for every plane count from 1 to 8, the half -> float conversion bit for
 * bit on all 65536 half values.  It also checks that NaN and Inf inputs come
 * out as non-finite results, and that OMEN_SIMD caps the level chosen by
 * omen_simd_init().
 *
 * Output: one "ok <level> <kernel>" or "not ok <level> <kernel>: <detail>"
 * line per check, "skip <level>: ..." for levels this CPU cannot run (or
 * that OMEN_SIMD excludes), and a final "kernels: N passed, N failed".
 * Exit status is 1 if anything failed.
 *
 * Plain C, no server needed: built by `make test/kernels`.
 *
 * IDENTIFICATION
 *	  test/kernels.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "distance.h"

#if defined(__x86_64__) || defined(__i386__)
/*
 * Not in distance.h on purpose (only the dispatcher should use it), but the
 * test uses it to build the AVX-512 tables without VPOPCNTDQ/VNNI, which a
 * CPU that has those extensions would otherwise never exercise.
 */
extern int	omen_fill_kernels_avx512(OmenKernels *k, int have_vpopcntdq,
									 int have_vnni);
#endif

/*
 * Float tolerance: a result passes if
 *		|got - ref| <= 1e-5 * bound + 1e-6
 * where ref is the sum computed in double and bound is the same sum over the
 * absolute values of the terms (for l2sq, l1 and normsq the terms are
 * non-negative so bound == ref; for dot it is sum |a_i * b_i|).  Summing n
 * terms in float in k independent chains has an error of at most about
 * (n/k) * 2^-24 * bound in the worst case and far less in practice; 1e-5
 * relative to the bound is loose enough for n = 16000 and tight enough to
 * catch a dropped or doubled element (which changes the sum by a whole term).
 */
#define REL_TOL 1e-5
#define ABS_TOL 1e-6

#define MAX_N		16000		/* largest dimension tested */
#define MAX_OFF		3			/* misalignment, in elements or bytes */
#define MAX_BATCH	10			/* largest batch tested */
#define NSLOTS		(2 + MAX_BATCH)

/* Dimensions tested: 0..300 and these */
static const int big_dims[] = {768, 1536, 3072, MAX_N};

/*
 * The bit-plane kernels read nplanes * nbytes bytes of planes, up to 8 times
 * the code, so their largest code is smaller; 8 planes of it fit in a slot.
 */
#define MAX_PLANES		8
#define MAX_PLANE_BYTES	(MAX_N * (int) sizeof(float) / MAX_PLANES)
static const int plane_big_dims[] = {768, 2048, MAX_PLANE_BYTES};

enum
{
	K_L2SQ,
	K_DOT,
	K_L1,
	K_NORMSQ,
	K_HAMMING,
	K_DOT_I8,
	K_L2SQ_BATCH,
	K_DOT_BATCH,
	K_HAMMING_BATCH,
	K_DOT_I8_BATCH,
	K_ANDPOP_PLANES,
	K_ANDPOP_PLANES_BATCH,
	K_F16_TO_F32,
	K_NKERNELS
};

static const char *const kernel_names[K_NKERNELS] = {
	"l2sq_f32", "dot_f32", "l1_f32", "normsq_f32", "hamming", "dot_i8",
	"l2sq_f32_batch", "dot_f32_batch", "hamming_batch", "dot_i8_batch",
	"andpop_planes", "andpop_planes_batch", "f16_to_f32"
};

static int	n_passed = 0;
static int	n_failed = 0;

/* First failure of the kernel being checked */
static char fail_detail[256];
static int	failed_now;

/*
 * If a kernel reads past its input it hits a guard page; report which kernel
 * it was, in the same format as other failures, instead of dying silently.
 * The message is prepared before each check so that the handler only has to
 * call write(), which is async-signal-safe.
 */
static char crash_msg[256];

static void
crash_handler(int sig)
{
	ssize_t		r;

	(void) sig;
	r = write(STDOUT_FILENO, crash_msg, strlen(crash_msg));
	(void) r;
	_exit(1);
}

static void
setup_crash_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = crash_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}

/* ------------------------------------------------------------------------
 * Deterministic random numbers (xorshift64, fixed seed)
 * ------------------------------------------------------------------------
 */
static uint64_t rng_state;

static void
rng_seed(uint64_t seed)
{
	rng_state = seed ? seed : 1;
}

static uint64_t
rng_next(void)
{
	uint64_t	x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

/* Uniform in [-scale, scale], 24 bits of randomness */
static float
rng_float(float scale)
{
	double		u = (double) (rng_next() >> 40) / (double) (1 << 24);

	return (float) ((2.0 * u - 1.0) * scale);
}

/* ------------------------------------------------------------------------
 * Guarded buffers: each slot ends at a PROT_NONE page, and data is placed
 * so that it ends exactly there (plus the requested misalignment), so any
 * read past the end of an input faults.
 * ------------------------------------------------------------------------
 */
static unsigned char *slot_end[NSLOTS];

static void
setup_slots(void)
{
	size_t		page = (size_t) sysconf(_SC_PAGESIZE);
	size_t		need = (size_t) MAX_N * sizeof(float) + 64;
	size_t		size = (need + page - 1) / page * page;

	for (int s = 0; s < NSLOTS; s++)
	{
		unsigned char *base = mmap(NULL, size + page, PROT_READ | PROT_WRITE,
								   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (base == MAP_FAILED || mprotect(base + size, page, PROT_NONE) != 0)
		{
			perror("mmap/mprotect");
			exit(2);
		}
		slot_end[s] = base + size;
	}
}

/*
 * Place nbytes of data in a slot so that it is followed by "gap" bytes and
 * then the guard page.  gap = 0 puts the last byte right before the guard.
 */
static void *
slot_place(int slot, size_t nbytes, size_t gap)
{
	return slot_end[slot] - nbytes - gap;
}

/* ------------------------------------------------------------------------
 * Independent reference implementations (double / exact integer)
 * ------------------------------------------------------------------------
 */
static void
ref_float(int kernel, const float *a, const float *b, int n,
		  double *ref, double *bound)
{
	double		s = 0.0,
				m = 0.0;

	for (int i = 0; i < n; i++)
	{
		double		x = a[i];
		double		y = (kernel == K_NORMSQ) ? 0.0 : b[i];
		double		t;

		switch (kernel)
		{
			case K_L2SQ:
			case K_L2SQ_BATCH:
				t = (x - y) * (x - y);
				break;
			case K_DOT:
			case K_DOT_BATCH:
				t = x * y;
				break;
			case K_L1:
				t = fabs(x - y);
				break;
			default:			/* K_NORMSQ */
				t = x * x;
				break;
		}
		s += t;
		m += fabs(t);
	}
	*ref = s;
	*bound = m;
}

static uint64_t
ref_hamming(const uint8_t *a, const uint8_t *b, int n)
{
	uint64_t	c = 0;

	for (int i = 0; i < n; i++)
		for (int bit = 0; bit < 8; bit++)
			c += ((a[i] ^ b[i]) >> bit) & 1;
	return c;
}

static int64_t
ref_dot_i8(const int8_t *a, const int8_t *b, int n)
{
	int64_t		s = 0;

	for (int i = 0; i < n; i++)
		s += (int64_t) a[i] * (int64_t) b[i];
	return s;
}

/*
 * What the bit-plane kernel stands for: the inner product of the 0/1 code
 * with the query whose value in each dimension is assembled from its bits in
 * the planes, dimension by dimension rather than by popcounts.
 */
static uint64_t
ref_andpop_planes(const uint8_t *code, const uint8_t *planes, int nbytes,
				  int nplanes)
{
	uint64_t	s = 0;

	for (int d = 0; d < nbytes * 8; d++)
	{
		unsigned	q = 0;

		if (((code[d / 8] >> (d % 8)) & 1) == 0)
			continue;
		for (int j = 0; j < nplanes; j++)
			q |= ((unsigned) (planes[(size_t) j * nbytes + d / 8] >> (d % 8)) & 1u) << j;
		s += q;
	}
	return s;
}

/*
 * IEEE binary16 by its definition, computed in double (every half value is
 * exact there and in float): (-1)^s * 2^(e-15) * (1 + m/1024) for normal
 * numbers, (-1)^s * 2^-14 * (m/1024) for subnormals, Inf and NaN at e = 31.
 */
static float
ref_f16_to_f32(uint16_t h)
{
	int			e = (h >> 10) & 0x1f;
	int			m = h & 0x3ff;
	double		v;

	if (e == 0x1f)
		v = m ? NAN : INFINITY;
	else if (e == 0)
		v = ldexp((double) m, -24);
	else
		v = ldexp((double) (m + 1024), e - 25);
	return (float) ((h & 0x8000) ? -v : v);
}

/* ------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------
 */
static void
fail(const char *fmt_detail)
{
	if (!failed_now)
	{
		failed_now = 1;
		snprintf(fail_detail, sizeof(fail_detail), "%s", fmt_detail);
	}
}

static int
is_float_kernel(int kernel)
{
	return kernel == K_L2SQ || kernel == K_DOT || kernel == K_L1 ||
		kernel == K_NORMSQ || kernel == K_L2SQ_BATCH || kernel == K_DOT_BATCH;
}

static int
is_batch_kernel(int kernel)
{
	return kernel == K_L2SQ_BATCH || kernel == K_DOT_BATCH ||
		kernel == K_HAMMING_BATCH || kernel == K_DOT_I8_BATCH ||
		kernel == K_ANDPOP_PLANES_BATCH;
}

static int
is_planes_kernel(int kernel)
{
	return kernel == K_ANDPOP_PLANES || kernel == K_ANDPOP_PLANES_BATCH;
}

/* Compare one float result with the reference; record a failure */
static void
check_float(float got, double ref, double bound, int n, int off, int idx)
{
	double		tol = REL_TOL * bound + ABS_TOL;
	char		buf[256];

	if (!(fabs((double) got - ref) <= tol))
	{
		snprintf(buf, sizeof(buf),
				 "n=%d off=%d vec=%d got=%.9g ref=%.9g tol=%.3g",
				 n, off, idx, (double) got, ref, tol);
		fail(buf);
	}
}

/* Run a float kernel (single or batched) and compare with the reference */
static void
trial_float(const OmenKernels *k, int kernel, int n, int off, float scale)
{
	size_t		bytes = (size_t) n * sizeof(float);
	float	   *a = slot_place(0, bytes, (size_t) off * sizeof(float));
	float	   *b = slot_place(1, bytes, (size_t) ((off + 1) % (MAX_OFF + 1)) * sizeof(float));
	double		ref,
				bound;

	for (int i = 0; i < n; i++)
	{
		a[i] = rng_float(scale);
		b[i] = rng_float(scale);
	}

	if (!is_batch_kernel(kernel))
	{
		float		got;

		switch (kernel)
		{
			case K_L2SQ:
				got = k->l2sq_f32(a, b, n);
				break;
			case K_DOT:
				got = k->dot_f32(a, b, n);
				break;
			case K_L1:
				got = k->l1_f32(a, b, n);
				break;
			default:
				got = k->normsq_f32(a, n);
				break;
		}
		ref_float(kernel, a, b, n, &ref, &bound);
		check_float(got, ref, bound, n, off, 0);
	}
	else
	{
		/* batch sizes 0..MAX_BATCH, so group-of-4 and remainder paths run */
		int			count = (n <= 300) ? n % (MAX_BATCH + 1) : 9;
		const float *vec[MAX_BATCH];
		float		out[MAX_BATCH + 1];
		const float sentinel = 12345.0f;

		for (int j = 0; j < count; j++)
		{
			float	   *p = slot_place(2 + j, bytes,
									   (size_t) ((off + j) % (MAX_OFF + 1)) * sizeof(float));

			for (int i = 0; i < n; i++)
				p[i] = rng_float(scale);
			vec[j] = p;
		}
		for (int j = 0; j <= MAX_BATCH; j++)
			out[j] = sentinel;

		if (kernel == K_L2SQ_BATCH)
			k->l2sq_f32_batch(a, vec, count, n, out);
		else
			k->dot_f32_batch(a, vec, count, n, out);

		for (int j = 0; j < count; j++)
		{
			ref_float(kernel, a, vec[j], n, &ref, &bound);
			check_float(out[j], ref, bound, n, off, j);
		}
		if (out[count] != sentinel)
		{
			char		buf[128];

			snprintf(buf, sizeof(buf), "n=%d count=%d: wrote past out[count-1]",
					 n, count);
			fail(buf);
		}
	}
}

/* Fill a byte buffer: random bytes, or a constant for the extreme cases */
static void
fill_bytes(uint8_t *p, int n, int fillmode)
{
	for (int i = 0; i < n; i++)
		p[i] = (fillmode < 0) ? (uint8_t) (rng_next() >> 56) : (uint8_t) fillmode;
}

/*
 * Run an integer kernel and compare exactly.  fill_a/fill_b: -1 for random
 * bytes, else a constant byte value (0x80 = -128 as int8, 0x7f = 127).
 */
static void
trial_int(const OmenKernels *k, int kernel, int n, int off, int fill_a, int fill_b)
{
	uint8_t    *a = slot_place(0, (size_t) n, (size_t) off);
	uint8_t    *b = slot_place(1, (size_t) n, (size_t) ((off + 1) % (MAX_OFF + 1)));
	char		buf[256];

	fill_bytes(a, n, fill_a);
	fill_bytes(b, n, fill_b);

	if (kernel == K_HAMMING)
	{
		uint64_t	got = k->hamming(a, b, n);
		uint64_t	ref = ref_hamming(a, b, n);

		if (got != ref)
		{
			snprintf(buf, sizeof(buf), "n=%d off=%d got=%llu ref=%llu", n, off,
					 (unsigned long long) got, (unsigned long long) ref);
			fail(buf);
		}
	}
	else if (kernel == K_DOT_I8)
	{
		int32_t		got = k->dot_i8((const int8_t *) a, (const int8_t *) b, n);
		int64_t		ref = ref_dot_i8((const int8_t *) a, (const int8_t *) b, n);

		if ((int64_t) got != ref)
		{
			snprintf(buf, sizeof(buf), "n=%d off=%d got=%ld ref=%lld", n, off,
					 (long) got, (long long) ref);
			fail(buf);
		}
	}
	else
	{
		int			count = (n <= 300) ? n % (MAX_BATCH + 1) : 9;
		const uint8_t *vec[MAX_BATCH];
		uint64_t	out_h[MAX_BATCH + 1];
		int32_t		out_i[MAX_BATCH + 1];

		for (int j = 0; j < count; j++)
		{
			uint8_t    *p = slot_place(2 + j, (size_t) n,
									   (size_t) ((off + j) % (MAX_OFF + 1)));

			fill_bytes(p, n, fill_b);
			vec[j] = p;
		}
		for (int j = 0; j <= MAX_BATCH; j++)
		{
			out_h[j] = 0xdeadbeef;
			out_i[j] = 0x5eadbeef;
		}

		if (kernel == K_HAMMING_BATCH)
			k->hamming_batch(a, vec, count, n, out_h);
		else
			k->dot_i8_batch((const int8_t *) a, (const int8_t *const *) vec,
							count, n, out_i);

		for (int j = 0; j < count; j++)
		{
			int64_t		got,
						ref;

			if (kernel == K_HAMMING_BATCH)
			{
				got = (int64_t) out_h[j];
				ref = (int64_t) ref_hamming(a, vec[j], n);
			}
			else
			{
				got = out_i[j];
				ref = ref_dot_i8((const int8_t *) a, (const int8_t *) vec[j], n);
			}
			if (got != ref)
			{
				snprintf(buf, sizeof(buf), "n=%d off=%d vec=%d got=%lld ref=%lld",
						 n, off, j, (long long) got, (long long) ref);
				fail(buf);
			}
		}
		if (out_h[count] != 0xdeadbeef || out_i[count] != 0x5eadbeef)
		{
			snprintf(buf, sizeof(buf), "n=%d count=%d: wrote past out[count-1]",
					 n, count);
			fail(buf);
		}
	}
}

/*
 * NaN/Inf must come out non-finite, wherever in the vector they sit (main
 * loop, single-register loop, tail).  b is kept finite and non-zero so that
 * Inf * b cannot turn into NaN-free zero and Inf - b stays infinite; the
 * only requirement is "not finite", as the index rejects such vectors.
 */
static void
trial_nonfinite(const OmenKernels *k, int kernel)
{
	static const int dims[] = {1, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 768, 1536};
	const float specials[] = {NAN, INFINITY, -INFINITY};
	char		buf[256];

	for (size_t di = 0; di < sizeof(dims) / sizeof(dims[0]); di++)
	{
		int			n = dims[di];
		int			positions[3];

		positions[0] = 0;
		positions[1] = n / 2;
		positions[2] = n - 1;

		for (int pi = 0; pi < 3; pi++)
		{
			for (int si = 0; si < 3; si++)
			{
				size_t		bytes = (size_t) n * sizeof(float);
				float	   *a = slot_place(0, bytes, 0);
				float	   *b = slot_place(1, bytes, sizeof(float));
				int			pos = positions[pi];
				float		got[MAX_BATCH];
				int			bad = 0;
				int			nres = 1;

				for (int i = 0; i < n; i++)
				{
					a[i] = rng_float(1.0f);
					b[i] = 0.5f + 0.5f * fabsf(rng_float(1.0f));
				}
				a[pos] = specials[si];

				switch (kernel)
				{
					case K_L2SQ:
						got[0] = k->l2sq_f32(a, b, n);
						break;
					case K_DOT:
						got[0] = k->dot_f32(a, b, n);
						break;
					case K_L1:
						got[0] = k->l1_f32(a, b, n);
						break;
					case K_NORMSQ:
						got[0] = k->normsq_f32(a, n);
						break;
					default:
						{
							/*
							 * Batch: the query is finite, the special value
							 * is in vector 5 of 6 (second group/remainder)
							 * or in vector 1 (first group of four).
							 */
							const float *vec[6];
							int			special_vec = (pi % 2) ? 1 : 5;

							for (int j = 0; j < 6; j++)
								vec[j] = (j == special_vec) ? a : b;
							if (kernel == K_L2SQ_BATCH)
								k->l2sq_f32_batch(b, vec, 6, n, got);
							else
								k->dot_f32_batch(b, vec, 6, n, got);
							nres = 6;
							for (int j = 0; j < 6; j++)
							{
								int			finite = isfinite(got[j]);

								if (finite != (j != special_vec))
									bad = 1;
							}
						}
						break;
				}
				if (nres == 1 && isfinite(got[0]))
					bad = 1;
				if (bad)
				{
					snprintf(buf, sizeof(buf),
							 "n=%d pos=%d input=%g: finite result %g",
							 n, pos, (double) specials[si], (double) got[0]);
					fail(buf);
				}
			}
		}
	}
}

/*
 * Run a bit-plane kernel and compare exactly: the single kernel for every
 * plane count, the batched one (up to MAX_BATCH times the work) for one
 * plane count that varies with n and off, so that 0..300 covers them all
 * and the large codes get 8, 7, 6 and 5.  The code (or codes) and the
 * planes, contiguous as the kernel expects them, each end at a guard page.
 * fill_code/fill_planes as for trial_int.
 */
static void
trial_planes(const OmenKernels *k, int kernel, int n, int off, int fill_code,
			 int fill_planes)
{
	int			first = 1;
	char		buf[256];

	if (kernel == K_ANDPOP_PLANES_BATCH)
		first = MAX_PLANES - (n + off) % MAX_PLANES;

	for (int nplanes = first; nplanes <= MAX_PLANES; nplanes++)
	{
		size_t		pbytes = (size_t) n * nplanes;
		uint8_t    *code = slot_place(0, (size_t) n, (size_t) off);
		uint8_t    *planes = slot_place(1, pbytes, (size_t) ((off + 1) % (MAX_OFF + 1)));

		fill_bytes(code, n, fill_code);
		fill_bytes(planes, (int) pbytes, fill_planes);

		if (kernel == K_ANDPOP_PLANES)
		{
			uint32_t	got = k->andpop_planes(code, planes, n, nplanes);
			uint64_t	ref = ref_andpop_planes(code, planes, n, nplanes);

			if ((uint64_t) got != ref)
			{
				snprintf(buf, sizeof(buf), "n=%d off=%d nplanes=%d got=%lu ref=%llu",
						 n, off, nplanes, (unsigned long) got,
						 (unsigned long long) ref);
				fail(buf);
			}
		}
		else
		{
			int			count = (n <= 300) ? n % (MAX_BATCH + 1) : 9;
			const uint8_t *vec[MAX_BATCH];
			uint32_t	out[MAX_BATCH + 1];

			for (int j = 0; j < count; j++)
			{
				uint8_t    *p = slot_place(2 + j, (size_t) n,
										   (size_t) ((off + j) % (MAX_OFF + 1)));

				fill_bytes(p, n, fill_code);
				vec[j] = p;
			}
			for (int j = 0; j <= MAX_BATCH; j++)
				out[j] = 0xdeadbeef;

			k->andpop_planes_batch(vec, count, planes, n, nplanes, out);

			for (int j = 0; j < count; j++)
			{
				uint64_t	ref = ref_andpop_planes(vec[j], planes, n, nplanes);

				if ((uint64_t) out[j] != ref)
				{
					snprintf(buf, sizeof(buf),
							 "n=%d off=%d nplanes=%d vec=%d got=%lu ref=%llu",
							 n, off, nplanes, j, (unsigned long) out[j],
							 (unsigned long long) ref);
					fail(buf);
				}
			}
			if (out[count] != 0xdeadbeef)
			{
				snprintf(buf, sizeof(buf), "n=%d count=%d: wrote past out[count-1]",
						 n, count);
				fail(buf);
			}
		}
		if (failed_now || kernel == K_ANDPOP_PLANES_BATCH)
			return;
	}
}

/* All bits set (the largest sums), disjoint and complementary patterns */
static void
trial_planes_extremes(const OmenKernels *k, int kernel)
{
	static const int dims[] = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65,
	127, 128, 129, 192, 2048, MAX_PLANE_BYTES};
	static const int fills[][2] = {{0xff, 0xff}, {0xff, 0x00}, {0x00, 0xff},
	{0xaa, 0x55}, {0xaa, 0xff}};

	for (size_t di = 0; di < sizeof(dims) / sizeof(dims[0]); di++)
		for (size_t fi = 0; fi < sizeof(fills) / sizeof(fills[0]); fi++)
			trial_planes(k, kernel, dims[di], (int) (di % (MAX_OFF + 1)),
						 fills[fi][0], fills[fi][1]);
}

/*
 * Compare n converted halves with the definition: bit for bit, except that
 * a NaN only has to come out as a NaN.
 */
static void
check_f16(const uint16_t *in, const float *out, int n, int off)
{
	char		buf[256];

	for (int i = 0; i < n; i++)
	{
		float		ref = ref_f16_to_f32(in[i]);
		uint32_t	gotbits,
					refbits;

		memcpy(&gotbits, &out[i], sizeof(float));
		memcpy(&refbits, &ref, sizeof(float));
		if (isnan(ref) ? !isnan(out[i]) : gotbits != refbits)
		{
			snprintf(buf, sizeof(buf),
					 "n=%d off=%d i=%d half=0x%04x got=0x%08lx ref=0x%08lx",
					 n, off, i, (unsigned) in[i], (unsigned long) gotbits,
					 (unsigned long) refbits);
			fail(buf);
			return;
		}
	}
}

/*
 * Convert n halves (random bit patterns, so every class of value turns up)
 * with input and output each ending at the guard page or a little before it,
 * and sentinels around the output where there is room to see a stray store.
 */
static void
trial_f16(const OmenKernels *k, int n, int off)
{
	size_t		outgap = (size_t) ((off + 1) % (MAX_OFF + 1));
	uint16_t   *in = slot_place(0, (size_t) n * sizeof(uint16_t),
								(size_t) off * sizeof(uint16_t));
	float	   *out = slot_place(1, (size_t) n * sizeof(float),
								 outgap * sizeof(float));
	const float sentinel = 12345.0f;
	char		buf[128];

	for (int i = 0; i < n; i++)
		in[i] = (uint16_t) (rng_next() >> 48);
	out[-1] = sentinel;
	if (outgap > 0)
		out[n] = sentinel;

	k->f16_to_f32(in, out, n);

	check_f16(in, out, n, off);
	if (out[-1] != sentinel || (outgap > 0 && out[n] != sentinel))
	{
		snprintf(buf, sizeof(buf), "n=%d off=%d: wrote outside out[0..n-1]", n, off);
		fail(buf);
	}
}

/* Every one of the 65536 half values, in runs of up to MAX_N */
static void
trial_f16_all(const OmenKernels *k)
{
	int			chunk = 0;

	for (int start = 0; start < 65536 && !failed_now; start += MAX_N, chunk++)
	{
		int			n = 65536 - start < MAX_N ? 65536 - start : MAX_N;
		int			off = chunk % (MAX_OFF + 1);
		uint16_t   *in = slot_place(0, (size_t) n * sizeof(uint16_t),
									(size_t) off * sizeof(uint16_t));
		float	   *out = slot_place(1, (size_t) n * sizeof(float), 0);

		for (int i = 0; i < n; i++)
			in[i] = (uint16_t) (start + i);
		k->f16_to_f32(in, out, n);
		check_f16(in, out, n, off);
	}
}

/* Extreme integer inputs: all -128 (the VPMADDWD/VPDPBUSD corner), all 127 */
static void
trial_int_extremes(const OmenKernels *k, int kernel)
{
	static const int dims[] = {1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 1536, MAX_N};
	static const int fills[][2] = {{0x80, 0x80}, {0x80, 0x7f}, {0x7f, 0x7f},
	{0xff, 0x00}, {0x00, 0x00}};

	for (size_t di = 0; di < sizeof(dims) / sizeof(dims[0]); di++)
		for (size_t fi = 0; fi < sizeof(fills) / sizeof(fills[0]); fi++)
			trial_int(k, kernel, dims[di], (int) (di % (MAX_OFF + 1)),
					  fills[fi][0], fills[fi][1]);
}

/* Is this kernel's slot in the table empty? */
static int
kernel_missing(const OmenKernels *k, int kernel)
{
	switch (kernel)
	{
		case K_L2SQ:
			return k->l2sq_f32 == NULL;
		case K_DOT:
			return k->dot_f32 == NULL;
		case K_L1:
			return k->l1_f32 == NULL;
		case K_NORMSQ:
			return k->normsq_f32 == NULL;
		case K_HAMMING:
			return k->hamming == NULL;
		case K_DOT_I8:
			return k->dot_i8 == NULL;
		case K_L2SQ_BATCH:
			return k->l2sq_f32_batch == NULL;
		case K_DOT_BATCH:
			return k->dot_f32_batch == NULL;
		case K_HAMMING_BATCH:
			return k->hamming_batch == NULL;
		case K_DOT_I8_BATCH:
			return k->dot_i8_batch == NULL;
		case K_ANDPOP_PLANES:
			return k->andpop_planes == NULL;
		case K_ANDPOP_PLANES_BATCH:
			return k->andpop_planes_batch == NULL;
		default:
			return k->f16_to_f32 == NULL;
	}
}

/* Check one kernel of one table; prints the result line */
static void
check_kernel(const char *level, const OmenKernels *k, int kernel)
{
	const int  *bigs = is_planes_kernel(kernel) ? plane_big_dims : big_dims;
	int			nbigs = is_planes_kernel(kernel) ?
		(int) (sizeof(plane_big_dims) / sizeof(plane_big_dims[0])) :
		(int) (sizeof(big_dims) / sizeof(big_dims[0]));
	int			ndims = 301 + nbigs;

	failed_now = 0;
	fail_detail[0] = '\0';
	rng_seed(0x0badc0ffee123457ULL + (uint64_t) kernel);
	snprintf(crash_msg, sizeof(crash_msg),
			 "not ok %s %s: crashed (read past the end of an input?)\n"
			 "kernels: %d passed, %d failed\n",
			 level, kernel_names[kernel], n_passed, n_failed + 1);
	fflush(stdout);				/* the crash handler bypasses stdio */

	if (kernel_missing(k, kernel))
	{
		printf("not ok %s %s: NULL in kernel table\n", level, kernel_names[kernel]);
		n_failed++;
		return;
	}

	for (int di = 0; di < ndims && !failed_now; di++)
	{
		int			n = di <= 300 ? di : bigs[di - 301];

		for (int off = 0; off <= MAX_OFF && !failed_now; off++)
		{
			if (is_float_kernel(kernel))
			{
				/* mostly [-1,1], some larger and smaller magnitudes */
				static const float scales[MAX_OFF + 1] = {1.0f, 1.0f, 1000.0f, 0.001f};

				trial_float(k, kernel, n, off, scales[off]);
			}
			else if (kernel == K_F16_TO_F32)
				trial_f16(k, n, off);
			else if (is_planes_kernel(kernel))
				trial_planes(k, kernel, n, off, -1, -1);
			else
				trial_int(k, kernel, n, off, -1, -1);
		}
	}

	if (!failed_now)
	{
		if (is_float_kernel(kernel))
			trial_nonfinite(k, kernel);
		else if (kernel == K_F16_TO_F32)
			trial_f16_all(k);
		else if (is_planes_kernel(kernel))
			trial_planes_extremes(k, kernel);
		else
			trial_int_extremes(k, kernel);
	}

	if (failed_now)
	{
		printf("not ok %s %s: %s\n", level, kernel_names[kernel], fail_detail);
		n_failed++;
	}
	else
	{
		printf("ok %s %s\n", level, kernel_names[kernel]);
		n_passed++;
	}
	fflush(stdout);
}

/* Record a dispatch check */
static void
check_dispatch(int ok, const char *what, const char *detail)
{
	if (ok)
	{
		printf("ok dispatch %s\n", what);
		n_passed++;
	}
	else
	{
		printf("not ok dispatch %s: %s\n", what, detail);
		n_failed++;
	}
}

/*
 * omen_kernels must be the scalar table before omen_simd_init(), OMEN_SIMD
 * must cap the level, the caller's cap must be honoured, and the level
 * names must round-trip.  Runs first, before anything calls init.
 */
static void
test_dispatch(const char *env_saved)
{
	OmenSimdLevel best = omen_simd_best_level();
	OmenSimdLevel got;
	OmenSimdLevel want;
	char		buf[128];
	int			ok;

	check_dispatch(strcmp(omen_kernels.name, "scalar") == 0 &&
				   omen_kernels.l2sq_f32 ==
				   omen_kernels_for_level(OMEN_SIMD_SCALAR)->l2sq_f32,
				   "scalar-before-init", omen_kernels.name);

	setenv("OMEN_SIMD", "scalar", 1);
	got = omen_simd_init(OMEN_SIMD_AVX512);
	snprintf(buf, sizeof(buf), "init returned %s, active %s, table %s",
			 omen_simd_level_name(got),
			 omen_simd_level_name(omen_simd_active_level()), omen_kernels.name);
	check_dispatch(got == OMEN_SIMD_SCALAR &&
				   omen_simd_active_level() == OMEN_SIMD_SCALAR &&
				   strcmp(omen_kernels.name, "scalar") == 0,
				   "OMEN_SIMD=scalar", buf);

	setenv("OMEN_SIMD", "avx2", 1);
	got = omen_simd_init(OMEN_SIMD_AVX512);
	want = best < OMEN_SIMD_AVX2 ? best : OMEN_SIMD_AVX2;
	snprintf(buf, sizeof(buf), "init returned %s, want %s",
			 omen_simd_level_name(got), omen_simd_level_name(want));
	check_dispatch(got == want && omen_simd_active_level() == want &&
				   strcmp(omen_kernels.name, omen_simd_level_name(want)) == 0,
				   "OMEN_SIMD=avx2", buf);

	unsetenv("OMEN_SIMD");
	got = omen_simd_init(OMEN_SIMD_AVX512);
	snprintf(buf, sizeof(buf), "init returned %s, best %s",
			 omen_simd_level_name(got), omen_simd_level_name(best));
	check_dispatch(got == best && omen_simd_active_level() == best,
				   "unset-picks-best", buf);

	got = omen_simd_init(OMEN_SIMD_SCALAR);
	check_dispatch(got == OMEN_SIMD_SCALAR &&
				   omen_simd_active_level() == OMEN_SIMD_SCALAR,
				   "caller-cap", omen_simd_level_name(got));

	ok = omen_simd_parse_level("bogus") == -1 && omen_simd_parse_level(NULL) == -1;
	for (int l = 0; l < (int) OMEN_SIMD_NLEVELS; l++)
		if (omen_simd_parse_level(omen_simd_level_name((OmenSimdLevel) l)) != l)
			ok = 0;
	check_dispatch(ok, "level-names", "parse/name do not round-trip");

	/* leave the environment, and the active table, as we found them */
	if (env_saved)
		setenv("OMEN_SIMD", env_saved, 1);
	omen_simd_init(OMEN_SIMD_AVX512);
}

int
main(void)
{
	const char *env = getenv("OMEN_SIMD");
	char	   *env_saved = env ? strdup(env) : NULL;
	int			cap = OMEN_SIMD_NLEVELS - 1;

	setup_slots();
	setup_crash_handler();

	printf("# cpu features: %s\n", omen_simd_cpu_features());
	printf("# best level: %s\n", omen_simd_level_name(omen_simd_best_level()));

	test_dispatch(env_saved);
	printf("# active level: %s\n", omen_simd_level_name(omen_simd_active_level()));

	/* OMEN_SIMD caps what is tested too, e.g. to run under valgrind */
	if (env_saved && omen_simd_parse_level(env_saved) >= 0)
		cap = omen_simd_parse_level(env_saved);

	for (int l = 0; l < (int) OMEN_SIMD_NLEVELS; l++)
	{
		const char *name = omen_simd_level_name((OmenSimdLevel) l);
		const OmenKernels *k = omen_kernels_for_level((OmenSimdLevel) l);

		if (k == NULL)
		{
			printf("skip %s: not supported by this CPU\n", name);
			continue;
		}
		if (l > cap)
		{
			printf("skip %s: excluded by OMEN_SIMD=%s\n", name, env_saved);
			continue;
		}
		for (int kernel = 0; kernel < K_NKERNELS; kernel++)
			check_kernel(name, k, kernel);

#if defined(__x86_64__) || defined(__i386__)
		/* the AVX-512 variants for CPUs without VPOPCNTDQ / VNNI */
		if (l == OMEN_SIMD_AVX512)
		{
			OmenKernels base;

			omen_fill_kernels_avx512(&base, 0, 0);
			check_kernel("avx512-no-vpopcntdq", &base, K_HAMMING);
			check_kernel("avx512-no-vpopcntdq", &base, K_HAMMING_BATCH);
			check_kernel("avx512-no-vpopcntdq", &base, K_ANDPOP_PLANES);
			check_kernel("avx512-no-vpopcntdq", &base, K_ANDPOP_PLANES_BATCH);
			check_kernel("avx512-no-vnni", &base, K_DOT_I8);
			check_kernel("avx512-no-vnni", &base, K_DOT_I8_BATCH);
		}
#endif
	}

	printf("kernels: %d passed, %d failed\n", n_passed, n_failed);
	free(env_saved);
	return n_failed > 0 ? 1 : 0;
}
