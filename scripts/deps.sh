#!/usr/bin/env bash
# Installs what berth needs to build and test on a fresh Debian machine (as root).
set -euo pipefail
pkgs=(busybox-static libseccomp-dev pkg-config procps iproute2 util-linux tar nftables docker-registry skopeo apache2-utils curl openssl coreutils gzip zstd)
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
# docker-compose v1 (Python, from PyPI) for the compose interop test, in a venv of its own:
# it needs docker-py < 7 with requests < 2.32 (http+docker URLs), and PyYAML 5.4 which only
# builds with Cython < 3.
if [ "${BERTH_SKIP_PY:-}" != 1 ] && [ ! -x /opt/berth-compose/bin/docker-compose ]; then
  echo "deps: installing docker-compose 1.29.2 into /opt/berth-compose" >&2
  python3 -m venv /opt/berth-compose
  /opt/berth-compose/bin/pip install -q "cython<3.0.0" wheel >/dev/null
  /opt/berth-compose/bin/pip install -q --no-build-isolation "pyyaml==5.4.1" >/dev/null
  /opt/berth-compose/bin/pip install -q "docker-compose==1.29.2" "docker<7" "requests<2.32" "urllib3<2" >/dev/null
fi
