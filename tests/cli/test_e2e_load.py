"""cypoe load, end to end on loopback: the figures add up."""
import json

from .conftest import free_ports, run_cli, serving


def _load(tmp_path, *args, rc=0):
    out = tmp_path / "load.json"
    proc = run_cli("load", "-q", "--json", out, *args, timeout=120, check_rc=rc)
    return json.loads(out.read_text()), proc


def _adds_up(d, connections):
    assert d["requests"] > 0
    assert d["requests"] == d["responses"]
    assert d["errors"] == {} and d["error_total"] == 0
    assert d["connections"]["opened"] == connections and d["connections"]["failed"] == 0
    assert d["bytes_sent"] == d["requests"] * d["message_bytes"]
    lat = d["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert lat["count"] == d["responses"]      # every response's latency, once


def test_embedded_echo_server(tmp_path):
    d, proc = _load(tmp_path, "-d", "1", "-c", "4")
    _adds_up(d, 4)
    assert d["bytes_received"] == d["bytes_sent"]
    assert "built-in echo server" in d["target"]
    assert "requests" in proc.stdout and "p99.9" in proc.stdout


def test_pipeline_and_size(tmp_path):
    d, _ = _load(tmp_path, "-d", "1", "-c", "3", "--pipeline", "8", "--size", "200")
    _adds_up(d, 3)
    assert d["message_bytes"] == 200 and d["bytes_received"] == d["bytes_sent"]


def test_request_count_is_exact(tmp_path):
    d, _ = _load(tmp_path, "-d", "60", "-c", "4", "-n", "1000")
    _adds_up(d, 4)
    assert d["requests"] == 1000


def test_rate_is_an_upper_bound(tmp_path):
    d, _ = _load(tmp_path, "-d", "1", "-c", "5", "--rate", "300")
    _adds_up(d, 5)
    assert d["requests"] <= 300 + 5   # never more than the schedule allows
    assert d["rate"] == 300


def test_workers_merge(tmp_path):
    d, _ = _load(tmp_path, "-d", "1", "-c", "6", "--workers", "3", "--connect-rate", "1000")
    _adds_up(d, 6)
    assert d["workers"] == 3


def test_source_addresses(tmp_path):
    d, _ = _load(tmp_path, "-d", "1", "-c", "4", "--source-addresses", "127.0.0.2-127.0.0.3")
    _adds_up(d, 4)


def test_against_cypoe_serve_line_echo(tmp_path):
    with serving("echo", "--filter", "line") as srv:
        d, _ = _load(tmp_path, f"127.0.0.1:{srv.port}", "-d", "1", "-c", "4", "-m", "hello")
    _adds_up(d, 4)
    assert d["bytes_received"] == d["bytes_sent"]


def test_against_cypoe_serve_pong(tmp_path):
    with serving("pong") as srv:
        d, _ = _load(tmp_path, f"127.0.0.1:{srv.port}", "-d", "1", "-c", "4", "--pipeline", "4",
                     "--expect", "line")
    _adds_up(d, 4)


def test_echo_mismatch_is_an_error(tmp_path):
    with serving("upper", "--filter", "stream") as srv:
        d, _ = _load(tmp_path, f"127.0.0.1:{srv.port}", "-d", "1", "-c", "2", "-m", "abc",
                     rc=1)
    assert d["responses"] == 0 and d["errors"].get("mismatch", 0) > 0


def test_refused_target_exits_1(tmp_path):
    [port] = free_ports(1)
    d, proc = _load(tmp_path, f"127.0.0.1:{port}", "-d", "0.5", "-c", "2", rc=1)
    assert d["responses"] == 0
    assert d["errors"].get("connect:ECONNREFUSED", 0) >= 2
    assert "connect:ECONNREFUSED" in proc.stdout


# -- issue 11, items 11, 15, 17 ---------------------------------------------------

import os
import resource
import signal
import socket
import subprocess
import sys

import pytest

from .conftest import ENV

ENGINES = ["compiled", "tcpmulti"]


def _counts_add_up(d):
    assert d["requests"] == d["responses"] + d["failed"] + d["in_flight"]


@pytest.mark.parametrize("engine", ENGINES)
def test_json_to_stdout_is_only_json(engine):
    # item 15: with --json - stdout is the JSON, the human report on stderr
    proc = run_cli("load", "-q", "-d", "0.5", "-c", "2", "--engine", engine, "--json", "-",
                   timeout=120, check_rc=0)
    d = json.loads(proc.stdout)
    assert d["responses"] > 0
    assert "throughput" in proc.stderr


def _silent_listener():
    # accepts (the kernel's backlog does) and never answers
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


@pytest.mark.parametrize("engine, workers", [("compiled", 1), ("tcpmulti", 1), ("compiled", 2)])
def test_interrupt_reports_requests_in_flight(tmp_path, engine, workers):
    # item 17: Ctrl-C reports the requests in flight as such, not as errors
    out = tmp_path / "load.json"
    with _silent_listener() as lst:
        port = lst.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "cypoe", "load", f"127.0.0.1:{port}", "-c", "4", "-P", "2",
             "-d", "60", "--engine", engine, "-t", str(workers), "--json", str(out)],
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stderr.readline()          # the first live line: the run is on
            assert "req/s" in line, line
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    assert rc == 130
    d = json.loads(out.read_text())
    assert d["interrupted"] is True
    assert "timeout:unanswered" not in d["errors"]
    assert d["in_flight"] == 8 and d["requests"] == 8 and d["responses"] == 0
    _counts_add_up(d)


def _nofile(n):
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return limit


def test_out_of_fds_fails_connections_one_by_one(tmp_path):
    # item 11: ulimit -n 200 and -c 400: the excess connections fail with
    # EMFILE, the others run, and the report names the limit
    out = tmp_path / "load.json"
    with serving("echo", "--filter", "stream") as srv:
        proc = subprocess.run(
            [sys.executable, "-m", "cypoe", "load", f"127.0.0.1:{srv.port}", "-q", "-c", "400",
             "-d", "1", "--json", str(out)],
            env=ENV, capture_output=True, text=True, timeout=120, preexec_fn=_nofile(200))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    d = json.loads(out.read_text())
    assert d["responses"] > 0
    emfile = d["errors"].get("socket:EMFILE", 0)
    assert emfile > 0
    assert d["connections"]["opened"] + emfile == 400    # each excess connection fails once
    assert d["limits"]["open_files"] == 200
    assert "open files 200" in proc.stdout
    _counts_add_up(d)


@pytest.mark.parametrize("engine", ENGINES)
def test_unanswered_at_the_end_are_timeouts(tmp_path, engine):
    # the run ends normally: what never came back within --timeout failed
    out = tmp_path / "load.json"
    with _silent_listener() as lst:
        port = lst.getsockname()[1]
        run_cli("load", f"127.0.0.1:{port}", "-q", "-c", "3", "-P", "2", "-d", "0.3",
                "--timeout", "0.3", "--engine", engine, "--json", out, timeout=120, check_rc=1)
    d = json.loads(out.read_text())
    assert d["interrupted"] is False
    assert d["errors"] == {"timeout:unanswered": 6}
    assert d["requests"] == 6 and d["in_flight"] == 0 and d["failed"] == 6
    _counts_add_up(d)
