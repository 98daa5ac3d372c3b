#!/usr/bin/env bash
# A lab from a topology file, as a user runs it: `lab up FILE` with a link
# impairment and per-node capture; listen and call run as the lab's nodes
# (--lab/--node) and see the impairment (round trips of at least twice the
# link's delay); `coemu show` reads both nodes while a call runs; each node's
# pcap decodes; `lab down` leaves nothing and is
# idempotent; a bad file is refused (exit 2, file and line named) before
# anything is made.
#   lab_file_test.sh COEMU WORKDIR
# Needs root (CAP_NET_ADMIN); exits 77 (ctest: skipped) with a message otherwise.
set -euo pipefail
coemu=$1 dir=$2
. "$(dirname "$0")/lab_lib.sh"
lab_test_setup f labfile "$dir"

cat >"$work/topo.yaml" <<YAML
name: $lab
capture_dir: $work
nodes:
  alpha: {capture: true}
  beta: {address: beta.r2, capture: true}
links:
  - {between: [alpha, beta], impair: {delay: 20ms}}
YAML
"$coemu" lab up "$work/topo.yaml" >/dev/null
"$coemu" lab status --json | python3 -c "
import json, sys
labs = {l['lab']: l for l in json.load(sys.stdin)}
l = labs['$lab']
nodes = {n['name']: n for n in l['nodes']}
assert nodes['beta']['address'] == 'beta.r2', nodes
for n in nodes.values():
    assert n['impair'].startswith('delay=20ms'), n
    assert n['pcap'] == '$work/$lab-' + n['name'] + '.pcap', n
assert l['links'] == [['alpha', 'beta']], l
" || fail "lab status does not show the file's settings"

"$coemu" listen --lab "$lab" --node beta --sap 42 --mode echo --calls 2 >"$work/listen.out" 2>&1 &
listener=$!
wait_for_line "$work/listen.out" "listening on selector:42" 10 || fail "the listener did not start"
sum=$("$coemu" call --lab "$lab" --node alpha beta.r2:42 --count 20 --echo --json | grep call_summary) ||
  fail "the call failed"
python3 - "$sum" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
assert s["echoed"] == 20, s
# 20 ms each way, added by each sending node: no round trip can be shorter.
assert s["rtt_us"]["p50"] >= 40000, s
PY

# While a call runs, `coemu show` reads both nodes through their control sockets.
"$coemu" call --lab "$lab" --node alpha beta.r2:42 --qos guaranteed,rate=1M --duration 3s --rate 100k \
  >"$work/call2.out" 2>&1 &
caller=$!
seen=""
for _ in $(seq 50); do
  if "$coemu" show calls --lab "$lab" --node beta --json 2>/dev/null | grep -q '"state":"active"'; then seen=1; break; fi
  sleep 0.1
done
[ -n "$seen" ] || fail "show calls never showed the active call"
"$coemu" show all --lab "$lab" --node alpha --json | python3 -c "
import json, sys
s = json.load(sys.stdin)
assert s['address'] == 'alpha', s
c = [c for c in s['calls'] if c['state'] == 'active']
assert len(c) == 1 and c[0]['peer'] == 'beta.r2' and c[0]['originated'], s['calls']
assert c[0]['traffic']['transmit']['service'] == 'guaranteed' and c[0]['traffic']['transmit']['token_rate'] == 125000, c
assert [p['address'] for p in s['peers']] == ['beta.r2'], s['peers']
assert s['stats']['impairment']['delayed'] > 0, s['stats']
" || fail "show all on alpha"
"$coemu" show vcs --lab "$lab" --node beta | grep -q "active" || fail "show vcs (text) on beta"
"$coemu" lab status --json | python3 -c "
import json, sys
l = {l['lab']: l for l in json.load(sys.stdin)}['$lab']
n = {n['name']: n for n in l['nodes']}
assert n['alpha']['running'] and n['alpha']['calls'] == 1 and n['alpha']['peers'] == 1, n
assert n['beta']['running'] and n['beta']['calls'] == 1, n
" || fail "lab status does not show the running nodes and their calls"
wait "$caller" || fail "the second call exited $?"
wait "$listener" || fail "the listener exited $?"
listener=""
# A listener that refuses with a cause of its choosing; the caller names it.
"$coemu" listen --lab "$lab" --node beta --sap 43 --mode reject --cause 47 --calls 1 >"$work/listen.out" 2>&1 &
listener=$!
wait_for_line "$work/listen.out" "listening on selector:43" 10 || fail "the listener on 43 did not start"
set +e
msg=$("$coemu" call --lab "$lab" --node alpha beta.r2:43 2>&1); rc=$?
set -e
[ "$rc" -eq 1 ] && echo "$msg" | grep -q "cause 47 (resource unavailable)" || fail "reject --cause 47: rc $rc: $msg"
wait "$listener" || fail "the rejecting listener exited $?"
listener=""

for n in alpha beta; do
  "$coemu" decode --calls --json "$work/$lab-$n.pcap" | python3 -c "
import json, sys
calls = [json.loads(l) for l in sys.stdin]
assert [c['outcome'] for c in calls] == ['cleared', 'cleared', 'refused'] and calls[2]['cause'] == 47, calls
assert all(c['called'] == 'beta.r2' for c in calls), calls
" || fail "$n's capture does not hold the call"
done

"$coemu" lab down "$lab" >/dev/null
"$coemu" lab down "$lab" >/dev/null || fail "a second lab down failed"
ip netns list | grep -q "coe-$lab-" && fail "namespaces left behind"
[ -e "/run/coemu/labs/$lab.json" ] && fail "state file left behind"
[ -e "/run/coemu/labs/$lab" ] && fail "control socket directory left behind"

# A bad file: refused before anything is made.
printf 'name: %s\nnodes:\n  alpha: {}\nlinks:\n  - alpha-omega\n' "$lab" >"$work/bad.yaml"
set +e
msg=$("$coemu" lab up "$work/bad.yaml" 2>&1); rc=$?
set -e
[ "$rc" -eq 2 ] || fail "bad topology exited $rc: $msg"
echo "$msg" | grep -q "bad.yaml:5: link alpha-omega: no node 'omega'" || fail "bad topology not named: $msg"
ip netns list | grep -q "coe-$lab-" && fail "a refused file made namespaces"
echo "lab from a file: all checks passed"
