#!/usr/bin/env python3
"""Paired, alternated wall-clock timing of shell commands (one per engine).

Each round runs every engine's command once, in order (berth, docker, podman, berth, ...), so
slow drifts of the machine hit all engines alike. Before each timed run an optional untimed
`--pre` command runs, after it an optional `--post` (cleanup); each timed run starts only once
the CPUs were quiet (< 10% busy over 200 ms, waiting at most --settle-max s), so what one engine
leaves running in the background is not timed as part of the next. A watcher thread polls for
compilers (cargo/rustc: the 2 cores are shared); a round during which one ran is thrown away and
re-run. Prints the medians and appends them to the results TSV.

usage: alt.py --metric NAME --rounds N [--warmup K] [--results FILE] [--settle-max S]
              [--pre ENGINE=CMD]... [--post ENGINE=CMD]... ENGINE=CMD...
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

# Process names (comm) of compilers; matched exactly against every process's comm.
BUSY = re.compile(r"cargo|rustc|cargo-clippy|clippy-driver|cc1|ld|rust-lld|build-script-b.*")


def busy() -> bool:
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                if BUSY.fullmatch(f.read().strip()):
                    return True
        except OSError:
            pass
    return False


class Watcher:
    """Notes whether a compiler ran at any point while armed."""

    def __init__(self):
        self.seen = False
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            if busy():
                self.seen = True
            self.stop.wait(0.25)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join()


def wait_quiet(max_wait: float):
    """Waits for compilers to finish, but at most max_wait seconds (the others may build all
    evening); returns False if the machine is still busy."""
    n = 0
    t0 = time.monotonic()
    while busy():
        if time.monotonic() - t0 > max_wait:
            return False
        if n % 30 == 0:
            print("[alt] waiting for compilers to finish", file=sys.stderr, flush=True)
        n += 1
        time.sleep(2)
    return True


def cpu_busy(interval: float) -> float:
    """Share of all CPUs not idle over `interval` seconds (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total
    i0, t0 = sample()
    time.sleep(interval)
    i1, t1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def settle(max_wait: float) -> None:
    """Waits (at most max_wait s) until the machine is quiet: what an engine leaves running
    after its command returned (podman's conmon `container cleanup`, dockerd/containerd
    tear-down, writeback) must not land in the next engine's timed run."""
    t0 = time.monotonic()
    while cpu_busy(0.2) > SETTLE_BUSY and time.monotonic() - t0 < max_wait:
        pass


# A timed run starts only once less than this share of the CPUs was busy over 200 ms.
SETTLE_BUSY = 0.10


def sh(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kv(items):
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        out[k] = v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metric", required=True)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--results")
    ap.add_argument("--pre", action="append", default=[])
    ap.add_argument("--post", action="append", default=[])
    ap.add_argument("--max-retries", type=int, default=20)
    ap.add_argument("--max-wait", type=float, default=float(os.environ.get("BENCH_MAX_WAIT", "600")))
    ap.add_argument("--settle-max", type=float, default=float(os.environ.get("BENCH_SETTLE_MAX", "30")))
    ap.add_argument("cmds", nargs="+")
    a = ap.parse_args()
    cmds = [(k, v) for k, v in (c.split("=", 1) for c in a.cmds)]
    pre, post = kv(a.pre), kv(a.post)
    times = {e: [] for e, _ in cmds}
    fails = {e: 0 for e, _ in cmds}
    retries = 0
    noisy = 0
    r = -a.warmup
    while r < a.rounds:
        wait_quiet(a.max_wait)
        round_t = {}
        with Watcher() as w:
            for e, c in cmds:
                if e in pre:
                    p = sh(pre[e])
                    if p.returncode:
                        print(f"[alt] {e} pre failed: {p.stderr.decode(errors='replace')[-500:]}", file=sys.stderr)
                settle(a.settle_max)
                t0 = time.perf_counter()
                p = sh(c)
                dt = time.perf_counter() - t0
                if p.returncode:
                    fails[e] += 1
                    print(f"[alt] {e} failed rc={p.returncode}: {p.stderr.decode(errors='replace')[-500:]}", file=sys.stderr)
                    dt = None
                round_t[e] = dt
                if e in post:
                    sh(post[e])
        if w.seen and retries < a.max_retries:
            retries += 1
            print(f"[alt] compiler ran during round {r}; re-running it", file=sys.stderr, flush=True)
            continue
        if r >= 0:
            if w.seen:
                noisy += 1
                print(f"[alt] round {r} kept although a compiler ran (retries used up)", file=sys.stderr)
            for e, dt in round_t.items():
                if dt is not None:
                    times[e].append(dt)
            print(f"[alt] {a.metric} round {r}: " + " ".join(f"{e}={'FAIL' if dt is None else f'{dt:.4f}'}" for e, dt in round_t.items()), file=sys.stderr, flush=True)
        r += 1
    summary = {}
    for e, c in cmds:
        ts = times[e]
        med = statistics.median(ts) if ts else float("nan")
        summary[e] = {"median": med, "min": min(ts, default=float("nan")), "max": max(ts, default=float("nan")), "n": len(ts), "fails": fails[e], "noisy_rounds": noisy}
        print(f"{a.metric}\t{e}\tmedian={med:.4f}s min={summary[e]['min']:.4f} max={summary[e]['max']:.4f} n={len(ts)} fails={fails[e]} noisy_rounds={noisy}")
        if a.results:
            with open(a.results, "a") as f:
                f.write(f"{a.metric}\t{e}\t{med:.4f}\ts\t{c}\n")
    if a.results:
        with open(a.results + ".json", "a") as f:
            f.write(json.dumps({"metric": a.metric, "times": times, "summary": summary}) + "\n")


if __name__ == "__main__":
    main()
