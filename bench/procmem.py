#!/usr/bin/env python3
"""Prints RSS and PSS (KiB) of processes: `procmem.py PID...` -> one line per pid:
pid rss_kib pss_kib comm uss_kib anon_kib. RSS from /proc/PID/status (VmRSS); PSS, USS
(Private_Clean + Private_Dirty) and Anonymous from /proc/PID/smaps_rollup."""
import sys


def field(path, name):
    with open(path) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return -1


for pid in sys.argv[1:]:
    try:
        rss = field(f"/proc/{pid}/status", "VmRSS")
        roll = f"/proc/{pid}/smaps_rollup"
        pss = field(roll, "Pss")
        uss = field(roll, "Private_Clean") + field(roll, "Private_Dirty")
        anon = field(roll, "Anonymous")
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
    except OSError as e:
        print(f"{pid} gone ({e})", file=sys.stderr)
        continue
    print(pid, rss, pss, comm, uss, anon)
