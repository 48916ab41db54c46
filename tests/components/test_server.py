import errno
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import cypoe
from cypoe import Block, Line, Server, Stream


pytestmark = pytest.mark.timeout(60)


def blocking_client(port, family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((host, port))
    return s


def test_conversation_event_order(kernel):
    """POE's component test: exactly these events, in this order."""
    events = []

    def client_input(conn, record):
        events.append(("client_input", record))
        conn.put(b"pong:" + record)

    server = Server(port=0, address="127.0.0.1", kernel=kernel,
                    started=lambda s: events.append("server started"),
                    stopped=lambda s: events.append("server stopped"),
                    client_connected=lambda c: events.append("client_connected"),
                    client_input=client_input,
                    client_disconnected=lambda c: (events.append("client_disconnected"),
                                                   server.shutdown()))

    def server_input(c, record):
        events.append(("server_input", record))
        c.shutdown()

    cypoe.Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
                 started=lambda c: events.append("client started"),
                 connected=lambda c, sock, addr, port: (events.append("connected"),
                                                        c.put(b"ping")),
                 server_input=server_input,
                 disconnected=lambda c: events.append("disconnected"))
    kernel.run()
    assert events == [
        "server started", "client started", "client_connected", "connected",
        ("client_input", b"ping"), ("server_input", b"pong:ping"),
        "disconnected", "client_disconnected", "server stopped",
    ]


def test_listener_and_client_args(kernel):
    got = {}
    server = Server(port=0, address="127.0.0.1", kernel=kernel, listener_args=(1, "two"),
                    client_args=("a", 3),
                    started=lambda s, *a: got.setdefault("started", a),
                    client_connected=lambda c, *a: (got.setdefault("connected", a),
                                                    c.shutdown()),
                    client_input=lambda c, r: None,
                    client_disconnected=lambda c: server.shutdown())
    s = blocking_client(server.port)
    kernel.run()
    s.close()
    assert got == {"started": (1, "two"), "connected": ("a", 3)}


@pytest.mark.parametrize("limit", [1, 4])
def test_concurrency_never_exceeded(kernel, limit):
    state = {"open": 0, "max": 0, "served": 0}

    def connected(conn):
        state["open"] += 1
        state["max"] = max(state["max"], state["open"])
        assert server.connections <= limit
        conn.delay(0.02, "shutdown")

    def disconnected(conn):
        state["open"] -= 1
        state["served"] += 1
        if state["served"] == 9:
            server.shutdown()

    server = Server(port=0, address="127.0.0.1", kernel=kernel, concurrency=limit,
                    client_connected=connected, client_disconnected=disconnected,
                    client_input=lambda c, r: None)
    replies = []
    multi = cypoe.TCPMulti(kernel=kernel, on_input=lambda c, r: None,
                           on_disconnected=lambda c: replies.append(c.id))
    for _ in range(9):
        multi.connect("127.0.0.1", server.port)
    kernel.run()
    assert state["served"] == 9
    assert state["max"] == limit
    assert len(replies) == 9


def test_concurrency_zero_accepts_none_until_raised(kernel):
    accepted = []
    server = Server(port=0, address="127.0.0.1", kernel=kernel, concurrency=0,
                    client_connected=lambda c: (accepted.append(kernel.time()), c.shutdown()),
                    client_disconnected=lambda c: server.shutdown(),
                    client_input=lambda c, r: None)
    s = blocking_client(server.port)  # completes in the kernel's backlog
    for _ in range(5):
        kernel.run_once(0.02)
    assert accepted == []
    assert server.concurrency == 0
    server.set_concurrency(2)
    kernel.run()
    assert len(accepted) == 1
    s.close()


def test_post_set_concurrency_and_shutdown_by_alias(kernel):
    accepted = []
    server = Server(port=0, address="127.0.0.1", kernel=kernel, concurrency=0, alias="srv",
                    client_connected=lambda c: (accepted.append(1), c.shutdown()),
                    client_disconnected=lambda c: kernel.post("srv", "shutdown"),
                    client_input=lambda c, r: None)
    assert kernel.alias_resolve("srv") is server
    s = blocking_client(server.port)
    kernel.post("srv", "set_concurrency", 1)
    kernel.run()
    assert accepted == [1] and server.concurrency == 1
    assert kernel.alias_resolve("srv") is None
    s.close()


