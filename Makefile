# TRACER-C. `make` builds ./tracer; `make test` runs the test suite; `make reproduce` every table and
# figure. Both install missing Debian packages first (scripts/install-deps.sh).

CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Wno-format-truncation -MMD -MP
LDLIBS  = -llinear -lsvm -lxxhash -lcsv -ljansson -lzstd -lnettle -lgsl -lopenblas -lm -pthread
BUILD   = build

LIB_SRC = $(wildcard src/common/*.c src/data/*.c src/feat/*.c src/surrogate/*.c src/gate/*.c src/exp/*.c src/report/*.c)
CLI_SRC = $(wildcard src/cli/*.c)
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC = $(wildcard bench/*.c)
BENCH_BIN = $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps test unit-tests bench reproduce clean

all: tracer

tracer: $(CLI_OBJ) $(BUILD)/libtracer.a
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

unit-tests: $(UNIT_BIN)

bench:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@scripts/bench.sh

deps:
	@scripts/install-deps.sh

test:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all unit-tests
	@tests/run.sh

reproduce:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@echo "make reproduce: the experiment runner is not implemented yet (issue: experiment runner)" >&2
	@exit 1

clean:
	rm -rf $(BUILD) tracer

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
