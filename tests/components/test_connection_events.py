"""Connection events of the components: flushed only when everything is out,
input timeouts counted in bytes, a reset during the TLS handshake reported
as "tls"."""
import errno
import socket
import struct
import threading

import pytest

import cypoe
from cypoe import Line, Server, Stream, TCPMulti

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20


def reset(sock):
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- item: flushed while megabytes are still queued ---------------------------

def test_close_on_client_flushed_never_truncates_the_reply(kernel):
    received = []

    def client_input(conn, record):
        for _ in range(8):
            conn.put(b"z" * MIB)

    def read_all(s):
        total = 0
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            total += len(b)
        received.append(total)

    flush_pending = []

    def flushed(conn):
        flush_pending.append(conn.get_driver_out_octets())
        conn.close()

    server = Server(port=0, address="127.0.0.1", kernel=kernel,
                    client_input_filter=Line(), client_output_filter=Stream(),
                    high_mark=256 * 1024, low_mark=64 * 1024,
                    client_high=lambda c: None, client_low=lambda c: None,
                    client_input=client_input, client_flushed=flushed,
                    client_disconnected=lambda c: server.shutdown())
    s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    t = threading.Thread(target=read_all, args=(s,), daemon=True)
    t.start()
    s.sendall(b"go\r\n")
    kernel.run()
    t.join(20)
    s.close()
    assert flush_pending == [0]
    assert received == [8 * MIB]


# -- item: the input timeout counts bytes, not records ------------------------

def dribble(kernel, sock, data, every):
    """Send `data` one byte every `every` seconds from the loop."""
    pos = [0]

    def step():
        if pos[0] < len(data):
            try:
                sock.send(data[pos[0]:pos[0] + 1])
            except OSError:
                return
            pos[0] += 1
            kernel.delay(every, step)
    kernel.delay(every, step)


def test_server_input_timeout_is_reset_by_any_bytes(kernel):
    events = []
    line = b"a" * 40          # 40 x 0.05 s: four timeout periods of 0.5 s
    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_input_timeout=0.5,
                    client_input=lambda c, r: events.append(("input", r)),
                    client_error=lambda c, op, n, s: events.append((op, n)),
                    client_disconnected=lambda c: (events.append("disconnected"),
                                                   server.shutdown()))
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    dribble(kernel, s, line + b"\r\n", 0.05)
    kernel.run()
    # The slow line arrives whole; then silence times the client out.
    assert events == [("input", line), ("timeout", errno.ETIMEDOUT), "disconnected"]
    s.close()


def test_tcpmulti_input_timeout_is_reset_by_any_bytes(kernel):
    events = []
    line = b"b" * 40

    def connected(conn):
        data = line + b"\r\n"
        pos = [0]

        def step(c):
            if conn.closed:
                return
            if pos[0] < len(data):
                conn.put(data[pos[0]:pos[0] + 1])
                pos[0] += 1
                conn.delay(0.05, step)
        conn.delay(0.05, step)

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_filter=Stream(),
                    client_connected=connected, client_input=lambda c, r: None)

    def ended(kind):
        def cb(c, *a):
            events.append(kind)
            server.shutdown(connections=True)
        return cb

    TCPMulti(kernel=kernel, input_timeout=0.5,
             on_input=lambda c, r: events.append(("input", r)),
             on_timeout=ended("timeout"), on_disconnected=ended("disconnected")
             ).connect("127.0.0.1", server.port)
    kernel.run()
    assert events == [("input", line), "timeout"]


# -- item: a reset during the TLS handshake is "tls" --------------------------

def reset_after_hello(lst, done):
    """Accept one connection, read (part of) the ClientHello, reset it."""
    def run():
        try:
            c, _ = lst.accept()
            c.settimeout(10)
            c.recv(5)
            reset(c)
        finally:
            done.set()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def listening():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.settimeout(10)
    return lst


def test_server_reports_a_reset_during_the_handshake_as_tls(kernel, server_tls):
    events = []
    server = Server(port=0, address="127.0.0.1", kernel=kernel, ssl=server_tls,
                    client_input=lambda c, r: None,
                    client_connected=lambda c: events.append("connected"),
                    client_error=lambda c, op, n, s: (events.append((op, n)),
                                                      server.shutdown()))
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"\x16\x03\x01")         # the start of a ClientHello
    kernel.delay(0.05, lambda: reset(s))
    kernel.run()
    assert events == [("tls", errno.ECONNRESET)]
    assert server.connections == 0


def test_client_reports_a_reset_during_the_handshake_as_tls(kernel, client_tls):
    events = []
    lst = listening()
    done = threading.Event()
    reset_after_hello(lst, done)
    cypoe.Client(remote_address="127.0.0.1", remote_port=lst.getsockname()[1],
                 kernel=kernel, ssl=client_tls, server_hostname="localhost",
                 server_input=lambda c, r: None,
                 connected=lambda *a: events.append("connected"),
                 connect_error=lambda c, op, n, s: events.append((op, n)))
    kernel.run()
    lst.close()
    assert events == [("tls", errno.ECONNRESET)]


def test_tcpmulti_reports_a_reset_during_the_handshake_as_tls(kernel, client_tls):
    events = []
    lst = listening()
    done = threading.Event()
    reset_after_hello(lst, done)
    m = TCPMulti(kernel=kernel, ssl=client_tls, server_hostname="localhost",
                 on_input=lambda c, r: None,
                 on_success=lambda c: events.append("success"),
                 on_failure=lambda c, op, n, s: events.append((op, n)))
    m.connect("127.0.0.1", lst.getsockname()[1])
    kernel.run()
    lst.close()
    assert events == [("tls", errno.ECONNRESET)]
    assert m.connections == 0


def test_tls_handshake_bytes_are_not_a_flush(kernel, server_tls, client_tls):
    """client_flushed is about the application's output: the handshake's own
    records being written do not make one, and nothing comes before
    client_connected."""
    events = []
    server = Server(port=0, address="127.0.0.1", kernel=kernel, ssl=server_tls,
                    client_connected=lambda c: (events.append("connected"), c.put(b"hi")),
                    client_flushed=lambda c: events.append("flushed"),
                    client_input=lambda c, r: None,
                    client_disconnected=lambda c: events.append("disconnected"))
    cypoe.Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
                 ssl=client_tls, server_hostname="localhost", filter=Stream(),
                 server_input=lambda c, r: c.shutdown(),
                 disconnected=lambda c: server.shutdown())
    kernel.run()
    # (TLS records written later, as a reply to the client's close_notify,
    # may make another flush: they are output written.)
    assert events[0] == "connected" and events[1] == "flushed"
    assert events[-1] == "disconnected" and events.count("disconnected") == 1
