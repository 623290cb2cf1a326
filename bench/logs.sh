#!/usr/bin/env bash
# Benchmark 4: a container writing 200 MiB of 100-byte lines to stdout.
#  a) attached: `run --rm --network none busybox sh -c 'yes <99 a> | head -c 209715200'`
#     with the CLI's stdout to /dev/null -- wall time until the CLI exits;
#  b) logs: the same container run detached (not --rm), waited for, then `logs NAME >/dev/null`
#     timed (the same finished container is read every round). The byte count of `logs` is
#     checked once per engine. Both engines get --log-opt max-size=2g,max-file=1 for that container
#     (see below) so neither rotates.
#  A "host" row runs the generator with no engine at all, as the floor for (a).
# Paired and alternated rounds. Usage: bench/logs.sh [ROUNDS]  (default 5; engines from
# $LOGS_ENGINES, default "berth docker")
set -uo pipefail
. "$(dirname "$0")/lib.sh"
rounds=${1:-5}
LOGS_ENGINES=${LOGS_ENGINES:-berth docker}
bytes=209715200
line=$(printf 'a%.0s' $(seq 1 99))
gen="yes $line | head -c $bytes"
engines_up $LOGS_ENGINES
wait_quiet
# Baseline: the same pipeline on the host, no engine (the floor for the attached case).
bb=$(command -v busybox)
att=("host=$bb sh -c '$gen' >/dev/null") lg=()
for e in $LOGS_ENGINES; do
  rm_all "$e"
  c=$(cli_str "$e")
  att+=("$e=$c run --rm --network none busybox sh -c '$gen' >/dev/null")
done
python3 "$BENCH_SRC/alt.py" --metric attached_200MiB --rounds "$rounds" --warmup 1 \
  --results "$BENCH_RESULTS" "${att[@]}"

# The logs container is created with the docker CLI for every engine (pointed at berthd for berth)
# because `berth run` has no --log-opt yet: berth rotates by default (20 MiB x 5, like docker's
# `local` driver) and would keep only ~59 MiB of the 200; docker's json-file keeps everything by
# default. One explicit, identical max-size for both makes them store and read the same bytes.
declare -A sock=([berth]=$B_SOCK [docker]=$D_SOCK)
for e in $LOGS_ENGINES; do
  c=$(cli_str "$e")
  if [ -n "${sock[$e]:-}" ]; then
    docker -H "unix://${sock[$e]}" run -d --name bench-logs --network none \
      --log-opt max-size=2g --log-opt max-file=1 busybox sh -c "$gen" >/dev/null
  else
    cli "$e" run -d --name bench-logs --network none busybox sh -c "$gen" >/dev/null
  fi
  code=$(cli "$e" wait bench-logs)
  got=$(cli "$e" logs bench-logs 2>/dev/null | wc -c)
  log "$e: logs container exit $code, logs gives $got bytes (expected $bytes)"
  [ "$got" -eq "$bytes" ] || log "WARNING: $e logs byte count mismatch"
  lg+=("$e=$c logs bench-logs >/dev/null")
done
du -sh "$BENCH_DIR"/berth/root/containers/*/ 2>/dev/null | sed 's/^/[berth container dir] /' >&2
du -sh "$BENCH_DIR"/docker/data/containers/*/ 2>/dev/null | sed 's/^/[docker container dir] /' >&2
python3 "$BENCH_SRC/alt.py" --metric logs_200MiB --rounds "$rounds" --warmup 1 \
  --results "$BENCH_RESULTS" "${lg[@]}"
for e in $LOGS_ENGINES; do rm_all "$e"; done
