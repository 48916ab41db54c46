"""POE::Component::Server::TCP's synopsis in cypoe: a rot13 line server.

A client in the same process connects, reads the greeting, sends one line,
checks that the answer is its rot13, and shuts everything down.

Run: python docs/examples/rot13_server.py [--port PORT] [--line TEXT]
"""
import argparse
import codecs
import sys

import cypoe


def rot13(data: bytes) -> bytes:
    return codecs.encode(data.decode("latin-1"), "rot13").encode("latin-1")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--line", default="Hello, World!", help="the line the client sends")
    opts = ap.parse_args(argv)
    kernel = cypoe.Kernel()
    result = {}
    # A guard so the example always ends, whatever happens (cancelled once the
    # server has stopped: an active timer keeps the kernel running).
    guard = kernel.delay(20.0, lambda: (print("timed out", file=sys.stderr), kernel.stop()))

    def finished(server):
        print("server: stopped")
        guard.cancel()

    # -- the server: POE's synopsis ---------------------------------------------
    def client_connected(conn):
        print(f"server: got a connection from {conn.remote_ip}")
        conn.put(b"Smile from the server!")

    def client_input(conn, line):
        conn.put(rot13(line))

    server = cypoe.Server(port=opts.port, address="127.0.0.1", kernel=kernel,
                          started=lambda s: print(f"server: listening on 127.0.0.1:{s.port}"),
                          stopped=finished,
                          client_connected=client_connected,
                          client_input=client_input,
                          client_disconnected=lambda c: (print("server: client disconnected"),
                                                         server.shutdown()))
    if server.port is None:
        print("server: could not listen", file=sys.stderr)
        guard.cancel()
        return 2

    # -- a client in the same process -------------------------------------------
    sent = opts.line.encode()

    def connected(client, sock, peer_addr, peer_port):
        print(f"client: connected to {peer_addr}:{peer_port}")

    def server_input(client, line):
        if "greeting" not in result:
            result["greeting"] = line
            print(f"client: greeting {line.decode()!r}")
            print(f"client: sending {sent.decode()!r}")
            client.put(sent)
            return
        result["answer"] = line
        print(f"client: got {line.decode()!r}")
        client.shutdown()

    cypoe.Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
                 connected=connected, server_input=server_input,
                 connect_error=lambda c, op, n, s: (print(f"client: {op} error {n}: {s}"),
                                                    server.shutdown()),
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