def test_pre_connect_rejects(kernel):
    events = []

    def pre(conn, sock):
        events.append(("pre", conn.remote_ip, isinstance(sock, socket.socket)))
        if len(events) == 1:
            return None
        return sock

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_pre_connect=pre,
                    client_connected=lambda c: (events.append("connected"), c.shutdown()),
                    client_disconnected=lambda c: (events.append("disconnected"),
                                                   server.shutdown()),
                    client_input=lambda c, r: None)
    rejected = blocking_client(server.port)
    for _ in range(10):
        kernel.run_once(0.01)
        if events:
            break
    assert rejected.recv(10) == b""  # closed by the server
    assert server.connections == 0
    accepted = blocking_client(server.port)
    kernel.run()
    assert events == [("pre", "127.0.0.1", True), ("pre", "127.0.0.1", True),
                      "connected", "disconnected"]
    rejected.close()
    accepted.close()


def test_graceful_connection_shutdown_flushes_everything(kernel):
    payload = os.urandom(4 * 1024 * 1024)

    def connected(conn):
        conn.put(payload)
        conn.shutdown()
        conn.put(b"ignored?")  # still accepted by the wheel before close

    done = []
    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_filter=Stream(),
                    client_connected=connected, client_input=lambda c, r: None,
                    client_disconnected=lambda c: (done.append(1), server.shutdown()))
    s = blocking_client(server.port)
    got = bytearray()

    def reader(fd):
        data = s.recv(1 << 20)
        if not data:
            kernel.select_read(s, None)
            return
        got.extend(data)

    s.setblocking(False)
    kernel.select_read(s, reader)
    kernel.run()
    assert bytes(got[:len(payload)]) == payload
    assert done == [1]
    s.close()


def test_server_shutdown_closes_listener_and_lets_connections_finish(kernel):
    events = []
    conns = []

    def connected(conn):
        conns.append(conn)
        events.append("connected")
        server.shutdown()
        # The listener is closed at once.
        assert events.count("connected") == 1

    def client_input(conn, record):
        events.append(("input", record))
        conn.put(b"bye")
        conn.shutdown()

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_connected=connected,
                    client_input=client_input,
                    client_disconnected=lambda c: events.append("disconnected"),
                    stopped=lambda s: events.append("stopped"))
    port = server.port
    s = blocking_client(port)
    kernel.run_once(0.5)
    kernel.run_once(0.1)
    with pytest.raises(ConnectionRefusedError):
        blocking_client(port)
    s.sendall(b"last words\r\n")
    kernel.run()
    assert s.recv(100) == b"bye\r\n"
    assert events == ["connected", ("input", b"last words"), "disconnected", "stopped"]
    s.close()


def test_custom_acceptor_and_disconnected_bookkeeping(kernel):
    socks = []

    def acceptor(server, sock, remote_addr, remote_port):
        assert isinstance(sock, socket.socket)
        assert remote_addr[0] == "127.0.0.1" and remote_port == remote_addr[1]
        socks.append(sock)
        if len(socks) == 1:
            kernel.delay(0.05, release)

    def release():
        socks[0].close()
        server.disconnected()
        kernel.delay(0.05, finish)

    def finish():
        for s in socks[1:]:
            s.close()
            server.disconnected()
        server.shutdown()

    server = Server(port=0, address="127.0.0.1", kernel=kernel, acceptor=acceptor,
                    concurrency=1)
    clients = [blocking_client(server.port) for _ in range(2)]
    kernel.run()
    assert len(socks) == 2  # the second only after disconnected()
    for c in clients:
        c.close()


def test_client_input_timeout(kernel):
    events = []
    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_input_timeout=0.1,
                    client_input=lambda c, r: events.append(("input", r)),
                    client_error=lambda c, op, n, s: events.append((op, n)),
                    client_disconnected=lambda c: (events.append("disconnected"),
                                                   server.shutdown()))
    s = blocking_client(server.port)
    s.sendall(b"keep me alive\r\n")
    start = time.monotonic()
    kernel.run()
    assert events == [("input", b"keep me alive"), ("timeout", errno.ETIMEDOUT),
                      "disconnected"]
    assert s.recv(10) == b""
    s.close()


def test_watermarks_on_a_peer_that_does_not_read(kernel):
    events = []
    block = b"x" * 65536

    def connected(conn):
        # Fill until put() says the buffer is above the high mark.
        for _ in range(400):
            if conn.put(block):
                break
        events.append(("full", conn.put(block)))
        kernel.delay(0.05, drain)

    def drain():
        s.setblocking(False)
        kernel.select_read(s, lambda fd: s.recv(1 << 20))

    def low(conn):
        events.append("low")
        conn.shutdown()

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_filter=Stream(),
                    high_mark=256 * 1024, low_mark=16 * 1024,
                    client_high=lambda c: events.append("high"), client_low=low,
                    client_connected=connected, client_input=lambda c, r: None,
                    client_disconnected=lambda c: (kernel.select_read(s, None),
                                                   server.shutdown()))
    s = blocking_client(server.port)
    kernel.run()
    assert events == ["high", ("full", True), "low"]
    s.close()


