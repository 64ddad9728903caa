# libnn build. Targets: all test sanitize valgrind install data mnist clean (see README).
# Options: OPENMP=0 (no OpenMP), PORTABLE=1 (no -march=native), CC=clang, PREFIX=...,
# MPI=1 (data-parallel training over MPI: mpicc, src/dist/, build/mpi; `make MPI=1 test-dist`)

SHELL    := /bin/bash
CC       ?= cc
CXX      ?= c++
OPENMP   ?= 1
PORTABLE ?= 0
SANITIZE ?= 0
MPI      ?= 0
ifeq ($(MPI),1)
  CC     := $(or $(MPICC),mpicc)
  BUILD  ?= build/mpi
endif
BUILD    ?= build
PREFIX   ?= /usr/local

CFLAGS   = -std=c11 -Wall -Wextra -Wpedantic -ffp-contract=fast -fno-math-errno -fno-trapping-math -D_POSIX_C_SOURCE=200809L -Iinclude
LDLIBS   = -lm
ifeq ($(SANITIZE),1)
  CFLAGS  += -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=address,undefined
else
  CFLAGS  += -O3 -g
endif
# Tuning flags by the compiler's target: x86 gets the host's vector
# extensions (gcc and clang tune some AVX-512 CPUs to auto-vectorize with
# 256-bit vectors; the elementwise loops run faster at 512), aarch64 the
# host's (NEON and beyond), anything else plain C.
# A cross-compiler (target other than this machine) gets no host tuning.
TARGET_MACHINE := $(shell $(CC) -dumpmachine 2>/dev/null)
HOST_MACHINE := $(shell uname -m)
ifeq ($(filter $(HOST_MACHINE)%,$(TARGET_MACHINE)),)
  PORTABLE := 1
endif
ifeq ($(PORTABLE),0)
  ifneq ($(filter x86_64% amd64%,$(TARGET_MACHINE)),)
    CFLAGS  += -march=native -mprefer-vector-width=512
  else ifneq ($(filter aarch64% arm64%,$(TARGET_MACHINE)),)
    CFLAGS  += -mcpu=native
  endif
endif
# 32-bit x86 (gcc -m32, i686-linux-gnu-gcc): SSE2 arithmetic, not the x87's
# excess precision (which rounds float expressions differently from every
# other target and defeats the vector code's float typing).
ifneq ($(shell echo | $(CC) -dM -E - 2>/dev/null | grep -c '__i386__'),0)
  CFLAGS  += -msse2 -mfpmath=sse
endif
ifeq ($(OPENMP),1)
  CFLAGS  += -fopenmp
  LDFLAGS += -fopenmp
else
  CFLAGS  += -Wno-unknown-pragmas
endif
ifeq ($(MPI),1)
  CFLAGS += -DNN_HAVE_MPI
endif
CFLAGS += $(EXTRA_CFLAGS)

