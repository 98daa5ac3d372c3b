#!/usr/bin/env bash
# Builds and runs every benchmark (release preset), writes Google Benchmark
# JSON to build/bench/, and prints each case as a ratio to its baseline from
# the same run: BM_<Thing>_<Case>/<arg> against BM_<Thing>_Baseline/<arg>.
#   tools/bench.sh [extra Google Benchmark flags, e.g. --benchmark_repetitions=5]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" >/dev/null
mkdir -p build/bench
for b in build/release/bench/*_bench; do
  name=$(basename "$b")
  echo "== $name" >&2
  "$b" --benchmark_out="build/bench/$name.json" --benchmark_out_format=json "$@" >&2
  python3 tools/bench_ratio.py "build/bench/$name.json"
done
