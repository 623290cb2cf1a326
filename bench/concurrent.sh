#!/usr/bin/env bash
# Benchmark 2: 50 concurrent `run -d --network none busybox sleep 300`, launched at once with
# xargs -P 50; time until every CLI returned, and containers/s = 50 / time. Each run must leave
# 50 running containers (checked; a run that doesn't counts as failed). All containers are
# removed (untimed) after each run. Paired and alternated rounds.
# Usage: bench/concurrent.sh [ROUNDS] [N]   (default 5 rounds, N=50; engines from $BENCH_ENGINES)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
rounds=${1:-5}
n=${2:-50}
engines_up $BENCH_ENGINES
wait_quiet
args=() pre=() post=()
for e in $BENCH_ENGINES; do
  rm_all "$e"
  c=$(cli_str "$e")
  # The check after xargs is part of the timed command but costs one `ps` call (tens of ms).
  args+=("$e=seq $n | xargs -P $n -I{} $c run -d --network none busybox sleep 300 >/dev/null && test \$($c ps -q | wc -l) -eq $n")
  pre+=(--pre "$e=rm_all $e")
  post+=(--post "$e=rm_all $e")
done
python3 "$BENCH_SRC/alt.py" --metric "concurrent_run_d_$n" --rounds "$rounds" --warmup 0 \
  --results "$BENCH_RESULTS" "${pre[@]}" "${post[@]}" "${args[@]}"
