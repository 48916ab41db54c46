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
