#!/usr/bin/env bash
# Runs `coemu demo` as a user would and checks its JSON summary.
#   demo_test.sh COEMU memory|lab WORKDIR
# lab: needs root; exits 77 (ctest: skipped) with a message otherwise.
set -euo pipefail
coemu=$1 mode=$2 dir=$3
mkdir -p "$dir"
pcap="$dir/demo-$mode-$$.pcap"
trap 'rm -f "$pcap"' EXIT
if [ "$mode" = lab ]; then
  if [ "$(id -u)" -ne 0 ] || ! [ -w /dev/net/tun ]; then
    echo "skipped: the lab demo needs root (CAP_NET_ADMIN)"; exit 77
  fi
  out=$("$coemu" demo --json --frames 500 --pcap "$pcap")
  want_mode=netns
else
  out=$("$coemu" demo --json --memory --frames 500 --pcap "$pcap")
  want_mode=memory
fi
echo "$out"
python3 - "$out" "$want_mode" "$pcap" <<'PY'
import json, subprocess, sys
s = json.loads(sys.argv[1]); mode = sys.argv[2]; pcap = sys.argv[3]
assert s["ok"] is True, s
assert s["mode"] == mode, s
for d in ("a_to_b", "b_to_a"):
    assert s[d]["received_intact"] == 500, s
assert s["left_behind"] == [], s
# Node a sent 500 and received 500 DATA frames (plus path probes): tcpdump agrees.
n = subprocess.run(["tcpdump", "-nn", "-r", pcap, "ether proto 0x88b6"], capture_output=True, text=True).stdout.count("\n")
assert n >= 1000, n
assert s["pcap"]["frames"] >= 1000, s
PY
