#!/usr/bin/env python3
"""Prints each benchmark case as a ratio to its baseline from the same JSON run.

BM_<Thing>_<Case>/<args> is compared with BM_<Thing>_Baseline/<args>; the
ratio is case time / baseline time (1.50 = the case takes 50% longer).
"""
import json
import sys


def main(path):
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name", b["name"])
        head, _, args = name.partition("/")
        thing, _, case = head.rpartition("_")
        rows.setdefault((thing, args), {})[case] = b
    ctx = data.get("context", {})
    print(f"# {path}: {ctx.get('num_cpus')} cpus, library {ctx.get('library_build_type')}")
    for (thing, args), cases in sorted(rows.items()):
        base = cases.get("Baseline")
        if not base:
            continue
        for case, b in sorted(cases.items()):
            if case == "Baseline":
                continue
            ratio = b["real_time"] / base["real_time"] if base["real_time"] else float("nan")
            print(f"{thing}/{args}: {case} {b['real_time']:.1f} {b['time_unit']} vs baseline "
                  f"{base['real_time']:.1f} {base['time_unit']} = {ratio:.2f}x")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        main(p)
