#!/usr/bin/env bash
# Builds a busybox rootfs tarball from the host's busybox-static (no network needed).
# Usage: mkbusybox.sh OUT.tar
set -euo pipefail
out=${1:?usage: mkbusybox.sh OUT.tar}
bb=/bin/busybox
if ! [ -x "$bb" ] || ! "$bb" --list >/dev/null 2>&1; then
  echo "mkbusybox: installing busybox-static" >&2
  apt-get install -y -qq busybox-static >/dev/null
fi
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir -p "$d"/{bin,etc,tmp,root,proc,sys,dev,home,var/tmp,usr/bin,usr/sbin,sbin}
chmod 1777 "$d/tmp" "$d/var/tmp"
cp "$bb" "$d/bin/busybox"
for a in $("$bb" --list); do
  [ "$a" = busybox ] && continue
  ln -s busybox "$d/bin/$a"
done
cat > "$d/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$d/etc/group" <<'G'
root:x:0:
daemon:x:1:
tty:x:5:
nogroup:x:65534:
G
tar --numeric-owner --owner=0 --group=0 -C "$d" -cf "$out" .
