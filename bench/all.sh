#!/usr/bin/env bash
# Runs every benchmark against private berthd/dockerd/podman instances (started once, stopped at
# the end) and prints a markdown table of medians and berth/docker ratios.
# Order: memory first (daemons near-fresh), then latency, concurrency, logs, networking, then the
# daemons' idle memory again after all that work.
# Usage: bench/all.sh   (results: $BENCH_DIR/results.tsv, raw per-round times in results.tsv.json)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
rm -f "$BENCH_RESULTS" "$BENCH_RESULTS.json"
engines_up $BENCH_ENGINES
bash "$BENCH_SRC/memory.sh" 10
bash "$BENCH_SRC/run_latency.sh" 20
bash "$BENCH_SRC/concurrent.sh" 5 50
bash "$BENCH_SRC/logs.sh" 5
bash "$BENCH_SRC/net.sh" 10
bash "$BENCH_SRC/build.sh" 7
bash "$BENCH_SRC/pull.sh" 5
sleep 5
bash "$BENCH_SRC/memory.sh" idle idle_end
echo
python3 "$BENCH_SRC/table.py" "$BENCH_RESULTS"
