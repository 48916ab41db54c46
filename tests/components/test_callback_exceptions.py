"""An exception in any callback of any component (SEMANTICS "Server"): it is
reported with its traceback through the kernel's exception handler, only
the connection it concerns is closed (its terminal callback runs where the
contract says so), other connections go on, and so does the loop.

Every case has a bystander connection B that is open before the victim V
fails and exchanges a record after V has ended: ``run()`` returning with
B's exchange complete shows that the loop and B went on."""
import errno
import logging
import traceback

import pytest

from cypoe import Client, ReadWrite, Server, TCPMulti

pytestmark = pytest.mark.timeout(60)

FILL = [b"x" * 1000] * 64          # 64 KB of lines


class Boom(Exception):
    pass


def boom(where):
    raise Boom(where)


class Trace:
    """The exception handler's reports, and what the case saw."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.reports = []
        self.events = []
        kernel.set_exception_handler(lambda k, context: self.reports.append(context))

    def booms(self):
        return [c for c in self.reports if isinstance(c.get("exception"), Boom)]

    def check_reported(self, where):
        """Exactly one report, of the Boom raised in ``where``, with the
        traceback down to the frame that raised it; nothing else reported."""
        assert [c["exception"].args[0] for c in self.booms()] == [where], self.reports
        assert len(self.reports) == 1, self.reports
        context = self.reports[0]
        assert isinstance(context["message"], str) and context["message"]
        frames = traceback.extract_tb(context["exception"].__traceback__)
        assert frames and frames[-1].name == "boom"


# -- Server ------------------------------------------------------------------------

SERVER_CALLBACKS = ["started", "stopped", "error", "acceptor", "client_connected",
                    "client_input", "client_disconnected", "client_error", "client_flushed",
                    "client_high", "client_low", "client_pre_connect", "states"]


def run_server_case(kernel, name, unused_port):
    """A TCPMulti drives two connections to the Server: B (accepted first)
    and V, made once B has had its first echo.  The callback under test
    raises for V (or for the server itself)."""
    t = Trace(kernel)
    accepted = []               # server side, in accept order: B, V
    driver_v = []               # V on the driving side
    marks = name in ("client_high", "client_low")

    def is_v(conn):
        return len(accepted) > 1 and conn is accepted[1]

    def track(conn):
        if conn not in accepted:
            accepted.append(conn)

    def hit(cb_name, conn=None):
        # the callback under test, for the victim (or the server itself)
        if cb_name == name and (conn is None or is_v(conn)):
            boom(name)

    def client_connected(conn):
        track(conn)
        t.events.append(("connected", "V" if is_v(conn) else "B"))
        hit("client_connected", conn)
        if name == "states" and is_v(conn):
            conn.post("explode")

    def client_input(conn, record):
        hit("client_input", conn)
        if record == b"V1" and marks:
            for _ in range(1000):
                if conn.put(*FILL):
                    break
            return
        conn.put(record)

    def client_disconnected(conn):
        t.events.append(("disconnected", "V" if is_v(conn) else "B"))
        if is_v(conn):
            resume_driver_v()
        hit("client_disconnected", conn)

    def client_error(conn, op, errnum, errstr):
        hit("client_error", conn)

    def client_high(conn):
        resume_driver_v()
        hit("client_high", conn)

    def client_pre_connect(conn, sock):
        track(conn)
        hit("client_pre_connect", conn)
        return sock

    def resume_driver_v():
        if driver_v and driver_v[0].paused:
            driver_v[0].resume_input()

    def acceptor(server, sock, addr, port):
        accepted.append(sock)
        if len(accepted) > 1:
            boom("acceptor")
        rw = ReadWrite(sock, kernel=kernel, on_input=lambda rw, r: rw.put(r),
                       on_error=lambda rw, *a: (rw.close(), server.disconnected()))
        accepted[0] = rw

    kw = dict(states={"explode": lambda conn: boom("states")},
              client_error=client_error,
              client_flushed=lambda conn: hit("client_flushed", conn))
    if marks:
        kw.update(high_mark=256 * 1024, low_mark=16 * 1024, client_high=client_high,
                  client_low=lambda conn: hit("client_low", conn))
    if name == "client_pre_connect":
        kw["client_pre_connect"] = client_pre_connect
    if name == "acceptor":
        kw = {"acceptor": acceptor}
    else:
        kw.update(client_input=client_input, client_connected=client_connected,
                  client_disconnected=client_disconnected)
    if name == "error":
        # a second server on a port that is taken: its bind fails
        other = Server(port=unused_port, address="127.0.0.1", kernel=kernel,
                       client_input=client_input, error=lambda *a: hit("error"))
        assert not other.started
    server = Server(port=0, address="127.0.0.1", kernel=kernel,
                    started=lambda s: hit("started"),
                    stopped=lambda s: (t.events.append("stopped"), hit("stopped")), **kw)
    assert server.started

    def on_success(c):
        c.put(b"%s1" % c["role"])
        if c["role"] == b"V" and marks:
            c.pause_input()

    def on_input(c, record):
        if not record.startswith(b"x"):
            t.events.append((c["role"], record))
        if record == b"B1":
            driver_v.append(d.connect("127.0.0.1", server.port, heap={"role": b"V"}))
        elif record == b"V1":
            c.shutdown()
        elif record == b"B2":
            c.shutdown()

    def on_end(c):
        t.events.append((c["role"], "end"))
        if c["role"] == b"V":
            b.put(b"B2")
        else:
            server.shutdown()

    d = TCPMulti(kernel=kernel, on_success=on_success, on_input=on_input,
                 on_disconnected=on_end, on_timeout=on_end, input_timeout=10)
    b = d.connect("127.0.0.1", server.port, heap={"role": b"B"})
    kernel.run()
    return t, server, accepted


@pytest.mark.parametrize("name", SERVER_CALLBACKS)
def test_server_callback_exception(kernel, name, unused_port):
    t, server, accepted = run_server_case(kernel, name, unused_port)
    t.check_reported(name)
    ev = t.events
    # the bystander went on: its second record came back after V had ended
    assert ev.index((b"B", b"B2")) > ev.index((b"V", "end"))
    assert ev[-1] == "stopped"
    if name in ("started", "stopped", "error"):
        # nothing to close: both connections ran their course
        assert (b"V", b"V1") in ev and ("disconnected", "V") in ev
    elif name == "acceptor":
        assert (b"V", b"V1") not in ev          # its socket was closed
        assert server.connections == 0
    elif name == "client_pre_connect":
        # closed before it connected: neither connected nor disconnected
        assert ("connected", "V") not in ev and ("disconnected", "V") not in ev
        assert server.connections == 0
    else:
        # the victim's connection was closed, client_disconnected ran once
        assert ev.count(("disconnected", "V")) == 1
    if name not in ("acceptor",):
        assert ev.count(("disconnected", "B")) == 1
    assert "stopped" in ev


# -- Client --------------------------------------------------------------------------

CLIENT_CALLBACKS = ["started", "connected", "connect_error", "server_input", "server_error",
                    "server_flushed", "server_high", "server_low", "disconnected",
                    "pre_connect", "states"]


def run_client_case(kernel, name, unused_port):
    """Two Clients of an echo server: B, and V (created once B has had its
    first echo).  The callback under test raises in V."""
    t = Trace(kernel)
    paused = []                 # V's server-side connection while it is not read
    marks = name in ("server_high", "server_low")

    def server_input(conn, record):
        if record == b"VH":
            conn.pause_input()
            paused.append(conn)
            conn.put(b"paused")
        elif record == b"VX":
            conn.shutdown()
        elif not record.startswith(b"x"):
            conn.put(record)

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_input=server_input)

    def resume_server():
        for conn in paused:
            conn.resume_input()
        del paused[:]

    def hit(cb_name):
        if cb_name == name:
            boom(name)

    def v_ended():
        t.events.append(("V", "end"))
        resume_server()
        kernel.delay(0, lambda: b.put(b"B2"))

    def v_connected(c, sock, addr, port):
        t.events.append(("V", "connected"))
        hit("connected")
        if name in ("server_error", "disconnected"):
            c.put(b"VX")            # the server closes
        elif marks:
            c.put(b"VH")            # the server stops reading
        else:
            c.put(b"V1")
        if name == "states":
            c.post("explode")

    def v_input(c, record):
        t.events.append(("V", record))
        hit("server_input")
        if record == b"paused":
            for _ in range(1000):
                if c.put(*FILL):
                    break
        elif record == b"V1":
            c.shutdown()

    def v_high(c):
        resume_server()
        hit("server_high")

    def v_connect_error(c, op, errnum, errstr):
        t.events.append(("V", "connect_error", op, errnum))
        v_ended()
        hit("connect_error")

    def v_disconnected(c):
        t.events.append(("V", "disconnected"))
        v_ended()
        hit("disconnected")

    def v_pre_connect(c, sock):
        hit("pre_connect")
        return sock

    def make_v():
        kw = {}
        if marks:
            kw.update(high_mark=256 * 1024, low_mark=16 * 1024, server_high=v_high,
                      server_low=lambda c: hit("server_low"))
        v.append(Client(remote_address="127.0.0.1",
                        remote_port=unused_port if name == "connect_error" else server.port,
                        kernel=kernel, started=lambda c: hit("started"),
                        connected=v_connected, connect_error=v_connect_error,
                        disconnected=v_disconnected, server_input=v_input,
                        server_error=lambda c, *a: hit("server_error"),
                        server_flushed=lambda c: hit("server_flushed"),
                        pre_connect=v_pre_connect,
                        states={"explode": lambda c: boom("states")}, **kw))

    def b_input(c, record):
        t.events.append(("B", record))
        if record == b"B1":
            make_v()
        else:
            c.shutdown()

    v = []
    b = Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
               connected=lambda c, *a: c.put(b"B1"), server_input=b_input,
               disconnected=lambda c: (t.events.append(("B", "end")), server.shutdown()))
    kernel.run()
    return t, v[0]


@pytest.mark.parametrize("name", CLIENT_CALLBACKS)
def test_client_callback_exception(kernel, name, unused_port):
    t, v = run_client_case(kernel, name, unused_port)
    t.check_reported(name)
    ev = t.events
    assert ev.index(("B", b"B2")) > ev.index(("V", "end"))
    assert ev[-1] == ("B", "end")
    assert ev.count(("V", "end")) == 1
    assert v.ended and not v.connected
    if name == "connect_error":
        assert ("V", "connect_error", "connect", errno.ECONNREFUSED) in ev
    elif name == "pre_connect":
        # treated as pre_connect returning None
        assert ("V", "connect_error", "connect", errno.ECONNABORTED) in ev
        assert ("V", "connected") not in ev
    else:
        # the connection was made and closed; disconnected ran once
        assert ("V", "connected") in ev
        assert ev.count(("V", "disconnected")) == 1
    if name == "started":
        assert ("V", b"V1") in ev           # the client went on as usual


# -- TCPMulti ------------------------------------------------------------------------

MULTI_CALLBACKS = ["on_initialize", "on_success", "on_failure", "on_input", "on_error",
                   "on_timeout", "on_disconnected", "states", "conn_states"]


def run_multi_case(kernel, name, unused_port, black_hole):
    """One TCPMulti with two connections to an echo server: B, and V (made
    once B has had its first echo).  The callback under test raises for V."""
    t = Trace(kernel)

    def server_input(conn, record):
        if record == b"VX":
            conn.shutdown()
        else:
            conn.put(record)

    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_input=server_input)

    def hit(cb_name, c):
        if cb_name == name and c["role"] == b"V":
            boom(name)

    def on_initialize(c):
        t.events.append((c["role"], "init"))
        hit("on_initialize", c)

    def on_success(c):
        t.events.append((c["role"], "success"))
        hit("on_success", c)
        if c["role"] == b"V":
            c.put(b"VX" if name == "on_error" else b"V1")
            if name == "states":
                m.post("explode")
            elif name == "conn_states":
                c.post("explode")
        else:
            c.put(b"B1")

    def on_input(c, record):
        t.events.append((c["role"], record))
        hit("on_input", c)
        if record == b"B1":
            port = server.port
            if name == "on_failure":
                port = unused_port
            elif name == "on_timeout":
                port = black_hole
            m.connect("127.0.0.1", port, heap={"role": b"V"})
        else:
            c.shutdown()

    def ended(c, how):
        t.events.append((c["role"], how))
        if c["role"] == b"V":
            kernel.delay(0, lambda: b.put(b"B2"))
        else:
            server.shutdown()

    def on_disconnected(c):
        ended(c, "disconnected")
        hit("on_disconnected", c)

    def on_timeout(c):
        ended(c, "timeout")
        hit("on_timeout", c)

    def on_failure(c, op, errnum, errstr):
        t.events.append((c["role"], "failure", op, errnum))
        hit("on_failure", c)

    m = TCPMulti(kernel=kernel, on_initialize=on_initialize, on_success=on_success,
                 on_input=on_input, on_failure=on_failure,
                 on_error=lambda c, *a: hit("on_error", c),
                 on_disconnected=on_disconnected, on_timeout=on_timeout,
                 connect_timeout=0.2 if name == "on_timeout" else 10,
                 states={"explode": lambda multi_or_conn: boom("states" if multi_or_conn is m
                                                               else "conn_states")})
    b = m.connect("127.0.0.1", server.port, heap={"role": b"B"})
    kernel.run()
    return t, m


@pytest.mark.parametrize("name", MULTI_CALLBACKS)
def test_tcpmulti_callback_exception(kernel, name, unused_port, black_hole):
    t, m = run_multi_case(kernel, name, unused_port, black_hole)
    t.check_reported(name)
    ev = t.events
    v_end = [e for e in ev if e[0] == b"V" and e[1] in ("disconnected", "timeout")]
    # exactly one terminal callback for V, and B's exchange after it
    assert len(v_end) == 1
    assert ev.index((b"B", b"B2")) > ev.index(v_end[0])
    assert ev[-1] == (b"B", "disconnected")
    assert v_end[0][1] == ("timeout" if name == "on_timeout" else "disconnected")
    if name == "on_initialize":
        assert (b"V", "success") not in ev
    if name == "on_failure":
        assert (b"V", "failure", "connect", errno.ECONNREFUSED) in ev
    if name == "states":
        # a state of the TCPMulti concerns no connection: V went on
        assert (b"V", b"V1") in ev
    if name == "on_success":
        assert (b"V", b"V1") not in ev
    assert m.connections == 0 and not m.ended


def test_default_handler_logs_the_traceback(kernel, caplog):
    """Without an exception handler the report goes to logger ``cypoe``
    with the exception's traceback."""
    def connected(c, sock, addr, port):
        boom("connected")

    server = Server(port=0, address="127.0.0.1", kernel=kernel,
                    client_input=lambda c, r: c.put(r), started=lambda s: boom("started"))
    Client(remote_address="127.0.0.1", remote_port=server.port, kernel=kernel,
           server_input=lambda c, r: None, connected=connected,
           disconnected=lambda c: server.shutdown())
    with caplog.at_level(logging.ERROR, logger="cypoe"):
        kernel.run()
    booms = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], Boom)]
    assert sorted(r.exc_info[1].args[0] for r in booms) == ["connected", "started"]
    assert all(r.name == "cypoe" and r.exc_info[2] is not None for r in booms)
