"""The scanner's scheduling and result logic, driven by a fake TCPMulti and
a fake kernel (no sockets): one result per probe, self-connects never open,
retries, bounded banners, the concurrency bound."""
import errno

from cypoe.cli import scan_engine, timing
from cypoe.cli.scan import Plan
from cypoe.cli.targets import TargetSet


class FakeTimer:
    def __init__(self, due, fn, args):
        self.due, self.fn, self.args, self.active = due, fn, args, True

    def cancel(self):
        self.active = False


class FakeKernel:
    def __init__(self):
        self.now = 100.0
        self.timers = []

    def time(self):
        return self.now

    def delay(self, seconds, fn, *args):
        t = FakeTimer(self.now + seconds, fn, args)
        self.timers.append(t)
        return t

    def run_timers(self):
        for _ in range(100000):
            due = [t for t in self.timers if t.active]
            self.timers = []
            if not due:
                return
            for t in sorted(due, key=lambda t: t.due):
                t.active = False
                self.now = max(self.now, t.due)  # time moves on to the timer
                t.fn(*t.args)

    def register_component(self, c):
        pass

    def unregister_component(self, c):
        pass


class FakeConn:
    def __init__(self, ip, port, heap):
        self.addr, self.port, self.heap = ip, port, heap
        self.local_addr = None
        self.put_data = []
        self.shut = False

    def put(self, *records):
        self.put_data.extend(records)

    def shutdown(self):
        self.shut = True


class FakeMulti:
    def __init__(self):
        self.pending = []
        self.died = False
        self.max_open = 0

    def connect(self, ip, port, **kw):
        c = FakeConn(ip, port, kw["heap"])
        self.pending.append(c)
        self.max_open = max(self.max_open, len(self.pending))
        return c

    def die(self):
        self.died = True


def make(ports, *, retries=0, concurrency=100, banners=False, max_read=96 * 1024, probes=None):
    results = []
    plan = Plan(TargetSet(["127.0.0.1"]), ports, seed=1, probes=probes)
    s = scan_engine.Scanner.__new__(scan_engine.Scanner)
    s._setup(plan, timing.Timing("t", concurrency, None, 1.0, retries), results.append,
             banners=banners, max_read=max_read, read_timeout=1.0, tls=False, sni=None,
             kernel=FakeKernel())
    s.multi = FakeMulti()
    s.t0 = s.kernel.now
    return s, results


def drive(s, answer):
    """Answer every pending connection with answer(scanner, conn) until done."""
    s._pump()
    for _ in range(10000):
        if not s.multi.pending:
            s.kernel.run_timers()
            if not s.multi.pending:
                break
        conn = s.multi.pending.pop(0)
        answer(s, conn)
    s.kernel.run_timers()


def ended(s, conn):
    s._on_disconnected(conn)


def test_refused_and_open():
    opened = {22, 80}

    def answer(s, conn):
        if conn.port in opened:
            conn.local_addr = ("127.0.0.1", 40000)
            s._on_success(conn)
            assert conn.shut
            ended(s, conn)
        else:
            s._on_failure(conn, "connect", errno.ECONNREFUSED, "Connection refused")
            ended(s, conn)

    s, results = make(range(1, 101))
    drive(s, answer)
    assert len(results) == 100
    assert sorted(r["port"] for r in results) == list(range(1, 101))
    assert {r["port"] for r in results if r["state"] == "open"} == opened
    assert all(r["status"] == "connection-refused" for r in results if r["port"] not in opened)
    assert s.multi.died and s.inflight == 0


def test_self_connect_is_never_open():
    def answer(s, conn):
        conn.local_addr = (conn.addr, conn.port)  # simultaneous open with ourselves
        s._on_success(conn)
        ended(s, conn)

    s, results = make([40001, 40002])
    drive(s, answer)
    assert [r["state"] for r in results] == ["closed", "closed"]
    assert all(r["error"] == "self-connect" for r in results)


def test_timeouts_are_retried_then_filtered():
    tries = {}

    def answer(s, conn):
        tries[conn.port] = tries.get(conn.port, 0) + 1
        if conn.port == 7 and tries[7] == 2:
            conn.local_addr = ("127.0.0.1", 40000)
            s._on_success(conn)
            ended(s, conn)
        else:
            s._on_timeout(conn)  # connect timeout: no on_disconnected follows

    s, results = make([5, 6, 7], retries=2)
    drive(s, answer)
    by_port = {r["port"]: r for r in results}
    assert len(results) == 3
    assert tries == {5: 3, 6: 3, 7: 2}
    assert by_port[7]["state"] == "open"
    assert by_port[5]["state"] == by_port[6]["state"] == "filtered"
    assert by_port[5]["status"] == "connection-timeout"


def test_transient_errors_requeue_without_using_a_try():
    seen = []

    def answer(s, conn):
        seen.append(conn.port)
        if len(seen) <= 2:
            s._on_failure(conn, "socket", errno.EMFILE, "Too many open files")
        else:
            s._on_failure(conn, "connect", errno.ECONNREFUSED, "refused")
        ended(s, conn)

    s, results = make([9], retries=0)
    drive(s, answer)
    assert seen == [9, 9, 9]
    assert [r["state"] for r in results] == ["closed"]


def test_concurrency_bound():
    s, results = make(range(1, 1001), concurrency=10)
    s._pump()
    assert len(s.multi.pending) == 10 and s.inflight == 10

    def answer(s, conn):
        s._on_failure(conn, "connect", errno.ECONNREFUSED, "refused")
        ended(s, conn)
        assert s.inflight <= 10

    drive(s, answer)
    assert len(results) == 1000 and s.multi.max_open <= 10


def test_banners_bounded_read_and_probe():
    def answer(s, conn):
        conn.local_addr = ("127.0.0.1", 40000)
        s._on_success(conn)
        if conn.port == 1:
            for _ in range(10):
                s._on_input(conn, b"x" * 400)
            assert conn.shut
            ended(s, conn)
        elif conn.port == 2:
            s._on_input(conn, b"SSH-2.0-test\r\n")
            s._on_error(conn, "read", 0, "")
            ended(s, conn)
        elif conn.port == 3:
            s._on_error(conn, "read", 0, "")  # closed without a word
            ended(s, conn)
        else:
            assert conn.put_data == [b"HEAD / HTTP/1.0\r\n\r\n"]
            s._on_timeout(conn)  # read timeout, nothing came

    s, results = make([1, 2, 3, 4], banners=True, max_read=1000,
                      probes={4: b"HEAD / HTTP/1.0\r\n\r\n"})
    drive(s, answer)
    by_port = {r["port"]: r for r in results}
    assert len(results) == 4 and all(r["state"] == "open" for r in results)
    assert len(by_port[1]["banner"]) == 1000 and by_port[1]["banner_truncated"] is True
    assert by_port[2]["banner"] == "SSH-2.0-test\r\n" and by_port[2]["status"] == "success"
    assert by_port[3]["status"] == "connection-closed" and by_port[3]["banner"] == ""
    assert by_port[4]["status"] == "io-timeout"


def test_interrupt_stops_launching():
    s, results = make(range(1, 1001), concurrency=5)
    s._pump()
    s.shutdown()
    assert s.interrupted and s.multi.died
    n = len(s.multi.pending)
    for conn in list(s.multi.pending):
        s._on_failure(conn, "connect", errno.ECONNREFUSED, "refused")
        ended(s, conn)
    s.kernel.run_timers()
    assert n == 5 and len(s.multi.pending) == 5  # nothing new launched
    assert len(results) == 5
