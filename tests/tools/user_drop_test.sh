#!/usr/bin/env bash
# `coemu listen --user nobody` in a lab: once set up the node runs as nobody
# with no capabilities and no_new_privs, its TAP and control socket (0600)
# are nobody's, calls to it work, root and nobody can `coemu show` it (no one
# else, even through a socket mode that would let them), and when
# it is stopped the root watcher removes the socket file: nothing is left.
#   user_drop_test.sh COEMU WORKDIR
# Needs root (CAP_NET_ADMIN); exits 77 (ctest: skipped) with a message otherwise.
set -euo pipefail
coemu=$1 dir=$2
. "$(dirname "$0")/lab_lib.sh"
lab_test_setup u user "$dir"
id nobody >/dev/null 2>&1 || { echo "skipped: no user 'nobody' on this system"; exit 77; }
nobody_uid=$(id -u nobody)

"$coemu" lab up "$lab" --nodes alpha,beta --link alpha-beta >/dev/null
"$coemu" listen --lab "$lab" --node beta --mode echo --json --user nobody >"$work/listen.out" 2>&1 &
listener=$!
for _ in $(seq 100); do grep -q "listening on" "$work/listen.out" && break; sleep 0.1; done
grep -q "listening on" "$work/listen.out" || fail "the listener did not start"
grep -q "running as nobody (uid $nobody_uid), no capabilities left" "$work/listen.out" || fail "no word of the drop"

child=$(pgrep -P "$listener" || true)
[ -n "$child" ] || fail "no node process under the root watcher $listener"
status=$(cat "/proc/$child/status")
echo "$status" | grep -qE "^Uid:\s+$nobody_uid\s+$nobody_uid\s+$nobody_uid\s+$nobody_uid$" || fail "uids: $(echo "$status" | grep Uid)"
echo "$status" | grep -qE "^CapEff:\s+0+$" || fail "capabilities left: $(echo "$status" | grep Cap)"
echo "$status" | grep -qE "^CapPrm:\s+0+$" || fail "permitted capabilities left: $(echo "$status" | grep Cap)"
echo "$status" | grep -qE "^NoNewPrivs:\s+1$" || fail "no_new_privs is not set"
watcher=$(grep -E "^Uid:" "/proc/$listener/status")
echo "$watcher" | grep -qE "^Uid:\s+0\s" || fail "the watcher is not root: $watcher"
sock="/run/coemu/labs/$lab/beta.sock"
[ "$(stat -c '%U %a' "$sock")" = "nobody 600" ] || fail "control socket: $(stat -c '%U %a' "$sock")"
owner=$(ip netns exec "coe-$lab-beta" cat "/sys/class/net/coe${lab}t1/owner")
[ "$owner" = "$nobody_uid" ] || fail "the TAP's owner is $owner"

sum=$("$coemu" call --lab "$lab" --node alpha beta:42 --count 20 --echo --json | grep call_summary) ||
  fail "a call to the unprivileged node"
python3 -c "
import json
s = json.loads('''$sum''')
assert s['echoed'] == 20, s
" || fail "echo: $sum"
"$coemu" show stats --lab "$lab" --node beta | grep -q "node beta" || fail "root cannot show the node"

# The socket answers its owner; anyone else is turned away by SO_PEERCRED
# even where the file's mode would let them connect.
runuser -u nobody -- "$coemu" show stats --lab "$lab" --node beta | grep -q "node beta" ||
  fail "the node's own user cannot show it"
if id daemon >/dev/null 2>&1; then
  chmod 666 "$sock"
  set +e
  msg=$(runuser -u daemon -- "$coemu" show stats --lab "$lab" --node beta 2>&1); rc=$?
  set -e
  chmod 600 "$sock"
  [ "$rc" -ne 0 ] || fail "another user (daemon) could read the node: $msg"
fi

kill "$listener"
for _ in $(seq 100); do kill -0 "$listener" 2>/dev/null || break; sleep 0.1; done
kill -0 "$listener" 2>/dev/null && fail "the watcher did not end"
kill -0 "$child" 2>/dev/null && fail "the node did not end"
set +e
wait "$listener"; rc=$?
set -e
listener=""
[ "$rc" -eq 0 ] || fail "exit $rc after SIGTERM"
[ -e "$sock" ] && fail "the control socket was left behind"
echo "user drop: ok"
