# privguide top-level Makefile: the two commands of the README, plus helpers.
#   make demo   install missing Debian packages, build, load the bundled sample, run the main job
#   make test   the same set-up, then every test through ctest (a normal and an ASan+UBSan pass)
#   make fuzz   every libFuzzer harness of fuzz/ for FUZZ_SECONDS each (default 600)
PREFIX ?= /usr/local
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
DEMO_DIR ?= demo-data
FUZZ_SECONDS ?= 600
PVG = $(BUILD)/privguide

.PHONY: all deps build build-asan test test-fast test-asan demo install bench clean format fuzz

all: build

deps:
	@scripts/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPVG_SANITIZE=ON -DPVG_BUILD_BENCH=OFF >/dev/null

build-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	    PVG_SANITIZED=1 ctest --output-on-failure -j $(JOBS) -LE nosan

test: test-fast test-asan

demo: build
	@scripts/demo $(PVG) $(DEMO_DIR)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

bench: build
	@scripts/run-benchmarks $(BUILD)

# clang + libFuzzer + ASan/UBSan build in build-fuzz/; findings in build-fuzz/crashes/
fuzz: deps
	fuzz/run.sh $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
