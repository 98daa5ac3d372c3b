#!/usr/bin/env python3
"""The Wireshark dissector over a capture made by coemu_trace_gen.

usage: dissector_test.py TRACE_GEN COEMU_LUA WORK_DIR

Runs tshark with tools/wireshark/coemu.lua over the capture and asserts
decoded fields from `-T json`. tshark exits 0 even when a Lua script fails,
so any "Lua" on its stderr, any frame carrying _ws.lua.error, or a missing
field fails the test. Exit 77 (skipped) when tshark is not installed.
"""
import json
import os
import shutil
import subprocess
import sys


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def flatten(node, out):
    """Every field name -> list of its values, wherever it sits in the tree."""
    if isinstance(node, list):
        for n in node:
            flatten(n, out)
    elif isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, (dict, list)):
                if isinstance(v, list) and all(isinstance(x, str) for x in v):
                    out.setdefault(k, []).extend(v)
                else:
                    out.setdefault(k, [])
                    flatten(v, out)
            else:
                out.setdefault(k, []).append(v)


def main():
    trace_gen, lua, work = sys.argv[1:4]
    tshark = shutil.which("tshark")
    if not tshark:
        print("SKIP: tshark is not installed (tools/deps.sh installs it)")
        sys.exit(77)
    os.makedirs(work, exist_ok=True)
    pcap = os.path.join(work, "dissector_test.pcap")
    subprocess.run([trace_gen, pcap], check=True)

    base = [tshark, "-n", "-X", f"lua_script:{lua}", "-r", pcap]
    r = subprocess.run(base + ["-T", "json", "--no-duplicate-keys"], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"tshark exited {r.returncode}: {r.stderr}")
    if "Lua" in r.stderr:
        fail(f"tshark printed a Lua error: {r.stderr}")
    frames = []
    for p in json.loads(r.stdout):
        layers = p["_source"]["layers"]
        f = {}
        flatten(layers, f)
        f["_layers"] = set(layers.keys())
        frames.append(f)
    if any("_ws.lua.error" in f for f in frames):
        fail("a frame carries _ws.lua.error")

    def one(pred, what):
        got = [f for f in frames if pred(f)]
        if not got:
            fail(f"no frame with {what}")
        return got[0]

    def val(f, key):
        return f.get(key, [None])[0]

    def msg(mtype, extra=lambda f: True):
        return one(lambda f: val(f, "coemu.msg.type") == mtype and extra(f), f"message type {mtype}")

    def expect(f, key, want):
        got = f.get(key, [])
        if str(want) not in got:
            fail(f"frame {val(f, 'frame.number')}: {key} is {got}, expected {want}")

    def expert(f, name):
        if name not in f:
            fail(f"frame {val(f, 'frame.number')}: no expert info {name}; fields {sorted(f)}")

    hello = one(lambda f: val(f, "coemu.kind") == "1" and "alpha" in f.get("coemu.node_address", []), "alpha's HELLO")
    expect(hello, "coemu.mtu", 1500)
    expect(hello, "coemu.version", 1)
    expect(hello, "coemu.hdr_len", 24)

    setup = msg("0x05", lambda f: "42" in f.get("coemu.sap.selector", []))
    for key, want in [("coemu.called_party", "beta"), ("coemu.calling_party", "alpha"), ("coemu.sap.type", 1),
                      ("coemu.tx.service_type", 3), ("coemu.tx.token_rate", 1000000), ("coemu.tx.bucket", 65536),
                      ("coemu.bearer", 1), ("coemu.msg.call_ref.to_originator", 0), ("coemu.seq", 1),
                      ("coemu.incarnation", "0x0a0a0a0a")]:
        expect(setup, key, want)
    cref = val(setup, "coemu.msg.call_ref.value")
    connect = msg("0x07", lambda f: val(f, "coemu.msg.call_ref.value") == cref)
    expect(connect, "coemu.msg.call_ref.to_originator", 1)
    expect(connect, "coemu.msg.call_ref", "0x%08x" % (0x80000000 | int(cref)))
    if not connect.get("coemu.vci"):
        fail("CONNECT without a VCI")
    data_vci = connect["coemu.vci"][0]
    data = one(lambda f: val(f, "coemu_data.vci") == data_vci and val(f, "coemu_data.len") == "100",
               f"100-byte DATA on the callee's VCI {data_vci}")
    expect(data, "coemu_data.flags", "0x0000")
    msg("0x0f", lambda f: val(f, "coemu.msg.call_ref.value") == cref)
    expect(msg("0x88"), "coemu.tx.token_rate", 2000000)
    msg("0x89")
    expect(msg("0x4d", lambda f: "coemu.malformed" not in f and "coemu.unknown_ie_cr" not in f), "coemu.cause", 16)

    refused = msg("0x5a", lambda f: "88" in f.get("coemu.cause", []))
    expect(refused, "coemu.cause.location", 1)
    expect(msg("0x05", lambda f: "nosuch" in f.get("coemu.sap.service", [])), "coemu.sap.type", 2)

    p2mp = msg("0x05", lambda f: "2" in f.get("coemu.bearer", []))
    expect(p2mp, "coemu.endpoint_ref", 0)
    expect(msg("0x80"), "coemu.endpoint_ref", 1)
    expect(msg("0x81"), "coemu.endpoint_ref", 1)
    expect(msg("0x83"), "coemu.endpoint_ref", 1)
    expect(msg("0x84"), "coemu.endpoint_ref", 1)
    one(lambda f: val(f, "coemu.kind") == "3", "a bare ACK")
    one(lambda f: val(f, "coemu.kind") == "4", "a RESET")

    # The hand-made broken frames: the first two are declined (not ours).
    foreign = [f for f in frames if "eth.type" in f and val(f, "eth.type") == "0x88b5" and "coemu" not in f["_layers"]]
    if len(foreign) != 2:
        fail(f"expected 2 declined SIG frames (version 2, hdr_len 20), got {len(foreign)}")
    expert(one(lambda f: "coemu.body_len" in f and val(f, "coemu.body_len") == "200", "body_len 200"),
           "coemu.malformed")
    expert(msg("0x33"), "coemu.unknown_type")
    expert(one(lambda f: "9" in f.get("coemu.ie.length", []), "an IE past its message"), "coemu.malformed")
    expert(one(lambda f: "0x6e" in f.get("coemu.ie.type", []), "IE 0x6E"), "coemu.unknown_ie_cr")
    expert(one(lambda f: val(f, "coemu_data.len") == "1000", "DATA with a lying len"), "coemu_data.malformed")
    expert(one(lambda f: val(f, "coemu_data.vci") == "0", "DATA on VCI 0"), "coemu_data.vci_zero")

    # Nothing the nodes sent is flagged (the 10 hand-made frames come last).
    flagged = [val(f, "frame.number") for f in frames[:-10] if "_ws.expert" in f]
    if flagged:
        fail(f"frames coemu sent carry expert info: {flagged}")

    # The one-line summaries users see.
    r = subprocess.run(base, capture_output=True, text=True)
    if "Lua" in r.stderr:
        fail(f"tshark printed a Lua error: {r.stderr}")
    for text in ["HELLO alpha mtu=1500", "SETUP call_ref=1 alpha -> beta:42 guaranteed",
                 "RELEASE_COMPLETE call_ref=2 (to originator) cause 88 (incompatible destination)",
                 "ADD_PARTY call_ref=3 alpha -> beta:42 p2mp party=1"]:
        if text not in r.stdout:
            fail(f"no summary line with '{text}' in:\n{r.stdout}")
    print(f"ok: {len(frames)} frames dissected")


if __name__ == "__main__":
    main()
