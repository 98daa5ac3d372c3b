#!/usr/bin/env bash
# `coemu listen` and `coemu call` as a user runs them, in a lab of two
# namespaces: echoed data, a refused call (cause 88), an unknown node, usage
# errors, and nothing left behind.
#   listen_call_test.sh COEMU WORKDIR
# Needs root (CAP_NET_ADMIN); exits 77 (ctest: skipped) with a message otherwise.
set -euo pipefail
coemu=$1 dir=$2
if [ "$(id -u)" -ne 0 ] || ! [ -w /dev/net/tun ]; then
  echo "skipped: listen/call need root (CAP_NET_ADMIN) for the lab"; exit 77
fi
mkdir -p "$dir"
lab="c$(( $$ % 100000 ))"
out="$dir/listen-$$.out"
listener=""
cleanup() {
  [ -n "$listener" ] && kill "$listener" 2>/dev/null || true
  "$coemu" lab down "$lab" >/dev/null 2>&1 || true
  rm -f "$out"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- listener output:"; cat "$out" || true; exit 1; }

"$coemu" lab up "$lab" --nodes a,b --link a-b
nsa="coe-$lab-a" nsb="coe-$lab-b" tapa="coe${lab}t0" tapb="coe${lab}t1"

"$coemu" listen -n "$nsb" -d "$tapb" -a beta --sap 42 --mode echo --calls 2 --json >"$out" 2>&1 &
listener=$!
for _ in $(seq 100); do grep -q "listening on selector:42" "$out" && break; sleep 0.1; done
grep -q "listening on selector:42" "$out" || fail "the listener did not start"

# 1: a call with echoed data.
sum=$("$coemu" call -n "$nsa" -d "$tapa" -a alpha beta:42 --count 200 --size 100 --echo --json | grep call_summary)
python3 - "$sum" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
assert s["sent"] == 200 and s["completed_ok"] == 200 and s["echoed"] == 200, s
assert s["rtt_us"]["p50"] > 0, s
PY

# 2: an unregistered SAP is refused with cause 88, exit 1, the cause named.
set +e
msg=$("$coemu" call -n "$nsa" -d "$tapa" -a alpha beta:7 2>&1); rc=$?
set -e
[ "$rc" -eq 1 ] || fail "call to an unregistered SAP exited $rc"
echo "$msg" | grep -q "cause 88 (incompatible destination)" || fail "no cause 88 in: $msg"

# 3: an unknown node: exit 1, named.
set +e
msg=$("$coemu" call -n "$nsa" -d "$tapa" -a alpha gamma:42 --wait 0.3 2>&1); rc=$?
set -e
[ "$rc" -eq 1 ] || fail "call to an unknown node exited $rc"
echo "$msg" | grep -q "no HELLO from node 'gamma'" || fail "unknown node not named: $msg"

# 4: usage errors exit 2 and name the bad value.
set +e
msg=$("$coemu" call -n "$nsa" -d "$tapa" -a alpha beta 2>&1); rc=$?
msg2=$("$coemu" listen -n "$nsb" -d "$tapb" -a beta --sap 0 2>&1); rc2=$?
set -e
[ "$rc" -eq 2 ] && echo "$msg" | grep -q "'beta'" || fail "bad DEST: rc $rc: $msg"
[ "$rc2" -eq 2 ] && echo "$msg2" | grep -q -- "--sap '0'" || fail "bad --sap: rc $rc2: $msg2"

# 5: a second call; the listener stops after its second call and says so.
"$coemu" call -n "$nsa" -d "$tapa" -a alpha beta:42 --count 10 >/dev/null 2>&1
for _ in $(seq 100); do kill -0 "$listener" 2>/dev/null || break; sleep 0.1; done
wait "$listener" || fail "the listener exited $?"
listener=""
python3 - "$out" <<'PY'
import json, sys
sums = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{") and "call_summary" in l]
assert [s["packets"] for s in sums] == [200, 10], sums
assert [s["echoed"] for s in sums] == [200, 10], sums
events = [json.loads(l)["event"] for l in open(sys.argv[1]) if l.startswith("{")]
assert events.count("incoming_call") == 2 and events.count("call_connected") == 2, events
assert events.count("create_vc") == 2 and events.count("delete_vc") == 2, events
# After the node's close request: the SAP goes, and the AF closes at once or,
# while the CM's VC for the last call still drains, with a completion.
tail = events[events.index("notify_close_af") + 1:]
assert "deregister_sap_complete" in tail, events
assert set(tail) <= {"deregister_sap_complete", "delete_vc", "close_af_complete"}, events
PY

# 6: a TAP the command created goes when it ends.
set +e
msg=$("$coemu" call -n "$nsa" -d "coe${lab}x" -a alpha beta:42 --wait 0.2 2>&1)
set -e
echo "$msg" | grep -q "created TAP coe${lab}x" || fail "no TAP created: $msg"
if ip netns exec "$nsa" ip link show "coe${lab}x" >/dev/null 2>&1; then fail "created TAP left behind"; fi
echo "listen/call: all checks passed"
