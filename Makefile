# TRACER-C. `make` builds ./tracer; `make test` runs the test suite; `make reproduce` every table and
# figure. Both install missing Debian packages first (scripts/install-deps.sh).

CC      ?= cc
CFLAGS  ?= -O2 -g
# Kept even when CFLAGS comes from the command line (as `make asan`, `ubsan`, `tsan` and `coverage` pass it).
# -ffp-contract=off: no fused multiply-adds, so the blocked predictions of liblinear and libsvm are their
# own arithmetic bit for bit (every product rounded before it is added, as in Debian's builds of both).
# -Wno-format-truncation is GCC's (the clang of `make fuzz`, Debian 12's 14, rejects the unknown option under
# -Werror); the compiler is asked once, when the Makefile is read.
GCC_ONLY := $(if $(findstring clang,$(shell $(CC) --version 2>/dev/null)),,-Wno-format-truncation)
override CFLAGS += -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -MMD -MP -ffp-contract=off $(GCC_ONLY)
LDLIBS  = -lmicrohttpd -llinear -lsvm -lxxhash -lcsv -ljansson -lzstd -lnettle -lgsl -lopenblas -lm -pthread
BUILD   ?= build
BIN     ?= tracer

LIB_SRC = $(wildcard src/common/*.c src/data/*.c src/feat/*.c src/surrogate/*.c src/gate/*.c src/drift/*.c src/exp/*.c src/report/*.c)
CLI_SRC = $(wildcard src/cli/*.c)
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC = $(wildcard tests/fuzz/fuzz_*.c)
REPLAY_BIN = $(FUZZ_SRC:tests/fuzz/fuzz_%.c=$(BUILD)/fuzz/replay_%)
BENCH_SRC = $(wildcard bench/*.c)
BENCH_BIN = $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps test test-cluster asan ubsan tsan coverage check fuzz unit-tests bench reproduce reproduce-extra reproduce-quick plots clean

all: $(BIN)

$(BIN): $(CLI_OBJ) $(BUILD)/libtracer.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libtracer.a $(LDLIBS)

$(BUILD)/libtracer.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h $(BUILD)/libtracer.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libtracer.a $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libtracer.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libtracer.a $(LDLIBS)

$(BUILD)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/fuzz.h $(BUILD)/libtracer.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< tests/fuzz/replay.c $(BUILD)/libtracer.a $(LDLIBS)

unit-tests: $(UNIT_BIN) $(REPLAY_BIN)

# Replays every saved fuzz input through its target without libFuzzer (also part of `make test`).
check: all $(REPLAY_BIN)
	@for t in $(REPLAY_BIN); do n=$${t##*/replay_}; printf '%-12s ' $$n; $$t tests/fuzz/corpus/$$n || exit 1; done

