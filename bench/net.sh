#!/usr/bin/env bash
# Benchmark 5: networking.
#  a) `run --rm busybox true` on each engine's default bridge network (no --network flag), paired
#     and alternated rounds via alt.py: metric run_rm_true_bridge.
#  b) TCP throughput host -> container through a published port: each round starts, per engine,
#     `run -d -p 5001 busybox sh -c 'nc -l -p 5001 -e dd of=/dev/null bs=1M'`, reads the host port
#     with `port`, waits until the server listens inside the container, then port_throughput.py
#     sends $NET_MIB MiB (default 1024) to 127.0.0.1:PORT (metric port_tcp_mbps) or to the
#     host's first global IPv4 address (port_tcp_mbps_hostip), half-closes and waits for the
#     server's EOF; the container is removed. Engines alternate (berth, docker, host, berth, ...);
#     medians in MB/s (10^6 bytes/s). The "host" row runs the same server on the host with no
#     engine: the ceiling of the path.
#
# The sink is `nc -e dd bs=1M`, not `nc >/dev/null`: this busybox's nc copies in 1 KiB reads and
# tops out near 300 MB/s on loopback, so it would measure nc, not the published-port path.
# With -e, nc hands the accepted socket to dd and the EOF the client waits for is dd exiting
# (plain `nc -l` with stdin at /dev/null half-closes at once, so its EOF would mean nothing).
#
# Published ports: berth DNATs in the kernel (nftables); the private dockerd runs with
# --iptables=false and the userland proxy (lib.sh), so every byte goes through docker-proxy.
#
# podman (part a only, if in $BENCH_ENGINES): netavark 1.4 has only iptables/firewalld drivers
# and would add rules to the host's iptables tables, which we must not edit, so podman's
# commands run under `nsenter --net` in a private network namespace of ours (its default
# network and all its rules live and die there). If that does not work, podman is skipped.
#
# Usage: bench/net.sh [ROUNDS]  (default 10; NET_MIB, NET_ENGINES (part b, default
# "berth docker"), BENCH_ENGINES (part a))
set -uo pipefail
. "$(dirname "$0")/lib.sh"
rounds=${1:-10}
NET_MIB=${NET_MIB:-1024}
NET_ENGINES=${NET_ENGINES:-berth docker}
NET_TIMEOUT=${NET_TIMEOUT:-120} # seconds for one transfer (1 GiB at 10 MB/s)
P_NETNS=$P_DIR/netns
SERVER="nc -l -p 5001 -e dd of=/dev/null bs=1M"

lat_engines=() # engines for part a
for e in $BENCH_ENGINES; do lat_engines+=("$e"); done
all_engines=$(printf '%s\n' "${lat_engines[@]}" $NET_ENGINES | awk '!s[$0]++' | tr '\n' ' ')
engines_up $all_engines

HOST_NC_PID=$BENCH_DIR/net-host-nc.pid # the host row's server, for the EXIT trap
net_cleanup() {
  [ -s "$HOST_NC_PID" ] && kill "$(cat "$HOST_NC_PID")" 2>/dev/null
  rm -f "$HOST_NC_PID" "$BENCH_DIR/net.out" "$BENCH_DIR/net.err"
  for e in $NET_ENGINES; do rm_all "$e"; done
  if [ -e "$P_NETNS" ]; then
    rm_all podman
    umount "$P_NETNS" 2>/dev/null || umount -l "$P_NETNS" 2>/dev/null
    rm -f "$P_NETNS"
  fi
}
trap 'net_cleanup; engines_down' EXIT

# Time limits, so a wedged daemon or transfer cannot hang the bench. --foreground keeps the
# command in our process group: without it a Ctrl-C would not reach it and bash would go on.
tmo() { timeout --foreground -k 5 "$@"; }
# An engine's CLI with a time limit.
tcli() { local e=$1; shift; tmo 60 $(cli_str "$e") "$@"; }
# After a Ctrl-C, python (KeyboardInterrupt) and `timeout --foreground` exit with status 130
# instead of dying by the signal, so bash would carry on: stop explicitly (the EXIT trap cleans).
stop_if_int() { [ "$1" -ne 130 ] || { log "interrupted"; exit 130; }; }

# ---- a) run --rm true on the default bridge -------------------------------------------------
args=()
for e in "${lat_engines[@]}"; do
  rm_all "$e"
  c=$(cli_str "$e")
  if [ "$e" = podman ]; then
    touch "$P_NETNS"
    if ! unshare --net="$P_NETNS" true; then
      log "podman: cannot make a private network namespace; skipping podman"
      rm -f "$P_NETNS"
      continue
    fi
    c="nsenter --net=$P_NETNS $c"
    out=$(tmo 60 $c run --rm busybox true 2>&1)
    rc=$?
    stop_if_int $rc
    if [ $rc -ne 0 ]; then
      log "podman: its default network does not work here; skipping podman: $(echo "$out" | tail -3)"
      continue
    fi
  fi
  args+=("$e=$c run --rm busybox true")
done
wait_quiet
python3 "$BENCH_SRC/alt.py" --metric run_rm_true_bridge --rounds "$rounds" --warmup 2 \
  --results "$BENCH_RESULTS" "${args[@]}"
stop_if_int $?
for e in "${lat_engines[@]}"; do rm_all "$e"; done
net_cleanup

# ---- b) published-port TCP throughput -------------------------------------------------------
# The host's first global IPv4 address that is not one of our engines' bridges.
host_ip=$(ip -4 -o addr show scope global | awk -v a="$BENCH_BRIDGE" -v b="$BERTH_BRIDGE" \
  '$2 != a && $2 != b && $2 !~ /^(docker0|berth0|podman0|br-)/ {split($4, x, "/"); print x[1]; exit}')
