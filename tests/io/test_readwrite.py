"""ReadWrite over real socketpairs and loopback TCP, on every backend."""
import errno
import hashlib
import os
import random
import socket
import threading

import pytest

import cypoe
from cypoe import Block, Line, ReadWrite, Stream

from .conftest import Recorder, run_for, run_until, tcp_pair


def make_rw(kernel, sock, rec=None, **kw):
    rec = rec or Recorder()
    kw.setdefault("on_input", rec.on_input)
    kw.setdefault("on_error", rec.on_error)
    kw.setdefault("on_flushed", rec.on_flushed)
    return ReadWrite(sock, kernel=kernel, **kw), rec


def test_line_echo(kernel):
    a, b = socket.socketpair()
    rw, rec = make_rw(kernel, a, on_input=lambda rw, r: rw.put(r.upper()))
    b.sendall(b"hello\nworld\r\n")
    buf = b""
    b.settimeout(0.01)
    for _ in range(200):
        kernel.run_once(0.01)
        try:
            buf += b.recv(100)
        except socket.timeout:
            pass
        if buf.count(b"\r\n") >= 2:
            break
    assert buf == b"HELLO\r\nWORLD\r\n"
    rw.close()
    b.close()


def test_put_coalesces_into_one_flush(kernel):
    a, b = socket.socketpair()
    rw, rec = make_rw(kernel, a, filter=Stream())
    for i in range(100):
        rw.put(b"x%d," % i)
    # Nothing is written before the end of the loop iteration.
    assert rw.get_driver_out_octets() == len(b"".join(b"x%d," % i for i in range(100)))
    assert rw.get_driver_out_messages() == 100
    kernel.run_once(0)
    assert rw.get_driver_out_octets() == 0
    assert rw.get_driver_out_messages() == 0
    assert rec.count("flushed") == 1
    b.settimeout(1)
    data = b""
    while len(data) < 390:
        data += b.recv(4096)
    assert data == b"".join(b"x%d," % i for i in range(100))
    rw.close()


def test_flush_writes_now(kernel):
    a, b = socket.socketpair()
    rw, rec = make_rw(kernel, a, filter=Stream())
    rw.put(b"now")
    rw.flush()
    b.settimeout(1)
    assert b.recv(10) == b"now"
    rw.close()


def test_one_million_records_in_order(kernel):
    a, b = tcp_pair()
    n = 1_000_000
    payload = b"".join(b"%d\n" % i for i in range(n))
    state = {"next": 0, "bad": 0}

    def on_input(rw, rec):
        if int(rec) != state["next"]:
            state["bad"] += 1
        state["next"] += 1

    rw, rec = make_rw(kernel, a, on_input=on_input)
    t = threading.Thread(target=lambda: (b.sendall(payload), b.shutdown(socket.SHUT_WR)))
    t.start()
    run_until(kernel, lambda: rec.errors(), timeout=60)
    t.join()
    assert state["next"] == n
    assert state["bad"] == 0
    assert rec.errors() == [("error", "read", 0, "")]
    rw.close()
    b.close()


def test_stream_echo_256mib_both_ways(kernel):
    """256 MiB through a Stream echo; both directions checked with a hash."""
    a, b = tcp_pair()
    total = 256 * 1024 * 1024
    block = random.Random(7).randbytes(1 << 20)
    sent = hashlib.sha256()
    got = hashlib.sha256()
    st = {"sent": 0, "got": 0, "server_in": 0}

    # Server: echo with flow control (pause reading while output is high).
    def srv_input(rw, rec):
        st["server_in"] += len(rec)
        if rw.put(rec):
            rw.pause_input()

    server = ReadWrite(b, filter=Stream(), kernel=kernel, on_input=srv_input,
                       high_mark=4 << 20, low_mark=1 << 20,
                       on_high=lambda rw: None, on_low=lambda rw: rw.resume_input())

    def feed(rw):
        while st["sent"] < total:
            chunk = st["sent"].to_bytes(8, "big") + block[8:]
            sent.update(chunk)
            st["sent"] += len(chunk)
            if rw.put(chunk):
                return
        rw.shutdown_output()

    def cli_input(rw, rec):
        got.update(rec)
        st["got"] += len(rec)

    client = ReadWrite(a, filter=Stream(), kernel=kernel, on_input=cli_input,
                       high_mark=4 << 20, low_mark=1 << 20,
                       on_high=lambda rw: None, on_low=feed)
    errors = []
    client_err = errors.append
    feed(client)
    run_until(kernel, lambda: st["got"] >= total, timeout=60, step=0.01)
    assert st["server_in"] == total
    assert st["got"] == total
    assert sent.hexdigest() == got.hexdigest()
    assert server.get_driver_out_octets() == 0
    assert not errors
    client.close()
    server.close()


