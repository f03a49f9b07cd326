# fulcrum - build, test, bench.  See README.md.
#
# Objects live under build/<variant>/ so the normal and sanitizer builds never
# mix: build/release (build/fulcrum is its binary), build/asan, build/tsan.

VARIANT ?= release
B := build/$(VARIANT)

CC ?= cc
PKGS := openssl inih libcares
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g $(WARN) -I. -MMD -MP
LDLIBS := -lpthread -lcrypt

ifeq ($(VARIANT),release)
  OPT := -O2
  PKGS += jemalloc
  BIN := build/fulcrum
  CFLAGS_EXTRA := -DFULCRUM_JEMALLOC
else ifeq ($(VARIANT),asan)
  OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -DFULCRUM_DEBUG
  LDFLAGS += -fsanitize=address,undefined
  BIN := $(B)/fulcrum
else ifeq ($(VARIANT),tsan)
  OPT := -O1 -fsanitize=thread -DFULCRUM_DEBUG
  LDFLAGS += -fsanitize=thread
  BIN := $(B)/fulcrum
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS := $(CFLAGS_BASE) $(OPT) $(CFLAGS_EXTRA) $(PKG_CFLAGS) $(EXTRA_CFLAGS)

LIB_SRC := $(filter-out core/main.c,$(wildcard core/*.c core/*/*.c balancer/*.c health/*.c config/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
MAIN_OBJ := $(B)/core/main.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
HELPER_SRC := $(wildcard bench/*.c)
HELPER_BIN := $(HELPER_SRC:bench/%.c=build/%) build/backend

.PHONY: all run test test-unit test-integration test-asan test-tsan bench deps deps-bench \
	format format-check lint tidy compdb clean fuzz

all: $(BIN) $(HELPER_BIN)

$(BIN): $(MAIN_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/tests/%: tests/unit/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(PKG_LIBS) -lcriterion $(LDLIBS)

# Bench and test helpers (light backend, idle-connection prober) are plain
# programs: always optimised, never sanitized.
build/%: bench/%.c
	@mkdir -p build
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $< $(LDLIBS)

BACKEND_OBJ := $(patsubst bench/backend/%.c,build/helpers/backend/%.o,$(wildcard bench/backend/*.c))

build/backend: $(BACKEND_OBJ)
	$(CC) -o $@ $^ $(LDLIBS)

build/helpers/backend/%.o: bench/backend/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -c -o $@ $<

# Packages: the build and tests need these; `make bench` also the peers.
DEPS := build-essential pkg-config libjemalloc-dev libssl-dev libinih-dev libcriterion-dev \
	libc-ares-dev libcrypt-dev \
	curl python3 python3-pyflakes openssl clang-format iproute2
DEPS_BENCH := wrk haproxy nginx-light libnginx-mod-stream squid gnuplot-nox

deps:
	@scripts/deps.sh $(DEPS)

deps-bench:
	@scripts/deps.sh $(DEPS_BENCH)

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-demo.sh

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory test-unit test-integration

test-unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t --jobs 2; done

# TESTS="tcp http_smuggling" runs only the integration tests whose names
# contain one of those words. TEST_JOBS tests run at once: they mostly wait,
# and 4 at a time keep 2 CPUs busy without starving fulcrum under ASan.
TEST_JOBS ?= 4
test-integration: $(BIN) $(HELPER_BIN)
	FULCRUM_BIN=$(BIN) python3 tests/integration/run.py -j $(TEST_JOBS) $(addprefix -k ,$(TESTS))

test-asan: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory VARIANT=asan test-unit test-integration

# Criterion cannot set up its shared arena under ThreadSanitizer, and the
# unit tests are single-threaded: TSan runs the integration suite only.
test-tsan: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory VARIANT=tsan test-integration

bench: deps deps-bench
	@$(MAKE) --no-print-directory all
	bench/run.sh

# Fuzzing the pure parsers with libFuzzer (clang): each tests/fuzz/fuzz_*.c is
# built alone with the code it tests and runs FUZZ_SECONDS on a scratch copy of
# its seed corpus (tests/fuzz/corpus/<target>/); crashes land in build/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_LIB := core/http/parser.c core/http/message.c core/http/chunked.c core/http/rewrite.c \
	core/json.c
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-std=c11 -D_GNU_SOURCE -I. $(WARN)

build/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(FUZZ_LIB) core/http/parser.h core/http/chunked.h core/http/rewrite.h \
		core/json.h
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_LIB)

fuzz: $(FUZZ_BIN)
	@set -e; for t in $(FUZZ_BIN); do n=$${t##*/}; run=tests/fuzz/corpus-run/$$n; \
		rm -rf $$run; mkdir -p $$run; cp tests/fuzz/corpus/$$n/* $$run/; \
		echo "== $$n for $(FUZZ_SECONDS)s"; \
		$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=build/fuzz/$$n- $$run; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check: deps
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

# The Python tests and bench scripts: an undefined name in a helper thread
# only prints a traceback while its test passes, so pyflakes finds it first.
lint: deps
	pyflakes3 $$(git ls-files '*.py')

tidy: compdb
	clang-tidy -p . $(LIB_SRC) core/main.c

compdb:
	bear -- $(MAKE) -B all

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
