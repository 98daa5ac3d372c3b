#!/usr/bin/env bash
# `coemu call` with QoS, pacing and several parties, as a user runs it, in a
# lab of three namespaces: alpha makes one guaranteed point-to-multipoint
# call to beta and gamma and streams paced data for a second; both leaves
# receive every packet; the caller's pcap, read back by `coemu decode`,
# shows the FLOWSPEC asked for and the party ladder; nothing is left behind.
#   call_p2mp_qos_test.sh COEMU WORKDIR
# Needs root (CAP_NET_ADMIN); exits 77 (ctest: skipped) with a message otherwise.
set -euo pipefail
coemu=$1 dir=$2
if [ "$(id -u)" -ne 0 ] || ! [ -w /dev/net/tun ]; then
  echo "skipped: call needs root (CAP_NET_ADMIN) for the lab"; exit 77
fi
mkdir -p "$dir"
lab="m$(( $$ % 100000 ))"
ob="$dir/beta-$$.out" oc="$dir/gamma-$$.out" pcap="$dir/alpha-$$.pcap"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "$coemu" lab down "$lab" >/dev/null 2>&1 || true
  rm -f "$ob" "$oc" "$pcap"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- beta:"; cat "$ob" || true; echo "--- gamma:"; cat "$oc" || true; exit 1; }

"$coemu" lab up "$lab" --nodes a,b,c --link a-b --link b-c >/dev/null
"$coemu" listen -n "coe-$lab-b" -d "coe${lab}t1" -a beta --sap 42 --mode sink --calls 1 --json >"$ob" 2>&1 &
pids+=($!)
"$coemu" listen -n "coe-$lab-c" -d "coe${lab}t2" -a gamma --sap 42 --mode sink --calls 1 --json >"$oc" 2>&1 &
pids+=($!)
for f in "$ob" "$oc"; do
  for _ in $(seq 100); do grep -q "listening on selector:42" "$f" && break; sleep 0.1; done
  grep -q "listening on selector:42" "$f" || fail "a listener did not start"
done

sum=$("$coemu" call -n "coe-$lab-a" -d "coe${lab}t0" -a alpha beta:42 gamma:42 \
        --qos guaranteed,rate=2M,bucket=16k --rate 1M --duration 1s --size 500 --pcap "$pcap" --json |
      grep call_summary) || fail "the call failed"
for p in "${pids[@]}"; do wait "$p" || fail "a listener exited $?"; done
pids=()

python3 - "$sum" "$ob" "$oc" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
assert s["multipoint"] and s["parties"] == 2, s
assert s["sent"] > 0 and s["completed_ok"] == s["sent"] and s["completed_failed"] == 0, s
# Paced at 1 Mbit/s: never ahead of the rate (one packet of slack).
assert s["bytes"] * 8 <= 1e6 * s["seconds"] + 500 * 8, s
for path in sys.argv[2:]:
    sums = [json.loads(l) for l in open(path) if l.startswith("{") and "call_summary" in l]
    assert len(sums) == 1 and sums[0]["packets"] == s["sent"] and sums[0]["peer"] == "alpha", (path, sums)
PY

calls=$("$coemu" decode --calls --json "$pcap")
python3 - "$calls" <<'PY'
import json, sys
calls = [json.loads(l) for l in sys.argv[1].splitlines()]
assert len(calls) == 1, calls
c = calls[0]
assert c["bearer"] == "p2mp" and c["outcome"] == "cleared" and c["cause"] == 16, c
t = c["traffic"]
assert (t["service"], t["token_rate"], t["bucket"]) == ("guaranteed", 250000, 16384), t
ladder = [(m["to"], m["msg"]) for m in c["messages"] if m["from"] == "alpha"]
assert ladder == [("beta", "SETUP"), ("beta", "CONNECT_ACK"), ("gamma", "ADD_PARTY"), ("gamma", "DROP_PARTY"),
                  ("beta", "RELEASE")], ladder
assert {d["direction"] for d in c["data"]} == {"alpha -> beta", "alpha -> gamma"}, c["data"]
PY
"$coemu" lab down "$lab" >/dev/null
for n in a b c; do
  ip netns list | grep -q "coe-$lab-$n" && fail "namespace coe-$lab-$n left behind"
done
echo "call p2mp qos: all checks passed"
