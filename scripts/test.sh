#!/usr/bin/env bash
# Runs every test: unit, handler and end-to-end (real daemons, namespaces, cgroups, overlayfs).
# Needs root. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@" -- --test-threads 2
