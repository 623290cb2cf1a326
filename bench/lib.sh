# Shared setup for the benchmarks: private berthd, dockerd and podman instances under one temp
# dir, busybox:latest imported offline into each, and a teardown that stops exactly what we
# started. Sourced by the bench/*.sh scripts; not meant to be run on its own.
#
# Engines already brought up by a caller (bench/all.sh) are reused and left running; a script
# run on its own starts what it needs and stops it on exit.
#
# Environment:
#   BENCH_DIR      temp root for all engines (default /tmp/bbench; keep it short: unix socket paths)
#   BENCH_RESULTS  TSV file results are appended to (default $BENCH_DIR/results.tsv)
#   BENCH_ENGINES  engines to compare (default "berth docker podman")
#   BERTH_BIN      directory holding berthd/berth/berth-shim (default <repo>/target/release)

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_SRC/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/bbench}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH_DIR/results.tsv}
BENCH_ENGINES=${BENCH_ENGINES:-berth docker podman}
BERTH_BIN=${BERTH_BIN:-$REPO/target/release}
# Our own bridge for the private dockerd: dockerd 20.10 deletes docker0 with --bridge=none
# (HOST-NOTES), and we must never touch docker0 or another engine's bridge.
BENCH_BRIDGE=bbench0
BENCH_BRIDGE_CIDR=10.254.77.1/24
# berthd's default bridge, also our own so it never collides with a berth0 (or anything else)
# on the host. Like dockerd with docker0, berthd keeps its bridge and its nftables table
# (berth-<bridge>) across restarts, so engines_down deletes both.
BERTH_BRIDGE=bbberth0
BERTH_BRIDGE_CIDR=10.254.78.1/24
export BENCH_SRC REPO BENCH_DIR BENCH_RESULTS BENCH_ENGINES BERTH_BIN

B_SOCK=$BENCH_DIR/berth/sock
D_SOCK=$BENCH_DIR/docker/sock
P_DIR=$BENCH_DIR/podman
export CONTAINERS_CONF=$P_DIR/containers.conf

# The command prefix of each engine's CLI, as words for "${cli[@]}" and as a string for sh -c.
berth_cli() { "$BERTH_BIN/berth" -H "unix://$B_SOCK" "$@"; }
docker_cli() { docker -H "unix://$D_SOCK" "$@"; }
podman_cli() {
  podman --root "$P_DIR/root" --runroot "$P_DIR/run" --tmpdir "$P_DIR/tmp" \
    --runtime runc --cgroup-manager cgroupfs --events-backend file --storage-driver overlay "$@"
}
cli_str() {
  case $1 in
    berth) echo "$BERTH_BIN/berth -H unix://$B_SOCK" ;;
    docker) echo "docker -H unix://$D_SOCK" ;;
    podman) echo "env CONTAINERS_CONF=$CONTAINERS_CONF podman --root $P_DIR/root --runroot $P_DIR/run --tmpdir $P_DIR/tmp --runtime runc --cgroup-manager cgroupfs --events-backend file --storage-driver overlay" ;;
  esac
}
export -f berth_cli docker_cli podman_cli cli_str
export B_SOCK D_SOCK P_DIR
cli() { local e=$1; shift; "${e}_cli" "$@"; }

log() { echo "[bench $(date +%T)] $*" >&2; }

# Append one result: metric, engine, value, unit, command.
result() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$BENCH_RESULTS"; }

# Block until no compiler runs (the machine has 2 shared cores). Matches process names exactly:
# `pgrep -f cargo` would also match unrelated processes whose arguments mention ~/.cargo, and
# pgrep -x refuses patterns longer than 15 characters.
BUSY_RE='cargo|rustc|cargo-clippy|clippy-driver|cc1|ld|rust-lld|build-script-b.*'
wait_quiet() {
  local n=0
  while ps -eo comm= | grep -qxE "$BUSY_RE"; do
    # Others may build all evening: give up after BENCH_MAX_WAIT s (alt.py flags noisy rounds).
    [ $((n * 2)) -ge "${BENCH_MAX_WAIT:-600}" ] && { log "still busy; going on"; return 0; }
    [ $((n % 30)) -eq 0 ] && log "waiting for compilers to finish"
    n=$((n + 1))
    sleep 2
  done
}