# Coverage-guided fuzzing with clang's libFuzzer and AddressSanitizer, FUZZ_SECONDS per target. New
# inputs go to build/fuzz-run/corpus (copy the interesting ones into tests/fuzz/corpus); crashes to
# build/fuzz-run/crashes.
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS = -O1 -g -fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer
fuzz:
	@FUZZ=1 scripts/install-deps.sh
	@$(MAKE) --no-print-directory BUILD=build/fuzz-run CC=clang CFLAGS="$(FUZZ_CFLAGS)" build/fuzz-run/libtracer.a
	@mkdir -p build/fuzz-run/crashes
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); n=$${n#fuzz_}; \
		clang -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -g -fsanitize=fuzzer,address -o build/fuzz-run/fuzz_$$n $$f \
			build/fuzz-run/libtracer.a $(LDLIBS) || exit 1; \
		mkdir -p build/fuzz-run/corpus/$$n; cp tests/fuzz/corpus/$$n/* build/fuzz-run/corpus/$$n/; \
		build/fuzz-run/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -timeout=10 -max_len=65536 \
			-artifact_prefix=build/fuzz-run/crashes/$$n- build/fuzz-run/corpus/$$n 2>build/fuzz-run/$$n.log; \
		printf '%-12s %s\n' $$n "$$(grep -E '^(#[0-9]+.*DONE|Done [0-9]+ runs)' build/fuzz-run/$$n.log | tail -n 1)"; \
	done; echo "crashes: $$(ls build/fuzz-run/crashes | wc -l)"

# BENCH_ONLY=libsvm: only scripts/bench-libsvm.sh (results/bench-libsvm.tsv); BENCH_ONLY=dense: bench.sh's dense part.
bench:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@if [ "$${BENCH_ONLY:-}" = libsvm ]; then scripts/bench-libsvm.sh; \
	else scripts/bench.sh && { [ -n "$${BENCH_ONLY:-}" ] || scripts/bench-libsvm.sh; }; fi

deps:
	@scripts/install-deps.sh

test:
	@scripts/install-deps.sh
	@[ "$$(id -u)" != 0 ] || SLURM=1 scripts/install-deps.sh || echo "make test: slurm-wlm/munge not installable; the cluster test will not run" >&2
	@CHROMIUM=1 scripts/install-deps.sh || echo "make test: chromium not installable; the report.html screenshot test will skip" >&2
	@$(MAKE) --no-print-directory all unit-tests
	@TRACER_BIN=$(abspath $(BIN)) TEST_BUILD=$(BUILD) tests/run.sh

# The whole test suite under AddressSanitizer (with leak checks) / UndefinedBehaviorSanitizer, built
# apart in build/asan and build/ubsan.
SAN = -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=all
asan:
	@$(MAKE) --no-print-directory test BUILD=build/asan BIN=build/asan/tracer CFLAGS="$(SAN) -fsanitize=address"
ubsan:
	@$(MAKE) --no-print-directory test BUILD=build/ubsan BIN=build/ubsan/tracer CFLAGS="$(SAN) -fsanitize=undefined"

# ThreadSanitizer over the tests whose grid points train in parallel threads (built apart in build/tsan):
# a data race makes the binary exit 66 and the test fail.
TSAN_UNIT = test_surrogate test_faults
TSAN_CLI  = test_threads.sh
tsan:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory BUILD=build/tsan BIN=build/tsan/tracer CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=thread" \
		build/tsan/tracer $(TSAN_UNIT:%=build/tsan/tests/%)
	@export TSAN_OPTIONS="halt_on_error=1 exitcode=66" TRACER_ROOT=$(CURDIR); \
	for t in $(TSAN_UNIT); do build/tsan/tests/$$t >build/tsan/$$t.log 2>&1; rc=$$?; \
		printf '%-28s %s\n' $$t "$$(tail -n 1 build/tsan/$$t.log)"; \
		[ $$rc = 0 ] || { cat build/tsan/$$t.log; exit 1; }; done; \
	for t in $(TSAN_CLI); do TRACER_BIN=$(CURDIR)/build/tsan/tracer sh tests/cli/$$t >build/tsan/$$t.log 2>&1; rc=$$?; \
		printf '%-28s %s\n' $$t "$$(tail -n 1 build/tsan/$$t.log)"; \
		[ $$rc = 0 ] || { grep -A30 'ThreadSanitizer' build/tsan/$$t.log | head -60; exit 1; }; done

# Line coverage of `make test` (gcov) in src/gate and src/report, built apart in build/coverage.
COVERAGE_DIRS = src/gate src/report
coverage:
	@rm -f $$(find build/coverage -name '*.gcda' 2>/dev/null)
	@$(MAKE) --no-print-directory test BUILD=build/coverage BIN=build/coverage/tracer CFLAGS="-O0 -g --coverage"
	@BUILD=build/coverage scripts/coverage.sh $(COVERAGE_DIRS)

SPECS   = experiments/coverage.spec experiments/pooled.spec experiments/flywheel.spec \
	  experiments/honesty.spec experiments/backends.spec
# Computed by `make reproduce-extra` only (their cells are committed in results/ and collected by
# `make reproduce`): they would take `make reproduce` past 20 minutes on 2 cores.
EXTRA_SPECS = experiments/honesty-crossfit.spec experiments/honesty-oof.spec experiments/flywheel-oof.spec \
	      experiments/honesty-iid.spec experiments/coverage-oof.spec experiments/honesty-4k.spec \
	      experiments/honesty-oof-teachers.spec experiments/honesty-oof80.spec
# Computed and collected by `make reproduce-extra` only (no committed cells): the split study.
STUDY_SPECS = experiments/splits.spec
JOBS    ?= $(shell nproc)
RESULTS ?= results
QUICK   ?= build/quick

SCHEDULER ?= local
SLURM_FLAGS ?=

# Every table and figure of PAPER.md: finished cells are skipped, so an interrupted run resumes (the drift
# study, scripts/drift-study.sh, skips its finished policies and replays likewise).
# SCHEDULER=slurm runs the cells as Slurm job arrays and a dependent collector (scripts/slurm-submit.sh);
# the drift study (a few minutes, sequential) runs on the submitting host first.
reproduce:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@if [ "$(SCHEDULER)" = slurm ]; then \
		TRACER=$(abspath $(BIN)) RESULTS=$(RESULTS) scripts/drift-study.sh || exit 1; \
		TRACER=$(abspath $(BIN)) scripts/slurm-submit.sh $(SPECS) $(EXTRA_SPECS) --results $(RESULTS) --paper $(abspath PAPER.md) $(SLURM_FLAGS); \
	else \
		for s in $(SPECS); do $(abspath $(BIN)) sweep $$s --jobs $(JOBS) --results $(RESULTS) || exit 1; done; \
		TRACER=$(abspath $(BIN)) RESULTS=$(RESULTS) scripts/drift-study.sh || exit 1; \
		$(abspath $(BIN)) collect $(SPECS) $(EXTRA_SPECS) --results $(RESULTS) --paper PAPER.md && \
		$(MAKE) --no-print-directory plots RESULTS=$(RESULTS); \
	fi

# The specs `make reproduce` only collects (crossfit and oof honesty cells, the oof flywheel) and the split study, then
# everything as `make reproduce` does, the split study's section of PAPER.md included.
reproduce-extra:
	@$(MAKE) --no-print-directory all
	@for s in $(EXTRA_SPECS) $(STUDY_SPECS); do $(abspath $(BIN)) sweep $$s --jobs $(JOBS) --results $(RESULTS) || exit 1; done
	@$(MAKE) --no-print-directory reproduce EXTRA_SPECS="$(EXTRA_SPECS) $(STUDY_SPECS)"

# A reduced grid through every code path, into $(QUICK) (PAPER.md untouched).
reproduce-quick:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@if [ "$(SCHEDULER)" = slurm ]; then \
		TRACER=$(abspath $(BIN)) scripts/slurm-submit.sh experiments/quick.spec --results $(QUICK) --tables quick $(SLURM_FLAGS); \
	else \
		$(abspath $(BIN)) sweep experiments/quick.spec --jobs $(JOBS) --results $(QUICK) && \
		$(abspath $(BIN)) collect experiments/quick.spec --results $(QUICK) && \
		$(MAKE) --no-print-directory plots RESULTS=$(QUICK) TABLES=quick; \
	fi

# The Slurm test: a one-node cluster in a temporary directory (needs root; installs slurm-wlm and munge).
test-cluster:
	@SLURM=1 scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@TRACER_BIN=$(abspath $(BIN)) sh tests/cluster/test_slurm.sh

# Figures from $(RESULTS)/tables alone. TABLES=quick draws every figure from the quick spec's table.
# The names reach scripts/plots.sh through the environment, never through gnuplot's command line.
plots: export PLOT_RESULTS = $(RESULTS)
plots: export PLOT_TABLES = $(TABLES)
plots:
	@scripts/plots.sh

clean:
	rm -rf $(BUILD) tracer

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
