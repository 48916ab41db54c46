"""POE::Component::Client::TCPMulti's synopsis in cypoe: one TCPMulti opens
1024 connections to a local echo server; each sends one line and checks the
echo, then shuts down.

Run: python docs/examples/tcpmulti_1024.py [--port PORT] [--connections N]
"""
import argparse
import resource
import sys
import time
from typing import Optional, Sequence

import cypoe


def raise_fd_limit(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--connections", type=int, default=1024)
    opts = ap.parse_args(argv)
    n = opts.connections
    # Both ends live in this process: two fds per connection.
    limit = raise_fd_limit(2 * n + 64)
    if limit != resource.RLIM_INFINITY and limit < 2 * n + 64:
        print(f"open-file limit {limit} is too low for {n} connections", file=sys.stderr)
        return 2

    kernel = cypoe.Kernel()
    def timed_out() -> None:
        print("timed out", file=sys.stderr)
        kernel.stop()

    guard = kernel.delay(45.0, timed_out)
    stats = {"ok": 0, "bad": 0, "failed": 0, "errors": 0, "timeouts": 0, "ended": 0}

    server = cypoe.Server(port=opts.port, address="127.0.0.1", kernel=kernel,
                          listen_queue=4096,
                          client_input=lambda conn, line: conn.put(line),
                          stopped=lambda s: guard.cancel())
    if server.port is None:
        print("server: could not listen", file=sys.stderr)
        guard.cancel()
        return 2
    print(f"echo server on 127.0.0.1:{server.port}")

    def ended(conn: cypoe.Conn) -> None:
        stats["ended"] += 1
        if stats["ended"] == n:
            server.shutdown()

    def on_success(conn: cypoe.Conn) -> None:
        conn.put(b"hello from connection %d" % conn.id)

    def on_input(conn: cypoe.Conn, line: bytes) -> None:
        if line == b"hello from connection %d" % conn.id:
            stats["ok"] += 1
        else:
            stats["bad"] += 1
        conn.shutdown()

    def on_failure(conn: cypoe.Conn, op: str, errnum: int, errstr: str) -> None:
        stats["failed"] += 1
        if stats["failed"] <= 5:
            print(f"connection {conn.id}: {op} error {errnum}: {errstr}")

    def on_error(conn: cypoe.Conn, op: str, errnum: int, errstr: str) -> None:
        stats["errors"] += 1

    def on_timeout(conn: cypoe.Conn) -> None:
        stats["timeouts"] += 1
        ended(conn)

    multi = cypoe.TCPMulti(on_input=on_input, on_success=on_success, on_failure=on_failure,
                           on_error=on_error, on_timeout=on_timeout, on_disconnected=ended,
                           input_timeout=15, connect_timeout=15, kernel=kernel)
    start = time.perf_counter()
    for _ in range(n):
        multi.connect("127.0.0.1", server.port)
    kernel.run()
    elapsed = time.perf_counter() - start

    ok = stats["ok"] == n and stats["ended"] == n and multi.connections == 0
    print(f"{'OK' if ok else 'FAIL'} {stats['ok']}/{n} connections echoed their line "
          f"in {elapsed:.2f} s ({stats['bad']} wrong, {stats['failed']} failed, "
          f"{stats['errors']} errors, {stats['timeouts']} timed out)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
