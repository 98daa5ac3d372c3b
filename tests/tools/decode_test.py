#!/usr/bin/env python3
"""`coemu decode` against a known capture (tests/tools/data/known.pcap, made
by coemu_trace_gen): per-frame lines and per-call ladders equal the reviewed
outputs beside it, JSON lines parse and say the same, and bad input gets a
clear error with exit 1 (runtime) or 2 (usage).

usage: decode_test.py COEMU DATA_DIR WORK_DIR
"""
import difflib
import json
import os
import subprocess
import sys


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def run(coemu, *args):
    return subprocess.run([coemu, *args], capture_output=True, text=True)


def same(got, path):
    want = open(path).read()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), path, "coemu decode"))
        fail(f"output differs from {path}:\n{diff}")


def main():
    coemu, data, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    known = os.path.join(data, "known.pcap")

    r = run(coemu, "decode", known)
    if r.returncode != 0 or r.stderr:
        fail(f"decode exited {r.returncode}: {r.stderr}")
    same(r.stdout, os.path.join(data, "known.decode.txt"))
    r = run(coemu, "decode", "--calls", known)
    same(r.stdout, os.path.join(data, "known.calls.txt"))

    # JSON lines: one object per frame, nothing else on stdout.
    r = run(coemu, "decode", "-j", known)
    frames = [json.loads(line) for line in r.stdout.splitlines()]
    n = len(frames)
    if n < 30 or [f["frame"] for f in frames] != list(range(1, n + 1)):
        fail(f"expected frames 1..N, got {[f.get('frame') for f in frames]}")
    setup = next(f for f in frames if f.get("msg") == "SETUP")
    if (setup["call"], setup["called"], setup["sap"], setup["traffic"]["transmit"]["service"]) != \
            ("alpha#1", "beta", "42", "guaranteed"):
        fail(f"first SETUP decoded as {setup}")
    data_frames = [f for f in frames if f["proto"] == "data" and "error" not in f]
    if not data_frames or any(f.get("call") not in ("alpha#1", "alpha#3") for f in data_frames):
        fail(f"DATA frames not mapped to their calls: {data_frames}")
    errors = [f["frame"] for f in frames if "error" in f]
    # The ten hand-made frames come last; all but the RESET are flagged, and
    # the last repeats an earlier MSG of the same association.
    if errors != [n - 9, n - 8, n - 7, n - 6, n - 5, n - 4, n - 2, n - 1, n]:
        fail(f"frames flagged with errors: {errors} of {n}")
    resent = [f["frame"] for f in frames if f.get("retransmission")]
    if resent != [n]:
        fail(f"retransmissions: {resent}, expected [{n}]")

    r = run(coemu, "decode", "--calls", "--json", known)
    calls = [json.loads(line) for line in r.stdout.splitlines()]
    got = [(c["call"], c["outcome"], c.get("cause")) for c in calls]
    if got != [("alpha#1", "cleared", 16), ("alpha#2", "refused", 88), ("alpha#3", "cleared", 16)]:
        fail(f"calls: {got}")
    ladder = [m["msg"] for m in calls[2]["messages"]]
    if ladder != ["SETUP", "CONNECT", "CONNECT_ACK", "ADD_PARTY", "ADD_PARTY_ACK", "DROP_PARTY", "DROP_PARTY_ACK",
                  "RELEASE", "RELEASE_COMPLETE"]:
        fail(f"p2mp ladder: {ladder}")

    # Bad input.
    r = run(coemu, "decode", os.path.join(work, "missing.pcap"))
    if r.returncode != 1 or "missing.pcap" not in r.stderr:
        fail(f"missing file: exit {r.returncode}, stderr {r.stderr!r}")
    notpcap = os.path.join(work, "not.pcap")
    open(notpcap, "w").write("hello\n" * 10)
    r = run(coemu, "decode", notpcap)
    if r.returncode != 1 or "not.pcap" not in r.stderr:
        fail(f"not a pcap: exit {r.returncode}, stderr {r.stderr!r}")
    trunc = os.path.join(work, "truncated.pcap")
    open(trunc, "wb").write(open(known, "rb").read()[:3000])
    r = run(coemu, "decode", trunc)
    if r.returncode != 1 or "stopped after frame" not in r.stderr or not r.stdout:
        fail(f"truncated: exit {r.returncode}, stderr {r.stderr!r}")
    r = run(coemu, "decode", "--bogus", known)
    if r.returncode != 2 or "--bogus" not in r.stderr:
        fail(f"unknown option: exit {r.returncode}, stderr {r.stderr!r}")
    r = run(coemu, "decode")
    if r.returncode != 2 or "file" not in r.stderr:
        fail(f"no file: exit {r.returncode}, stderr {r.stderr!r}")
    r = run(coemu, "decode", "--help")
    if r.returncode != 0 or "Example" not in r.stdout:
        fail(f"--help: exit {r.returncode}")
    print("ok")


if __name__ == "__main__":
    main()
