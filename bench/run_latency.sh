#!/usr/bin/env bash
# Benchmark 1: latency of `run --rm --network none busybox true` (create + start + attach + wait
# + remove, as the CLI user sees it), berth vs docker vs podman, paired and alternated rounds.
# Usage: bench/run_latency.sh [ROUNDS]   (default 20; engines from $BENCH_ENGINES)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
rounds=${1:-20}
engines_up $BENCH_ENGINES
wait_quiet
args=()
for e in $BENCH_ENGINES; do
  rm_all "$e"
  args+=("$e=$(cli_str "$e") run --rm --network none busybox true")
done
python3 "$BENCH_SRC/alt.py" --metric run_rm_true --rounds "$rounds" --warmup 2 \
  --results "$BENCH_RESULTS" "${args[@]}"