def test_exception_in_callback_closes_only_that_connection(kernel, caplog):
    events = []

    def client_input(conn, record):
        if record == b"boom":
            raise RuntimeError("user code failed")
        conn.put(record)

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_input=client_input,
                    client_disconnected=lambda c: events.append(("disconnected",
                                                                 c.heap.get("name"))),
                    client_connected=lambda c: c.heap.__setitem__("name", len(events)))
    bad = blocking_client(server.port)
    good = blocking_client(server.port)
    with caplog.at_level("ERROR", logger="cypoe"):
        bad.sendall(b"boom\r\n")
        for _ in range(1000):
            kernel.run_once(0.01)
            if events:
                break
        good.sendall(b"still here\r\n")
        good.settimeout(0)
        answer = b""
        for _ in range(1000):
            kernel.run_once(0.01)
            try:
                answer += good.recv(100)
            except BlockingIOError:
                pass
            if answer.endswith(b"\n"):
                break
    assert answer == b"still here\r\n"
    assert bad.recv(100) == b""
    assert len(events) == 1
    assert any("user code failed" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    good.close()
    server.shutdown()
    kernel.run()
    assert len(events) == 2
    bad.close()


def test_states_post_and_delay_on_connections(kernel):
    events = []

    def connected(conn):
        conn.post("greet", b"hi")
        conn.delay(0.02, "greet", b"later")
        conn.delay(0.03, lambda c, x: (events.append(("callable", x)), c.shutdown()), 7)

    server = Server(port=0, address="127.0.0.1", kernel=kernel,
                    states={"greet": lambda conn, w: (events.append(w), conn.put(w))},
                    client_connected=connected, client_input=lambda c, r: None,
                    client_disconnected=lambda c: server.shutdown())
    s = blocking_client(server.port)
    kernel.run()
    assert events == [b"hi", b"later", ("callable", 7)]
    assert s.recv(100) == b"hi\r\nlater\r\n"
    s.close()


def test_unix_socket_server(kernel, tmp_path):
    path = str(tmp_path / "srv.sock")
    got = []

    def connected(conn):
        got.append((conn.remote_ip, conn.remote_port))

    server = Server(domain=socket.AF_UNIX, address=path, kernel=kernel,
                    client_connected=connected,
                    client_input=lambda c, r: (c.put(r.upper()), c.shutdown()),
                    client_disconnected=lambda c: server.shutdown())
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b"unix\n")
    kernel.run()
    assert s.recv(100) == b"UNIX\r\n"
    assert got == [("LOCAL", None)]
    s.close()


def test_ipv6_server(kernel):
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    got = []
    server = Server(domain=socket.AF_INET6, address="::1", kernel=kernel,
                    client_connected=lambda c: got.append(c.remote_ip),
                    client_input=lambda c, r: (c.put(r), c.shutdown()),
                    client_disconnected=lambda c: server.shutdown())
    s = blocking_client(server.port, socket.AF_INET6, "::1")
    s.sendall(b"six\n")
    kernel.run()
    assert s.recv(100) == b"six\r\n"
    assert got == ["::1"]
    s.close()


def test_bind_failure_goes_to_error_and_server_ends_without_stopped(kernel):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    events = []
    Server(port=port, address="127.0.0.1", kernel=kernel, client_input=lambda c, r: None,
           error=lambda s, op, n, text: events.append((op, n)),
           stopped=lambda s: events.append("stopped"))
    kernel.run()  # returns: the server has ended
    assert events == [("bind", errno.EADDRINUSE)]
    holder.close()


def test_default_client_error_is_silent_for_eof(kernel, caplog):
    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_input=lambda c, r: None,
                    client_disconnected=lambda c: server.shutdown())
    s = blocking_client(server.port)
    s.close()
    with caplog.at_level("DEBUG", logger="cypoe"):
        kernel.run()
    assert [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []


def test_eof_with_pending_output_still_delivers_it(kernel):
    payload = b"y" * (2 * 1024 * 1024)
    events = []

    def client_input(conn, record):
        conn.put(payload)

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_input=client_input,
                    client_input_filter=Line(), client_output_filter=Stream(),
                    client_error=lambda c, op, n, t: events.append((op, n)),
                    client_disconnected=lambda c: (events.append("disconnected"),
                                                   server.shutdown()))
    s = blocking_client(server.port)
    s.sendall(b"send it\n")
    s.shutdown(socket.SHUT_WR)  # half-close: we still read
    got = bytearray()
    s.setblocking(False)

    def reader(fd):
        data = s.recv(1 << 20)
        if not data:
            kernel.select_read(s, None)
        got.extend(data)

    kernel.select_read(s, reader)
    kernel.run()
    assert bytes(got) == payload
    assert events == [("read", 0), "disconnected"]
    s.close()


