#!/usr/bin/env python3
"""The coemu command line's contract, without privileges: every subcommand's
--help exits 0 and shows an example; usage errors exit 2 and name the option
and the value; nothing of this needs root or touches the network.

usage: cli_usage_test.py COEMU
"""
import subprocess
import sys

COMMANDS = ["", "demo", "bench", "bench datapath", "bench calls", "bench scale", "bench latency", "bench all", "listen", "call", "show", "pvc", "decode",
            "lab", "lab up", "lab down", "lab status", "lab demo"]

# (arguments, what stderr must name)
USAGE_ERRORS = [
    ([], "subcommand"),
    (["bogus"], "bogus"),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "--qos", "bogus"], "--qos"),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "--qos", "guaranteed"], "rate="),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "--qos", "guaranteed,rate=10Q"], "10Q"),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "--qos", "guaranteed,rate=1M,colour=red"], "colour"),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "--rate", "fast"], "fast"),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "--duration", "-1s"], "--duration"),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "--size", "3"], "--size"),
    (["call", "-a", "alpha", "-d", "t0", "beta"], "'beta'"),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "gamma:42", "--echo"], "--echo"),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "--colour"], "--colour"),
    (["listen", "-a", "beta", "-d", "t0", "--mode", "weird"], "--mode"),
    (["listen", "-a", "beta", "-d", "t0", "--sap", "0"], "--sap '0'"),
    (["listen", "-a", "beta", "-d", "t0", "--sap", "service:"], "--sap 'service:'"),
    (["decode"], "file"),
    (["bench", "datapath", "--sizes", "2"], "--sizes"),
    (["bench", "calls", "--inflight", "0"], "--inflight"),
    (["bench", "scale", "--calls", "2000000"], "--calls"),
    (["bench", "latency", "--links", "wire"], "--links"),
    (["bench", "scale", "--link", "both"], "--link"),
    (["bench", "all", "--repeat", "0"], "--repeat"),
    (["bench", "scale", "--calls", "5000", "--batch", "3000"], "--batch"),
    (["lab", "up", "UPPER", "--nodes", "a,b"], "UPPER"),
    (["lab", "up", "l1", "--nodes", "a,b", "--link", "a"], "--link"),
    (["lab", "up", "l1"], "--nodes"),
    (["lab", "up", "/nonexistent/topo.yaml", "--nodes", "a"], "--nodes"),
    (["call", "beta:42"], "--address"),
    (["call", "-a", "alpha", "beta:42"], "--dev"),
    (["call", "--node", "a", "beta:42"], "--lab"),
    (["listen", "--lab", "Bad!", "--node", "a"], "Bad!"),
    (["show", "calls"], "which node"),
    (["pvc", "add", "-a", "beta", "--vci", "5"], "--peer"),
    (["pvc", "bogus", "-a", "beta", "--vci", "5"], "bogus"),
    (["pvc", "add", "-a", "beta", "--vci", "0", "--peer-vci", "1", "--peer", "x"], "--vci"),
    (["call", "-a", "alpha", "-d", "t0", "--pvc", "0:1@beta"], "--pvc '0:1@beta'"),
    (["call", "-a", "alpha", "-d", "t0", "--pvc", "1:2@beta", "beta:42"], "--pvc"),
    (["call", "-a", "alpha", "-d", "t0"], "NODE:SAP"),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "--io", "bogus"], "--io"),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "--queues", "17"], "--queues"),
    (["listen", "-a", "beta", "-d", "t0", "--mtu", "10"], "--mtu"),
    (["listen", "-a", "beta", "-d", "t0", "--max-vcs", "0"], "--max-vcs"),
    (["listen", "-a", "beta", "-d", "t0", "--pool", "8"], "--pool"),
    (["listen", "-a", "beta", "-d", "t0", "--user", "no_such_user_x"], "no such user 'no_such_user_x'"),
    (["call", "-a", "alpha", "-d", "t0", "beta:42", "--setup-rate", "-1"], "--setup-rate"),
    (["listen", "-a", "beta", "-d", "t0", "--mode", "reject", "--cause", "16"], "--cause"),
    (["lab", "demo", "--rate", "1"], "--rate"),
    (["lab", "demo", "--seconds", "0"], "--seconds"),
    (["show", "bogus", "-a", "beta"], "bogus"),
    (["show", "calls", "--lab", "l1"], "--node"),
]


def main():
    coemu = sys.argv[1]
    failures = []
    for c in COMMANDS:
        r = subprocess.run([coemu, *c.split(), "--help"], capture_output=True, text=True)
        if r.returncode != 0 or "Example" not in r.stdout:
            failures.append(f"'coemu {c} --help': exit {r.returncode}, example shown: {'Example' in r.stdout}")
    for args, named in USAGE_ERRORS:
        r = subprocess.run([coemu, *args], capture_output=True, text=True, timeout=30)
        if r.returncode != 2 or named not in r.stderr or r.stdout:
            failures.append(f"'coemu {' '.join(args)}': exit {r.returncode} (want 2), stderr {r.stderr.strip()!r} "
                            f"should name {named!r}, stdout {r.stdout.strip()!r} should be empty")
    r = subprocess.run([coemu, "--version"], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.startswith("coemu "):
        failures.append(f"--version: exit {r.returncode}, {r.stdout!r}")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"ok: {len(COMMANDS)} --help pages, {len(USAGE_ERRORS)} usage errors")


if __name__ == "__main__":
    main()
