/*-------------------------------------------------------------------------
 *
 * kernels.c
 *	  Micro-benchmark of the distance kernels, every implementation level
 *	  this CPU supports side by side.
 *
 * It answers "how much does the SIMD dispatch buy, per distance, at the
 * dimensions people use" (128, 768, 1536), so that a regression in a kernel
 * or in the dispatch shows up as a number rather than as a slower index
 * build.  Each measurement walks 1000 vectors in shuffled order through a
 * pointer array, as an index scan does, so the figures include realistic
 * cache misses rather than one L1-resident vector computed over and over.
 *
 * Method: each cell (kernel, dimension, level) is warmed up, calibrated to
 * take about 0.2 s in total, and run as 5 repetitions; the median
 * repetition is reported as nanoseconds per distance.  Results go into a
 * volatile sink so the work cannot be optimised away.
 *
 * The bit-plane kernel (andpop_planes) is measured on d-bit codes against a
 * query of 4 planes, the RaBitQ case; the half -> float conversion once, on
 * vectors of 768 halves.
 *
 * Usage: bench/kernels [seconds-per-cell]     (built by `make bench/kernels`)
 * Output is a markdown table.
 *
 * IDENTIFICATION
 *	  bench/kernels.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "distance.h"

#define NVEC	1000			/* working set, vectors */
#define NREPS	5				/* repetitions per cell; median reported */

static const int dims[] = {128, 768, 1536};

#define NDIMS ((int) (sizeof(dims) / sizeof(dims[0])))

#define BENCH_PLANES	4		/* query bits per dimension for andpop_planes */
#define BENCH_F16_DIM	768		/* the only dimension f16_to_f32 is run at */

enum
{
	B_L2SQ,
	B_DOT,
	B_L1,
	B_HAMMING,
	B_DOT_I8,
	B_L2SQ_BATCH,
	B_ANDPOP_PLANES,
	B_F16_TO_F32,
	B_NKERNELS
};

static const char *const bench_names[B_NKERNELS] = {
	"l2sq_f32", "dot_f32", "l1_f32", "hamming (d bits)", "dot_i8", "l2sq_f32_batch",
	"andpop_planes (d bits, 4 planes)", "f16_to_f32"
};

/* Keeps the compiler from discarding results */
static volatile double sink;

/* The data for one dimension, shuffled pointer arrays into arenas */
typedef struct BenchData
{
	int			d;
	float	   *fq;
	const float *fv[NVEC];
	uint8_t    *hq;
	const uint8_t *hv[NVEC];
	int8_t	   *iq;
	const int8_t *iv[NVEC];
	uint8_t    *planes;			/* BENCH_PLANES planes of d bits */
	const uint16_t *f16v[NVEC];	/* halves, in [-1, 1] */
	float	   *f16out;
} BenchData;

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