def test_slow_reader_small_rcvbuf(kernel):
    """A peer with a 4 KiB receive buffer reading random sizes at random pauses."""
    # A UNIX socketpair: over loopback TCP a 4 KiB window is smaller than the
    # 64 KiB MSS, and Linux then stalls on zero-window probes for seconds.
    a, b = socket.socketpair()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    rnd = random.Random(3)
    data = rnd.randbytes(3 << 20)
    received = bytearray()

    def reader():
        r = random.Random(5)
        b.settimeout(20)
        while len(received) < len(data):
            chunk = b.recv(r.randint(1, 9000))
            if not chunk:
                break
            received.extend(chunk)
            if r.random() < 0.05:
                threading.Event().wait(r.random() * 0.002)

    t = threading.Thread(target=reader)
    t.start()
    st = {"pos": 0, "high": 0, "low": 0}

    def pump(rw):
        while st["pos"] < len(data):
            n = rnd.randint(1, 70000)
            piece = data[st["pos"]:st["pos"] + n]
            st["pos"] += len(piece)
            if rw.put(piece):
                return

    rw = ReadWrite(a, filter=Stream(), kernel=kernel, on_input=lambda rw, r: None,
                   high_mark=256 << 10, low_mark=32 << 10,
                   on_high=lambda rw: st.__setitem__("high", st["high"] + 1),
                   on_low=lambda rw: (st.__setitem__("low", st["low"] + 1), pump(rw)))
    pump(rw)
    run_until(kernel, lambda: st["pos"] >= len(data) and rw.get_driver_out_octets() == 0,
              timeout=60, step=0.01)
    t.join(30)
    assert len(received) == len(data)
    assert bytes(received) == data
    assert st["high"] >= 1 and st["high"] == st["low"]
    rw.close()
    b.close()


def fill_until_full(kernel, rw, chunk=b"z" * 65536, limit=64 << 20):
    """Put and flush until the kernel stops taking bytes."""
    put = 0
    while put < limit:
        rw.put(chunk)
        put += len(chunk)
        rw.flush()
        if rw.get_driver_out_octets() > 0:
            return put
    raise AssertionError("socket never filled")


def test_watermarks_non_reading_peer(kernel):
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    rec = Recorder()
    rw = ReadWrite(a, filter=Stream(), kernel=kernel, on_input=rec.on_input,
                   on_error=rec.on_error, on_flushed=rec.on_flushed,
                   high_mark=256 << 10, low_mark=64 << 10,
                   on_high=rec.on_high, on_low=rec.on_low)
    total = 0
    returned = []
    for i in range(64):
        piece = bytes([i % 256]) * 32768
        total += len(piece)
        returned.append(rw.put(piece))
        kernel.run_once(0)
    assert rec.count("high") == 1
    assert returned[-1] is True
    # The first put that crossed returned True, and every later one too.
    first = returned.index(True)
    assert all(returned[first:])
    assert rec.count("low") == 0 and rec.count("flushed") == 0
    pending = rw.get_driver_out_octets()
    # Memory is bounded by what was put: everything not taken by the kernel.
    assert (256 << 10) <= pending <= total
    # Now the peer reads: low once, flushed once, all bytes in order.
    out = bytearray()
    b.setblocking(False)

    def drain():
        try:
            while True:
                d = b.recv(1 << 20)
                if not d:
                    break
                out.extend(d)
        except BlockingIOError:
            pass
        return len(out) >= total

    run_until(kernel, lambda: drain() and rw.get_driver_out_octets() == 0, timeout=20,
              step=0.005)
    kernel.run_once(0)
    assert rec.count("high") == 1
    assert rec.count("low") == 1
    assert rec.count("flushed") == 1
    kinds = [e[0] for e in rec.events]
    assert kinds.index("low") < kinds.index("flushed")
    assert bytes(out) == b"".join(bytes([i % 256]) * 32768 for i in range(64))
    rw.close()


def test_high_mark_boundary_exact(kernel):
    a, b = socket.socketpair()
    rec = Recorder()
    rw = ReadWrite(a, filter=Stream(), kernel=kernel, on_input=rec.on_input,
                   high_mark=1 << 40, low_mark=1, on_high=rec.on_high, on_low=rec.on_low)
    fill_until_full(kernel, rw)
    pending = rw.get_driver_out_octets()
    rw.set_high_mark(pending + 10)
    assert rw.put(b"x" * 9) is False           # high_mark - 1
    assert rec.count("high") == 0
    assert rw.put(b"x") is True                # exactly high_mark
    assert rec.count("high") == 1
    assert rw.put(b"x") is True
    assert rec.count("high") == 1
    rw.close()


