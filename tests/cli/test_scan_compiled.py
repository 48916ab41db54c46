"""The compiled connect scan (cypoe._scan) against loopback: the same
order as cypoe.cli.order, the same results as the TCPMulti engine, timeouts
retried, EMFILE waited out without using a try, self-connects never open,
the rate bound kept, Ctrl-C, and no fd left behind."""
import gc
import os
import resource
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from cypoe import Kernel, _scan
from cypoe.cli import order, scan_engine, timing
from cypoe.cli.scan import Plan
from cypoe.cli.targets import TargetSet

from .conftest import ENV, free_ports

ENGINES = ["compiled", "tcpmulti"]


def open_fds():
    gc.collect()   # sockets of earlier tests that wait in reference cycles
    return len(os.listdir("/proc/self/fd"))


def fd_limit_leaving(free):
    """The RLIMIT_NOFILE soft limit under which exactly ``free`` fd numbers
    are unused (the limit bounds fd numbers, and closed fds leave holes)."""
    gc.collect()
    dirfd = os.open("/proc/self/fd", os.O_RDONLY)
    try:
        used = {int(fd) for fd in os.listdir(dirfd)} - {dirfd}
    finally:
        os.close(dirfd)
    limit = 0
    while free > 0:
        if limit not in used:
            free -= 1
        limit += 1
    return limit


@pytest.fixture
def listeners():
    socks = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        socks.append(s)
    yield sorted(s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()


class Blackholes:
    """Listeners whose accept queue is full: SYNs to them are dropped, so a
    connect to them times out, on loopback, with nothing to configure."""

    def __init__(self, n):
        self.socks = []
        for _ in range(n):
            lsn = socket.socket()
            lsn.bind(("127.0.0.1", 0))
            lsn.listen(0)
            self.socks.append(lsn)
            for _ in range(4):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(lsn.getsockname())
                self.socks.append(c)
                time.sleep(0.005)
        self.ports = sorted(s.getsockname()[1] for s in self.socks[::5])

    def close(self):
        for s in self.socks:
            s.close()


@pytest.fixture
def blackholes():
    b = Blackholes(6)
    yield b
    b.close()


def run_scan(ports, engine, *, targets=("127.0.0.1",), concurrency=100, rate=None,
             timeout=2.0, retries=0, on_other=None, seed=5, kernel=None):
    plan = Plan(TargetSet(list(targets)), ports, seed=seed)
    results = []
    info = scan_engine.scan(plan, timing.Timing("t", concurrency, rate, timeout, retries),
                            results.append, engine=engine, on_other=on_other, kernel=kernel)
    return results, info


def by_port(results):
    out = {}
    for r in results:
        assert (r["ip"], r["port"]) not in out, f"reported twice: {r}"
        out[(r["ip"], r["port"])] = r
    return out


# -- order ------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 3000), shards=st.integers(1, 5), data=st.data(),
       seed=st.one_of(st.none(), st.integers(0, 2 ** 64 - 1)))
def test_order_is_the_python_order(n, shards, data, seed):
    shard = data.draw(st.integers(0, shards - 1))
    m = order.shard_size(n, shards, shard)
    feistel = order.Permutation(m, seed).feistel
    keys, half = feistel if feistel is not None else (None, 0)
    walk = _scan.ScanOrder(m, shards, shard, keys, half)
    assert list(walk) == list(order.shard_order(n, shards, shard, seed))
    assert walk.remaining == 0


def test_order_of_a_large_space():
    n = 65535 * 300
    feistel = order.Permutation(n, 99).feistel
    walk = _scan.ScanOrder(n, 1, 0, *feistel)
    expected = order.shard_order(n, 1, 0, 99)
    assert [next(walk) for _ in range(5000)] == [next(expected) for _ in range(5000)]


# -- results ------------------------------------------------------------------------

