#!/usr/bin/env bash
# Runs `coemu bench` suites for a fraction of a second so they keep working,
# and checks that every row is well-formed JSON with a baseline.
#   bench_smoke.sh COEMU datapath|latency|calls|scale|all|plot
# calls needs root (TAPs and namespaces); exits 77 (ctest: skipped) otherwise.
# plot draws a PNG from a short datapath + latency run (needs gnuplot).
set -euo pipefail
coemu=$1 suite=$2
case "$suite" in
  datapath)
    links=memory
    if [ "$(id -u)" -eq 0 ] && [ -w /dev/net/tun ]; then links=both; fi
    out=$("$coemu" bench datapath --links "$links" --sizes 64 --seconds 0.05 --repeat 2 --json) ;;
  latency)
    links=memory
    if [ "$(id -u)" -eq 0 ] && [ -w /dev/net/tun ]; then links=both; fi
    out=$("$coemu" bench latency --links "$links" --rounds 50 --repeat 2 --json) ;;
  plot)
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    out=$("$coemu" bench latency --links memory --rounds 50 --repeat 1 --json --plot "$dir/b.png")
    # A PNG, and not an empty one.
    python3 -c 'import sys; b = open(sys.argv[1], "rb").read(); assert b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) > 2000, len(b)' "$dir/b.png"
    # Without gnuplot: the table still comes, the exit code is 1 and the
    # message says what to install.
    rc=0
    PATH=/nonexistent "$coemu" bench latency --links memory --rounds 20 --repeat 1 --plot "$dir/c.png" \
      >"$dir/out" 2>"$dir/err" || rc=$?
    [ "$rc" -eq 1 ] || { echo "no gnuplot: exit $rc, expected 1"; exit 1; }
    grep -q "gnuplot" "$dir/err" || { echo "no gnuplot: the message does not say so"; cat "$dir/err"; exit 1; }
    grep -q "memory_blocking_rtt_p50" "$dir/out" || { echo "no gnuplot: the table is missing"; exit 1; } ;;
  calls)
    if [ "$(id -u)" -ne 0 ] || ! [ -w /dev/net/tun ]; then
      echo "skipped: bench calls needs root (CAP_NET_ADMIN)"; exit 77
    fi
    out=$("$coemu" bench calls --seconds 0.1 --repeat 1 --inflight 1,4 --json) ;;
  scale)
    out=$("$coemu" bench scale --calls 3000 --batch 1000 --json) ;;
  all)
    # 0.2 s: under TSan on a loaded machine one call can take 40 ms, and a
    # window without a completed call would read as a rate of 0.
    out=$("$coemu" bench all --seconds 0.2 --repeat 1 --rounds 100 --calls 3000 --json) ;;
  *) echo "usage: $0 COEMU datapath|latency|calls|scale|all|plot"; exit 2 ;;
esac
echo "$out"
python3 - "$suite" "$out" <<'PY'
import json, sys
suite, out = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in out.splitlines() if l.strip()]
assert rows, "no rows"
for r in rows:
    for k in ("suite", "case", "unit", "value", "baseline", "ratio"):
        assert k in r, (k, r)
    # (memory growth over a few thousand calls can round to nothing)
    assert (r["value"] >= 0 if r["unit"] == "bytes" else r["value"] > 0) and r["baseline"] > 0, r
    if "repeat" in r:  # repeated cases: the median lies within min..max
        assert r["value_min"] <= r["value"] <= r["value_max"], r
if suite == "datapath":
    assert any(r["case"].endswith("_shaped_rate") for r in rows), rows
    assert any(r["case"].endswith("_throughput_64B") for r in rows), rows
if suite in ("latency", "plot"):
    cases = {r["case"] for r in rows}
    assert {"memory_blocking_rtt_p50", "memory_busy_poll_rtt_p50", "memory_busy_poll_rtt_p99"} <= cases, cases
    if suite == "latency" and "tap_blocking_rtt_p50" in cases:
        assert "tap_blocking_rtt_p50_vs_udp" in cases, cases
if suite == "all":
    suites = {r["suite"] for r in rows}
    assert {"datapath", "latency", "scale"} <= suites, suites
if suite == "scale":
    assert {"setup_rate_at_3000", "teardown_rate_at_3000", "memory_per_call_per_node"} <= {r["case"] for r in rows}, rows
if suite == "calls":
    cases = {r["case"] for r in rows}
    for n in (1, 4):
        assert {f"rate_{n}_in_flight", f"setup_p50_{n}_in_flight", f"setup_p99_{n}_in_flight"} <= cases, cases
PY
