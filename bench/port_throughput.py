#!/usr/bin/env python3
"""TCP throughput client for a published port: sends N MiB of zeros to HOST:PORT, shuts down its
write side, then waits for EOF, i.e. for the server to have read everything and closed. Prints
`MBPS NOISY` on stdout: MB/s (10^6 bytes per second, from connect to EOF) and 1 if a compiler
ran during the transfer (the 2 cores are shared; the caller re-runs such rounds), else 0.

Every step has a deadline, so a wedged transfer (a proxy that never forwards the FIN, a lost
DNAT rule) fails with exit status 1 instead of hanging the benchmark.

usage: port_throughput.py [--mib N] [--timeout S] [--connect-timeout S] HOST PORT
"""
import argparse
import errno
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alt import Watcher  # noqa: E402  (same directory; shares the compiler watcher)

CHUNK = 1 << 20


def connect(host: str, port: int, deadline: float) -> socket.socket:
    """Connects, retrying refusals until the deadline: a DNAT rule or proxy may still be coming
    up. Only refusals are retried; anything else is an error at once."""
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            s.connect((host, port))
            return s
        except ConnectionRefusedError:
            s.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
        except BaseException:
            s.close()
            raise


def transfer(s: socket.socket, total: int, deadline: float) -> int:
    """Sends `total` bytes, half-closes, reads until EOF; returns the bytes the server sent back
    (expected 0)."""
    buf = memoryview(bytes(CHUNK))
    left = total
    while left:
        n = min(left, CHUNK)
        # sendall's timeout covers the whole call (Python >= 3.5): give it what is left.
        s.settimeout(max(0.1, deadline - time.monotonic()))
        s.sendall(buf[:n])
        left -= n
        if time.monotonic() > deadline:
            raise TimeoutError("send deadline passed")
    s.shutdown(socket.SHUT_WR)
    back = 0
    while True:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        d = s.recv(65536)
        if not d:
            return back
        back += len(d)
        if time.monotonic() > deadline:
            raise TimeoutError("EOF deadline passed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--timeout", type=float, default=120.0, help="whole transfer, seconds")
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    a = ap.parse_args()
    total = a.mib * CHUNK
    try:
        with Watcher() as w:
            s = connect(a.host, a.port, time.monotonic() + a.connect_timeout)
            try:
                t0 = time.perf_counter()
                back = transfer(s, total, time.monotonic() + a.timeout)
                dt = time.perf_counter() - t0
            finally:
                s.close()
    except (OSError, TimeoutError) as e:
        name = errno.errorcode.get(getattr(e, "errno", None) or 0, "")
        print(f"port_throughput: {a.host}:{a.port}: {type(e).__name__} {name} {e}", file=sys.stderr)
        sys.exit(1)
    if back:
        print(f"port_throughput: server sent {back} unexpected bytes", file=sys.stderr)
    print(f"{total / 1e6 / dt:.1f} {1 if w.seen else 0}")
    print(f"port_throughput: {total} bytes to {a.host}:{a.port} in {dt:.3f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
