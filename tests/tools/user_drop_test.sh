#!/usr/bin/env bash
# `coemu listen --user nobody` in a lab: once set up the node runs as nobody
# with no capabilities and no_new_privs, its TAP and control socket (0600)
# are nobody's, calls to it work, root and nobody can `coemu show` it (no one
# else, even through a socket mode that would let them), and when
# it is stopped the root watcher removes the socket file: nothing is left.
# Then the same through `lab up`: a topology's `listen: {user: ...}` and
# `lab up --user`, and a user the system does not know, refused before
# anything is built.
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
wait_for_line "$work/listen.out" "listening on" 10 || fail "the listener did not start"
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
"$coemu" lab down "$lab" >/dev/null || fail "lab down"

# lab up: the file names the user of one listener, --user the other's.
cat >"$work/lab.yaml" <<YAML
name: $lab
nodes:
  alpha: {listen: {sap: 43, mode: echo}}
  beta: {listen: {sap: 42, mode: echo, user: nobody}}
  gamma: {}
links: [alpha-beta, beta-gamma]
YAML
set +e
msg=$("$coemu" lab up "$work/lab.yaml" --user no-such-user-coemu 2>&1); rc=$?
set -e
[ "$rc" -eq 2 ] && echo "$msg" | grep -q "user 'no-such-user-coemu'" || fail "an unknown user: rc $rc: $msg"
ip netns list | grep -q "coe-$lab-" && fail "a refused lab up built something"
other=daemon  # any user but root and nobody; Debian always has daemon
id "$other" >/dev/null 2>&1 || other=nobody
out=$("$coemu" lab up "$work/lab.yaml" --user "$other") || fail "lab up with users: $out"
echo "$out" | grep -q "beta: .*listening (echo, as nobody)" || fail "beta's user is not shown: $out"
echo "$out" | grep -q "alpha: .*listening (echo, as $other)" || fail "alpha's user is not shown: $out"
for pair in "beta $nobody_uid" "alpha $(id -u "$other")"; do
  set -- $pair
  watcher=$(pgrep -u 0 -f "listen --lab $lab --node $1 " || true)
  [ -n "$watcher" ] || fail "no root watcher for $1's listener"
  child=$(pgrep -P "$watcher" || true)
  [ -n "$child" ] || fail "no node process under $1's watcher"
  grep -qE "^Uid:\s+$2\s+$2\s+$2\s+$2$" "/proc/$child/status" || fail "$1's listener: $(grep Uid "/proc/$child/status")"
  grep -qE "^CapEff:\s+0+$" "/proc/$child/status" || fail "$1's listener kept capabilities"
done
sum=$("$coemu" call --lab "$lab" --node gamma beta:42 --count 5 --echo --json | grep call_summary) ||
  fail "a call to the lab's unprivileged listener"
echo "$sum" | grep -q '"echoed":5' || fail "echo through the lab: $sum"
"$coemu" lab status --json | python3 -c "
import json, sys
lab = [l for l in json.load(sys.stdin) if l['lab'] == '$lab'][0]
users = {n['name']: n['listen_user'] for n in lab['nodes']}
assert users == {'alpha': '$other', 'beta': 'nobody', 'gamma': ''}, users
" || fail "lab status does not say whom the listeners run as"
"$coemu" lab down "$lab" >/dev/null || fail "lab down"
pgrep -f "listen --lab $lab " >/dev/null && fail "lab down left a listener"
[ -e "/run/coemu/labs/$lab" ] && fail "lab down left the run directory"
echo "user drop: ok"
