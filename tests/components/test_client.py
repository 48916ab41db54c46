import errno
import os
import socket
import ssl

import pytest

import cypoe
from cypoe import Client, CypoeError, Server, Stream

pytestmark = pytest.mark.timeout(60)


def echo_server(kernel, **kw):
    kw.setdefault("client_input", lambda c, r: c.put(r))
    return Server(port=0, address="127.0.0.1", kernel=kernel, **kw)


def test_refused_connect_gives_connect_error_and_run_returns(kernel, unused_port):
    events = []
    c = Client(remote_address="127.0.0.1", remote_port=unused_port, kernel=kernel,
               server_input=lambda c, r: None,
               connected=lambda *a: events.append("connected"),
               connect_error=lambda c, op, n, s: events.append((op, n)),
               disconnected=lambda c: events.append("disconnected"))
    kernel.run()
    assert events == [("connect", errno.ECONNREFUSED)]
    assert c.ended and not c.connected


def test_connect_timeout(kernel, black_hole):
    events = []
    start = kernel.time()
    Client(remote_address="127.0.0.1", remote_port=black_hole, kernel=kernel,
           connect_timeout=0.2, server_input=lambda c, r: None,
           connect_error=lambda c, op, n, s: events.append((op, n, s)))
    kernel.run()
    assert events == [("connect", errno.ETIMEDOUT, "Connection timed out")]
    assert kernel.time() - start >= 0.2


def test_delayed_reconnect_after_disconnect(kernel):
    state = {"connects": 0, "disconnects": 0}

    def client_connected(conn):
        conn.put(b"welcome %d" % state["connects"])
        conn.shutdown()

    server = echo_server(kernel, client_connected=client_connected)

    def connected(c, sock, addr, port):
        state["connects"] += 1
        assert isinstance(sock, socket.socket) and addr == "127.0.0.1" and port == server.port
        assert c.local_addr[0] == "127.0.0.1"

    def disconnected(c):
        state["disconnects"] += 1
        if state["disconnects"] < 3:
            c.delay(0.02, "reconnect")
        else:
            server.shutdown()

    got = []
    Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
           connected=connected, disconnected=disconnected,
           server_input=lambda c, r: got.append(r))
    kernel.run()
    assert state == {"connects": 3, "disconnects": 3}
    assert len(got) == 3 and all(g.startswith(b"welcome") for g in got)


def test_reconnect_from_connect_error(kernel, unused_port):
    attempts = []

    def connect_error(c, op, n, s):
        attempts.append(n)
        if len(attempts) < 3:
            c.delay(0.01, "reconnect")

    Client(remote_address="127.0.0.1", remote_port=unused_port, kernel=kernel,
           server_input=lambda c, r: None, connect_error=connect_error)
    kernel.run()
    assert attempts == [errno.ECONNREFUSED] * 3


def test_connect_to_a_new_address_is_kept(kernel, unused_port):
    server = echo_server(kernel)
    seen = []

    def connect_error(c, op, n, s):
        seen.append(("error", c.remote_port))
        c.connect("127.0.0.1", server.port)

    def connected(c, *a):
        seen.append(("connected", c.remote_port))
        c.shutdown()

    Client(remote_address="127.0.0.1", remote_port=unused_port, kernel=kernel,
           connect_error=connect_error, connected=connected,
           server_input=lambda c, r: None,
           disconnected=lambda c: server.shutdown())
    kernel.run()
    assert seen == [("error", unused_port), ("connected", server.port)]


def test_shutdown_flushes_pending_output(kernel):
    payload = os.urandom(3 * 1024 * 1024)
    received = bytearray()
    events = []
    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_filter=Stream(),
                    client_input=lambda c, r: received.extend(r),
                    client_disconnected=lambda c: server.shutdown())

    def connected(c, *a):
        c.put(payload)
        c.shutdown()

    Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
           filter=Stream(), connected=connected, server_input=lambda c, r: None,
           disconnected=lambda c: events.append("disconnected"))
    kernel.run()
    assert bytes(received) == payload
    assert events == ["disconnected"]


