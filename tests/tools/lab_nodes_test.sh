#!/usr/bin/env bash
# Nodes a lab runs itself: `lab up` starts a listener for each node whose
# topology says `listen`, waits until each answers on its control socket,
# and `lab status` shows them running; a point-to-multipoint call reaches
# both; `lab down` stops them (their captures flushed) and leaves no process,
# namespace or file behind; a listener that cannot start fails `lab up`,
# which then removes the lab.
#   lab_nodes_test.sh COEMU WORKDIR
# Needs root (CAP_NET_ADMIN); exits 77 (ctest: skipped) with a message otherwise.
set -euo pipefail
coemu=$1 dir=$2
. "$(dirname "$0")/lab_lib.sh"
lab_test_setup n labnodes "$dir"

cat >"$work/star.yaml" <<YAML
name: $lab
capture_dir: $work
nodes:
  root: {}
  l1: {capture: true, listen: {sap: 42, mode: sink}}
  l2: {capture: true, listen: [42, "service:echo"]}
links: [root-l1, root-l2]
YAML
"$coemu" lab up "$work/star.yaml" >/dev/null || fail "lab up"
"$coemu" lab status --json | python3 -c "
import json, sys
n = {n['name']: n for l in json.load(sys.stdin) if l['lab'] == '$lab' for n in l['nodes']}
assert n['l1']['running'] and n['l2']['running'] and not n['root']['running'], n
" || fail "lab status does not show the lab's listeners running"
[ "$(pgrep -f "listen --lab $lab " | wc -l)" -eq 2 ] || fail "not two listener processes"

sum=$("$coemu" call --lab "$lab" --node root l1:42 l2:service:echo --count 30 --json | grep call_summary) ||
  fail "the call to both listeners"
python3 -c "
import json
s = json.loads('''$sum''')
assert s['parties'] == 2 and s['sent'] == 30 and s['completed_ok'] == 30, s
" || fail "summary: $sum"
"$coemu" show saps --lab "$lab" --node l2 --json | grep -q '"service:echo"' || fail "show saps on l2"
set +e
msg=$("$coemu" call --lab "$lab" --node l1 l2:42 2>&1); rc=$?
set -e
[ "$rc" -eq 1 ] && echo "$msg" | grep -q "node l1 of lab $lab is already running" || fail "a second process as l1: $msg"

"$coemu" lab down "$lab" >/dev/null || fail "lab down"
pgrep -f "listen --lab $lab " >/dev/null && fail "listener processes left behind"
ip netns list | grep -q "coe-$lab-" && fail "namespaces left behind"
[ -e "/run/coemu/labs/$lab" ] && fail "run directory left behind"
for n in l1 l2; do
  "$coemu" decode --calls --json "$work/$lab-$n.pcap" | python3 -c "
import json, sys
calls = [json.loads(l) for l in sys.stdin]
assert len(calls) == 1 and calls[0]['bearer'] == 'p2mp' and calls[0]['outcome'] == 'cleared', calls
assert calls[0]['data'][0]['frames'] == 30, calls
" || fail "$n's capture (flushed when lab down stopped it)"
done

# A listener that cannot start (the same SAP twice: SAP_IN_USE) fails lab
# up, which says why and removes the lab.
cat >"$work/pair.yaml" <<YAML
name: $lab
nodes:
  a: {}
  b: {listen: [42, 42]}
links: [a-b]
YAML
set +e
msg=$("$coemu" lab up "$work/pair.yaml" 2>&1); rc=$?
set -e
[ "$rc" -eq 1 ] || fail "lab up with a failing listener exited $rc: $msg"
echo "$msg" | grep -q "node b did not start listening" || fail "the failure is not named: $msg"
echo "$msg" | grep -q "SAP_IN_USE" || fail "the listener's reason is not shown: $msg"
ip netns list | grep -q "coe-$lab-" && fail "a failed lab up left namespaces"
pgrep -f "listen --lab $lab " >/dev/null && fail "a failed lab up left a process"
echo "lab nodes: all checks passed"
