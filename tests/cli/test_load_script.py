"""cypoe load --script: a conversation written in Python, end to end
against ``cypoe serve`` (and redis-server when it is installed)."""
import shutil
import socket
import subprocess
import textwrap
import time

import pytest

from cypoe.cli import common, load, load_script, report

from .conftest import free_ports, serving

EXAMPLE = __file__.rsplit("/tests/", 1)[0] + "/docs/examples/load_scenario.py"


def _cfg(port, script, **kw):
    cfg = load.Config("127.0.0.1", port, kw.pop("connections", 3), kw.pop("duration", 1.0),
                      kw.pop("pipeline", 1), b"", "line", rate=kw.pop("rate", None),
                      requests=kw.pop("requests", None), timeout=kw.pop("timeout", 5.0))
    cfg.script = str(script)
    assert not kw
    return cfg


def _write(tmp_path, body, name="scenario.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


class Live:
    def __init__(self):
        self.snaps = []

    def add(self, snap, who=0):
        self.snaps.append(snap)

    def emit(self):
        pass


# A two-step protocol over a line echo server: HELLO first (answered by its
# echo), then numbered lines, each echo checked.
LOGIN_ECHO = """
    import cypoe

    class Scenario:
        filter = cypoe.Line()
        handshake = True

        def on_connect(self, conn):
            self.n = 0
            conn.send(b"HELLO cypoe")

        def on_input(self, conn, line):
            if not conn.is_ready:
                assert line == b"HELLO cypoe"
                conn.ready()
                self.next(conn)
                return
            if line == self.expect:
                conn.response()
            else:
                conn.fail()
            self.next(conn)

        def next(self, conn):
            if conn.request():
                self.n += 1
                self.expect = b"line %d" % self.n
                conn.send(self.expect)
"""


def _adds_up(s, connections):
    assert s.requests > 0 and s.responses > 0
    assert s.requests == s.responses + s.request_errors + s.in_flight
    assert s.connections_opened == connections and s.connections_failed == 0
    assert s.hist.get_total_count() == s.responses


def test_closed_loop_conversation_against_cypoe_serve(tmp_path):
    script = _write(tmp_path, LOGIN_ECHO)
    live = Live()
    with serving("echo", "--filter", "line") as srv:
        stats = load_script.run_script(_cfg(srv.port, script, duration=1.5), live)
    _adds_up(stats, 3)
    assert stats.errors == {}
    assert stats.bytes_received == stats.bytes_sent      # an echo: every byte came back
    assert stats.history and sum(e["responses"] for e in stats.history) == stats.responses
    assert live.snaps and all("hist" in s for s in live.snaps)
    d = stats.summary(target="t", concurrency=3)
    assert d["client_cpu"] is not None
    text = report.format_report(d)
    assert "responses" in text and "client CPU" in text


def test_open_loop_with_on_request(tmp_path):
    script = _write(tmp_path, """
        import cypoe

        class Scenario:
            filter = cypoe.Line()

            def on_connect(self, conn):
                pass

            def on_request(self, conn):
                if conn.request():
                    conn.send(b"ping")

            def on_input(self, conn, line):
                conn.response()
    """)
    with serving("echo", "--filter", "line") as srv:
        stats = load_script.run_script(_cfg(srv.port, script, connections=2, rate=200,
                                            duration=1.0, pipeline=4), None)
    _adds_up(stats, 2)
    assert stats.requests <= 200 + 2        # never more than the schedule allows
    assert stats.hist_raw.get_total_count() == stats.responses   # uncorrected beside
    d = stats.summary(rate=200)
    assert d["latency_uncorrected_ms"]["count"] == stats.responses


def test_request_limit_is_exact(tmp_path):
    script = _write(tmp_path, LOGIN_ECHO)
    with serving("echo", "--filter", "line") as srv:
        stats = load_script.run_script(_cfg(srv.port, script, duration=30, requests=500), None)
    assert stats.requests == 500
    _adds_up(stats, 3)


def test_wrong_answers_and_script_exceptions_are_errors_not_crashes(tmp_path, capsys):
    script = _write(tmp_path, """
        import cypoe

        class Scenario:
            filter = cypoe.Line()

            def on_connect(self, conn):
                self.k = 0
                self.send(conn)

            def send(self, conn):
                if conn.request():
                    self.k += 1
                    conn.send(b"x%d" % self.k)

            def on_input(self, conn, line):
                if self.k == 3:
                    raise RuntimeError("scenario bug")
                if self.k % 2:
                    conn.fail()          # counted as a mismatch
                else:
                    conn.response()
                self.send(conn)
    """)
    with serving("echo", "--filter", "line") as srv:
        stats = load_script.run_script(_cfg(srv.port, script, connections=2, duration=1.0),
                                       None)
    assert stats.errors.get("script:RuntimeError", 0) >= 2     # each connection, again
    assert stats.errors.get("mismatch", 0) >= 2
    assert stats.requests == stats.responses + stats.request_errors + stats.in_flight
    err = capsys.readouterr().err
    assert err.count("RuntimeError: scenario bug") == 1         # the traceback once


def test_refused_connections_are_counted(tmp_path):
    script = _write(tmp_path, LOGIN_ECHO)
    (port,) = free_ports(1)
    stats = load_script.run_script(_cfg(port, script, connections=2, duration=0.5), None)
    assert stats.requests == 0 and stats.connections_opened == 0
    assert stats.errors.get("connect:ECONNREFUSED", 0) >= 2


def test_bad_scenario_files(tmp_path):
    assert issubclass(load_script.ScriptError, common.Unavailable)   # one-line CLI error
    with pytest.raises(load_script.ScriptError, match="no such file"):
        load_script.load_scenario(str(tmp_path / "missing.py"))
    p = _write(tmp_path, "x = (\n", "syntax.py")
    with pytest.raises(load_script.ScriptError, match="SyntaxError"):
        load_script.load_scenario(str(p))
    p = _write(tmp_path, "class A: pass\n", "noclass.py")
    with pytest.raises(load_script.ScriptError, match="Scenario"):
        load_script.load_scenario(str(p))
    p = _write(tmp_path, "class Other:\n    def on_input(self, c, r): pass\n", "other.py")
    assert load_script.load_scenario(str(p)).__name__ == "Other"
    p = _write(tmp_path, "class Scenario:\n    def on_input(self, c, r): pass\n", "norate.py")
    with pytest.raises(load_script.ScriptError, match="on_request"):
        load_script.run_script(_cfg(1, p, rate=10), None)


def _redis_server():
    exe = shutil.which("redis-server")
    if exe is None:
        return None
    (port,) = free_ports(1)
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    return None


def test_the_example_scenario_against_redis():
    started = _redis_server()
    if started is None:
        pytest.skip("redis-server is not installed (the example scenario needs it)")
    proc, port = started
    try:
        stats = load_script.run_script(_cfg(port, EXAMPLE, connections=4, duration=1.0), None)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    _adds_up(stats, 4)
    assert stats.errors == {}


def test_script_worker_writes_the_pipe_protocol(tmp_path):
    import json
    import os
    script = _write(tmp_path, LOGIN_ECHO)
    r, w = os.pipe()
    with serving("echo", "--filter", "line") as srv:
        rc = load_script.script_worker_main(_cfg(srv.port, script, duration=1.2), w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    msgs = [json.loads(line) for line in data.splitlines()]
    assert rc == 0 and msgs[-1]["type"] == "done"
    assert any(m["type"] == "tick" for m in msgs[:-1])
    stats = report.LoadStats.from_dict(msgs[-1]["stats"])
    _adds_up(stats, 3)
