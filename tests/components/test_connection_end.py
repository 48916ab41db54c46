"""Every way a connection can end ends it exactly once.

For each path (reset, EOF, error, timeout, lingering close, TLS handshake,
connect failure, graceful shutdown with output pending, write error while
shutting) the terminal callback runs once, the component's count drops to
zero, the loop's graceful shutdown returns, and the process holds exactly
the file descriptors it held before.
"""
import errno
import gc
import os
import socket
import struct
import threading

import pytest

import cypoe
from cypoe import Server, Stream, TCPMulti

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20


def fds():
    """The open fds, once kernels dropped by earlier tests are collected
    (a collected Kernel closes its own fds)."""
    gc.collect()
    return set(os.listdir("/proc/self/fd"))


def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Ends:
    """Terminal callbacks seen, per connection id."""

    def __init__(self):
        self.by_id = {}

    def add(self, conn, kind):
        self.by_id.setdefault(conn.id, []).append(kind)

    def all(self):
        return sorted(self.by_id.values())


# -- Server -------------------------------------------------------------------

SERVER_PATHS = ["reset", "eof", "reset_before_accept_with_put_and_shutdown",
                "input_timeout", "linger", "tls_reset", "exception",
                "shutdown_with_pending_output_then_reset", "shutdown_connections_pending",
                "close_in_client_error_during_tls"]


@pytest.mark.parametrize("path", SERVER_PATHS)
def test_server_connection_ends_once_and_releases_its_fds(kernel, path, server_tls):
    before = fds()
    ends = Ends()
    peers = []
    kw = {}
    connected = []

    def client_connected(conn):
        connected.append(conn)
        if path == "reset_before_accept_with_put_and_shutdown":
            conn.put(b"hello")
            conn.shutdown()
        elif path in ("shutdown_with_pending_output_then_reset", "shutdown_connections_pending"):
            for _ in range(16):
                conn.put(b"p" * MIB)    # far more than the socket buffers take
            if path == "shutdown_with_pending_output_then_reset":
                conn.shutdown()
                kernel.delay(0.1, lambda: reset(peers[0]))
            else:
                kernel.delay(0.05, lambda: server.shutdown(connections=True))
                kernel.delay(0.2, lambda: reset(peers[0]))

    def client_input(conn, record):
        if path == "exception":
            raise RuntimeError("boom")
        if path == "linger":
            conn.put(b"answer")
            conn.shutdown()

    def client_error(conn, op, n, s):
        ends.add(conn, ("error", op))
        if path == "close_in_client_error_during_tls":
            conn.close()

    if path == "input_timeout":
        kw["client_input_timeout"] = 0.2
    if path in ("tls_reset", "close_in_client_error_during_tls"):
        kw["ssl"] = server_tls

    def disconnected(conn):
        ends.add(conn, "disconnected")

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_filter=Stream(),
                    client_connected=client_connected, client_input=client_input,
                    client_error=client_error, client_disconnected=disconnected, **kw)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    peers.append(s)
    if path == "reset":
        s.sendall(b"x")
        kernel.delay(0.05, lambda: reset(s))
    elif path == "eof":
        s.sendall(b"x")
        s.shutdown(socket.SHUT_WR)
    elif path == "reset_before_accept_with_put_and_shutdown":
        reset(s)                        # before the server's loop ever runs
    elif path == "linger":
        # Input the server never reads: its close must linger, then end
        # when this side closes.
        s.sendall(b"q")
        kernel.delay(0.05, lambda: s.sendall(b"more input nobody reads" * 100))
        kernel.delay(0.2, s.close)
    elif path in ("tls_reset", "close_in_client_error_during_tls"):
        s.sendall(b"\x16\x03\x01")
        kernel.delay(0.05, lambda: reset(s))
    elif path == "exception":
        s.sendall(b"x")

    def watch():
        if server.connections == 0 and ends.by_id:
            server.shutdown()
        else:
            kernel.delay(0.02, watch)
    kernel.delay(0.02, watch)
    kernel.run()                        # returns: nothing keeps it waiting
    if not s._closed:
        s.close()

    assert server.connections == 0
    assert len(ends.by_id) == 1
    got = ends.all()[0]
    if path in ("tls_reset", "close_in_client_error_during_tls"):
        assert got == [("error", "tls")]         # never connected: no disconnected
    else:
        assert got.count("disconnected") == 1 and got[-1] == "disconnected", got
    assert fds() == before


# -- Client -------------------------------------------------------------------

CLIENT_PATHS = ["reset", "eof", "refused", "connect_timeout", "tls_reset", "exception",
                "shutdown_with_pending_output_then_reset"]


