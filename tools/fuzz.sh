#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and fuzzes each for a
# bounded time, starting from its committed corpus (which it replays first);
# as many targets run at once as there are cores.
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
# One target per core at a time: each gets its full time, and the whole run
# takes about (targets / cores) x seconds.
fuzz_one() {
  local t=$1
  mkdir -p "build/fuzz/corpus/$t"
  # -print_final_stats: runs and coverage on the last lines, for the log.
  build/fuzz/tests/fuzz/"${t}_fuzz" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="build/fuzz/crashes/$t-" \
    "build/fuzz/corpus/$t" "tests/fuzz/corpus/$t" > "build/fuzz/$t.log" 2>&1
}
report() {  # TARGET RC
  if [ "$2" -ne 0 ]; then
    tail -n 60 "build/fuzz/$1.log" >&2
    echo "fuzz: $1 failed; the input is in build/fuzz/crashes/" >&2
    failed=1
  else
    echo "fuzz: $1: $(grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "build/fuzz/$1.log" | tr '\n' ' ')" >&2
  fi
}
slots=$(nproc)
failed=0
declare -A running=()  # pid -> target
reap_one() {  # waits for any running target and reports it
  local done_pid rc
  wait -n -p done_pid && rc=0 || rc=$?
  report "${running[$done_pid]}" "$rc"
  unset "running[$done_pid]"
}
for t in "${targets[@]}"; do
  while [ ${#running[@]} -ge "$slots" ]; do reap_one; done
  echo "== fuzz: $t for ${seconds}s" >&2
  fuzz_one "$t" &
  running[$!]=$t
done
while [ ${#running[@]} -gt 0 ]; do reap_one; done
exit "$failed"