_bench_started=()

_wait_sock() { # path cmd...
  local s=$1; shift
  for _ in $(seq 1 300); do
    if [ -S "$s" ] && "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

berth_up() {
  if [ -S "$B_SOCK" ] && berth_cli version >/dev/null 2>&1; then return 0; fi
  [ -x "$BERTH_BIN/berthd" ] || { echo "no $BERTH_BIN/berthd: cargo build --release --workspace --bins" >&2; return 1; }
  mkdir -p "$BENCH_DIR/berth"
  log "starting berthd"
  # setsid (here and for dockerd): a Ctrl-C to the bench must not reach the daemons, which
  # would shut down before engines_down could remove their containers.
  setsid "$BERTH_BIN/berthd" --root "$BENCH_DIR/berth/root" --exec-root "$BENCH_DIR/berth/run" \
    -H "unix://$B_SOCK" --pidfile "$BENCH_DIR/berth/pid" \
    --bridge "$BERTH_BRIDGE" --bip "$BERTH_BRIDGE_CIDR" >>"$BENCH_DIR/berth/log" 2>&1 &
  _wait_sock "$B_SOCK" berth_cli version || { echo "berthd did not start; see $BENCH_DIR/berth/log" >&2; return 1; }
  _bench_started+=(berth)
}

docker_up() {
  if [ -S "$D_SOCK" ] && docker_cli version >/dev/null 2>&1; then return 0; fi
  mkdir -p "$BENCH_DIR/docker"
  # dockerd makes a "docker" cgroup in every hierarchy: remember whether one was there before.
  [ -e "$BENCH_DIR/docker/.precg" ] || {
    [ -d /sys/fs/cgroup/memory/docker ] || [ -d /sys/fs/cgroup/docker ]
    echo $? >"$BENCH_DIR/docker/.precg"
  }
  if ! ip link show "$BENCH_BRIDGE" >/dev/null 2>&1; then
    ip link add "$BENCH_BRIDGE" type bridge
    ip addr add "$BENCH_BRIDGE_CIDR" dev "$BENCH_BRIDGE"
    ip link set "$BENCH_BRIDGE" up
  fi
  log "starting dockerd"
  # --iptables=false: we must not edit the host's iptables tables. The userland proxy stays on
  # (dockerd's default), so published ports work the way a default docker does when it cannot
  # use iptables: through one docker-proxy process per port (bench/net.sh measures that).
  setsid dockerd --data-root "$BENCH_DIR/docker/data" --exec-root "$BENCH_DIR/docker/exec" \
    --pidfile "$BENCH_DIR/docker/pid" -H "unix://$D_SOCK" --bridge="$BENCH_BRIDGE" \
    --iptables=false --ip6tables=false --ip-masq=false \
    --log-level warn >>"$BENCH_DIR/docker/log" 2>&1 &
  _wait_sock "$D_SOCK" docker_cli version || { echo "dockerd did not start; see $BENCH_DIR/docker/log" >&2; return 1; }
  _bench_started+=(docker)
}

podman_up() {
  mkdir -p "$P_DIR/tmp"
  # podman makes these outside its --root; remember whether they were there so we only remove ours.
  [ -e "$P_DIR/.pre" ] || {
    for d in /sys/fs/cgroup/memory/libpod_parent /run/containers; do [ -e "$d" ] && echo "$d"; done >"$P_DIR/.pre"
  }
  cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
# podman's default ulimits need CAP_SYS_RESOURCE, which this host's bounding set lacks.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
# crun 1.8 refuses this host's hybrid cgroup layout (HOST-NOTES).
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  podman_cli info >/dev/null 2>&1 || { echo "podman does not work here" >&2; return 1; }
  # podman has no daemon: "started" means this script owns its state and cleans it on exit;
  # scripts run by bench/all.sh inherit the variable and leave that to all.sh.
  if [ -z "${BENCH_PODMAN_OWNED:-}" ]; then
    export BENCH_PODMAN_OWNED=1
    _bench_started+=(podman)
  fi
}

ensure_busybox() { # engine
  local e=$1
  if cli "$e" image inspect busybox:latest >/dev/null 2>&1; then return 0; fi
  [ -f "$BENCH_DIR/busybox.tar" ] || bash "$REPO/scripts/mkbusybox.sh" "$BENCH_DIR/busybox.tar"
  log "importing busybox:latest into $e"
  cli "$e" import "$BENCH_DIR/busybox.tar" busybox:latest >/dev/null
}

# engines_up ENGINE...: start each (if not already up) and import busybox.
engines_up() {
  mkdir -p "$BENCH_DIR"
  local e
  for e in "$@"; do
    "${e}_up" && ensure_busybox "$e"
  done
  trap engines_down EXIT
  trap 'exit 130' INT TERM
}

# Remove every container of an engine (between runs).
rm_all() { # engine
  local e=$1 ids
  ids=$(cli "$e" ps -aq 2>/dev/null)
  [ -n "$ids" ] || return 0
  # podman's rm -f first sends SIGTERM and waits 10 s (ignored by `sleep` as pid 1): -t 0.
  if [ "$e" = podman ]; then
    cli "$e" rm -f -t 0 $ids >/dev/null 2>&1
  else
    cli "$e" rm -f $ids >/dev/null 2>&1
  fi
  return 0
}
export -f cli rm_all

_kill_pidfile() { # pidfile
  local p
  p=$(cat "$1" 2>/dev/null) || return 0
  [ -n "$p" ] || return 0
  kill "$p" 2>/dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$p" 2>/dev/null
}

_umount_under() { # dir: unmount everything mounted below it, deepest first
  findmnt -rn -o TARGET | grep -F "$1/" | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
}

engines_down() {
  local e
  for e in "${_bench_started[@]}"; do
    log "stopping $e"
    case $e in
      berth)
        rm_all berth
        _kill_pidfile "$BENCH_DIR/berth/pid"
        _umount_under "$BENCH_DIR/berth"
        ip link del "$BERTH_BRIDGE" 2>/dev/null
        nft delete table ip "berth-$BERTH_BRIDGE" 2>/dev/null
        # berthd's default cgroup parent "berth" (like dockerd's "docker"); rmdir keeps it
        # when not empty, i.e. when another berthd uses it.
        for h in /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth; do rmdir "$h" 2>/dev/null; done
        ;;
      docker)
        rm_all docker
        _kill_pidfile "$BENCH_DIR/docker/pid"
        _umount_under "$BENCH_DIR/docker"
        ip link del "$BENCH_BRIDGE" 2>/dev/null
        # Only if our dockerd made them (1 = none existed before); rmdir keeps non-empty ones.
        if [ "$(cat "$BENCH_DIR/docker/.precg" 2>/dev/null)" = 1 ]; then
          for h in /sys/fs/cgroup/*/docker /sys/fs/cgroup/docker; do rmdir "$h" 2>/dev/null; done
        fi
        ;;
      podman)
        rm_all podman
        _umount_under "$P_DIR"
        if ! grep -qx /sys/fs/cgroup/memory/libpod_parent "$P_DIR/.pre" 2>/dev/null; then
          # rmdir only succeeds on empty cgroups: deepest first, in every hierarchy.
          find /sys/fs/cgroup/*/libpod_parent -depth -type d -exec rmdir {} \; 2>/dev/null
        fi
        if ! grep -qx /run/containers "$P_DIR/.pre" 2>/dev/null; then
          # netavark keeps its IPAM state there once a container used a bridge (bench/net.sh).
          rm -f /run/containers/networks/ipam.db
          rmdir /run/containers/networks/aardvark-dns /run/containers/networks /run/containers 2>/dev/null
        fi
        rm -f "$P_DIR/.pre"
        ;;
    esac
  done
  _bench_started=()
}

# median of numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }
