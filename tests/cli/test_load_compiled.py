"""The compiled load engine (cypoe._load): its histogram is HdrHistogram's
layout, worker histograms merge exactly, and the protocols end to end
(cypoe serve, redis-server when installed, a tiny HTTP server)."""
import contextlib
import gc
import http.server
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest
from hdrh.histogram import HdrHistogram

from cypoe.cli import load_compiled, report

from .conftest import free_ports, recv_until_eof, run_cli, serving

from cypoe import _load  # noqa: E402 - built with the rest (setup.py MODULES)


def _values(n, seed):
    rnd = random.Random(seed)
    out = [rnd.choice([1, 2, 999, 1000, 1023, 1024, 2047, 2048, 2049, 10**6, 3600 * 10**6])
           for _ in range(50)]
    out += [int(rnd.lognormvariate(5, 2)) + 1 for _ in range(n)]
    return [min(v, 3600 * 10**6) for v in out]


# -- the histogram ---------------------------------------------------------------------

def test_c_counts_are_hdrh_counts():
    values = _values(5000, 1)
    c = _load.Hist()
    c.record_values(values)
    ref = report.new_histogram()
    for v in values:
        ref.record_value(v)
    assert c.counts_len == ref.counts_len
    assert c.counts_array() == list(ref.counts)          # bucket layout identity
    h = report.new_histogram()
    c.add_to(h)
    assert list(h.counts) == list(ref.counts)
    assert h.get_total_count() == ref.get_total_count() == len(values)
    assert (h.get_min_value(), h.get_max_value()) == (ref.get_min_value(), ref.get_max_value())
    for p in (50, 90, 99, 99.9, 99.99, 100):
        assert h.get_value_at_percentile(p) == ref.get_value_at_percentile(p)
    assert c.total == 0                                   # add_to resets


def test_out_of_range_values_are_clamped_like_clamp_us():
    c = _load.Hist()
    c.record_values([0, -5, 3600 * 10**6 + 1])
    h = report.new_histogram()
    for s in (0.0, -5e-6, 3601.0):
        h.record_value(report.clamp_us(s))
    assert c.counts_array() == list(h.counts)


def test_two_workers_merge_to_one_histogram():
    values = _values(4000, 2)
    a, b = _load.Hist(), _load.Hist()
    a.record_values(values[::2])
    b.record_values(values[1::2])
    # each worker encodes its histogram (HdrHistogram's compressed base64)
    wires = []
    for part in (a, b):
        s = load_compiled.new_stats()
        part.add_to(s.hist)
        s.responses = s.requests = s.hist.get_total_count()
        wires.append(json.loads(json.dumps(load_compiled.stats_to_msg(s))))
    total = load_compiled.new_stats()
    for w in wires:
        load_compiled.merge_into(total, load_compiled.stats_from_msg(w))
    one = HdrHistogram(1, 3600 * 10**6, 3)
    for v in values:
        one.record_value(v)
    assert list(total.hist.counts) == list(one.counts)
    assert total.hist.get_total_count() == len(values) == total.responses
    for p in (50, 75, 90, 99, 99.9, 99.99):
        assert total.hist.get_value_at_percentile(p) == one.get_value_at_percentile(p)


# -- end to end ------------------------------------------------------------------------

def _load_json(tmp_path, *args, rc=0):
    out = tmp_path / "load.json"
    proc = run_cli("load", "-q", "--engine", "compiled", "--json", out, *args, timeout=120,
                   check_rc=rc)
    return json.loads(out.read_text()), proc


def _adds_up(d, clean=True):
    assert d["engine"] == "compiled"
    assert d["requests"] == d["responses"] + d["failed"] + d["in_flight"]
    assert d["latency_ms"]["count"] == d["responses"]
    if clean:
        assert d["responses"] > 0 and d["failed"] == 0 and d["in_flight"] == 0
        assert d["errors"] == {}


def test_closed_loop_pipelined_against_serve_echo(tmp_path):
    with serving("echo", "--filter", "stream") as srv:
        d, _ = _load_json(tmp_path, f"127.0.0.1:{srv.port}", "-d", "1", "-c", "3", "-P", "16",
                          "--size", "300")
    _adds_up(d)
    assert d["bytes_received"] == d["bytes_sent"] == d["requests"] * 300


def test_messages_in_turn(tmp_path):
    msgs = tmp_path / "msgs.txt"
    msgs.write_text("one\nthree33\n\nfive55555\n")
    with serving("echo", "--filter", "line") as srv:
        d, _ = _load_json(tmp_path, f"127.0.0.1:{srv.port}", "-n", "3000", "-d", "60", "-c", "2",
                          "--messages", msgs)
    _adds_up(d)
    assert d["requests"] == 3000 and d["messages"] == 3
    assert d["bytes_received"] == d["bytes_sent"]
    assert 3000 * 5 < d["bytes_sent"] < 3000 * 11


def test_open_loop_against_serve_pong(tmp_path):
    with serving("pong") as srv:
        d, _ = _load_json(tmp_path, f"127.0.0.1:{srv.port}", "-d", "1", "-c", "4", "-R", "400",
                          "--expect", "line")
    _adds_up(d)
    assert d["requests"] <= 400 + 4          # never more than the schedule
    assert d["latency_uncorrected_ms"]["p50"] is not None


@pytest.mark.parametrize("proto, saw, suggests", [
    ("pong", "+PONG", "--expect redis"),           # pong answers in RESP
    ("upper", "HELLO", "--expect line"),
])
def test_mismatch_says_what_it_saw(tmp_path, proto, saw, suggests):
    with serving(proto, "--filter", "line") as srv:
        d, proc = _load_json(tmp_path, f"127.0.0.1:{srv.port}", "-d", "0.5", "-c", "2",
                             "-m", "hello", rc=1)
    _adds_up(d, clean=False)
    assert d["responses"] == 0 and d["failed"] > 0
    assert saw in proc.stderr and suggests in proc.stderr


@pytest.fixture
def redis_port():
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (apt install redis-server)")
    [port] = free_ports(1)
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                assert proc.poll() is None, "redis-server exited"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_closed_and_open_loop(tmp_path, redis_port):
    d, _ = _load_json(tmp_path, f"127.0.0.1:{redis_port}", "-m", "PING", "-m", "SET k v",
                      "-m", "LRANGE nolist 0 10", "-m", "GET k", "--expect", "redis",
                      "-d", "1", "-c", "4", "-P", "8")
    _adds_up(d)
    d, _ = _load_json(tmp_path, f"127.0.0.1:{redis_port}", "-m", "PING", "--expect", "redis",
                      "-d", "1", "-c", "2", "-R", "500")
    _adds_up(d)