def test_server_eof_then_disconnected(kernel):
    events = []
    server = echo_server(kernel, client_connected=lambda c: c.shutdown())
    Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
           server_input=lambda c, r: None,
           server_error=lambda c, op, n, s: events.append((op, n, s)),
           disconnected=lambda c: (events.append("disconnected"), server.shutdown()))
    kernel.run()
    assert events == [("read", 0, ""), "disconnected"]


def test_reconnect_drops_connection_without_disconnected(kernel):
    events = []
    server = echo_server(kernel)

    def connected(c, *a):
        events.append("connected")
        if events.count("connected") == 1:
            c.put(b"lost")
            c.reconnect()
        else:
            c.shutdown()

    Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
           connected=connected, server_input=lambda c, r: events.append(r),
           disconnected=lambda c: (events.append("disconnected"), server.shutdown()))
    kernel.run()
    assert events == ["connected", "connected", "disconnected"]


def test_tls_verifies_certificates_by_default(kernel, server_tls):
    events = []
    server = Server(port=0, address="127.0.0.1", kernel=kernel, ssl=server_tls,
                    client_input=lambda c, r: None)
    Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel, ssl=True,
           server_input=lambda c, r: None,
           connected=lambda *a: events.append("connected"),
           connect_error=lambda c, op, n, s: (events.append(op), server.shutdown()))
    kernel.run()
    assert events == ["tls"]


def test_tls_with_trusted_ca_and_server_hostname(kernel, server_tls, client_tls):
    got = []
    server = Server(port=0, address="127.0.0.1", kernel=kernel, ssl=server_tls,
                    client_input=lambda c, r: c.put(r[::-1]),
                    client_disconnected=lambda c: server.shutdown())
    Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
           ssl=client_tls, server_hostname="localhost",
           connected=lambda c, *a: c.put(b"abc"),
           server_input=lambda c, r: (got.append(r), c.shutdown()))
    kernel.run()
    assert got == [b"cba"]


def test_pre_connect_can_reject(kernel):
    events = []
    server = echo_server(kernel, client_disconnected=lambda c: server.shutdown())
    Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
           pre_connect=lambda c, sock: (events.append(type(sock).__name__), None)[1],
           server_input=lambda c, r: None,
           connected=lambda *a: events.append("connected"),
           connect_error=lambda c, op, n, s: events.append((op, n)))
    kernel.run()
    assert events == ["socket", ("connect", errno.ECONNABORTED)]


def test_states_post_delay_and_alias(kernel):
    events = []
    server = echo_server(kernel)

    def connected(c, *a):
        c.post("note", 1)
        c.delay(0.01, "note", 2)
        c.delay(0.02, lambda cl, x: events.append(("callable", x)), 3)
        c.delay(0.03, "shutdown")

    c = Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
               alias="cli", states={"note": lambda c, n: events.append(n)},
               connected=connected, server_input=lambda c, r: None,
               disconnected=lambda c: server.shutdown())
    assert kernel.alias_resolve("cli") is c
    kernel.post("cli", "note", 0)
    kernel.run()
    assert events == [0, 1, 2, ("callable", 3)]
    assert kernel.alias_resolve("cli") is None


def test_put_when_not_connected_raises(kernel, unused_port):
    c = Client(remote_address="127.0.0.1", remote_port=unused_port, kernel=kernel,
               server_input=lambda c, r: None, connect_error=lambda *a: None)
    with pytest.raises(CypoeError):
        c.put(b"x")
    kernel.run()
    with pytest.raises(CypoeError):
        c.put(b"x")
    c.shutdown()  # closing twice / after the end does nothing


def test_exception_in_server_input_closes_connection(kernel, caplog):
    events = []
    server = echo_server(kernel, client_disconnected=lambda c: server.shutdown())

    def server_input(c, r):
        raise ValueError("client callback failed")

    with caplog.at_level("ERROR", logger="cypoe"):
        Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
               connected=lambda c, *a: c.put(b"x"), server_input=server_input,
               disconnected=lambda c: events.append("disconnected"))
        kernel.run()
    assert events == ["disconnected"]
    assert any("client callback failed" in str(r.exc_info[1])
               for r in caplog.records if r.exc_info)