def test_watermark_validation(kernel):
    a, b = socket.socketpair()
    noop = lambda *a: None
    with pytest.raises(TypeError, match="on_low"):
        ReadWrite(a, kernel=kernel, on_input=noop, high_mark=10, low_mark=5, on_high=noop)
    with pytest.raises(ValueError, match="low_mark"):
        ReadWrite(a, kernel=kernel, on_input=noop, high_mark=10, low_mark=10,
                  on_high=noop, on_low=noop)
    with pytest.raises(ValueError, match="high_mark"):
        ReadWrite(a, kernel=kernel, on_input=noop, high_mark=0, low_mark=1,
                  on_high=noop, on_low=noop)
    with pytest.raises(TypeError, match="high_mark"):
        ReadWrite(a, kernel=kernel, on_input=noop, high_mark="x", low_mark=1,
                  on_high=noop, on_low=noop)
    with pytest.raises(TypeError, match="on_input"):
        ReadWrite(a, kernel=kernel, on_input=None)
    with pytest.raises(TypeError, match="filter"):
        ReadWrite(a, kernel=kernel, on_input=noop, filter=object())
    with pytest.raises(TypeError, match="driver"):
        ReadWrite(a, kernel=kernel, on_input=noop, driver="tls")
    with pytest.raises(TypeError, match="kernel"):
        ReadWrite(a, kernel=42, on_input=noop)
    a.close()
    b.close()


def test_eof_then_half_close_still_delivers_8mib(kernel):
    a, b = tcp_pair()
    size = 8 << 20
    rec = Recorder()

    def on_error(rw, op, errnum, errstr):
        rec.on_error(rw, op, errnum, errstr)
        if op == "read" and errnum == 0:
            rw.put(b"q" * size)
            rw.shutdown_output()

    rw = ReadWrite(a, filter=Stream(), kernel=kernel, on_input=rec.on_input,
                   on_error=on_error)
    b.sendall(b"last words")
    b.shutdown(socket.SHUT_WR)
    received = bytearray()
    done = threading.Event()

    def reader():
        b.settimeout(30)
        while True:
            d = b.recv(1 << 20)
            if not d:
                break
            received.extend(d)
        done.set()

    t = threading.Thread(target=reader)
    t.start()
    run_until(kernel, done.is_set, timeout=30, step=0.01)
    t.join()
    assert b"".join(rec.records) == b"last words"
    assert rec.errors() == [("error", "read", 0, "")]
    assert len(received) == size and received == b"q" * size
    rw.close()
    b.close()


def test_shutdown_output_flushes_first(kernel):
    a, b = socket.socketpair()
    rw, rec = make_rw(kernel, a, filter=Stream())
    rw.put(b"a" * 100000)
    rw.shutdown_output()
    assert rw.put(b"late") is False
    b.settimeout(5)
    data = bytearray()

    def drain():
        try:
            d = b.recv(1 << 16)
        except socket.timeout:
            return False
        if not d:
            return True
        data.extend(d)
        return False

    run_until(kernel, drain, timeout=10, step=0.001)
    assert bytes(data) == b"a" * 100000
    rw.close()


def test_shutdown_input_and_pause_resume(kernel):
    a, b = tcp_pair()
    rw, rec = make_rw(kernel, a)
    rw.pause_input()
    assert rw.paused
    b.sendall(b"one\n")
    run_for(kernel, 0.1)
    assert rec.records == []
    rw.resume_input()
    run_until(kernel, lambda: rec.records == [b"one"], timeout=5)
    rw.shutdown_input()
    b.sendall(b"two\n")
    run_for(kernel, 0.1)
    assert rec.records == [b"one"]
    rw.put(b"still writes")
    b.settimeout(2)
    run_for(kernel, 0.05)
    assert b.recv(100) == b"still writes\r\n"
    rw.close()


def test_close_twice_and_no_event_after_close(kernel):
    a, b = socket.socketpair()
    rw, rec = make_rw(kernel, a)
    b.sendall(b"x\n")
    rw.close()
    rw.close()
    assert rw.closed
    assert rw.put(b"nothing") is False
    run_for(kernel, 0.1)
    assert rec.records == [] and rec.events == []
    # The fd was closed (with unread input: a reset rather than an EOF).
    b.settimeout(1)
    try:
        assert b.recv(10) == b""
    except ConnectionResetError:
        pass