[ -n "$host_ip" ] || log "no global IPv4 address on this host: skipping port_tcp_mbps_hostip"

# wait_listen PID PORT: until a socket of PID's network namespace listens on PORT (no probe
# connection: the server accepts exactly one, and docker-proxy accepts before the server listens).
wait_listen() {
  local hex n
  hex=$(printf '%04X' "$2")
  for n in $(seq 1 200); do
    cat "/proc/$1/net/tcp" "/proc/$1/net/tcp6" 2>/dev/null |
      awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p {f=1} END {exit !f}' && return 0
    sleep 0.05
  done
  return 1
}

# port_run ENGINE ADDR: one transfer; sets PR_OUT to "MBPS NOISY" or fails. Runs in the main
# shell (not in $(...)), so an interrupt stops the script.
port_run() {
  local e=$1 addr=$2 cid port pid lport=5001 rc=0
  PR_OUT=""
  if [ "$e" = host ]; then
    # A free port (the tiny race with other listeners is harmless: the round would fail).
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
    lport=$port
    busybox nc -l -p "$port" -e dd of=/dev/null bs=1M </dev/null >/dev/null 2>&1 &
    pid=$!
    echo "$pid" >"$HOST_NC_PID"
  else
    cid=$(tcli "$e" run -d -p 5001 busybox sh -c "$SERVER")
    rc=$?
    stop_if_int $rc
    [ $rc -eq 0 ] || { log "$e: run -d failed"; return 1; }
    port=$(tcli "$e" port "$cid" 5001/tcp | head -1 | sed 's/.*://')
    pid=$(tcli "$e" inspect --format '{{.State.Pid}}' "$cid")
    stop_if_int $?
  fi
  if [ -z "$port" ] || [ -z "$pid" ] || ! wait_listen "$pid" "$lport"; then
    log "$e: server not listening (port '$port', pid '$pid')"
    rc=1
  else
    tmo $((NET_TIMEOUT + 30)) python3 "$BENCH_SRC/port_throughput.py" --mib "$NET_MIB" \
      --timeout "$NET_TIMEOUT" "$addr" "$port" >"$BENCH_DIR/net.out" 2>"$BENCH_DIR/net.err"
    rc=$?
    stop_if_int $rc
    if [ $rc -eq 0 ]; then
      PR_OUT=$(cat "$BENCH_DIR/net.out")
    else
      log "$e: transfer to $addr:$port failed (status $rc): $(tail -2 "$BENCH_DIR/net.err")"
    fi
  fi
  if [ "$e" = host ]; then
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -f "$HOST_NC_PID"
  else
    tcli "$e" rm -f "$cid" >/dev/null 2>&1
  fi
  return $rc
}

targets=("port_tcp_mbps=127.0.0.1")
[ -n "$host_ip" ] && targets+=("port_tcp_mbps_hostip=$host_ip")
tp_engines="$NET_ENGINES host"
declare -A vals fails
for e in $NET_ENGINES; do rm_all "$e"; done
r=-1 retries=0 # round -1 is the warm-up
while [ $r -lt "$rounds" ]; do
  wait_quiet
  declare -A got=()
  noisy=0
  for t in "${targets[@]}"; do
    m=${t%%=*} addr=${t#*=}
    for e in $tp_engines; do
      if port_run "$e" "$addr"; then
        got[$m/$e]=${PR_OUT% *}
        [ "${PR_OUT#* }" = 1 ] && noisy=1
      else
        got[$m/$e]=FAIL
      fi
    done
  done
  if [ $noisy = 1 ] && [ $retries -lt 20 ]; then
    retries=$((retries + 1))
    log "compiler ran during round $r; re-running it"
    continue
  fi
  if [ $r -ge 0 ]; then
    line=""
    for k in $(for t in "${targets[@]}"; do for e in $tp_engines; do echo "${t%%=*}/$e"; done; done); do
      line+=" $k=${got[$k]}"
      if [ "${got[$k]}" = FAIL ]; then
        fails[$k]=$((${fails[$k]:-0} + 1))
      else
        vals[$k]+="${got[$k]} "
      fi
    done
    [ $noisy = 1 ] && line+=" (kept although a compiler ran: retries used up)"
    log "port round $r:$line"
  fi
  r=$((r + 1))
done

json="{\"metric\": \"port_tcp\", \"mib\": $NET_MIB, \"values\": {"
sep=""
for t in "${targets[@]}"; do
  m=${t%%=*} addr=${t#*=}
  for e in $tp_engines; do
    k=$m/$e
    v=${vals[$k]:-}
    med=$(printf '%s\n' $v | median)
    echo -e "$m\t$e\tmedian=${med} MB/s values=[${v% }] fails=${fails[$k]:-0}"
    if [ "$e" = host ]; then
      cmd="busybox nc -l -p PORT -e dd of=/dev/null bs=1M; port_throughput.py --mib $NET_MIB $addr PORT"
    else
      cmd="$(cli_str "$e") run -d -p 5001 busybox sh -c '$SERVER'; port_throughput.py --mib $NET_MIB $addr PORT"
    fi
    [ -n "$v" ] && result "$m" "$e" "$med" MB/s "$cmd"
    json+="$sep\"$k\": [$(echo ${v% } | tr ' ' ',')]"
    sep=", "
  done
done
echo "$json}}" >>"$BENCH_RESULTS.json"
for e in $NET_ENGINES; do rm_all "$e"; done