# src/dist/ (MPI) is compiled only in the MPI=1 build.
LIB_SRC  = $(filter-out $(if $(filter 1,$(MPI)),,src/dist/%),$(wildcard src/*/*.c))
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB      = $(BUILD)/libnn.a
HEADERS  = include/nn.h $(wildcard include/nn/*.h)

EX_COMMON_SRC = $(wildcard examples/common/*.c)
EX_COMMON_OBJ = $(EX_COMMON_SRC:%.c=$(BUILD)/%.o)
EX_SRC   = $(wildcard examples/*.c)
EX_BIN   = $(EX_SRC:examples/%.c=$(BUILD)/examples/%)

TEST_SRC = $(wildcard tests/*.c)
# tests/bench, tests/fuzz and tests/dist build separately (make bench, make fuzz, make MPI=1 test-dist)
TEST_OBJ = $(TEST_SRC:%.c=$(BUILD)/%.o)
TEST_BIN = $(BUILD)/tests/run_tests

.PHONY: all lib examples test test-dist bench sanitize valgrind fuzz install data mnist clean FORCE

all: lib examples

lib: $(LIB)
examples: $(EX_BIN)

# Rebuild everything when the compiler flags change (e.g. OPENMP=0 after a default build).
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $@

# Kept out of CFLAGS: the flags file (above) would record them and every
# later build without them would rebuild everything.
$(BUILD)/tests/%.o: TEST_DEFS = -DNN_TEST_SOURCE_DIR=\"$(CURDIR)\" -DNN_TEST_BUILD_DIR=\"$(abspath $(BUILD))\"

$(BUILD)/%.o: %.c $(HEADERS) $(wildcard src/*/*.h examples/common/*.h tests/*.h) $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_DEFS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/examples/%: $(BUILD)/examples/%.o $(EX_COMMON_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The tests see every allocation libnn makes (tests/alloc_fail.c).
WRAP_ALLOC = -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc
$(TEST_BIN): $(TEST_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $(WRAP_ALLOC) $^ -o $@ $(LDLIBS)

# The headers must also compile as C++.
$(BUILD)/cxx_header_check.o: $(HEADERS) $(BUILD)/.flags
	@mkdir -p $(BUILD)
	echo '#include "nn.h"' | $(CXX) -x c++ -std=c++11 -Wall -Wextra -Wpedantic -Iinclude -c - -o $@

BENCH_BIN = $(BUILD)/tests/bench/bench
$(BENCH_BIN): $(BUILD)/tests/bench/bench.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# Benchmark table and BENCH lines; pass flags with BENCH_ARGS="--data DIR".
bench: $(BENCH_BIN)
	$(BENCH_BIN) $(BENCH_ARGS)

test: $(TEST_BIN) $(EX_BIN) $(BUILD)/cxx_header_check.o
	$(TEST_BIN)

# The distributed tests: 2 and 4 ranks on this machine (MPI=1 only).
DIST_TEST_BIN = $(BUILD)/tests/dist/run_dist_tests
MPIRUN ?= mpirun --oversubscribe $(if $(filter 0,$(shell id -u)),--allow-run-as-root)
$(DIST_TEST_BIN): $(BUILD)/tests/dist/test_dist.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

ifeq ($(MPI),1)
test-dist: $(DIST_TEST_BIN) $(EX_BIN)
	$(MPIRUN) -np 2 $(DIST_TEST_BIN)
	$(MPIRUN) -np 4 $(DIST_TEST_BIN)
else
test-dist:
	@echo "test-dist needs the MPI build: make MPI=1 test-dist" >&2; exit 2
endif

sanitize:
	$(MAKE) BUILD=build/sanitize SANITIZE=1 test

# valgrind cannot decode AVX-512, so it checks a PORTABLE build of the tests.
valgrind:
	$(MAKE) BUILD=build/valgrind PORTABLE=1 build/valgrind/tests/run_tests
	valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
	  build/valgrind/tests/run_tests

install: $(LIB)
	mkdir -p $(DESTDIR)$(PREFIX)/include/nn $(DESTDIR)$(PREFIX)/lib/pkgconfig
	cp include/nn.h $(DESTDIR)$(PREFIX)/include/
	cp include/nn/*.h $(DESTDIR)$(PREFIX)/include/nn/
	cp $(LIB) $(DESTDIR)$(PREFIX)/lib/
	printf 'prefix=%s\nincludedir=$${prefix}/include\nlibdir=$${prefix}/lib\n\nName: nn\nDescription: libnn, a minimal CPU neural-network library\nVersion: 0.1.0\nCflags: -I$${includedir}%s\nLibs: -L$${libdir} -lnn -lm%s\n' \
	  '$(PREFIX)' '$(if $(filter 1,$(OPENMP)), -fopenmp,)' '$(if $(filter 1,$(OPENMP)), -fopenmp,)' \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/nn.pc

# Coverage-guided fuzzing of every parser with libFuzzer + ASan + UBSan
# (clang). Each harness runs FUZZ_SECONDS from its seed corpus.
FUZZ_SECONDS ?= 60
FUZZERS = idx inflate safetensors csv
FUZZ_FLAGS = -std=c11 -g -O1 -D_POSIX_C_SOURCE=200809L -Iinclude -Wno-unknown-pragmas \
             -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
fuzz:
	@mkdir -p build/fuzz
	@for f in $(FUZZERS); do \
	  echo "--- fuzz_$$f for $(FUZZ_SECONDS) s"; \
	  clang $(FUZZ_FLAGS) tests/fuzz/fuzz_$$f.c $(LIB_SRC) -o build/fuzz/fuzz_$$f -lm || exit 1; \
	  rm -rf build/fuzz/corpus_$$f && cp -r tests/fuzz/seeds_$$f build/fuzz/corpus_$$f; \
	  build/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -rss_limit_mb=2048 \
	    -timeout=10 build/fuzz/corpus_$$f 2>&1 | grep -E 'stat::number_of_executed_units|ERROR|SUMMARY|Done' ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

data:
	sh data/get_mnist.sh data/mnist

# Build and train the CNN on MNIST (10 epochs), saving the model to
# build/mnist_cnn.safetensors. Data: $$NN_DATA_DIR if set, else data/mnist
# (downloaded by `make data` when missing). Extra flags: ARGS="--epochs 1".
MNIST_DIR = $(or $(NN_DATA_DIR),data/mnist)
mnist: all
	@test -n "$(NN_DATA_DIR)" || test -f data/mnist/t10k-labels-idx1-ubyte.gz || $(MAKE) data
	$(BUILD)/examples/mnist_train --data $(MNIST_DIR) --save $(BUILD)/mnist_cnn.safetensors $(ARGS)

clean:
	rm -rf build
.SECONDARY:
