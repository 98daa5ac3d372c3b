#!/usr/bin/env bash
# PVCs from the command line (R68), as a user runs them in a lab: `coemu pvc
# add` on a running listener (echo), `coemu call --pvc` sends on the other
# end with no signaling and gets every packet back, `coemu show vcs` counts
# them on the PVC, `coemu pvc del` closes the listener's call (cause 27),
# and bad requests are refused with the reason.
#   pvc_test.sh COEMU WORKDIR
# Needs root (CAP_NET_ADMIN); exits 77 (ctest: skipped) with a message otherwise.
set -euo pipefail
coemu=$1 dir=$2
. "$(dirname "$0")/lab_lib.sh"
lab_test_setup p pvc "$dir"

"$coemu" lab up "$lab" --nodes alpha,beta --link alpha-beta >/dev/null
"$coemu" listen --lab "$lab" --node beta --mode echo --calls 1 --json >"$work/listen.out" 2>&1 &
listener=$!
wait_for_line "$work/listen.out" "listening on" 10 || fail "the listener did not start"

# beta has not heard alpha yet: the PVC names alpha's address (its MAC derives from it).
"$coemu" pvc add --lab "$lab" --node beta --vci 200 --peer-vci 100 --peer alpha --json >"$work/add.json" ||
  fail "pvc add"
python3 -c "import json,sys; a=json.load(open('$work/add.json')); assert a['ok'] and a['rx_vci']==200, a" ||
  fail "pvc add answer"
set +e
msg=$("$coemu" pvc add --lab "$lab" --node beta --vci 200 --peer-vci 101 --peer alpha 2>&1); rc=$?
set -e
[ "$rc" -eq 1 ] && echo "$msg" | grep -q "OID_CO_ADD_PVC" || fail "a second PVC on label 200: rc $rc: $msg"

sum=$("$coemu" call --lab "$lab" --node alpha --pvc 100:200@beta --count 40 --echo --json | grep call_summary) ||
  fail "call --pvc"
python3 -c "
import json, sys
s = json.loads('''$sum''')
assert s['sent'] == 40 and s['echoed'] == 40 and s['completed_ok'] == 40, s
" || fail "PVC data: $sum"
"$coemu" show vcs --lab "$lab" --node beta --json | python3 -c "
import json, sys
v = [v for v in json.load(sys.stdin) if v.get('pvc') == 200]
assert len(v) == 1 and v[0]['counters']['rx_frames'] == 40 and v[0]['counters']['tx_frames'] == 40, v
" || fail "show vcs does not count the PVC's frames"

"$coemu" pvc del --lab "$lab" --node beta --vci 200 >/dev/null || fail "pvc del"
wait "$listener" || fail "the listener exited $?"
listener=""
grep -q '"cause":27' "$work/listen.out" || fail "the listener's PVC call was not closed with cause 27"
grep -q '"packets":40' "$work/listen.out" || fail "the listener did not count 40 packets"
set +e
msg=$("$coemu" pvc del --lab "$lab" --node beta --vci 200 2>&1); rc=$?
set -e
[ "$rc" -eq 1 ] && echo "$msg" | grep -q "no node answers" || fail "pvc del after the node ended: rc $rc: $msg"
echo "pvc: all checks passed"