def test_tls_server_and_client(kernel, server_tls, client_tls):
    events = []
    server = Server(port=0, address="127.0.0.1", kernel=kernel, ssl=server_tls,
                    client_connected=lambda c: events.append("client_connected"),
                    client_input=lambda c, r: c.put(b"secure " + r),
                    client_disconnected=lambda c: server.shutdown())

    def server_input(c, record):
        events.append(record)
        c.shutdown()

    cypoe.Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
                 ssl=client_tls, connected=lambda c, *a: c.put(b"hello"),
                 server_input=server_input,
                 connect_error=lambda c, *a: events.append(("connect_error", a)))
    kernel.run()
    assert events == ["client_connected", b"secure hello"]


def test_validation():
    with pytest.raises(TypeError, match="acceptor"):
        Server(port=0)
    with pytest.raises(TypeError, match="acceptor"):
        Server(port=0, acceptor=print, client_input=print)
    with pytest.raises(TypeError, match="client_connected"):
        Server(port=0, acceptor=print, client_connected=print)
    with pytest.raises(TypeError, match="low_mark"):
        Server(port=0, client_input=print, high_mark=10)
    with pytest.raises(ValueError, match="low_mark"):
        Server(port=0, client_input=print, high_mark=10, low_mark=20, client_high=print,
               client_low=print)
    with pytest.raises(ValueError, match="concurrency"):
        Server(port=0, client_input=print, concurrency=-2)
    with pytest.raises(TypeError, match="client_filter"):
        Server(port=0, client_input=print, client_filter=42)
    with pytest.raises(TypeError, match="client_input_timeout"):
        Server(port=0, client_input=print, client_input_timeout="soon")


