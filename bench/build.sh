#!/usr/bin/env bash
# Benchmark: `build` of a Dockerfile with a COPY of 1,000 files and 3 RUN steps, berth vs docker's
# classic builder (DOCKER_BUILDKIT=0; no buildx here) vs podman build, paired and alternated:
#   build_cold      --no-cache (every step runs, every layer is written)
#   build_cached    nothing changed since the last build (every step from the cache)
#   build_one_file  one copied file's content changed before each build (COPY and the RUNs after it)
# Each engine builds its own copy of the context. Usage: bench/build.sh [ROUNDS]  (default 10)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
rounds=${1:-10}
engines_up $BENCH_ENGINES
wait_quiet

ctx_base=$BENCH_DIR/buildctx
for e in $BENCH_ENGINES; do
  c=$ctx_base/$e
  rm -rf "$c"
  mkdir -p "$c/files"
  for i in $(seq -w 1 1000); do
    printf 'file %s\n%0200d\n' "$i" 0 >"$c/files/f$i"
  done
  cat >"$c/Dockerfile" <<'EOF'
FROM busybox
COPY files/ /files/
RUN find /files -type f | wc -l > /count
RUN cat /files/f0500 > /picked
RUN echo built > /done
EOF
done

build_cmd() { # engine extra-args
  local e=$1; shift
  case $e in
    docker) echo "env DOCKER_BUILDKIT=0 $(cli_str docker) build -q $* -t benchbuild $ctx_base/docker" ;;
    podman) echo "$(cli_str podman) build -q --layers $* -t benchbuild $ctx_base/podman" ;;
    *) echo "$(cli_str "$e") build -q $* -t benchbuild $ctx_base/$e" ;;
  esac
}

cold=() cached=() onefile=() pre=()
for e in $BENCH_ENGINES; do
  # Prime each engine's cache once (untimed) so "cached" means cached from the first round.
  sh -c "$(build_cmd "$e")" >/dev/null 2>&1 || { echo "$e build failed" >&2; sh -c "$(build_cmd "$e")"; exit 1; }
  cold+=("$e=$(build_cmd "$e" --no-cache)")
  cached+=("$e=$(build_cmd "$e")")
  onefile+=("$e=$(build_cmd "$e")")
  pre+=(--pre "$e=date +%s%N > $ctx_base/$e/files/f0500")
done

python3 "$BENCH_SRC/alt.py" --metric build_cold --rounds "$rounds" --warmup 1 \
  --results "$BENCH_RESULTS" "${cold[@]}"
# Re-prime: the cold builds above wrote new (uncached) layers each round.
for e in $BENCH_ENGINES; do sh -c "$(build_cmd "$e")" >/dev/null 2>&1; done
python3 "$BENCH_SRC/alt.py" --metric build_cached --rounds "$rounds" --warmup 1 \
  --results "$BENCH_RESULTS" "${cached[@]}"
python3 "$BENCH_SRC/alt.py" --metric build_one_file --rounds "$rounds" --warmup 1 \
  --results "$BENCH_RESULTS" "${pre[@]}" "${onefile[@]}"
for e in $BENCH_ENGINES; do
  cli "$e" rmi -f benchbuild >/dev/null 2>&1
  [ "$e" = podman ] || cli "$e" builder prune -f >/dev/null 2>&1
done
rm -rf "$ctx_base"
