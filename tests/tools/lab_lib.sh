# Sourced by the CLI tests that build a lab (after COEMU and the work
# directory's parent are known): skips without root, names a lab and a work
# directory of this process's own, and removes both whatever happens.
#   . "$(dirname "$0")/lab_lib.sh"; lab_test_setup LETTER WHAT "$dir"
# Then: $lab, $work, $listener (a background pid to kill), fail MESSAGE
# (prints $work/listen.out and the lab's daemon logs, exits 1), and
# wait_for_line FILE PATTERN SECONDS (false if it never shows up).

lab_test_setup() {
  local letter=$1 what=$2 parent=$3
  if [ "$(id -u)" -ne 0 ] || ! [ -w /dev/net/tun ]; then
    echo "skipped: $what needs root (CAP_NET_ADMIN)"; exit 77
  fi
  lab="$letter$(( $$ % 100000 ))"
  work="$parent/$what-$$"
  work=${work// /-}
  mkdir -p "$work"
  listener=""
  trap lab_test_cleanup EXIT
}

lab_test_cleanup() {
  [ -n "$listener" ] && kill "$listener" 2>/dev/null || true
  "$coemu" lab down "$lab" >/dev/null 2>&1 || true
  rm -rf "$work"
}

wait_for_line() {
  for _ in $(seq $(( $3 * 10 ))); do grep -q "$2" "$1" && return 0; sleep 0.1; done
  return 1
}

fail() {
  echo "FAIL: $*"
  if [ -f "$work/listen.out" ]; then echo "--- listener:"; cat "$work/listen.out"; fi
  for f in /run/coemu/labs/"$lab"/*.log; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done
  exit 1
}
