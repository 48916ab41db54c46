"""A program that uses every public name of cypoe (``cypoe.__all__``) and
every method and property API.md lists, with the types a user would give
them.  ``tests/typing/test_mypy.py`` checks it with ``mypy --strict`` and
also runs it: a loopback echo through Server, Client and TCPMulti, a
ReadWrite over a socketpair, a SocketFactory connect, filters, timers,
sessions and signals, all on one Kernel, bounded by a guard timer.

Run: python tests/typing/check_api.py   (prints "check_api: OK")
"""
from __future__ import annotations

import errno
import json
import socket
import ssl
import struct
import sys
from collections.abc import Iterable
from typing import Any

import cypoe
from cypoe import (
    Block,
    BufferOverflow,
    Client,
    Conn,
    Connection,
    CypoeError,
    Filter,
    FilterError,
    FrameError,
    FrameTooLong,
    Grep,
    JSONLines,
    Kernel,
    Line,
    LineTooLong,
    Map,
    ReadWrite,
    Server,
    Session,
    SocketFactory,
    Stackable,
    Stream,
    TCPMulti,
    Timer,
    TLS,
)


class Upper(Filter):
    """A user filter: Line framing, upper-cased records."""

    def __init__(self) -> None:
        self._line = Line()

    def get_one_start(self, chunks: Iterable[bytes]) -> None:
        self._line.get_one_start(chunks)

    def get_one(self) -> list[Any]:
        return [r.upper() for r in self._line.get_one()]

    def put(self, records: Iterable[Any]) -> list[bytes]:
        return self._line.put(records)

    def get_pending(self) -> bytes | None:
        return self._line.get_pending()


def filters() -> list[str]:
    seen: list[str] = []
    line: Filter = Line(literal=b"\n", max_length=1024, max_buffer=4096)
    assert line.get([b"a\nb", b"\n"]) == [b"a", b"b"]
    line.get_one_start([b"c\n"])
    assert line.get_one() == [b"c"]
    assert line.put([b"d"]) == [b"d\n"]
    assert line.get_pending() is None
    assert isinstance(line.clone(), Line)
    text = Line(encoding="utf-8", autodetect=True)
    assert text.get([b"\xc3\xa9\r\n"]) == ["\u00e9"]
    block = Block(length_prefix="!I", max_length=100)
    assert block.get(block.put([b"xyz"])) == [b"xyz"]
    fixed = Block(block_size=2)
    assert fixed.get([b"abcd"]) == [b"ab", b"cd"]
    codec = Block(length_codec=(lambda n: struct.pack("!H", n),
                                lambda b: (struct.unpack("!H", bytes(b[:2]))[0], 2)
                                if len(b) >= 2 else None))
    seen.append(type(codec).__name__)
    assert Stream().get([b"raw"]) == [b"raw"]
    stack = Stackable(filters=[Line(), Map(code=lambda r: r.upper())])
    assert stack.get([b"x\r\n"]) == [b"X"]
    assert Grep(get=lambda r: r != b"no", put=lambda r: True).get([b"no", b"yes"]) == [b"yes"]
    jl = JSONLines(max_length=4096)
    assert jl.get(jl.put([{"a": 1}])) == [{"a": 1}]
    assert Upper().get([b"up\r\n"]) == [b"UP"]
    errors: list[type[CypoeError]] = [FilterError, LineTooLong, FrameTooLong, FrameError,
                                      BufferOverflow]
    try:
        Line(max_length=2).get([b"toolong\n"])
    except FilterError as exc:
        assert isinstance(exc, tuple(errors))
        seen.append(type(exc).__name__)
    return seen


def type_checked_only(conn: Connection, c: Conn, client: Client, sess: Session) -> None:
    """API calls whose effect main() has no use for: checked by mypy, never
    run."""
    conn.shutdown()
    conn.close()
    c.shutdown()
    client.reconnect()
    client.connect("127.0.0.1", 7)
    sess.stop()


