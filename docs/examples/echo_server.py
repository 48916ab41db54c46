"""POE::Component::Server::TCP's echo server in cypoe.

    Server(port=12345, client_input=lambda conn, line: conn.put(line))

Here a few Clients in the same process each send some lines, check every
echo, and disconnect; the server shuts down after the last one.

Run: python docs/examples/echo_server.py [--port PORT] [--clients N] [--lines N]
"""
import argparse
import socket
import sys
from typing import Optional, Sequence

import cypoe


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--lines", type=int, default=5, help="lines each client sends")
    opts = ap.parse_args(argv)
    kernel = cypoe.Kernel()

    def timed_out() -> None:
        print("timed out", file=sys.stderr)
        kernel.stop()

    guard = kernel.delay(30.0, timed_out)
    stats = {"echoed": 0, "bad": 0, "done": 0, "failed": 0}

    def stopped(server: cypoe.Server) -> None:
        print("server: stopped")
        guard.cancel()

    # -- the server: the whole of POE's example ----------------------------------
    server = cypoe.Server(port=opts.port, address="127.0.0.1", kernel=kernel,
                          client_input=lambda conn, line: conn.put(line),
                          stopped=stopped)
    if server.port is None:
        print("server: could not listen", file=sys.stderr)
        guard.cancel()
        return 2
    print(f"server: echoing on 127.0.0.1:{server.port}")

    # -- clients ------------------------------------------------------------------
    def client_done(client: cypoe.Client) -> None:
        stats["done"] += 1
        if stats["done"] == opts.clients:
            server.shutdown()

    def connected(client: cypoe.Client, sock: socket.socket, peer_addr: str,
                  peer_port: int) -> None:
        client.heap["expect"] = [f"client {client.heap['n']} line {i}".encode()
                                 for i in range(opts.lines)]
        client.heap["got"] = 0
        client.put(*client.heap["expect"])     # pipelined: all lines at once

    def server_input(client: cypoe.Client, line: bytes) -> None:
        h = client.heap
        if line == h["expect"][h["got"]]:
            stats["echoed"] += 1
        else:
            stats["bad"] += 1
        h["got"] += 1
        if h["got"] == len(h["expect"]):
            print(f"client {h['n']}: {h['got']} lines echoed")
            client.shutdown()

    def connect_error(client: cypoe.Client, op: str, errnum: int, errstr: str) -> None:
        print(f"client {client.heap['n']}: {op} error {errnum}: {errstr}")
        stats["failed"] += 1
        client_done(client)

    for n in range(opts.clients):
        c = cypoe.Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
                         connected=connected, server_input=server_input,
                         connect_error=connect_error, disconnected=client_done,
                         autoconnect=False)
        c.heap["n"] = n
        c.connect()
    kernel.run()

    want = opts.clients * opts.lines
    ok = stats["echoed"] == want and stats["bad"] == 0 and stats["failed"] == 0
    print(f"{'OK' if ok else 'FAIL'} {stats['echoed']}/{want} lines echoed by "
          f"{opts.clients} clients, {stats['bad']} wrong, {stats['failed']} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
