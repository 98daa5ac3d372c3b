#!/usr/bin/env bash
# `coemu lab demo` as a user runs it: its JSON summary tells the story
# (guaranteed call with every packet delivered and echoed, a
# point-to-multipoint call whose parties each get the whole stream, a call
# to an unregistered SAP refused with cause 88), each node's pcap decodes to
# those calls, and a lab run leaves no namespace behind.
#   lab_demo_test.sh COEMU memory|lab WORKDIR
# lab: needs root; exits 77 (ctest: skipped) with a message otherwise.
set -euo pipefail
coemu=$1 mode=$2 dir=$3
work="$dir/labdemo-$mode-$$"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
if [ "$mode" = lab ]; then
  if [ "$(id -u)" -ne 0 ] || ! [ -w /dev/net/tun ]; then
    echo "skipped: the lab demo needs root (CAP_NET_ADMIN)"; exit 77
  fi
  out=$("$coemu" lab demo --json --seconds 0.5 --pcap-dir "$work")
else
  out=$("$coemu" lab demo --json --seconds 0.5 --pcap-dir "$work" --memory)
fi
python3 - "$out" "$mode" "$work" "$coemu" <<'PY'
import json, subprocess, sys
s = json.loads(sys.argv[1]); mode, work, coemu = sys.argv[2:5]
assert s["ok"] is True and s["wire"] == ("lab" if mode == "lab" else "memory"), s
qos, p2mp, refused = s["calls"]
assert qos["result"] == "ok" and qos["sent"] > 0 and qos["received"] == qos["sent"], qos
assert qos["echoed"] == qos["sent"] and qos["drops"] == 0 and qos["rtt_us"]["p50"] > 0, qos
assert qos["qos"].startswith("guaranteed 20 Mbit/s"), qos
assert p2mp["result"] == "ok" and p2mp["parties"] == 2 and p2mp["drops"] == 0, p2mp
if mode == "lab":
    assert p2mp["received"] == {"beta": p2mp["sent"], "gamma": p2mp["sent"]}, p2mp
else:  # both parties are beta's on the two-node memory wire
    assert p2mp["received"] == {"beta": 2 * p2mp["sent"]}, p2mp
assert (refused["result"], refused["cause"]) == ("refused", 88), refused
nodes = ["alpha", "beta", "gamma"] if mode == "lab" else ["alpha", "beta"]
assert [c["node"] for c in s["captures"]] == nodes, s["captures"]
calls = [json.loads(l) for l in subprocess.run([coemu, "decode", "--calls", "--json", f"{work}/alpha.pcap"],
                                                 capture_output=True, text=True, check=True).stdout.splitlines()]
assert [(c["bearer"], c["outcome"]) for c in calls] == [("p2p", "cleared"), ("p2mp", "cleared"), ("p2p", "refused")], calls
assert calls[0]["traffic"]["service"] == "guaranteed" and calls[2]["cause"] == 88, calls
PY
if [ "$mode" = lab ] && ip netns list | grep -q "^coe-dm"; then
  echo "FAIL: the demo left namespaces behind"; ip netns list; exit 1
fi
echo "lab demo ($mode): all checks passed"
