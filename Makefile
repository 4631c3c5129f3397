# Makefile for omen (PGXS)
#
# `make` builds omen.so; `make install` installs it into the PostgreSQL found
# by PG_CONFIG.  The tests are run by test/run, which also installs what they
# need; see README.md.

EXTENSION = omen
EXTVERSION = 0.1.1
MODULE_big = omen

OBJS = \
	src/distance.o \
	src/distance_avx2.o \
	src/distance_avx512.o \
	src/omen.o \
	src/omenbuild.o \
	src/omencost.o \
	src/omeninsert.o \
	src/omenquant.o \
	src/omenscan.o \
	src/omensearch.o \
	src/omenutils.o \
	src/omenvacuum.o \
	src/omenvalidate.o \
	src/omenverify.o \
	src/omenvector.o

DATA = sql/omen--0.1.0.sql sql/omen--0.1.0--0.1.1.sql
PGFILEDESC = "omen - HNSW vector index access method"

# pg_regress suites, in sql/ and expected/, run in this order
REGRESS = vector_distance bad_input omen_index omen_recall omen_quantizers omen_filter omen_vacuum omen_verify omen_parallel

PG_CONFIG ?= pg_config

# Warnings are errors.  Unused parameters are normal in index AM callbacks,
# whose signatures are fixed by PostgreSQL.
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers

# No LLVM bitcode: the SIMD kernels rely on per-function target attributes
# that only matter for native code.
override with_llvm = no

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track headers: every object depends on ours
$(OBJS): src/omen.h src/distance.h

# Standalone kernel unit test and micro-benchmark: plain C, no server needed.
KERNEL_SRCS = src/distance.c src/distance_avx2.c src/distance_avx512.c
KERNEL_CFLAGS = -O2 -g -Wall -Wextra -Werror -std=gnu99 -Isrc

test/kernels: test/kernels.c $(KERNEL_SRCS) src/distance.h
	$(CC) $(KERNEL_CFLAGS) -o $@ test/kernels.c $(KERNEL_SRCS) -lm

bench/kernels: bench/kernels.c $(KERNEL_SRCS) src/distance.h
	$(CC) $(KERNEL_CFLAGS) -o $@ bench/kernels.c $(KERNEL_SRCS) -lm

EXTRA_CLEAN = test/kernels bench/kernels

.PHONY: kernel-test
kernel-test: test/kernels
	./test/kernels

# Used by test/run to learn the pg_regress suites
.PHONY: print-regress
print-regress:
	@echo $(REGRESS)