def test_redis_error_replies_and_wrong_expect(tmp_path, redis_port):
    d, proc = _load_json(tmp_path, f"127.0.0.1:{redis_port}", "-m", "NOSUCHCOMMAND",
                         "--expect", "redis", "-d", "0.5", "-c", "2", rc=1)
    _adds_up(d, clean=False)
    assert d["errors"]["redis:ERR"] == d["failed"] > 0
    assert "-ERR" in proc.stderr
    d, proc = _load_json(tmp_path, f"127.0.0.1:{redis_port}", "-m", "PING", "-d", "0.5",
                         "-c", "2", rc=1)
    assert d["responses"] == 0
    assert "+PONG" in proc.stderr and "--expect redis" in proc.stderr


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = b"hello from " + self.path.encode()
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 4):
                part = body[i:i + 4]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
            return
        self.send_response(404 if self.path.startswith("/missing") else 200)
        self.send_header("Content-Length", str(len(body)))
        if self.path.startswith("/close"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


@contextlib.contextmanager
def http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("path", ["/length", "/chunked", "/close", "/missing"])
def test_http(tmp_path, path):
    with http_server() as port:
        d, proc = _load_json(tmp_path, f"http://127.0.0.1:{port}{path}", "-d", "1", "-c", "2",
                             "-H", "X-Test: 1")
    _adds_up(d)
    assert d["expect"] == "http"
    assert d["status_classes"] == {("4xx" if path == "/missing" else "2xx"): d["responses"]}
    if path == "/close":
        assert d["connections"]["opened"] > 2        # reconnected after each response


def test_http_post_with_body_and_pipeline(tmp_path):
    class Echo(_Handler):
        def do_POST(self):
            n = int(self.headers["Content-Length"])
            body = self.rfile.read(n)
            self.send_response(201)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        d, _ = _load_json(tmp_path, f"http://127.0.0.1:{srv.server_address[1]}/p", "-n", "200",
                          "-d", "60", "-c", "2", "-P", "4", "--method", "POST", "--body", "abc")
    finally:
        srv.shutdown()
        srv.server_close()
    _adds_up(d)
    assert d["requests"] == 200 and d["status_classes"] == {"2xx": 200}


def test_workers_end_to_end(tmp_path):
    with serving("echo", "--filter", "stream") as srv:
        d, _ = _load_json(tmp_path, f"127.0.0.1:{srv.port}", "-d", "1", "-c", "4", "-t", "2",
                          "-P", "4")
    _adds_up(d)
    assert d["workers"] == 2 and d["connections"]["opened"] == 4


def test_refused_connections_are_counted(tmp_path):
    [port] = free_ports(1)
    d, _ = _load_json(tmp_path, f"127.0.0.1:{port}", "-d", "0.5", "-c", "2", rc=1)
    assert d["responses"] == 0 and d["requests"] == 0
    assert d["errors"]["connect:ECONNREFUSED"] >= 2


# -- prepare(): connections open before the start, nothing sent ---------------------------

@pytest.fixture
def collect_cycles():
    yield
    # the test's Kernel and engine wait in reference cycles: free their
    # descriptors now, not during a later test that counts descriptors
    gc.collect()


def _engine(port, **kw):
    import cypoe
    k = cypoe.Kernel()
    kw.setdefault("connections", 3)
    kw.setdefault("duration", 0.5)
    kw.setdefault("timeout", 2.0)
    return k, _load.LoadEngine(k, "127.0.0.1", port, [b"x" * 50], **kw)


def _held_conns(port, n):
    """A listener that only accepts: what the engine sent can be read back."""
    lst = socket.create_server(("127.0.0.1", port or 0), backlog=n + 4)
    lst.settimeout(10)
    return lst


@pytest.mark.parametrize("rate", [0.0, 200.0], ids=["closed", "open"])
@pytest.mark.usefixtures("collect_cycles")
def test_prepare_opens_every_connection_and_sends_nothing(rate):
    lst = _held_conns(0, 3)
    try:
        k, e = _engine(lst.getsockname()[1], rate=rate, pipeline=2, expect="any")
        assert e.prepare(10.0) == 3
        assert e.prepared and e.holding and not e.started
        assert e.connections_opened == 3 and e.conns_up == 3 and e.connections_failed == 0
        assert e.requests == 0 and e.bytes_sent == 0 and e.in_flight == 0
        peers = [lst.accept()[0] for _ in range(3)]     # the server side has them all
        for p in peers:
            p.setblocking(False)
            with pytest.raises(BlockingIOError):        # and has received nothing
                p.recv(1)
        e.start()
        assert not e.holding
        k.run()                                         # nobody answers: in flight at the end
        assert e.finished and e.requests > 0 and e.connections_opened == 3
        assert e.requests == e.responses + e.failed + e.in_flight
        got = 0
        for p in peers:
            p.settimeout(10)
            got += len(recv_until_eof(p))
            p.close()
        assert got == e.bytes_sent == e.requests * 50
    finally:
        lst.close()


@pytest.mark.parametrize("rate", [0.0, 300.0], ids=["closed", "open"])
@pytest.mark.usefixtures("collect_cycles")
def test_prepared_run_against_serve_echo(rate):
    with serving("echo", "--filter", "stream") as srv:
        k, e = _engine(srv.port, rate=rate, pipeline=4)
        assert e.prepare(10.0) == 3
        assert e.connections_opened == 3 and e.requests == 0 and e.bytes_received == 0
        e.start()
        k.run()
    assert e.finished and e.responses > 0 and e.failed == 0 and e.mismatches == 0
    assert e.requests == e.responses + e.failed + e.in_flight
    assert e.connections_opened == 3 and e.all_errors() == {}
    assert e.bytes_received == e.responses * 50


@pytest.mark.usefixtures("collect_cycles")
def test_prepare_against_a_refused_port_retries_and_does_not_crash():
    [port] = free_ports(1)
    k, e = _engine(port, connections=2, duration=0.3)
    assert e.prepare(0.3) == 0
    assert e.conns_up == 0 and e.connections_opened == 0 and e.requests == 0
    assert e.connections_failed >= 2 and e.errors["connect:ECONNREFUSED"] >= 2
    assert e.failed_for_good == 0                     # refused: retried, not given up
    e.start()
    k.run()
    assert e.finished and e.requests == 0 and e.responses == 0


@pytest.mark.usefixtures("collect_cycles")
def test_prepare_once_and_before_start():
    [port] = free_ports(1)
    k, e = _engine(port, connections=1)
    e.prepare(0.0)
    with pytest.raises(RuntimeError):
        e.prepare(0.0)
    e.start()
    with pytest.raises(RuntimeError):
        e.prepare(0.0)
    e.shutdown()
