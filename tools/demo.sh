#!/usr/bin/env bash
# Installs what is missing, builds coemu, and runs the two-node demo: a real
# network-namespace lab as root, the in-process memory wire otherwise.
# Extra arguments go to `coemu demo` (see `coemu demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target coemu >/dev/null
exec build/release/tools/coemu demo --pcap build/coemu-demo.pcap "$@"
