# privguide top-level Makefile: the two commands of the README, plus helpers.
#   make demo   install missing Debian packages, build, load the bundled sample, run the main job
#               (PORT=N: serve on another port than 8080; DEMO_DIR=DIR: another data dir)
#   make test   the same set-up, then every test through ctest (a normal and an ASan+UBSan pass)
#   make fuzz   every libFuzzer harness of fuzz/ for FUZZ_SECONDS each (default 600)
PREFIX ?= /usr/local
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
DEMO_DIR ?= demo-data
# the demo server's port: make demo PORT=9090 (or PORT=9090 make demo)
PORT ?= 8080
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

# both passes; the ASan tree builds at nice 19 during the normal pass (scripts/make-test)
test: build $(ASAN_BUILD)/CMakeCache.txt
	@scripts/make-test $(BUILD) $(ASAN_BUILD) $(JOBS)

# The build's output goes to $(BUILD)/demo-build.log (its tail is shown when it
# fails), so the demo's URLs are near the top of the terminal.
demo: deps $(BUILD)/CMakeCache.txt
	@echo "== building privguide (output in $(BUILD)/demo-build.log)"
	@cmake --build $(BUILD) -j $(JOBS) >$(BUILD)/demo-build.log 2>&1 || { \
	    tail -n 40 $(BUILD)/demo-build.log >&2; \
	    echo "make demo: the build failed; the whole output is in $(BUILD)/demo-build.log" >&2; \
	    exit 1; }
	@PORT=$(PORT) scripts/demo $(PVG) $(DEMO_DIR)

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
