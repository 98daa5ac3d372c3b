#!/usr/bin/env bash
# Installs what is missing, builds coemu, and runs `coemu lab demo`: three
# nodes in network namespaces (the in-process memory wire without root), a
# guaranteed-QoS call with streamed data, a point-to-multipoint call, a
# refused call, a summary table, a pcap per node in build/coemu-demo/ and,
# with tshark, the first signaling exchange through the Wireshark dissector.
# Extra arguments go to `coemu lab demo` (see `coemu lab demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target coemu >/dev/null
exec build/release/tools/coemu lab demo --pcap-dir build/coemu-demo "$@"
