# Emporium: the three commands. Each installs what it needs, builds, then runs.
#   make run    build (release) and start the embedded server on 127.0.0.1:8080
#   make test   build (debug: ASan + UBSan) and run every test through ctest
#   make bench  build (release) and run the benchmark suite into bench/results/
SHELL := /bin/bash
# ccache keys on paths relative to the checkout, so a fresh clone (CI) reuses earlier builds.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1
JOBS ?= $(shell nproc)
RUN_ARGS ?=

.PHONY: run test bench build-release build-debug deps-build deps-test deps-bench clean format

deps-build:
	@scripts/install-deps.sh build
deps-test:
	@scripts/install-deps.sh test
deps-bench:
	@scripts/install-deps.sh bench

build-release: deps-build
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

build-debug: deps-test
	@cmake --preset debug >/dev/null
	@cmake --build --preset debug -j $(JOBS)

run: build-release
	./build/release/src/app/emporium seed --products 10000 --if-empty $(RUN_ARGS) && ./build/release/src/app/emporium serve $(RUN_ARGS)

test: build-debug
	@ctest --preset debug -j $(JOBS)

bench: deps-bench build-release
	@bench/run.sh build/release

format:
	@git ls-files '*.cpp' '*.h' | xargs clang-format -i

clean:
	rm -rf build
