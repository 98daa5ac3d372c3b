#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and fuzzes each for a
# bounded time, starting from its committed corpus (which it replays first).
#   tools/fuzz.sh [seconds per target, default 60] [target ...]
# Targets: sig_codec data_codec transport call_fsm (default: all).
# Exits non-zero at the first crash or failed check; the input that did it is
# left in build/fuzz/crashes/. New inputs go to build/fuzz/corpus/<target>;
# copy the ones worth keeping (every crash, after its fix) into
# tests/fuzz/corpus/<target>, where ctest replays them in every build.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh  # clang and its fuzzer runtime among the rest
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sig_codec data_codec transport call_fsm)
CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCOEMU_FUZZ=ON -DCOEMU_WERROR=OFF \
  -DCOEMU_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/fuzz --target "${targets[@]/%/_fuzz}" >/dev/null
mkdir -p build/fuzz/crashes
for t in "${targets[@]}"; do
  mkdir -p "build/fuzz/corpus/$t"
  echo "== fuzz: $t for ${seconds}s" >&2
  # -print_final_stats: runs and coverage on the last lines, for the log.
  if ! build/fuzz/tests/fuzz/"${t}_fuzz" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="build/fuzz/crashes/$t-" \
      "build/fuzz/corpus/$t" "tests/fuzz/corpus/$t" > "build/fuzz/$t.log" 2>&1; then
    tail -n 60 "build/fuzz/$t.log" >&2
    echo "fuzz: $t failed; the input is in build/fuzz/crashes/" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "build/fuzz/$t.log" | tr '\n' ' ' >&2
  echo >&2
done