def test_sigterm_shuts_down_gracefully(tmp_path):
    """In a subprocess: SIGTERM closes the listener, flushes and closes the
    open connection, and run() returns."""
    script = textwrap.dedent("""
        import os, signal, socket, sys
        import cypoe
        events = []
        server = cypoe.Server(port=0, address="127.0.0.1", client_input=lambda c, r: None,
                              client_connected=lambda c: (c.put(b"x" * 100000),
                                                          os.kill(os.getpid(), signal.SIGTERM)),
                              client_disconnected=lambda c: events.append("disconnected"),
                              stopped=lambda s: events.append("stopped"))
        peer = socket.create_connection(("127.0.0.1", server.port))
        peer.setblocking(False)
        got = bytearray()
        def reader(fd):
            try:
                data = peer.recv(1 << 20)
            except BlockingIOError:
                return
            if not data:
                cypoe.kernel.select_read(peer, None)
                return
            got.extend(data)
        cypoe.kernel.select_read(peer, reader)
        cypoe.run()
        print(events, len(got))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['disconnected', 'stopped'] 100002"


def test_failed_server_answers_its_accessors(kernel):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    errors = []
    s = Server(port=holder.getsockname()[1], address="127.0.0.1", kernel=kernel,
               client_input=lambda c, r: None, error=lambda *a: errors.append(a[1]))
    kernel.run()
    assert errors == ["bind"]
    assert s.address is None and s.port is None and s.getsockname() is None
    s.shutdown()  # on an ended server: nothing
    named = Server(port=0, hostname="no-such-host.invalid", kernel=kernel,
                   client_input=lambda c, r: None, error=lambda *a: errors.append(a[1]))
    assert named.getsockname() is None and named.port is None
    kernel.run()
    assert errors == ["bind", "resolve"]
    holder.close()


def test_filter_class_gives_each_connection_one_instance(kernel):
    class Upper(Line):
        pass

    seen = []

    def connected(conn):
        seen.append((conn.get_input_filter() is conn.get_output_filter(),
                     type(conn.get_input_filter()).__name__))
        conn.shutdown()

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_filter=Upper,
                    client_connected=connected, client_input=lambda c, r: None,
                    client_disconnected=lambda c: server.shutdown())
    s = blocking_client(server.port)
    kernel.run()
    assert seen == [(True, "Upper")]
    s.close()


def test_too_long_line_is_an_error_event_and_the_connection_goes_on(kernel):
    events = []

    def client_input(conn, record):
        events.append(record)
        conn.put(b"ok " + record)
        if record == b"last":
            conn.shutdown()

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_input=client_input,
                    client_filter=Line(max_length=16), client_shutdown_on_error=False,
                    client_error=lambda c, op, n, s: events.append((op, n)),
                    client_disconnected=lambda c: server.shutdown())
    s = blocking_client(server.port)
    s.sendall(b"first\r\n" + b"x" * 1000 + b"\r\nlast\r\n")
    kernel.run()
    assert events == [b"first", ("filter", errno.EMSGSIZE), b"last"]
    got = b""
    while True:
        data = s.recv(100)
        if not data:
            break
        got += data
    assert got == b"ok first\r\nok last\r\n"
    s.close()


def test_another_connection_is_untouched_by_a_peer_that_resets(kernel):
    import struct

    events = []

    def client_input(conn, record):
        conn.put(record * 1000)

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_input=client_input,
                    client_error=lambda c, op, n, s: events.append((c.heap.get("who"), op)),
                    client_connected=lambda c: c.heap.__setitem__("who", len(events)),
                    client_disconnected=lambda c: events.append("gone"))
    rude = blocking_client(server.port)
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rude.sendall(b"flood\r\n")
    for _ in range(20):
        kernel.run_once(0.01)
    rude.close()  # RST with output pending towards it
    polite = blocking_client(server.port)
    polite.sendall(b"hi\r\n")
    want = b"hi" * 1000 + b"\r\n"
    got = b""
    polite.settimeout(0)
    for _ in range(2000):
        kernel.run_once(0.01)
        try:
            got += polite.recv(1 << 16)
        except BlockingIOError:
            pass
        if len(got) >= len(want):
            break
    assert got == want
    assert "gone" in events  # the reset connection ended; the server went on
    polite.close()
    server.shutdown()
    kernel.run()


def test_shutdown_with_connections_flushes_and_closes_them(kernel):
    events = []
    server = Server(port=0, address="127.0.0.1", kernel=kernel,
                    client_connected=lambda c: c.put(b"bye for now"),
                    client_input=lambda c, r: events.append(r),
                    client_disconnected=lambda c: events.append("disconnected"),
                    stopped=lambda s: events.append("stopped"))
    idle = [blocking_client(server.port) for _ in range(3)]
    for _ in range(100):
        kernel.run_once(0.01)
        if server.connections == 3:
            break
    server.shutdown(connections=True)
    kernel.run()
    assert events == ["disconnected"] * 3 + ["stopped"]
    for s in idle:
        assert s.recv(100) == b"bye for now\r\n"
        assert s.recv(100) == b""
        s.close()


def test_graceful_close_does_not_reset_a_client_still_sending(kernel):
    """The server answers, closes gracefully, and the client is still
    sending: a plain close() would answer the client's next bytes with a
    reset that throws away the answer not yet delivered.  The closed
    connection's socket lingers instead: the client reads the whole answer,
    then EOF."""
    answer = os.urandom(8 * 1024 * 1024)      # more than the socket buffers hold
    events = []

    def client_input(conn, record):
        if not events:
            events.append("answered")
            conn.put(answer)
            conn.shutdown()

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_filter=Stream(),
                    client_input=client_input,
                    client_disconnected=lambda c: (events.append("disconnected"),
                                                   server.shutdown()))
    s = blocking_client(server.port)
    s.setblocking(False)
    got = bytearray()
    sent = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:                                  # keep sending, read slowly
            sent += s.send(b"q" * 4096)
        except BlockingIOError:
            pass
        kernel.run_once(0.001)
        try:
            data = s.recv(65536)
        except BlockingIOError:
            continue
        if not data:
            break
        got.extend(data)
    assert events[:2] == ["answered", "disconnected"]
    assert bytes(got) == answer and sent > 0
    s.close()
    kernel.run()     # the lingering socket sees the client's EOF and closes


def test_a_dropped_kernel_closes_its_server_connections():
    """A Kernel dropped (not shut down) with a Server and a live connection
    on it is collected, and the connection's fd -- owned by the compiled
    connection, with no socket object -- is closed: the client sees EOF."""
    import gc

    k = cypoe.Kernel(backend="poll")
    accepted = []
    server = Server(port=0, address="127.0.0.1", kernel=k,
                    client_connected=lambda conn: accepted.append(conn.id),
                    client_input=lambda conn, record: None)
    client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        deadline = time.monotonic() + 10
        while not accepted and time.monotonic() < deadline:
            k.run_once(0.05)
        assert accepted
        del server, k
        gc.collect()
        client.settimeout(10)
        assert client.recv(1) == b""
    finally:
        client.close()
