#!/usr/bin/env bash
# Benchmark: cold `pull` (download, verify, unpack) of a 4 x 25 MiB image from a local registry,
# berth vs `docker pull` vs `podman pull`, paired and alternated (bench/alt.py):
#   pull_cold   seconds for `pull 127.0.0.1:PORT/bench/pull:v1`, image removed before each run
#   pull_mbps   compressed bytes of the pulled layers / median seconds, in MB/s (10^6 B)
# The image is made once per run with berth itself (`FROM busybox` + 4 RUN steps writing 25 MiB of
# /dev/urandom each: incompressible, so gzip keeps the layers at ~26 MB) and pushed to Debian's
# reference registry (docker-registry) on 127.0.0.1, a neutral server for all three engines. The
# busybox base layer is already in every engine (lib.sh imports the same tar), so each pull
# fetches exactly the 4 big layers; MB/s counts those (the base layer, ~1 MB, is left out).
# Loopback registries are plain http for berth and dockerd (127.0.0.0/8 is insecure by default);
# podman needs --tls-verify=false.
# Usage: bench/pull.sh [ROUNDS]  (default 5; berth is started even if not in BENCH_ENGINES)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
rounds=${1:-5}

# berth builds and pushes the image, so it is always up; the others as asked.
up=berth
for e in $BENCH_ENGINES; do [ "$e" = berth ] || up="$up $e"; done
engines_up $up
command -v docker-registry >/dev/null || { echo "no docker-registry (apt-get install docker-registry)" >&2; exit 1; }

reg_dir=$BENCH_DIR/registry
ctx=$BENCH_DIR/pullctx
reg_pid=
img=

pull_cleanup() {
  local e
  if [ -n "$img" ]; then
    for e in $up; do
      cli "$e" rmi -f "$img" >/dev/null 2>&1
      cli "$e" image prune -f >/dev/null 2>&1
    done
    for h in ${layer_hex:-}; do rm -f "$BENCH_DIR/berth/root/blobs/sha256/$h"; done
  fi
  if [ -n "$reg_pid" ]; then
    kill "$reg_pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$reg_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$reg_pid" 2>/dev/null
  fi
  rm -rf "$reg_dir" "$ctx"
}
trap 'pull_cleanup; engines_down' EXIT

# A free loopback port (the registry binds it right after; a race here only fails the run).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
img=$addr/bench/pull:v1
rm -rf "$reg_dir"
mkdir -p "$reg_dir/data"
cat >"$reg_dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $reg_dir/data
http:
  addr: $addr
EOF
log "starting docker-registry on $addr"
setsid docker-registry serve "$reg_dir/config.yml" >"$reg_dir/log" 2>&1 &
reg_pid=$!
for _ in $(seq 1 300); do
  curl -sf "http://$addr/v2/" >/dev/null && break
  sleep 0.1
done
curl -sf "http://$addr/v2/" >/dev/null || { echo "registry did not start; see $reg_dir/log" >&2; cat "$reg_dir/log" >&2; exit 1; }

wait_quiet
log "building and pushing $img with berth"
rm -rf "$ctx"
mkdir -p "$ctx"
{
  echo "FROM busybox"
  for i in 1 2 3 4; do echo "RUN head -c 26214400 /dev/urandom > /layer$i"; done
} >"$ctx/Dockerfile"
berth_cli build -q --no-cache -t "$img" "$ctx" >/dev/null || { echo "berth build failed" >&2; exit 1; }
berth_cli push "$img" >/dev/null || { echo "berth push failed" >&2; exit 1; }
# The pushed image is the pulled one (same config digest): berth must not keep it, or every
# layer would be "Already exists".
berth_cli rmi -f "$img" >/dev/null
berth_cli builder prune -f >/dev/null 2>&1
rm -rf "$ctx"