@pytest.mark.parametrize("path", CLIENT_PATHS)
def test_client_connection_ends_once_and_releases_its_fds(kernel, path, client_tls,
                                                          unused_port, black_hole):
    before = fds()
    ends = []
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.settimeout(10)
    port = {"refused": unused_port, "connect_timeout": black_hole}.get(path,
                                                                       lst.getsockname()[1])
    release = threading.Event()

    def peer():
        try:
            c, _ = lst.accept()
        except OSError:
            return
        c.settimeout(10)
        if path == "tls_reset":
            c.recv(5)
            reset(c)
        elif path == "reset":
            c.sendall(b"hi\r\n")
            release.wait(10)
            reset(c)
        elif path in ("eof", "exception"):
            c.sendall(b"hi\r\n")
            release.wait(10)
            c.close()
        else:
            release.wait(10)            # do not read: the client's output piles up
            reset(c)
    t = None
    if path not in ("refused", "connect_timeout"):
        t = threading.Thread(target=peer, daemon=True)
        t.start()

    def connected(client, sock, addr, p):
        if path == "shutdown_with_pending_output_then_reset":
            for _ in range(16):
                client.put(b"c" * MIB)
            client.shutdown()
            kernel.delay(0.1, release.set)

    def server_input(client, record):
        release.set()
        if path == "exception":
            raise RuntimeError("boom")

    kw = {"ssl": client_tls, "server_hostname": "localhost"} if path == "tls_reset" else {}
    if path == "connect_timeout":
        kw["connect_timeout"] = 0.3
    kernel.set_exception_handler(lambda k, ctx: None)
    cypoe.Client(remote_address="127.0.0.1", remote_port=port, kernel=kernel,
                 filter=Stream(), connected=connected, server_input=server_input,
                 connect_error=lambda c, op, n, s: ends.append(("connect_error", op)),
                 disconnected=lambda c: ends.append("disconnected"), **kw)
    kernel.run()
    if t is not None:
        t.join(10)
    lst.close()
    release.set()
    if path in ("refused", "connect_timeout"):
        assert ends == [("connect_error", "connect")]
    elif path == "tls_reset":
        assert ends == [("connect_error", "tls")]
    else:
        assert ends == ["disconnected"]
    assert fds() == before


# -- TCPMulti -----------------------------------------------------------------

MULTI_PATHS = ["reset", "eof", "refused", "connect_timeout", "input_timeout", "tls_reset",
               "shutdown_with_pending_output_then_reset"]


@pytest.mark.parametrize("path", MULTI_PATHS)
def test_tcpmulti_connection_ends_once_and_releases_its_fds(kernel, path, client_tls,
                                                            unused_port, black_hole):
    before_all = fds()
    ends = Ends()
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.settimeout(10)
    port = {"refused": unused_port, "connect_timeout": black_hole}.get(path,
                                                                       lst.getsockname()[1])
    release = threading.Event()

    def peer():
        try:
            c, _ = lst.accept()
        except OSError:
            return
        c.settimeout(10)
        if path == "tls_reset":
            c.recv(5)
            reset(c)
        elif path == "reset":
            c.sendall(b"hi")
            release.wait(10)
            reset(c)
        elif path == "eof":
            c.sendall(b"hi")
            c.close()
        elif path == "input_timeout":
            release.wait(10)
            c.close()
        else:
            release.wait(10)
            reset(c)
    t = None
    if path not in ("refused", "connect_timeout"):
        t = threading.Thread(target=peer, daemon=True)
        t.start()

    def on_success(conn):
        if path == "shutdown_with_pending_output_then_reset":
            for _ in range(16):
                conn.put(b"m" * MIB)
            m.shutdown(conn.id)
            kernel.delay(0.1, release.set)

    kw = {"ssl": client_tls, "server_hostname": "localhost"} if path == "tls_reset" else {}
    if path == "input_timeout":
        kw["input_timeout"] = 0.3
    m = TCPMulti(kernel=kernel, filter=Stream(), connect_timeout=0.3,
                 on_success=on_success,
                 on_input=lambda c, r: release.set(),
                 on_failure=lambda c, op, n, s: ends.add(c, ("failure", op)),
                 on_timeout=lambda c: ends.add(c, "timeout"),
                 on_disconnected=lambda c: ends.add(c, "disconnected"), **kw)
    m.connect("127.0.0.1", port)
    kernel.run()
    release.set()
    if t is not None:
        t.join(10)
    lst.close()
    assert m.connections == 0
    expected = {"refused": [("failure", "connect"), "disconnected"],
                "tls_reset": [("failure", "tls"), "disconnected"],
                "connect_timeout": ["timeout"],
                "input_timeout": ["timeout"]}.get(path, ["disconnected"])
    assert list(ends.by_id.values()) == [expected]
    assert fds() - before_all == set()