def test_name_resolution_does_not_block(kernel):
    server = echo_server(kernel, client_disconnected=lambda c: server.shutdown())
    got = []
    Client(remote_address="localhost", remote_port=server.port, kernel=kernel,
           domain=socket.AF_INET, connected=lambda c, *a: c.put(b"by name"),
           server_input=lambda c, r: (got.append(r), c.shutdown()))
    kernel.run()
    assert got == [b"by name"]


def test_validation():
    with pytest.raises(TypeError, match="server_input"):
        Client(remote_address="127.0.0.1", remote_port=1, server_input=None)
    with pytest.raises(ValueError, match="remote_port"):
        Client(remote_address="127.0.0.1", remote_port=0, server_input=print)
    with pytest.raises(TypeError, match="remote_address"):
        Client(remote_address=None, remote_port=1, server_input=print)
    with pytest.raises(TypeError, match="server_low"):
        Client(remote_address="127.0.0.1", remote_port=1, server_input=print,
               high_mark=10, low_mark=5, server_high=print)
    with pytest.raises(TypeError, match="ssl"):
        Client(remote_address="127.0.0.1", remote_port=1, server_input=print, ssl="yes")


# -- UNIX sockets (POE's Domain => AF_UNIX, passed to SocketFactory) ----------------

def unix_echo_server(kernel, path, **kw):
    kw.setdefault("client_input", lambda c, r: c.put(r.upper()))
    return Server(domain=socket.AF_UNIX, address=path, kernel=kernel, **kw)


def test_unix_client_exchanges_and_reconnects(kernel, tmp_path):
    path = str(tmp_path / "echo.sock")
    server = unix_echo_server(kernel, path)
    events = []

    def connected(c, sock, peer_addr, peer_port):
        events.append(("connected", sock.family, peer_addr, peer_port))
        c.put(b"hello %d" % len(events))

    def server_input(c, record):
        events.append(record)
        if len(events) < 4:
            c.reconnect()
        else:
            c.shutdown()

    c = Client(domain=socket.AF_UNIX, remote_address=path, kernel=kernel,
               connected=connected, server_input=server_input,
               disconnected=lambda c: (events.append("disconnected"), server.shutdown()))
    assert c.remote_port is None
    kernel.run()
    assert events == [("connected", socket.AF_UNIX, path, None), b"HELLO 1",
                      ("connected", socket.AF_UNIX, path, None), b"HELLO 3",
                      "disconnected"]
    assert c.ended


@pytest.mark.parametrize("dead", [False, True], ids=["missing", "no-listener"])
def test_unix_client_connect_error(kernel, tmp_path, dead):
    path = str(tmp_path / "gone.sock")
    if dead:
        # a socket file nobody listens on
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
    events = []
    Client(domain=socket.AF_UNIX, remote_address=path, remote_port=None, kernel=kernel,
           server_input=lambda c, r: None, connected=lambda *a: events.append("connected"),
           connect_error=lambda c, op, n, s: events.append((op, n)))
    kernel.run()
    assert events == [("connect", errno.ECONNREFUSED if dead else errno.ENOENT)]


def test_unix_client_parameter_checks(tmp_path):
    path = str(tmp_path / "x.sock")
    with pytest.raises(ValueError, match="remote_port"):
        Client(domain=socket.AF_UNIX, remote_address=path, remote_port=80,
               server_input=lambda c, r: None, autoconnect=False)
    with pytest.raises(TypeError, match="remote_address"):
        Client(domain=socket.AF_UNIX, remote_address="", server_input=lambda c, r: None,
               autoconnect=False)
    with pytest.raises(ValueError, match="remote_port"):
        # a port is still required for the internet domains
        Client(remote_address="127.0.0.1", server_input=lambda c, r: None, autoconnect=False)
