#!/usr/bin/env bash
# A peer killed with SIGKILL mid-call and started again: the survivor's call
# is cleared with cause 41 (the restarted node's HELLO names a new life; had
# it stayed away, the dead interval would), `coemu call` stops sending and
# says so, the restarted node takes its stale control socket back, and a new
# call to it goes through.
#   peer_restart_test.sh COEMU WORKDIR
# Needs root (CAP_NET_ADMIN); exits 77 (ctest: skipped) with a message otherwise.
set -euo pipefail
coemu=$1 dir=$2
. "$(dirname "$0")/lab_lib.sh"
lab_test_setup k restart "$dir"
caller=""
trap '[ -n "$caller" ] && kill "$caller" 2>/dev/null; lab_test_cleanup' EXIT

"$coemu" lab up "$lab" --nodes alpha,beta --link alpha-beta >/dev/null
"$coemu" listen --lab "$lab" --node beta --mode echo --json >"$work/listen.out" 2>&1 &
listener=$!
wait_for_line "$work/listen.out" "listening on" 10 || fail "the listener did not start"

# A long call from alpha, sending all along.
"$coemu" call --lab "$lab" --node alpha beta:42 --duration 60s --rate 200k --json >"$work/call.out" 2>"$work/call.err" &
caller=$!
wait_for_line "$work/call.out" '"make_call_complete"' 10 || fail "the call did not come up: $(cat "$work/call.err")"
grep '"make_call_complete"' "$work/call.out" | grep -q '"status":"SUCCESS"' || fail "the call failed: $(cat "$work/call.out")"

kill -KILL "$listener"
wait "$listener" 2>/dev/null || true
"$coemu" listen --lab "$lab" --node beta --mode echo --json >"$work/listen.out" 2>&1 &
listener=$!
wait_for_line "$work/listen.out" "listening on" 10 || fail "the restarted listener did not start"

# The caller hears its call cleared (cause 41) and ends, long before its 60 s.
for _ in $(seq 150); do kill -0 "$caller" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$caller" 2>/dev/null; then fail "the caller still runs 15 s after its peer restarted"; fi
set +e
wait "$caller"; rc=$?
set -e
caller=""
[ "$rc" -eq 1 ] || fail "the caller exited $rc, expected 1"
grep '"incoming_close"' "$work/call.out" | grep -q '"cause":41' || fail "no incoming close with cause 41: $(cat "$work/call.out")"
grep -q "cleared by the peer or the network: cause 41 (temporary failure)" "$work/call.err" ||
  fail "the caller did not say why it stopped: $(cat "$work/call.err")"

# The restarted node answers calls.
sum=$("$coemu" call --lab "$lab" --node alpha beta:42 --count 20 --echo --json | grep call_summary) ||
  fail "a call to the restarted node"
python3 -c "
import json
s = json.loads('''$sum''')
assert s['sent'] == 20 and s['echoed'] == 20, s
" || fail "echo from the restarted node: $sum"
"$coemu" show calls --lab "$lab" --node beta --json | python3 -c "
import json, sys
calls = json.load(sys.stdin)
assert calls == [], calls
" || fail "the restarted node keeps a call"
echo "peer restart: ok"
