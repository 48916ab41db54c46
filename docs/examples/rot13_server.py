"""POE::Component::Server::TCP's synopsis in cypoe: a rot13 line server.

A client in the same process connects, reads the greeting, sends one line,
checks that the answer is its rot13, and shuts everything down.

Run: python docs/examples/rot13_server.py [--port PORT] [--line TEXT]
"""
import argparse
import codecs
import socket
import sys
from typing import Dict, Optional, Sequence

import cypoe


def rot13(data: bytes) -> bytes:
    return codecs.encode(data.decode("latin-1"), "rot13").encode("latin-1")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--line", default="Hello, World!", help="the line the client sends")
    opts = ap.parse_args(argv)
    kernel = cypoe.Kernel()
    result: Dict[str, bytes] = {}

    def timed_out() -> None:
        print("timed out", file=sys.stderr)
        kernel.stop()

    # A guard so the example always ends, whatever happens (cancelled once the
    # server has stopped: an active timer keeps the kernel running).
    guard = kernel.delay(20.0, timed_out)

    def finished(server: cypoe.Server) -> None:
        print("server: stopped")
        guard.cancel()

    # -- the server: POE's synopsis ---------------------------------------------
    def client_disconnected(conn: cypoe.Connection) -> None:
        print("server: client disconnected")
        server.shutdown()

    def client_connected(conn: cypoe.Connection) -> None:
        print(f"server: got a connection from {conn.remote_ip}")
        conn.put(b"Smile from the server!")

    def client_input(conn: cypoe.Connection, line: bytes) -> None:
        conn.put(rot13(line))

    server = cypoe.Server(port=opts.port, address="127.0.0.1", kernel=kernel,
                          started=lambda s: print(f"server: listening on 127.0.0.1:{s.port}"),
                          stopped=finished,
                          client_connected=client_connected,
                          client_input=client_input,
                          client_disconnected=client_disconnected)
    if server.port is None:
        print("server: could not listen", file=sys.stderr)
        guard.cancel()
        return 2

    # -- a client in the same process -------------------------------------------
    sent = opts.line.encode()

    def connected(client: cypoe.Client, sock: socket.socket, peer_addr: str,
                  peer_port: int) -> None:
        print(f"client: connected to {peer_addr}:{peer_port}")

    def server_input(client: cypoe.Client, line: bytes) -> None:
        if "greeting" not in result:
            result["greeting"] = line
            print(f"client: greeting {line.decode()!r}")
            print(f"client: sending {sent.decode()!r}")
            client.put(sent)
            return
        result["answer"] = line
        print(f"client: got {line.decode()!r}")
        client.shutdown()

    def connect_error(client: cypoe.Client, op: str, errnum: int, errstr: str) -> None:
        print(f"client: {op} error {errnum}: {errstr}")
        server.shutdown()

    cypoe.Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
                 connected=connected, server_input=server_input,
                 connect_error=connect_error,
                 disconnected=lambda c: print("client: disconnected"))
    kernel.run()

    expected = rot13(sent)
    if result.get("greeting") == b"Smile from the server!" and result.get("answer") == expected:
        print(f"OK rot13({sent.decode()!r}) == {expected.decode()!r}")
        return 0
    print(f"FAIL greeting={result.get('greeting')!r} answer={result.get('answer')!r} "
          f"expected={expected!r}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