def test_both_engines_give_the_same_answers(listeners):
    closed = free_ports(60)
    ports = sorted(set(listeners) | set(closed))
    answers = {}
    for engine in ENGINES:
        results, info = run_scan(ports, engine)
        assert not info["interrupted"]
        found = by_port(results)
        assert len(found) == len(ports)
        answers[engine] = {k: (r["state"], r["status"]) for k, r in found.items()}
        assert {p for (_, p), (state, _) in answers[engine].items() if state == "open"} \
            == set(listeners)
        for (_, p), r in found.items():
            if p in listeners:
                assert r["status"] == "success" and r["connect_ms"] >= 0
            else:
                assert (r["state"], r["status"]) == ("closed", "connection-refused")
    assert answers["compiled"] == answers["tcpmulti"]


@pytest.mark.parametrize("engine", ENGINES)
def test_more_closed_ports_than_the_concurrency(engine):
    """Refusals answered inside connect() free their place at once: the
    scan must go on without any poller event to wake it."""
    ports = free_ports(150)
    results, _ = run_scan(ports, engine, concurrency=10)
    assert sorted(r["port"] for r in results) == sorted(ports)
    assert {r["state"] for r in results} == {"closed"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket reuse is Linux's")
def test_refused_sockets_are_reused(listeners):
    """A closed port answered inside connect() leaves its socket for the
    next probe; the results are those of a socket per probe."""
    closed = free_ports(300)
    ports = listeners + closed
    plan = Plan(TargetSet(["127.0.0.1"]), ports, seed=11)
    results = []
    k = Kernel()
    before = open_fds()
    scanner = scan_engine.ConnectScanner(plan, timing.Timing("t", 100, None, 2.0, 0),
                                         results.append, kernel=k)
    scanner.run()
    found = by_port(results)
    assert {p for (_, p), r in found.items() if r["state"] == "open"} == set(listeners)
    assert all(found[("127.0.0.1", p)]["status"] == "connection-refused" for p in closed)
    # every probe after a refusal took the refused socket
    assert scanner.core.n_recycled >= len(closed) - len(listeners) - 1
    del scanner
    assert open_fds() == before


def test_answers_through_the_poller(listeners):
    """The path of remote targets, whose answers come after connect()
    returns: every probe waits for the poller; the answers are the same."""
    k = Kernel()
    before = open_fds()
    closed = free_ports(60)
    ports = listeners + closed
    results = []
    walk = _scan.ScanOrder(len(ports), 1, 0)
    core = _scan.ConnectScan(k, walk, ports, lambda t: ("127.0.0.1", 4),
                             lambda i, state, status, rtt, err: results.append(
                                 (ports[i], state, status, rtt)),
                             concurrency=25, timeout=2.0, immediate=False)
    k.delay(0, core.start)
    k.run()
    assert sorted(p for p, *_ in results) == sorted(ports)
    assert {p for p, state, *_ in results if state == _scan.OPEN} == set(listeners)
    assert all(status == _scan.CONNECTION_REFUSED for p, state, status, _ in results
               if p in closed)
    assert all(rtt is not None and rtt >= 0 for p, state, _, rtt in results
               if state == _scan.OPEN)
    assert core.n_recycled == 0
    del core
    assert open_fds() == before


def test_mixed_families_do_not_share_sockets(listeners):
    """An IPv4 socket kept for reuse is never connected to an IPv6 address."""
    if not socket.has_ipv6:
        pytest.fail("IPv6 is needed for this test")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as exc:
        pytest.fail(f"no ::1 here: {exc}")
    six = socket.socket(socket.AF_INET6)
    six.bind(("::1", 0))
    six.listen(8)
    try:
        port6 = six.getsockname()[1]
        closed = free_ports(40)
        ports = sorted(set(closed + listeners + [port6]))
        results, _ = run_scan(ports, "compiled", targets=("127.0.0.1", "::1"), seed=4)
        found = by_port(results)
        assert len(found) == 2 * len(ports)
        open4 = {p for (ip, p), r in found.items() if ip == "127.0.0.1" and r["state"] == "open"}
        open6 = {p for (ip, p), r in found.items() if ip == "::1" and r["state"] == "open"}
        assert open4 == set(listeners)
        assert open6 == {port6}
        assert all(r.get("error") is None for r in found.values() if r["state"] == "closed")
    finally:
        six.close()


def test_many_targets_few_ports(listeners):
    targets = ["127.0.0.1-40"]
    ports = listeners[:1] + free_ports(2)
    results, _ = run_scan(ports, "compiled", targets=targets)
    found = by_port(results)
    assert len(found) == 40 * 3
    assert {k for k, r in found.items() if r["state"] == "open"} == {("127.0.0.1", listeners[0])}
    assert {ip for ip, _ in found} == {f"127.0.0.{i}" for i in range(1, 41)}


def test_counts_instead_of_records_for_closed_ports(listeners):
    closed = free_ports(50)
    counted = {}

    def on_other(state, n):
        assert n >= 1
        counted[state] = counted.get(state, 0) + n

    results, _ = run_scan(listeners + closed, "compiled", on_other=on_other)
    assert sorted(r["port"] for r in results) == listeners
    assert all(r["state"] == "open" for r in results)
    assert counted == {"closed": 50}


def test_timeouts_are_retried_then_filtered(blackholes, listeners):
    closed = free_ports(5)
    plan = Plan(TargetSet(["127.0.0.1"]), blackholes.ports + closed + listeners, seed=3)
    results = []
    scanner = scan_engine.ConnectScanner(plan, timing.Timing("t", 100, None, 0.2, 2),
                                         results.append)
    scanner.run()
    found = {r["port"]: r for r in results}
    assert len(results) == len(plan.ports)
    for p in blackholes.ports:
        assert (found[p]["state"], found[p]["status"]) == ("filtered", "connection-timeout")
    for p in closed:
        assert found[p]["state"] == "closed"
    for p in listeners:
        assert found[p]["state"] == "open"
    # every blackholed port was tried three times: two retries each
    assert scanner.core.n_retried == 2 * len(blackholes.ports)
    assert scanner.core.launched == len(plan.ports) + 2 * len(blackholes.ports)


@pytest.mark.parametrize("engine", ENGINES)
def test_emfile_is_waited_out_without_using_a_try(blackholes, engine):
    """More probes than free descriptors: socket() fails with EMFILE, the
    probe goes back in the queue, and every port still gets its one answer
    (retries=0, so a try used by EMFILE would show as a wrong status)."""
    closed = free_ports(20)
    plan = Plan(TargetSet(["127.0.0.1"]), blackholes.ports + closed, seed=None)
    results = []
    tm = timing.Timing("t", len(plan.ports), None, 0.3, 0)
    if engine == "compiled":
        scanner = scan_engine.ConnectScanner(plan, tm, results.append)
    else:
        scanner = scan_engine.Scanner(plan, tm, results.append)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # room for three probes at a time (the kernel made all its fds,
    # signal pipe included, when the scanner was constructed)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit_leaving(3), hard))
    try:
        scanner.run()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    answers = {r["port"]: (r["state"], r["status"]) for r in results}
    assert len(results) == len(plan.ports) == len(answers)
    for p in blackholes.ports:
        assert answers[p] == ("filtered", "connection-timeout")
    for p in closed:
        assert answers[p] == ("closed", "connection-refused")
    launched = scanner.core.launched if engine == "compiled" else scanner.launched
    assert launched > len(plan.ports)       # EMFILE happened and was retried
    if engine == "compiled":
        assert scanner.core.n_retried == 0  # ... without counting as a try


def test_rate_is_an_upper_bound(listeners):
    rate = 400.0
    k = Kernel()
    seen = []
    ports = free_ports(60)
    plan = Plan(TargetSet(["127.0.0.1"]), ports, seed=None)
    scanner = scan_engine.ConnectScanner(plan, timing.Timing("t", 100, rate, 1.0, 0),
                                         lambda r: seen.append((k.time(), scanner.core.launched)),
                                         kernel=k)
    t0 = k.time()
    scanner.run()
    assert len(seen) == len(ports)
    for now, launched in seen:
        assert launched <= (now - t0) * rate + 1 + 1e-9


def test_exception_in_a_callback_is_contained(listeners):
    k = Kernel()
    caught = []
    k.set_exception_handler(lambda kernel, ctx: caught.append(ctx["exception"]))
    results = []

    def on_result(rec):
        results.append(rec)
        if len(results) == 1:
            raise RuntimeError("user code broke")

    closed = free_ports(10)
    plan = Plan(TargetSet(["127.0.0.1"]), listeners + closed, seed=1)
    scan_engine.ConnectScanner(plan, timing.Timing("t", 100, None, 1.0, 0), on_result,
                               kernel=k).run()
    assert len(results) == len(plan.ports)
    assert len(caught) == 1 and isinstance(caught[0], RuntimeError)


def test_shutdown_lets_probes_in_flight_end(blackholes):
    k = Kernel()
    before = open_fds()
    ports = blackholes.ports + free_ports(30)
    plan = Plan(TargetSet(["127.0.0.1"]), ports, seed=None)
    results = []
    # 50 probes a second: at the shutdown the blackholed ones are in flight,
    # the closed ones partly answered, partly not launched
    scanner = scan_engine.ConnectScanner(plan, timing.Timing("t", 100, 50.0, 1.0, 2),
                                         results.append, kernel=k)
    k.delay(0.3, scanner.shutdown)
    info = scanner.run()
    assert info["interrupted"]
    assert scanner.core.finished and scanner.core.inflight == 0
    found = {r["port"]: (r["state"], r["status"]) for r in results}
    pending = scanner.core.pending()
    assert len(found) == len(results) == scanner.core.launched - len(pending) < len(ports)
    # the blackholed ones timed out with retries left: not reported, not
    # tried again, kept (with their try counted) for a resumed scan
    assert sorted(plan.ports[i] for i, _ in pending) == sorted(blackholes.ports)
    assert {tries for _, tries in pending} == {1}
    assert not set(found) & set(blackholes.ports)
    assert info["position"] == scanner.core.position
    assert sorted(info["pending"]) == sorted(pending)
    del scanner
    assert open_fds() == before


def test_stop_at_once_drops_probes_in_flight(blackholes):
    k = Kernel()
    before = open_fds()
    ports = blackholes.ports + free_ports(30)
    results = []
    walk = _scan.ScanOrder(len(ports), 1, 0)
    core = _scan.ConnectScan(k, walk, ports, lambda t: ("127.0.0.1", 4),
                             lambda i, *rest: results.append(ports[i]),
                             concurrency=100, rate=50.0, timeout=60.0)
    k.delay(0, core.start)
    k.delay(0.3, core.stop, True)
    k.run()     # returns long before the 60 s timeouts
    assert core.finished and core.inflight == 0
    assert results and set(results) <= set(ports[len(blackholes.ports):])
    # what was in flight is kept, unreported: with the results and the
    # order from `position` on, it is the whole scan, once
    left = [ports[i] for i, _ in core.pending()]
    assert set(blackholes.ports) <= set(left)
    rest = [ports[i] for i in walk]
    assert sorted(results + left + rest) == sorted(ports)
    del core
    assert open_fds() == before


def test_poll_kernel(listeners):
    k = Kernel(backend="poll")
    results, _ = run_scan(listeners + free_ports(5), "compiled", kernel=k)
    assert sorted(r["port"] for r in results if r["state"] == "open") == listeners
    assert len(results) == 8


def test_no_fd_left_behind(listeners):
    k = Kernel()
    before = open_fds()
    results, _ = run_scan(listeners + free_ports(200), "compiled", concurrency=50, kernel=k)
    assert len(results) == 203
    assert open_fds() == before


@pytest.mark.parametrize("shards,workers", [(1, 2), (1, 5), (3, 2), (2, 4)])
def test_worker_shares_partition_the_plan(shards, workers):
    for shard in range(shards):
        plan = Plan(TargetSet(["127.0.0.1", "127.0.0.2"]), range(1, 300), seed=8,
                    shards=shards, shard=shard)
        tm = timing.Timing("t", 101, 1000.0, 1.0, 0)
        parts = [scan_engine.worker_share(plan, tm, workers, w) for w in range(workers)]
        got = sorted(i for sub, _ in parts for i in sub.indices())
        assert got == sorted(plan.indices())
        assert sum(t.concurrency for _, t in parts) == 101
        assert sum(t.rate for _, t in parts) == pytest.approx(1000.0)


def test_a_failed_worker_is_reported(monkeypatch, listeners):
    """A worker that dies leaves its share undone; the others' results
    still come back and the failure is counted."""
    real_scan = scan_engine.scan

    def scan_or_die(plan, *a, **kw):
        if plan.shard == 1:
            raise RuntimeError("worker 1 broke")
        return real_scan(plan, *a, **kw)

    monkeypatch.setattr(scan_engine, "scan", scan_or_die)   # inherited by the fork
    ports = listeners + free_ports(30)
    plan = Plan(TargetSet(["127.0.0.1"]), ports, seed=3)
    results = []
    info = scan_engine.scan_workers(plan, timing.Timing("t", 20, None, 2.0, 0), 2,
                                    results.append)
    assert info["failed"] == 1 and info["workers"] == 2
    share0, _ = scan_engine.worker_share(plan, timing.Timing("t", 20, None, 2.0, 0), 2, 0)
    expected = {ports[i] for i in share0.indices()}
    assert {r["port"] for r in results} == expected and len(results) == len(expected)


def test_unknown_engine_is_refused():
    plan = Plan(TargetSet(["127.0.0.1"]), [1], seed=None)
    with pytest.raises(ValueError, match="engine must be"):
        scan_engine.scan(plan, timing.resolve(4), lambda r: None, engine="fast")


# -- banners: the compiled scan hands open sockets to TCPMulti -------------------------

class BannerServers:
    """Listeners on 127.0.0.1, served by one thread: ``greet`` says a line
    and closes, ``big`` sends 50,000 bytes and closes, ``echo`` upper-cases
    what it gets, ``silent`` accepts and says nothing.  Counts the
    connections open at once (``peak``) across all of them."""

    def __init__(self, silent=1):
        import selectors
        self.sel = selectors.DefaultSelector()
        self.kind = {}
        self.ports = {}
        for kind, n in (("greet", 1), ("big", 1), ("echo", 1), ("silent", silent)):
            for _ in range(n):
                lsn = socket.socket()
                lsn.bind(("127.0.0.1", 0))
                lsn.listen(64)
                lsn.setblocking(False)
                self.sel.register(lsn, selectors.EVENT_READ, ("listen", kind))
                self.ports.setdefault(kind, []).append(lsn.getsockname()[1])
        self.open_now = 0
        self.peak = 0
        self.accepted = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import selectors
        while not self.stop:
            for key, _ in self.sel.select(0.05):
                role, kind = key.data
                if role == "listen":
                    try:
                        c, _ = key.fileobj.accept()
                    except OSError:
                        continue
                    self.accepted += 1
                    self.open_now += 1
                    self.peak = max(self.peak, self.open_now)
                    if kind == "greet":
                        c.sendall(b"SSH-2.0-cypoe-test\r\n")
                    elif kind == "big":
                        c.setblocking(True)
                        c.sendall(b"z" * 50000)
                    if kind in ("greet", "big"):
                        c.close()
                        self.open_now -= 1
                        continue
                    c.setblocking(False)
                    self.sel.register(c, selectors.EVENT_READ, ("conn", kind))
                else:
                    try:
                        data = key.fileobj.recv(4096)
                    except OSError:
                        data = b""
                    if data and kind == "echo":
                        key.fileobj.sendall(data.upper())
                    elif not data:
                        self.sel.unregister(key.fileobj)
                        key.fileobj.close()
                        self.open_now -= 1

    def wait_idle(self, timeout=10.0):
        """Until the server side has closed every connection (its sockets
        are this process's descriptors too)."""
        deadline = time.monotonic() + timeout
        while self.open_now and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.open_now == 0

    def close(self):
        self.stop = True
        self.thread.join(5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


@pytest.fixture
def banner_servers():
    b = BannerServers(silent=8)
    yield b
    b.close()


def banner_scan(ports, engine, *, concurrency=100, read_timeout=0.5, probes=None, kernel=None,
                on_other=None, max_read=1000):
    plan = Plan(TargetSet(["127.0.0.1"]), ports, seed=2, probes=probes or {})
    results = []
    info = scan_engine.scan(plan, timing.Timing("t", concurrency, None, 2.0, 0), results.append,
                            engine=engine, banners=True, max_read=max_read,
                            read_timeout=read_timeout, on_other=on_other, kernel=kernel)
    return results, info


@pytest.mark.parametrize("engine", ENGINES)
def test_banners_on_the_scan_connection(banner_servers, engine):
    srv = banner_servers
    closed = free_ports(40)
    greet, big, echo = srv.ports["greet"][0], srv.ports["big"][0], srv.ports["echo"][0]
    silent = srv.ports["silent"][:1]
    ports = closed + [greet, big, echo] + silent
    results, info = banner_scan(ports, engine, probes={echo: b"hello\n"})
    found = {p: r for (_, p), r in by_port(results).items()}
    assert set(found) == set(ports) and not info["interrupted"]
    assert found[greet]["state"] == "open" and found[greet]["status"] == "success"
    assert found[greet]["banner"] == "SSH-2.0-cypoe-test\r\n"
    assert found[big]["banner"] == "z" * 1000 and found[big]["banner_truncated"] is True
    assert found[echo]["banner"] == "HELLO\n"
    assert (found[silent[0]]["state"], found[silent[0]]["status"]) == ("open", "io-timeout")
    for p in closed:
        assert (found[p]["state"], found[p]["status"]) == ("closed", "connection-refused")
    # one connection per open port: the banner is read on the scan's own
    assert srv.accepted == 4


def test_banner_engines_agree(banner_servers):
    srv = banner_servers
    ports = free_ports(30) + srv.ports["greet"] + srv.ports["echo"] + srv.ports["silent"][:2]
    answers = {}
    for engine in ENGINES:
        results, _ = banner_scan(ports, engine, read_timeout=0.3)
        answers[engine] = {r["port"]: (r["state"], r["status"], r.get("banner"))
                           for r in results}
    assert answers["compiled"] == answers["tcpmulti"]
    assert len(answers["compiled"]) == len(ports)


def test_banner_reads_hold_places_in_the_concurrency(banner_servers):
    """An open port keeps its place until its banner is read: with a quick
    banner first, then 8 silent ports, and a concurrency of 3, the servers
    never see more than 3 connections at once, and every place comes back
    at the end."""
    srv = banner_servers
    k = Kernel()
    before = open_fds()
    ports = srv.ports["greet"] + srv.ports["silent"]
    plan = Plan(TargetSet(["127.0.0.1"]), ports, seed=None)
    results = []
    scanner = scan_engine.BannerScanner(plan, timing.Timing("t", 3, None, 2.0, 0),
                                        results.append, banners=True, read_timeout=0.5,
                                        kernel=k)
    scanner.run()
    assert len(results) == len(ports)
    assert sum(r["state"] == "open" for r in results) == 9
    assert 2 <= srv.peak <= 3
    assert scanner.core.held == 0 and scanner.core.inflight == 0 and scanner.inflight == 0
    del scanner
    assert srv.wait_idle() and open_fds() == before


def test_banner_scan_counts_closed_ports(banner_servers):
    srv = banner_servers
    closed = free_ports(25)
    counted = {}

    def on_other(state, n):
        counted[state] = counted.get(state, 0) + n

    results, _ = banner_scan(closed + srv.ports["greet"], "compiled", on_other=on_other)
    assert [r["port"] for r in results] == srv.ports["greet"]
    assert results[0]["banner"] == "SSH-2.0-cypoe-test\r\n"
    assert counted == {"closed": 25}


def test_banner_scan_shutdown_ends_reads_in_flight(banner_servers):
    """Ctrl-C: no new probes; banner reads in flight end at once with what
    they have; every port launched has its one record."""
    srv = banner_servers
    k = Kernel()
    before = open_fds()
    ports = srv.ports["silent"] + free_ports(200)
    plan = Plan(TargetSet(["127.0.0.1"]), ports, seed=None)
    results = []
    scanner = scan_engine.BannerScanner(plan, timing.Timing("t", 100, 100.0, 2.0, 0),
                                        results.append, banners=True, read_timeout=30.0,
                                        kernel=k)
    k.delay(0.3, scanner.shutdown)
    info = scanner.run()
    assert info["interrupted"]
    found = {r["port"]: r for r in results}
    assert len(found) == len(results) == scanner.core.launched < len(ports)
    for p in srv.ports["silent"]:           # launched first (sequential order)
        # ended by the shutdown with nothing read, not by the 30 s read timeout
        assert (found[p]["state"], found[p]["status"]) == ("open", "connection-closed")
    assert scanner.core.held == 0
    del scanner
    assert srv.wait_idle() and open_fds() == before


def test_open_socket_not_taken_is_still_reported(listeners):
    """If the receiver of an open socket fails, the socket is closed and the
    port reported open as it would be without a receiver."""
    k = Kernel()
    caught = []
    k.set_exception_handler(lambda kernel, ctx: caught.append(ctx["exception"]))
    before = open_fds()
    ports = listeners + free_ports(5)
    results = []

    def on_open(index, fd, rtt):
        raise RuntimeError("no room")

    walk = _scan.ScanOrder(len(ports), 1, 0)
    core = _scan.ConnectScan(k, walk, ports, lambda t: ("127.0.0.1", 4),
                             lambda i, state, status, rtt, err: results.append(
                                 (ports[i], state, err)),
                             concurrency=10, timeout=2.0, on_open=on_open)
    k.delay(0, core.start)
    k.run()
    opened = {p: err for p, state, err in results if state == _scan.OPEN}
    assert set(opened) == set(listeners)
    assert all("no room" in err for err in opened.values())
    assert len(caught) == len(listeners) and core.held == 0
    with pytest.raises(Exception, match="release"):
        core.release()
    del core
    assert open_fds() == before


SELF_CONNECT = textwrap.dedent("""
    import fcntl, json, socket, struct, sys
    # bring lo up in this new network namespace (SIOCGIFFLAGS / SIOCSIFFLAGS)
    s = socket.socket()
    ifr = struct.pack("16sh", b"lo", 0)
    flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, ifr))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", flags | 1))
    # one ephemeral port: a connect to it from here is a TCP self-connect
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as fh:
        fh.write("31000 31000")
    from cypoe.cli import scan_engine, timing
    from cypoe.cli.scan import Plan
    from cypoe.cli.targets import TargetSet
    res = []
    scan_engine.scan(Plan(TargetSet(["127.0.0.1"]), [31000], seed=None),
                     timing.Timing("t", 10, None, 2.0, 0), res.append, engine=sys.argv[1])
    print(json.dumps(res))
""")


@pytest.mark.parametrize("engine", ENGINES)
def test_self_connect_is_never_open(engine):
    """In a network namespace of our own whose only ephemeral port is 31000,
    scanning 127.0.0.1:31000 connects the socket to itself."""
    import json
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("needs unshare -n (a network namespace of our own)")
    proc = subprocess.run([unshare, "-n", sys.executable, "-c", SELF_CONNECT, engine], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    [rec] = json.loads(proc.stdout)
    assert (rec["state"], rec["status"], rec["error"]) == \
        ("closed", "connection-refused", "self-connect"), rec