/* xorshift64: deterministic, so runs are comparable */
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

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static void *
xalloc(size_t size)
{
	void	   *p = NULL;

	if (posix_memalign(&p, 64, size < 64 ? 64 : size) != 0)
	{
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

/* Random permutation of 0..NVEC-1, so consecutive distances hit scattered memory */
static void
shuffle(int *perm)
{
	for (int i = 0; i < NVEC; i++)
		perm[i] = i;
	for (int i = NVEC - 1; i > 0; i--)
	{
		int			j = (int) (rng_next() % (uint64_t) (i + 1));
		int			t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
}

static void
make_data(BenchData *bd, int d)
{
	int			hbytes = d / 8;
	float	   *farena = xalloc((size_t) NVEC * d * sizeof(float));
	uint8_t    *harena = xalloc((size_t) NVEC * hbytes);
	int8_t	   *iarena = xalloc((size_t) NVEC * d);
	uint16_t   *f16arena = xalloc((size_t) NVEC * d * sizeof(uint16_t));
	int			perm[NVEC];

	bd->d = d;
	bd->fq = xalloc((size_t) d * sizeof(float));
	bd->hq = xalloc((size_t) hbytes);
	bd->iq = xalloc((size_t) d);
	bd->planes = xalloc((size_t) BENCH_PLANES * hbytes);
	bd->f16out = xalloc((size_t) d * sizeof(float));

	for (size_t i = 0; i < (size_t) NVEC * d; i++)
	{
		farena[i] = (float) ((double) (rng_next() >> 40) / (1 << 23) - 1.0);
		iarena[i] = (int8_t) (rng_next() >> 56);
		/* sign, exponent 10..14 (magnitude 2^-5 .. 1), random mantissa */
		f16arena[i] = (uint16_t) ((rng_next() >> 48) & 0x83ff) |
			(uint16_t) ((10 + rng_next() % 5) << 10);
	}
	for (size_t i = 0; i < (size_t) NVEC * hbytes; i++)
		harena[i] = (uint8_t) (rng_next() >> 56);
	for (int i = 0; i < d; i++)
	{
		bd->fq[i] = (float) ((double) (rng_next() >> 40) / (1 << 23) - 1.0);
		bd->iq[i] = (int8_t) (rng_next() >> 56);
	}
	for (int i = 0; i < hbytes; i++)
		bd->hq[i] = (uint8_t) (rng_next() >> 56);
	for (int i = 0; i < BENCH_PLANES * hbytes; i++)
		bd->planes[i] = (uint8_t) (rng_next() >> 56);

	shuffle(perm);
	for (int i = 0; i < NVEC; i++)
	{
		bd->fv[i] = farena + (size_t) perm[i] * d;
		bd->hv[i] = harena + (size_t) perm[i] * hbytes;
		bd->iv[i] = iarena + (size_t) perm[i] * d;
		bd->f16v[i] = f16arena + (size_t) perm[i] * d;
	}
}

/* One pass over the working set: NVEC distances */
static double
run_pass(const OmenKernels *k, int kernel, const BenchData *bd)
{
	double		acc = 0.0;
	int			d = bd->d;

	switch (kernel)
	{
		case B_L2SQ:
			for (int i = 0; i < NVEC; i++)
				acc += k->l2sq_f32(bd->fq, bd->fv[i], d);
			break;
		case B_DOT:
			for (int i = 0; i < NVEC; i++)
				acc += k->dot_f32(bd->fq, bd->fv[i], d);
			break;
		case B_L1:
			for (int i = 0; i < NVEC; i++)
				acc += k->l1_f32(bd->fq, bd->fv[i], d);
			break;
		case B_HAMMING:
			for (int i = 0; i < NVEC; i++)
				acc += (double) k->hamming(bd->hq, bd->hv[i], d / 8);
			break;
		case B_DOT_I8:
			for (int i = 0; i < NVEC; i++)
				acc += k->dot_i8(bd->iq, bd->iv[i], d);
			break;
		case B_L2SQ_BATCH:
			{
				static float out[NVEC];

				k->l2sq_f32_batch(bd->fq, bd->fv, NVEC, d, out);
				acc += out[0] + out[NVEC / 2] + out[NVEC - 1];
			}
			break;
		case B_ANDPOP_PLANES:
			for (int i = 0; i < NVEC; i++)
				acc += (double) k->andpop_planes(bd->hv[i], bd->planes, d / 8,
												 BENCH_PLANES);
			break;
		default:
			for (int i = 0; i < NVEC; i++)
			{
				k->f16_to_f32(bd->f16v[i], bd->f16out, d);
				acc += bd->f16out[i % d];
			}
			break;
	}
	return acc;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* Median ns per distance of one cell, the cell taking about "budget" seconds */
static double
measure(const OmenKernels *k, int kernel, const BenchData *bd, double budget)
{
	double		t0,
				one,
				reps[NREPS];
	long		passes;

	/* warm up caches and branch predictors, and time one pass */
	sink = run_pass(k, kernel, bd);
	t0 = now_ns();
	sink = run_pass(k, kernel, bd);
	one = now_ns() - t0;
	if (one < 1.0)
		one = 1.0;
	passes = (long) (budget * 1e9 / NREPS / one);
	if (passes < 1)
		passes = 1;

	for (int r = 0; r < NREPS; r++)
	{
		double		acc = 0.0;

		t0 = now_ns();
		for (long p = 0; p < passes; p++)
			acc += run_pass(k, kernel, bd);
		reps[r] = (now_ns() - t0) / ((double) passes * NVEC);
		sink = acc;
	}
	qsort(reps, NREPS, sizeof(double), cmp_double);
	return reps[NREPS / 2];
}

int
main(int argc, char **argv)
{
	double		budget = 0.2;
	const OmenKernels *tables[OMEN_SIMD_NLEVELS];
	BenchData  *data[NDIMS];
	OmenSimdLevel selected;
	int			best = OMEN_SIMD_SCALAR;

	if (argc > 1)
		budget = atof(argv[1]);
	if (budget <= 0)
		budget = 0.2;

	selected = omen_simd_init(OMEN_SIMD_AVX512);
	printf("CPU features: %s\n", omen_simd_cpu_features());
	printf("omen_simd_init(OMEN_SIMD_AVX512) selected: %s\n\n",
		   omen_simd_level_name(selected));
	printf("ns per distance (median of %d repetitions, ~%.2g s per cell, "
		   "%d vectors visited in shuffled order; hamming on d-bit codes, "
		   "dot_i8 on d int8 values; l2sq_f32_batch per vector; "
		   "andpop_planes on d-bit codes against %d planes; f16_to_f32 per "
		   "vector of d halves, d = %d only)\n\n",
		   NREPS, budget, NVEC, BENCH_PLANES, BENCH_F16_DIM);

	for (int l = 0; l < OMEN_SIMD_NLEVELS; l++)
	{
		tables[l] = omen_kernels_for_level((OmenSimdLevel) l);
		if (tables[l])
			best = l;
	}
	for (int di = 0; di < NDIMS; di++)
	{
		data[di] = xalloc(sizeof(BenchData));
		make_data(data[di], dims[di]);
	}

	printf("| kernel | d |");
	for (int l = 0; l < OMEN_SIMD_NLEVELS; l++)
		printf(" %s |", omen_simd_level_name((OmenSimdLevel) l));
	printf(" speedup %s/scalar |\n", omen_simd_level_name((OmenSimdLevel) best));
	printf("|---|--:|");
	for (int l = 0; l < OMEN_SIMD_NLEVELS; l++)
		printf("--:|");
	printf("--:|\n");
	fflush(stdout);

	for (int kernel = 0; kernel < B_NKERNELS; kernel++)
	{
		for (int di = 0; di < NDIMS; di++)
		{
			double		ns[OMEN_SIMD_NLEVELS];

			if (kernel == B_F16_TO_F32 && dims[di] != BENCH_F16_DIM)
				continue;
			printf("| %s | %d |", bench_names[kernel], dims[di]);
			for (int l = 0; l < OMEN_SIMD_NLEVELS; l++)
			{
				if (tables[l] == NULL)
				{
					printf(" n/a |");
					continue;
				}
				ns[l] = measure(tables[l], kernel, data[di], budget);
				printf(" %.2f |", ns[l]);
				fflush(stdout);
			}
			printf(" %.1fx |\n", ns[OMEN_SIMD_SCALAR] / ns[best]);
			fflush(stdout);
		}
	}
	return 0;
}
