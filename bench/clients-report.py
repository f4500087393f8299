#!/usr/bin/env python3
"""Report of bench/clients: medians per (library, workload, daemon) of the RESULT lines.

    bench/clients-report.py target/bench/clients/results.tsv
"""
import statistics
import sys
from collections import defaultdict

WORKLOADS = [
    ("call1", "call+reply, 1 in flight", 0.40),
    ("call64-13", "64 in flight, 13 B", 0.30),
    ("call64-4k", "64 in flight, 4 KiB", 0.30),
    ("call64-64k", "64 in flight, 64 KiB", 0.40),
    ("call64-1m", "64 in flight, 1 MiB", 0.35),
    ("oneway", "one-way 13 B", 0.25),
    ("signal10", "signal to 10 subscribers, per copy", 0.12),
]
DAEMONS = ["dbus-daemon", "dbus-broker", "busbar"]
# With --base: the busbar it is compared with, shown in a column of its own.
BASE = "busbar-base"


def main(path):
    rows = defaultdict(list)
    header = []
    fails = []
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("#"):
            header.append(line)
            continue
        kind, *fields = line.split("\t")
        kv = dict(f.split("=", 1) for f in fields if "=" in f)
        if kind == "FAIL":
            fails.append(kv)
            continue
        rows[(kv["lib"], kv["wl"], kv["daemon"])].append(kv)

    def med(lib, wl, d, key):
        v = [float(r[key]) for r in rows.get((lib, wl, d), [])]
        return (statistics.median(v), len(v)) if v else (None, 0)

    for h in header:
        print(h)
    libs = sorted({k[0] for k in rows}, key=lambda x: (x != "libdbus", x))
    for lib in libs:
        print(f"\n## {lib} clients: daemon CPU per routed message (us), medians")
        has_base = any(k[0] == lib and k[2] == BASE for k in rows)
        extra_h = " busbar-base / dbus-broker |" if has_base else ""
        print(f"\n| workload | dbus-daemon | dbus-broker | busbar | busbar / dbus-broker |{extra_h} target | runs |")
        print("|---|---|---|---|---|---|---|" + ("---|" if has_base else ""))
        for wl, title, target in WORKLOADS:
            vals = [med(lib, wl, d, "daemon_us_per_msg") for d in DAEMONS]
            if all(v is None for v, _ in vals):
                continue
            cells = ["%.2f" % v if v is not None else "-" for v, _ in vals]
            dd, br, bb = (v for v, _ in vals)
            ratio = "%.2f" % (bb / br) if bb is not None and br else "-"
            extra = ""
            if has_base:
                b0, _ = med(lib, wl, BASE, "daemon_us_per_msg")
                extra = " %s |" % ("%.2f" % (b0 / br) if b0 is not None and br else "-")
            runs = "/".join(str(n) for _, n in vals)
            print(f"| {title} | {' | '.join(cells)} | {ratio} |{extra} <= {target:.2f} | {runs} |")
        print(f"\n{lib}: rate (operations per CPU second of all processes) relative to peer-to-peer")
        print("\n| workload | dbus-daemon | dbus-broker | busbar | p2p ops/CPU-s | target (busbar) |")
        print("|---|---|---|---|---|---|")
        # (busbar-base, when run, is in results.tsv; the table shows busbar.)
        for wl, title, target in [("call1", "call rate, 1 in flight", 0.70),
                                  ("call64-13", "call rate, 64 in flight 13 B", None),
                                  ("call64-1m", "1 MiB call rate", 0.90),
                                  ("oneway", "one-way 13 B", None)]:
            p2p, _ = med(lib, wl, "p2p", "ops_per_cpu_s")
            if not p2p:
                continue
            cells = []
            for d in DAEMONS:
                v, _ = med(lib, wl, d, "ops_per_cpu_s")
                cells.append("%.2fx" % (v / p2p) if v else "-")
            t = ">= %.2fx" % target if target else ""
            print(f"| {title} | {' | '.join(cells)} | {p2p:.0f} | {t} |")
        hw = [med(lib, "call64-1m", d, "hwm_kb")[0] for d in DAEMONS + [BASE]]
        if any(hw):
            print(f"\n{lib}: daemon peak RSS (VmHWM) under 64 x 1 MiB calls in flight, MiB: " +
                  ", ".join("%s %.1f" % (d, v / 1024) for d, v in zip(DAEMONS + [BASE], hw) if v) +
                  "  (target busbar <= 16)")
    if fails:
        print("\nFAILED runs: " + ", ".join(f"{f.get('lib')}/{f.get('wl')}/{f.get('daemon')}" for f in fails))


if __name__ == "__main__":
    main(sys.argv[1])
