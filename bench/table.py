#!/usr/bin/env python3
"""Prints the markdown table of bench results: `table.py RESULTS.tsv`. The last value recorded
for a (metric, engine) wins, so re-running one benchmark updates its row."""
import sys

GOALS = {
    # metric: (description, goal text, test on berth/docker ratio of the values)
    "run_rm_true": ("`run --rm busybox true` (s)", "berth <= 0.15x docker time", lambda r: r <= 0.15),
    "concurrent_run_d_50": ("50 concurrent `run -d` (s for all 50)", "rate >= 10x docker (time <= 0.1x)", lambda r: r <= 0.1),
    "attached_200MiB": ("200 MiB stdout, attached (s)", ">= 4x docker speed (time <= 0.25x)", lambda r: r <= 0.25),
    "logs_200MiB": ("`logs` of 200 MiB (s)", ">= 10x docker speed (time <= 0.1x)", lambda r: r <= 0.1),
    "mem_shim_rss": ("per-container shim RSS (MiB, median of 10)", "berth-shim <= 1 MiB", None),
    "mem_shim_pss": ("per-container shim PSS (MiB, median of 10)", "", None),
    "mem_shim_uss": ("per-container shim USS (MiB, median of 10)", "", None),
    "build_cold": ("cold `build` (1,000-file COPY + 3 RUN) (s)", "<= 0.4x docker classic", lambda r: r <= 0.4),
    "build_cached": ("fully cached `build` (s)", "<= 0.15x docker classic", lambda r: r <= 0.15),
    "build_one_file": ("`build` after one copied file changed (s)", "<= 0.4x docker classic", lambda r: r <= 0.4),
    "pull_cold": ("cold pull of a 105 MB, 4-layer image (s)", "", None),
    "pull_mbps": ("cold pull of a 105 MB, 4-layer image (MB/s)", ">= 2.5x docker", lambda r: r >= 2.5),
}

vals = {}
order = []
for line in open(sys.argv[1]):
    parts = line.rstrip("\n").split("\t")
    if len(parts) < 4:
        continue
    m, e, v = parts[0], parts[1], parts[2]
    if m not in order:
        order.append(m)
    vals.setdefault(m, {})[e] = float(v)

engines = ["berth", "docker", "podman", "host"]
LABELS = {"idle_before": "idle, fresh (after start + import)", "with_10": "with 10 containers running",
          "idle_after": "idle, after the 10 were removed", "idle_end": "idle, after all benchmarks"}
print("| measure | berth | docker | podman | host (no engine) | berth/docker | goal | met |")
print("|---|---:|---:|---:|---:|---:|---|---|")
for m in order:
    v = vals[m]
    desc, goal, test = GOALS.get(m, (m, "", None))
    cells = [f"{v[e]:.3f}" if e in v and v[e] == v[e] else "–" for e in engines]
    ratio = ""
    met = ""
    if "berth" in v and "docker" in v and v["docker"]:
        r = v["berth"] / v["docker"]
        ratio = f"{r:.3f}"
        if test:
            met = "yes" if test(r) else "no"
    if m == "mem_shim_rss" and "berth" in v:
        met = "yes" if v["berth"] <= 1.0 else "no"
    if m.startswith("mem_berthd_idle") and m.endswith("_rss") and "berth" in v:
        goal, met = "berthd idle <= 15 MiB", ("yes" if v["berth"] <= 15.0 else "no")
    if m.startswith("concurrent_run_d_"):
        n = int(m.rsplit("_", 1)[1])
        rates = [f"{n / v[e]:.1f}/s" if e in v and v[e] == v[e] else "–" for e in engines]
        cells = [f"{c} ({r})" if c != "–" else c for c, r in zip(cells, rates)]
    if m.startswith("mem_") and m not in GOALS:
        # daemon rows: mem_<comm>_<label>_<rss|pss>
        body, kind = m[4:].rsplit("_", 1)
        for lab, text in LABELS.items():
            if body.endswith("_" + lab):
                desc = f"{body[: -len(lab) - 1]} {kind.upper()} (MiB), {text}"
    print(f"| {desc} | " + " | ".join(cells) + f" | {ratio} | {goal} | {met} |")