def test_close_inside_callback_stops_delivery(kernel):
    a, b = socket.socketpair()
    seen = []

    def on_input(rw, r):
        seen.append(r)
        rw.close()

    rw, rec = make_rw(kernel, a, on_input=on_input)
    b.sendall(b"1\n2\n3\n")
    run_for(kernel, 0.1)
    assert seen == [b"1"]
    assert rec.events == []


def test_callback_exception_closes_only_that_connection(kernel, exceptions):
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    good = []

    def bad(rw, r):
        raise RuntimeError("boom")

    rw1 = ReadWrite(a1, kernel=kernel, on_input=bad)
    rw2 = ReadWrite(a2, kernel=kernel, on_input=lambda rw, r: good.append(r))
    b1.sendall(b"a\nb\n")
    b2.sendall(b"c\n")
    run_until(kernel, lambda: rw1.closed and good == [b"c"], timeout=5)
    assert len(exceptions) == 1
    assert isinstance(exceptions[0]["exception"], RuntimeError)
    b2.sendall(b"d\n")
    run_until(kernel, lambda: good == [b"c", b"d"], timeout=5)
    rw2.close()


def test_callback_exception_is_logged(caplog):
    k = cypoe.Kernel()
    a, b = socket.socketpair()

    def bad(rw, r):
        raise ValueError("logged")

    rw = ReadWrite(a, kernel=k, on_input=bad)
    b.sendall(b"x\n")
    with caplog.at_level("ERROR", logger="cypoe"):
        run_until(k, lambda: rw.closed, timeout=5)
    assert any("ValueError: logged" in (r.exc_text or "") or
               (r.exc_info and r.exc_info[0] is ValueError) for r in caplog.records)


def test_peer_reset_mid_write_sigpipe_default(tmp_path):
    """Exactly one error event, and the process survives SIGPIPE at SIG_DFL."""
    import subprocess
    import sys
    script = tmp_path / "reset.py"
    script.write_text(r'''
import signal, socket, struct, sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
import cypoe
k = cypoe.Kernel()
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1)
a = socket.create_connection(lst.getsockname()); b, _ = lst.accept()
errors = []
rw = cypoe.ReadWrite(a, filter=cypoe.Stream(), kernel=k, on_input=lambda rw, r: None,
                     on_error=lambda rw, *e: errors.append(e))
state = {"n": 0}
def more():
    for _ in range(16):
        rw.put(b"y" * 65536)
    state["n"] += 1
    if state["n"] == 20:
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()
    if state["n"] < 200:
        k.delay(0.002, more)
more()
k.delay(1.5, k.stop)
k.run()
rw.close()
print("errors", len(errors), errors[0][0] if errors else None, errors[0][1] if errors else None)
print("dropped", rw.dropped_octets > 0)
''')
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split("\n")
    op_errno = lines[0].split()
    assert op_errno[1] == "1", p.stdout
    assert op_errno[2] in ("read", "write")
    assert int(op_errno[3]) in (errno.EPIPE, errno.ECONNRESET)
    assert lines[1] == "dropped True"


def test_fd_reuse_within_one_iteration(kernel):
    """Whichever connection is served first closes the other and opens a new
    socket on the freed fd number; the stale readiness of the closed one is
    never delivered, to it or to the newcomer."""
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    seen = {1: [], 2: [], 3: []}
    state = {}

    def make(idx, sock):
        def on_input(rw, r):
            seen[idx].append(r)
            if "new" not in state:
                other = rws[3 - idx]
                old_fd = other.fileno()
                other.close()
                c1, c2 = socket.socketpair()
                state["new"] = (c1, c2, old_fd)
                rws[3] = ReadWrite(c1, kernel=kernel,
                                   on_input=lambda rw, r: seen[3].append(r))
        return ReadWrite(sock, kernel=kernel, on_input=on_input)

    rws = {}
    rws[1] = make(1, a1)
    rws[2] = make(2, a2)
    b1.sendall(b"one\n")
    b2.sendall(b"two\n")
    kernel.run_once(0.5)
    c1, c2, old_fd = state["new"]
    assert c1.fileno() == old_fd or c2.fileno() == old_fd
    assert (seen[1] == [b"one"]) != (seen[2] == [b"two"])
    assert seen[3] == []
    run_for(kernel, 0.05)
    assert seen[3] == []
    c2.sendall(b"three\n")
    run_until(kernel, lambda: seen[3] == [b"three"], timeout=5)
    for rw in rws.values():
        rw.close()


