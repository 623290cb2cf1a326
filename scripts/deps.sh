#!/usr/bin/env bash
# Installs what berth needs to build and test on a fresh Debian machine (as root).
set -euo pipefail
pkgs=(busybox-static libseccomp-dev pkg-config procps iproute2 util-linux tar nftables)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# docker-py for the interop test (the stock docker CLI is used too when present).
if [ "${BERTH_SKIP_PY:-}" != 1 ] && ! python3 -c 'import docker' 2>/dev/null; then
  echo "deps: installing docker-py" >&2
  python3 -m pip install -q docker >/dev/null
fi
