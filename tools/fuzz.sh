#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and fuzzes each for a while.
#   tools/fuzz.sh [seconds per target, default 60] [target ...]
# New inputs go to build/fuzz/corpus/<target>; copy the ones worth keeping
# (crashes, new coverage) into tests/fuzz/corpus/<target>, where ctest
# replays them on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "fuzz: installing clang and its fuzzer runtime" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends clang libclang-rt-dev >/dev/null 2>&1 ||
    apt-get install -y -qq --no-install-recommends clang "libclang-rt-$(clang --version | sed -n 's/.*version \([0-9]*\).*/\1/p')-dev" >/dev/null
fi
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sig_codec)
CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCOEMU_FUZZ=ON -DCOEMU_WERROR=OFF \
  -DCOEMU_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
for t in "${targets[@]}"; do
  cmake --build build/fuzz --target "${t}_fuzz" >/dev/null
  mkdir -p "build/fuzz/corpus/$t"
  echo "== fuzzing $t for ${seconds}s" >&2
  build/fuzz/tests/fuzz/"${t}_fuzz" -max_total_time="$seconds" -print_final_stats=1 \
    "build/fuzz/corpus/$t" "tests/fuzz/corpus/$t"
done
