#!/usr/bin/env bash
# Diagnostic (not a goal): where the time of `run --rm busybox true` goes, per API call, measured
# with curl on the engine's socket (no CLI): POST /containers/create, POST /start, POST /wait,
# DELETE, plus GET /_ping (the floor of one round trip) and the CLI's `version` (CLI start-up +
# one call). Medians of ROUNDS alternated rounds, in ms.
# Usage: bench/phases.sh [ROUNDS]   (default 15; engines berth docker)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
rounds=${1:-15}
PH_ENGINES=${PH_ENGINES:-berth docker}
engines_up $PH_ENGINES
wait_quiet
python3 - "$rounds" $PH_ENGINES <<'PY'
import json, os, statistics, subprocess, sys, time
rounds = int(sys.argv[1]); engines = sys.argv[2:]
sock = {"berth": os.environ["B_SOCK"], "docker": os.environ["D_SOCK"]}
cli = {e: subprocess.run(["bash", "-c", f"cli_str {e}"], capture_output=True, text=True).stdout.split() for e in engines}
def curl(e, method, path, body=None):
    cmd = ["curl", "-sf", "--unix-socket", sock[e], "-X", method, f"http://localhost/v1.41{path}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    t0 = time.perf_counter(); p = subprocess.run(cmd, capture_output=True); dt = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"{e} {method} {path}: curl rc={p.returncode} {p.stdout[:300]!r}")
    return dt, p.stdout
res = {e: {} for e in engines}
def add(e, k, v): res[e].setdefault(k, []).append(v * 1000)
for r in range(rounds + 1):
    for e in engines:
        t0 = time.perf_counter(); subprocess.run(cli[e] + ["version"], capture_output=True); tv = time.perf_counter() - t0
        dp, _ = curl(e, "GET", "/_ping")
        dc, out = curl(e, "POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}})
        cid = json.loads(out)["Id"]
        ds, _ = curl(e, "POST", f"/containers/{cid}/start")
        dw, _ = curl(e, "POST", f"/containers/{cid}/wait")
        dd, _ = curl(e, "DELETE", f"/containers/{cid}?force=1")
        if r == 0:
            continue  # warm-up
        for k, v in [("cli version", tv), ("GET /_ping", dp), ("create", dc), ("start", ds), ("wait", dw), ("delete", dd), ("create+start+wait+delete", dc + ds + dw + dd)]:
            add(e, k, v)
print("| phase (ms, median) | " + " | ".join(engines) + " |")
print("|---|" + "---:|" * len(engines))
for k in res[engines[0]]:
    print(f"| {k} | " + " | ".join(f"{statistics.median(res[e][k]):.1f}" for e in engines) + " |")
PY