def main() -> int:
    k: Kernel = cypoe.Kernel(backend="auto")
    assert isinstance(cypoe.kernel, Kernel)
    assert k.backend in ("epoll", "kqueue", "poll")
    result: dict[str, Any] = {"filters": filters(), "echo": [], "multi": [], "rw": None}

    def on_exception(kernel: Kernel, context: dict[str, Any]) -> None:
        result.setdefault("exceptions", []).append(context["message"])

    k.set_exception_handler(on_exception)
    k.set_exception_handler(None)
    k.set_exception_handler(on_exception)

    def timed_out() -> None:
        result["timed_out"] = True
        k.stop()

    guard: Timer = k.delay(20.0, timed_out)
    t = k.alarm(k.time() + 100.0, lambda: None)
    assert t.active
    t.cancel()
    k.call_soon_threadsafe(lambda x: result.__setitem__("threadsafe", x), 1)
    k.signal("USR1", lambda signame: None)
    k.signal("USR1", None)

    # -- a session -------------------------------------------------------------
    def start(session: Session, greeting: str) -> None:
        session.heap["greeting"] = greeting
        session.delay(0.0, "tick", 1)

    def tick(session: Session, n: int) -> None:
        session.heap["ticks"] = n
        session.post("echo", "posted")

    def echo(session: Session, what: str) -> str:
        session.heap["echo"] = what
        return what

    sess = Session({"_start": start, "tick": tick, "echo": echo}, alias="typed",
                   heap={}, args=("hi",), kernel=k)
    assert sess.alias == "typed" and isinstance(sess.id, int)
    assert k.call("typed", "echo", "called") == "called"
    assert sess.call("echo", "again") == "again"
    assert k.post(sess, "echo", "queued")
    k.alias_set("typed2", sess)
    assert k.alias_resolve("typed2") is sess
    k.alias_remove("typed2")

    # -- a Server, Clients, a TCPMulti ----------------------------------------------
    def client_connected(conn: Connection, tag: str) -> None:
        conn.heap["tag"] = tag
        assert isinstance(conn.remote_ip, str) and isinstance(conn.remote_port, int)
        assert conn.remote_addr is not None and conn.server is server
        assert conn.connected and not conn.shutting_down
        assert isinstance(conn.wheel, ReadWrite) and isinstance(conn.id, int)
        assert conn.local_addr is not None

    def client_input(conn: Connection, record: bytes) -> None:
        if record == b"slow":
            conn.pause_input()
            conn.resume_input()
            conn.delay(0.0, lambda c: c.put(b"slow"))
            return
        if record == b"custom":
            conn.post("custom", b"custom")
            return
        conn.put(record)

    def custom(conn: Connection, record: bytes) -> None:
        conn.set_filter(Line())
        conn.put(record)

    def client_error(conn: Connection, operation: str, errnum: int, errstr: str) -> None:
        pass

    def started(srv: Server, note: str) -> None:
        result["started"] = note

    def stopped(srv: Server) -> None:
        result["stopped"] = True
        guard.cancel()

    def server_error(srv: Server, operation: str, errnum: int, errstr: str) -> None:
        result["server_error"] = (operation, errnum)

    server = Server(port=0, address="127.0.0.1", alias="typed-server", concurrency=-1,
                    started=started, stopped=stopped, error=server_error,
                    listener_args=["up"], client_input=client_input,
                    client_connected=client_connected, client_error=client_error,
                    client_disconnected=lambda conn: None,
                    client_flushed=lambda conn: None, client_filter=Line(),
                    client_args=("tag",), high_mark=1 << 20, low_mark=1 << 10,
                    client_high=lambda conn: None, client_low=lambda conn: None,
                    client_input_timeout=30.0, states={"custom": custom}, kernel=k)
    def acceptor(srv: Server, sock: socket.socket, remote_addr: Any, remote_port: int) -> None:
        sock.close()
        srv.disconnected()          # a custom acceptor's bookkeeping
        srv.shutdown()

    acceptor_server = Server(port=0, address="127.0.0.1", acceptor=acceptor, kernel=k)
    assert acceptor_server.port is not None
    port = server.port
    assert port is not None and server.getsockname() is not None
    assert server.address == "127.0.0.1" and server.alias == "typed-server"
    assert server.connections == 0 and server.concurrency == -1
    server.set_concurrency(100)

    clients_left = {"n": 1}

    def client_done(c: Client) -> None:
        clients_left["n"] -= 1
        if clients_left["n"] == 0:
            multi.die()
            server.shutdown()

    def connected(c: Client, sock: socket.socket, peer_addr: str, peer_port: int) -> None:
        assert c.connected and c.wheel is not None and c.local_addr is not None
        c.put(b"hello", b"slow", b"custom")

    def server_input(c: Client, record: bytes) -> None:
        result["echo"].append(record)
        if len(result["echo"]) >= 3 and not c.shutting_down:
            c.shutdown()

    def connect_error(c: Client, operation: str, errnum: int, errstr: str) -> None:
        result["connect_error"] = (operation, errnum == errno.ECONNREFUSED)
        client_done(c)

    client = Client(remote_address="127.0.0.1", remote_port=port, connected=connected,
                    server_input=server_input, connect_error=connect_error,
                    disconnected=client_done, server_error=lambda c, o, n, s: None,
                    server_flushed=lambda c: None, filter=Line(), connect_timeout=10.0,
                    autoconnect=False, kernel=k)
    client.heap["n"] = 1
    client.connect()

    def reconnecting(c: Client) -> None:
        c.heap["tries"] = c.heap.get("tries", 0) + 1

    idle = Client(remote_address="127.0.0.1", remote_port=port, server_input=server_input,
                  started=lambda c: None, autoconnect=False, kernel=k,
                  disconnected=lambda c: None, connect_error=connect_error)
    idle.post(reconnecting)
    idle.delay(0.0, "shutdown")

    def on_success(conn: Conn) -> None:
        assert conn.connected and conn.addr == "127.0.0.1" and conn.port == port
        conn.timeout(5.0)
        assert conn.timeout() == 5.0
        conn.input_filter(Line())
        conn.output_filter(Line())
        conn.filter(Line())
        conn["k"] = "v"
        assert conn.heap["k"] == "v"
        conn.put(b"multi")

    def on_input(conn: Conn, record: bytes) -> None:
        result["multi"].append(record)
        multi.send(conn.id, b"")
        multi.shutdown(conn)

    def on_failure(conn: Conn, operation: str, errnum: int, errstr: str) -> None:
        result["multi_failure"] = operation

    multi = TCPMulti(on_input=on_input, on_success=on_success, on_failure=on_failure,
                     on_error=lambda conn, o, n, s: None, on_disconnected=lambda conn: None,
                     on_timeout=lambda conn: None, on_initialize=lambda conn: None,
                     filter=Line, connect_timeout=10.0, input_timeout=10.0, kernel=k)
    mc: Conn = multi.connect("127.0.0.1", port, heap={"from": "check_api"})
    assert multi[mc.id] is mc and multi.connections == 1

    # -- ReadWrite over a socketpair; SocketFactory connect ---------------------------
    a, b = socket.socketpair()

    def rw_input(rw: ReadWrite, record: bytes) -> None:
        result["rw"] = record
        rw.shutdown_input()
        rw.shutdown_output()
        rw.close()

    rw_a = ReadWrite(a, filter=Line(), on_input=rw_input,
                     on_error=lambda rw, o, n, s: None, on_flushed=lambda rw: None,
                     high_mark=1000, low_mark=10, on_high=lambda rw: None,
                     on_low=lambda rw: None, kernel=k)
    rw_b = ReadWrite(b, input_filter=Line(), output_filter=Line(), on_input=rw_input, kernel=k)
    assert isinstance(rw_a.id, int)
    rw_a.set_high_mark(100)
    rw_a.set_low_mark(1)
    rw_b.set_filter(Line())
    rw_b.set_input_filter(Line())
    rw_b.set_output_filter(Line())
    assert rw_b.put(b"over the pair") is False
    assert rw_b.get_driver_out_octets() >= 0 and rw_b.get_driver_out_messages() >= 0
    rw_b.flush()

    def sf_success(sf: SocketFactory, sock: socket.socket, addr: Any, p: int) -> None:
        result["sf"] = sf.id
        sock.close()
        sf.close()

    def sf_failure(sf: SocketFactory, operation: str, errnum: int, errstr: str) -> None:
        result["sf"] = operation

    sf = SocketFactory(remote_address="127.0.0.1", remote_port=acceptor_server.port, on_success=sf_success,
                       on_failure=sf_failure, kernel=k)
    assert sf.getsockname() is None or sf.getsockname() is not None
    listener = SocketFactory(bind_address="127.0.0.1", bind_port=0, reuse=True,
                             on_success=lambda sf, sock, addr, p: sock.close(),
                             on_failure=sf_failure, kernel=k)
    listener.pause_accept()
    listener.resume_accept()
    listener.close()

    # -- fd watchers -------------------------------------------------------------------
    c, d = socket.socketpair()

    def readable(fd: int) -> None:
        result["watched"] = c.recv(16)
        k.select_read(c, None)

    def writable(fd: int) -> None:
        d.send(b"watched")
        k.select_write(fd, None)

    k.select_read(c, readable)
    k.select_write(d.fileno(), writable)

    # TLS is only constructed here (a certificate is needed to run it).
    tls = TLS(ssl.create_default_context(), server_side=False, server_hostname="localhost")
    assert tls.server_hostname == "localhost"

    while not result.get("stopped") and not result.get("timed_out"):
        k.run_once(0.5)
    k.run_once(0)
    rw_b.close()
    a.close()
    b.close()
    sess.stop()
    k.call_soon_threadsafe(k.stop)      # queued before run(): one iteration
    k.run()
    c.close()
    d.close()
    k.stop()
    cypoe.stop()                # the default kernel's; it has nothing to do
    cypoe.run()
    print("check_api:", json.dumps({key: repr(v) for key, v in sorted(result.items())}),
          file=sys.stderr)
    ok = (not result.get("timed_out") and result["echo"][:1] == [b"hello"]
          and result["multi"] == [b"multi"] and result["rw"] == b"over the pair"
          and result["watched"] == b"watched" and "exceptions" not in result)
    print("check_api: OK" if ok else "check_api: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
