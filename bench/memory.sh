#!/usr/bin/env bash
# Benchmark 3: memory. With N (default 10) `run -d --network none busybox sleep 300` containers
# running in each engine: RSS (VmRSS) and PSS (smaps_rollup) of each per-container process
# (berth-shim; docker's containerd-shim-runc-v2; podman's conmon) and of the daemons
# (berthd; dockerd + its containerd). Daemons are also measured idle (no containers) before
# and after the containers ran, after IDLE_S (default 12) seconds without a request, the same
# wait for every engine (berthd trims its memory after ~5-10 s without requests; Go's runtime
# returns freed heap to the kernel on its own schedule). Values are medians over the
# per-container processes.
# Usage: bench/memory.sh [N]  |  bench/memory.sh idle LABEL  (daemons only, as they are now)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
n=${1:-10}
[ "$n" = idle ] && n=0
engines_up $BENCH_ENGINES
wait_quiet
pm() { python3 "$BENCH_SRC/procmem.py" "$@"; }
kib_mib() { awk '{printf "%.2f", $1/1024}'; }
IDLE_S=${IDLE_S:-12}

# pids of the per-container processes of engine $1 for container ids on stdin
shim_pids() {
  local e=$1 id p
  case $e in
    berth)
      while read -r id; do
        for p in $(pgrep -x berth-shim); do
          tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q " create $id" && echo "$p"
        done
      done ;;
    docker)
      cat >/dev/null
      pgrep -f "containerd-shim-runc-v2 .*-address $BENCH_DIR/docker/" ;;
    podman)
      while read -r id; do pgrep -f "conmon .*-c $id"; done ;;
  esac
}
daemon_pids() {
  case $1 in
    berth) echo "$(cat "$BENCH_DIR/berth/pid")" ;;
    docker) echo "$(cat "$BENCH_DIR/docker/pid")"; pgrep -f "containerd --config $BENCH_DIR/docker/" ;;
    podman) ;; # no daemon
  esac
}
# report_daemons LABEL ENGINE
report_daemons() {
  local label=$1 e=$2 pid rss pss comm
  for pid in $(daemon_pids "$e"); do
    read -r pid rss pss comm uss anon < <(pm "$pid") || continue
    log "$e $comm $label: RSS $(echo "$rss" | kib_mib) MiB, PSS $(echo "$pss" | kib_mib) MiB, USS $(echo "$uss" | kib_mib) MiB, anon $(echo "$anon" | kib_mib) MiB"
    result "mem_${comm}_${label}_rss" "$e" "$(echo "$rss" | kib_mib)" MiB "VmRSS of $comm ($label)"
    result "mem_${comm}_${label}_pss" "$e" "$(echo "$pss" | kib_mib)" MiB "Pss of $comm ($label)"
  done
}

if [ "${1:-}" = idle ]; then # memory.sh idle LABEL: only the daemons, as they are now
  for e in $BENCH_ENGINES; do report_daemons "${2:-idle}" "$e"; done
  exit 0
fi

for e in $BENCH_ENGINES; do
  rm_all "$e"
  sleep "$IDLE_S"
  report_daemons idle_before "$e"
  for i in $(seq 1 "$n"); do cli "$e" run -d --network none busybox sleep 300 >/dev/null || log "$e run -d failed"; done
  sleep 2
  ids=$(cli "$e" ps -q --no-trunc)
  pids=$(echo "$ids" | shim_pids "$e")
  log "$e: $(echo "$ids" | wc -w) containers, $(echo $pids | wc -w) per-container processes"
  if [ -n "$pids" ]; then
    out=$(pm $pids)
    echo "$out" | sed "s/^/[$e per-container] /" >&2
    comm=$(echo "$out" | awk 'NR==1{print $4}')
    rss=$(echo "$out" | awk '{print $2}' | median | kib_mib)
    pss=$(echo "$out" | awk '{print $3}' | median | kib_mib)
    uss=$(echo "$out" | awk '{print $5}' | median | kib_mib)
    anon=$(echo "$out" | awk '{print $6}' | median | kib_mib)
    tot=$(echo "$out" | awk '{s+=$3} END {print s}' | kib_mib)
    log "$e $comm per container: median RSS $rss MiB, PSS $pss MiB, USS $uss MiB, anon $anon MiB (PSS total for $n: $tot MiB)"
    result "mem_shim_uss" "$e" "$uss" MiB "median USS (Private_Clean+Private_Dirty) of $comm, $n containers running"
    result "mem_shim_rss" "$e" "$rss" MiB "median VmRSS of $comm, $n containers running"
    result "mem_shim_pss" "$e" "$pss" MiB "median Pss of $comm, $n containers running"
  fi
  report_daemons "with_${n}" "$e"
  rm_all "$e"
  sleep "$IDLE_S"
  report_daemons idle_after "$e"
done
