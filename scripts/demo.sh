#!/usr/bin/env bash
# Builds berth, starts berthd in the background (default root /var/lib/berth, socket
# /run/berth/berth.sock), makes a busybox image offline and runs a container.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH_SKIP_PY=1 bash scripts/deps.sh
cargo build --release --workspace --bins
bin=$PWD/target/release
sock=/run/berth/berth.sock
if ! "$bin/berth" -H "unix://$sock" version >/dev/null 2>&1; then
  mkdir -p /var/log
  nohup "$bin/berthd" >/var/log/berthd.log 2>&1 &
  for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
  echo "berthd started (pid $!, log /var/log/berthd.log)"
fi
export BERTH_HOST=unix://$sock
if ! "$bin/berth" image inspect busybox >/dev/null 2>&1; then
  tmp=$(mktemp --suffix .tar)
  bash scripts/mkbusybox.sh "$tmp"
  "$bin/berth" import "$tmp" busybox:latest
  rm -f "$tmp"
fi
"$bin/berth" run --rm busybox echo hello from berth