# Compressed sizes of the layers as served: all of them, and those no engine has yet (the
# busybox base layer, shared with the imported busybox:latest, is skipped by every engine).
manifest=$(curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' \
  "http://$addr/v2/bench/pull/manifests/v1") || { echo "no manifest in the registry" >&2; exit 1; }
read -r nlayers total_bytes pulled_bytes layer_hex < <(python3 -c '
import json, sys
m = json.loads(sys.argv[1])
s = [l["size"] for l in m["layers"]]
h = [l["digest"].split(":", 1)[1] for l in m["layers"][1:]]
print(len(s), sum(s), sum(s[1:]), " ".join(h))' "$manifest")
log "image: $nlayers layers, $total_bytes compressed bytes; $pulled_bytes in the $((nlayers - 1)) layers pulled"

pull_cmd() {
  case $1 in
    podman) echo "$(cli_str podman) pull -q --tls-verify=false $img" ;;
    *) echo "$(cli_str "$1") pull -q $img" ;;
  esac
}
# Untimed before every run: drop the image and anything left unreferenced, so every layer is
# downloaded and unpacked again; `sync` so one engine's dirty pages are not written back during
# the next engine's run.
pre_cmd() {
  local extra=
  # A layer's compressed blob (kept from a pull or made for a push) goes with its last image
  # on `rmi`; deleting the files here too keeps every round cold even if one survived (a
  # pull finding it would skip writing its download).
  [ "$1" = berth ] && for h in $layer_hex; do extra="$extra $BENCH_DIR/berth/root/blobs/sha256/$h"; done
  echo "$(cli_str "$1") rmi -f $img >/dev/null 2>&1; $(cli_str "$1") image prune -f >/dev/null 2>&1;${extra:+ rm -f$extra;} sync"
}

# berth: rmi of the only image using a layer removes its snapshot and tar blob; check once.
snapdir=$BENCH_DIR/berth/root/snapshots
[ -d "$snapdir" ] || snapdir=$(find "$BENCH_DIR/berth/root" -maxdepth 3 -type d -name snapshots | head -1)
snaps_before=$(ls "$snapdir" 2>/dev/null | wc -l)

cmds=() pre=()
for e in $BENCH_ENGINES; do
  cmds+=("$e=$(pull_cmd "$e")")
  pre+=(--pre "$e=$(pre_cmd "$e")")
done

out=$(python3 "$BENCH_SRC/alt.py" --metric pull_cold --rounds "$rounds" --warmup 1 \
  --results "$BENCH_RESULTS" "${pre[@]}" "${cmds[@]}")
echo "$out"

if [[ " $BENCH_ENGINES " == *" berth "* ]]; then
  berth_cli rmi -f "$img" >/dev/null 2>&1
  for h in $layer_hex; do rm -f "$BENCH_DIR/berth/root/blobs/sha256/$h"; done
  snaps_after=$(ls "$snapdir" 2>/dev/null | wc -l)
  [ "$snaps_after" = "$snaps_before" ] ||
    log "WARNING: berth kept $((snaps_after - snaps_before)) layer snapshot(s) after rmi (in $snapdir)"
fi

declare -A mbps
for e in $BENCH_ENGINES; do
  med=$(awk -F'\t' -v e="$e" '$1 == "pull_cold" && $2 == e { sub(/^median=/, "", $3); sub(/s .*/, "", $3); print $3 }' <<<"$out")
  [ -n "$med" ] || continue
  mbps[$e]=$(awk -v b="$pulled_bytes" -v s="$med" 'BEGIN { if (s > 0) printf "%.1f", b / 1e6 / s; else print "nan" }')
  printf 'pull_mbps\t%s\t%s MB/s  (%d bytes in %s s)\n' "$e" "${mbps[$e]}" "$pulled_bytes" "$med"
  result pull_mbps "$e" "${mbps[$e]}" MB/s "$(pull_cmd "$e")"
done
if [ -n "${mbps[berth]:-}" ] && [ -n "${mbps[docker]:-}" ]; then
  awk -v a="${mbps[berth]}" -v b="${mbps[docker]}" 'BEGIN { if (b > 0) printf "pull_mbps berth/docker = %.2fx (goal >= 2.5x)\n", a / b }'
fi
