#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test with ctest: the release
# build (warnings as errors), then ASan+UBSan, then TSan; then each libFuzzer
# target for COEMU_FUZZ_SECONDS (default 60) from its corpus, one per core.
# Exits non-zero on any failure. Tests labelled `net` need root (CAP_NET_ADMIN)
# and skip without it.
#   tools/test.sh            all three builds and the fuzzers
#   tools/test.sh release    one step (release, debug, asan, tsan or fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."

tools/deps.sh

presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(release asan tsan fuzz)
jobs=$(nproc)

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

# Each step says how long it took: the README's timings come from these lines.
took() { echo "== $1: $2 took $(( SECONDS - $3 )) s" >&2; }
for p in "${presets[@]}"; do
  t0=$SECONDS
  if [ "$p" = fuzz ]; then
    tools/fuzz.sh "${COEMU_FUZZ_SECONDS:-60}"
    took fuzz "the clang build and fuzzing" "$t0"
    continue
  fi
  echo "== $p: configure and build" >&2
  cmake --preset "$p" >/dev/null
  cmake --build --preset "$p" -j "$jobs"
  took "$p" build "$t0"
  t0=$SECONDS
  echo "== $p: tests" >&2
  ctest --preset "$p" -j "$jobs" --timeout 300
  took "$p" tests "$t0"
done
echo "== all steps took $SECONDS s" >&2

# Nothing a test made may outlive it.
left=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^coe' || true)
leftns=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^coe' || true)
if [ -n "$left$leftns" ]; then
  echo "tests left devices or namespaces behind: $left $leftns" >&2
  exit 1
fi
