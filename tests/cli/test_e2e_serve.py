"""cypoe serve, end to end on loopback: every protocol answers correctly."""
import socket
import ssl
import time

from cypoe.cli.protocols import chargen_line

from .conftest import recv_exactly, recv_until_eof, serving


def test_echo_line():
    with serving("echo") as srv:
        assert "echo on 127.0.0.1:" in srv.first_line and "filter line" in srv.first_line
        with srv.connect() as s:
            s.sendall(b"hello\r\nworld\n")
            assert recv_exactly(s, 14) == b"hello\r\nworld\r\n"


def test_echo_stream_binary():
    data = bytes(range(256)) * 64
    with serving("echo", "--filter", "stream") as srv:
        with srv.connect() as s:
            s.sendall(data)
            assert recv_exactly(s, len(data)) == data


def test_echo_block():
    with serving("echo", "--filter", "block") as srv:
        with srv.connect() as s:
            s.sendall(b"5\x00hello3\x00abc")
            assert recv_exactly(s, 12) == b"5\x00hello3\x00abc"


def test_pong_for_every_line():
    with serving("pong") as srv:
        with srv.connect() as s:
            s.sendall(b"PING\r\nPING\r\nPING\n")
            assert recv_exactly(s, 21) == b"+PONG\r\n" * 3


def test_upper():
    with serving("upper") as srv:
        with srv.connect() as s:
            s.sendall(b"Hello, World\n")
            assert recv_exactly(s, 14) == b"HELLO, WORLD\r\n"


def test_discard_sends_nothing():
    with serving("discard") as srv:
        with srv.connect() as s:
            s.sendall(b"x" * 10000 + b"\n")
            s.shutdown(socket.SHUT_WR)
            assert recv_until_eof(s) == b""


def test_daytime_sends_one_line_and_closes():
    with serving("daytime") as srv:
        with srv.connect() as s:
            data = recv_until_eof(s)
    assert data.endswith(b"\r\n") and data.count(b"\n") == 1
    assert time.strftime("%Y").encode() in data


def test_chargen_streams_rfc864_lines():
    with serving("chargen", "--filter", "stream") as srv:
        with srv.connect() as s:
            data = recv_exactly(s, 74 * 300)
    lines = data.split(b"\r\n")[:300]
    assert lines == [chargen_line(i) for i in range(300)]


def test_max_connections():
    with serving("echo", "--max-connections", "1") as srv:
        a = srv.connect()
        a.sendall(b"a\n")
        assert recv_exactly(a, 3) == b"a\r\n"
        b = srv.connect()              # the TCP backlog takes it; the server does not
        b.sendall(b"b\n")
        b.settimeout(0.5)
        try:
            early = b.recv(10)
        except socket.timeout:
            early = None
        assert early is None            # not served while the first one is open
        a.close()
        assert recv_exactly(b, 3) == b"b\r\n"  # served once the first has gone
        b.close()


def test_idle_timeout_closes():
    with serving("echo", "--idle-timeout", "300ms") as srv:
        with srv.connect() as s:
            s.sendall(b"x\n")
            assert recv_exactly(s, 3) == b"x\r\n"
            assert recv_until_eof(s, timeout=20) == b""   # closed by the server


def test_workers_share_the_port():
    with serving("upper", "--workers", "2") as srv:
        assert "2 workers" in srv.first_line
        socks = [srv.connect() for _ in range(8)]
        for i, s in enumerate(socks):
            s.sendall(b"abc%d\n" % i)
        for i, s in enumerate(socks):
            assert recv_exactly(s, 6) == b"ABC%d\r\n" % i
            s.close()


def test_tls(tls_files):
    cert, key = tls_files
    ctx = ssl.create_default_context(cafile=cert)
    with serving("echo", "--tls-cert", cert, "--tls-key", key) as srv:
        assert "TLS" in srv.first_line
        with ctx.wrap_socket(srv.connect(), server_hostname="127.0.0.1") as s:
            s.sendall(b"secret\n")
            assert recv_exactly(s, 8) == b"secret\r\n"


def test_bind_failure_exits_1():
    from .conftest import run_cli
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = run_cli("serve", "--port", port, timeout=30)
    assert proc.returncode == 1
    assert "bind" in proc.stderr or "listen" in proc.stderr