def test_filter_error_delivers_records_before_it(kernel):
    a, b = socket.socketpair()
    rw, rec = make_rw(kernel, a, filter=Line(max_length=5))
    b.sendall(b"ok\ntoolongline\nafter\n")
    run_until(kernel, lambda: rec.records[-1:] == [b"after"], timeout=5)
    assert rec.records == [b"ok", b"after"]
    errs = rec.errors()
    assert len(errs) == 1 and errs[0][1] == "filter" and errs[0][2] == errno.EMSGSIZE
    rw.close()


def test_filter_switch_mid_stream(kernel):
    """POE's 99_filterchange, streamed: every switch happens in the middle of
    one read, and the bytes after the switching record go to the new filter."""
    a, b = socket.socketpair()
    got = []

    def on_input(rw, rec):
        got.append(rec)
        if rec == b"to-block":
            rw.set_input_filter(Block())
        elif rec == b"to-line":
            rw.set_input_filter(Line(literal=b"\n"))
        elif rec == b"to-stream-then-line":
            rw.set_input_filter(Block())
            rw.set_input_filter(Line(literal=b"|"))

    rw = ReadWrite(a, kernel=kernel, filter=Line(literal=b"\n"), on_input=on_input)
    stream = (b"l1\nto-block\n" + b"3\0abc" + b"7\0to-line" + b"l2\nl3\n"
              + b"to-stream-then-line\n" + b"x|y|")
    b.sendall(stream)
    run_until(kernel, lambda: got[-1:] == [b"y"], timeout=5)
    assert got == [b"l1", b"to-block", b"abc", b"to-line", b"l2", b"l3",
                   b"to-stream-then-line", b"x", b"y"]
    rw.close()


def test_filter_switch_python_filter(kernel):
    """The same through a user (Python-face) filter."""
    a, b = socket.socketpair()
    got = []

    class Upper(cypoe.Filter):
        def __init__(self):
            self.inner = Line(literal=b";")

        def get_one_start(self, chunks):
            self.inner.get_one_start(chunks)

        def get_one(self):
            return [r.upper() for r in self.inner.get_one()]

        def get_pending(self):
            return self.inner.get_pending()

        def put(self, records):
            return self.inner.put(records)

        def clone(self):
            return Upper()

    def on_input(rw, rec):
        got.append(rec)
        if rec == b"SWITCH":
            rw.set_filter(Line(literal=b";"))

    rw = ReadWrite(a, kernel=kernel, filter=Upper(), on_input=on_input)
    b.sendall(b"a;switch;b;c;")
    run_until(kernel, lambda: got[-1:] == [b"c"], timeout=5)
    assert got == [b"A", b"SWITCH", b"b", b"c"]
    rw.close()


def test_set_filter_outside_callback_delivers_pending(kernel):
    a, b = socket.socketpair()
    rw, rec = make_rw(kernel, a, filter=Line(literal=b"\n"))
    b.sendall(b"line\npartial|rest|")
    run_until(kernel, lambda: rec.records == [b"line"], timeout=5)
    rw.set_input_filter(Line(literal=b"|"))
    assert rec.records == [b"line", b"partial", b"rest"]
    rw.close()


def test_separate_input_and_output_handles(kernel):
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    got = []
    rw = ReadWrite(input_handle=r1, output_handle=w2, kernel=kernel,
                   on_input=lambda rw, r: (got.append(r), rw.put(r[::-1])))
    os.write(w1, b"abc\n")
    run_until(kernel, lambda: got == [b"abc"], timeout=5)
    run_for(kernel, 0.02)
    assert os.read(r2, 100) == b"cba\r\n"
    rw.close()
    os.close(w1)
    os.close(r2)


def test_socket_property_and_addresses(kernel):
    a, b = tcp_pair()
    fd = a.detach()
    rw = ReadWrite(fd, kernel=kernel, on_input=lambda rw, r: None)
    assert rw.local_addr == b.getpeername()
    assert rw.peer_addr == b.getsockname()
    s = rw.socket
    assert isinstance(s, socket.socket) and s.fileno() == fd
    assert rw.socket is s
    rw.close()
    assert s.fileno() == -1
    b.close()


def test_c_connect_helper(kernel):
    from cypoe._io import connect_fd
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    fd = connect_fd("127.0.0.1", lst.getsockname()[1])
    conn, _ = lst.accept()
    s = socket.socket(fileno=fd)
    assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert not os.get_inheritable(fd)
    assert s.gettimeout() is None or s.getblocking() is False
    with pytest.raises(ValueError, match="host"):
        connect_fd("localhost", 80)
    s.close()
    conn.close()
    lst.close()
