"""cypoe scan, end to end on 127.0.0.1: exactly the ports the test opened
are found open, the rest closed; banners; shards; every output format."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from cypoe.cli import output

from .conftest import ENV, free_ports, run_cli, serving


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


def _ports_arg(ports):
    return ",".join(map(str, ports))


def _scan(tmp_path, *args, fmt="jsonl", name="out", rc=0):
    out = tmp_path / f"{name}.{fmt}"
    proc = run_cli("scan", "-q", "-o", out, "--format", fmt, *args, timeout=120, check_rc=rc)
    return out.read_text(), proc


def test_finds_exactly_the_open_ports(tmp_path, listeners):
    closed = free_ports(6)
    text, _ = _scan(tmp_path, "127.0.0.1", "-p", _ports_arg(listeners + closed), "--all",
                    "--timeout", "5s")
    recs = output.parse_jsonl(text)
    assert sorted(r["port"] for r in recs) == sorted(listeners + closed)  # each once
    assert sorted(r["port"] for r in recs if r["state"] == "open") == listeners
    assert all(r["status"] == "success" for r in recs if r["state"] == "open")
    assert sorted(r["port"] for r in recs if r["state"] == "closed") == sorted(closed)
    assert all(r["status"] == "connection-refused" for r in recs if r["state"] == "closed")
    assert all(r["ip"] == "127.0.0.1" for r in recs)


def test_default_output_is_open_ports_only(tmp_path, listeners):
    closed = free_ports(4)
    proc = run_cli("scan", "127.0.0.1", "-p", _ports_arg(listeners + closed), timeout=120,
                   check_rc=0)
    recs = output.parse_jsonl(proc.stdout)
    assert sorted(r["port"] for r in recs) == listeners
    assert f"{len(listeners)} open, {len(closed)} closed" in proc.stderr


@pytest.mark.parametrize("fmt", ["csv", "list", "grepable"])
def test_every_format_parses(tmp_path, listeners, fmt):
    closed = free_ports(4)
    text, _ = _scan(tmp_path, "127.0.0.1", "-p", _ports_arg(listeners + closed), "--all",
                    fmt=fmt)
    if fmt == "csv":
        rows = output.parse_csv(text)
        states = {r["port"]: r["state"] for r in rows}
    elif fmt == "list":
        states = {r["port"]: r["state"] for r in output.parse_list(text)}
    else:
        states = output.parse_grepable(text)["127.0.0.1"]
    assert states == {**{p: "open" for p in listeners}, **{p: "closed" for p in closed}}


def test_shards_partition_a_port_range(tmp_path, listeners):
    lo = min(listeners)
    ports = f"{lo}-{lo + 150}"
    seen = []
    opened = set()
    for i in range(3):
        text, _ = _scan(tmp_path, "127.0.0.1", "-p", ports, "--all", "--shards", "3",
                        "--shard", str(i), "--seed", "42", name=f"shard{i}")
        recs = output.parse_jsonl(text)
        seen.extend(r["port"] for r in recs)
        opened.update(r["port"] for r in recs if r["state"] == "open")
    assert sorted(seen) == list(range(lo, lo + 151))   # every port exactly once
    assert set(p for p in listeners if p <= lo + 150) <= opened


def test_banners_probe_and_bounded_read(tmp_path):
    with serving("daytime") as day, serving("upper") as up, \
            serving("chargen", "--filter", "stream") as gen:
        text, _ = _scan(tmp_path, "127.0.0.1", "-p", f"{day.port},{up.port},{gen.port}",
                        "--banners", "--probe", f"{up.port}:hello\\n", "--max-read", "1000",
                        "--read-timeout", "2s")
    recs = {r["port"]: r for r in output.parse_jsonl(text)}
    assert set(recs) == {day.port, up.port, gen.port}
    assert recs[day.port]["status"] == "success"
    assert time.strftime("%Y") in recs[day.port]["banner"]
    assert recs[day.port]["banner"].endswith("\r\n")
    assert recs[up.port]["banner"] == "HELLO\r\n"
    assert len(recs[gen.port]["banner"]) == 1000 and recs[gen.port]["banner_truncated"]


def test_tls_scan(tmp_path, tls_files):
    cert, key = tls_files
    with serving("echo", "--tls-cert", cert, "--tls-key", key) as tls_srv, \
            serving("echo") as plain:
        text, _ = _scan(tmp_path, "127.0.0.1", "-p", f"{tls_srv.port},{plain.port}", "--tls",
                        "--read-timeout", "500ms", "--timeout", "3s")
    recs = {r["port"]: r for r in output.parse_jsonl(text)}
    assert recs[tls_srv.port]["state"] == "open"
    assert recs[tls_srv.port]["tls"]["version"].startswith("TLS")
    assert "CN=cypoe-test" in recs[tls_srv.port]["tls"]["subject"]
    # zgrab2's words: a good handshake is success though the echo server
    # says nothing; a failed one is handshake-error
    assert recs[tls_srv.port]["status"] == "success"
    assert recs[tls_srv.port]["banner"] == ""
    assert recs[plain.port]["state"] == "open"          # open, but no TLS there
    assert recs[plain.port]["status"] == "handshake-error"
    for r in recs.values():     # connect time and banner/handshake time apart
        assert r["connect_ms"] >= 0 and r["banner_ms"] >= 0 and "rtt_ms" not in r


@pytest.mark.parametrize("workers,to_group", [(1, False), (2, True), (2, False)])
def test_ctrl_c_keeps_what_was_found(tmp_path, listeners, workers, to_group):
    """SIGINT to the scan (as ``kill -INT``) or to its process group (as a
    terminal's Ctrl-C, which reaches the workers too): exit 130 with what
    was found written."""
    first = listeners[0]
    out = tmp_path / "partial.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "cypoe", "scan", "127.0.0.1", "-p",
                             f"{first}-{first + 2000}", "--sequential", "--rate", "40",
                             "--workers", str(workers), "-o", str(out)], env=ENV, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and f'"port":{first},' in out.read_text():
                break
            time.sleep(0.05)
        if to_group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    recs = output.parse_jsonl(out.read_text())
    assert first in [r["port"] for r in recs]
    assert "interrupted" in err


def test_names_and_exclusions(tmp_path, listeners):
    text, _ = _scan(tmp_path, "localhost", "127.0.0.2", "-4", "--exclude", "127.0.0.2",
                    "-p", _ports_arg(listeners), "--all")
    recs = output.parse_jsonl(text)
    assert {r["ip"] for r in recs} == {"127.0.0.1"}
    assert sorted(r["port"] for r in recs if r["state"] == "open") == listeners


def test_ipv6_loopback(tmp_path):
    if not socket.has_ipv6:
        pytest.fail("IPv6 is needed for this test")
    s = socket.socket(socket.AF_INET6)
    try:
        s.bind(("::1", 0))
    except OSError as exc:
        s.close()
        pytest.fail(f"no ::1 here: {exc}")
    s.listen(8)
    port = s.getsockname()[1]
    try:
        [closed] = free_ports(1)
        text, _ = _scan(tmp_path, "::1", "-p", f"{port},{closed}", "--all")
    finally:
        s.close()
    states = {r["port"]: (r["ip"], r["state"]) for r in output.parse_jsonl(text)}
    assert states[port] == ("::1", "open")
    assert states[closed][1] == "closed"


# -- --workers ------------------------------------------------------------------

def test_workers_find_exactly_the_open_ports(tmp_path, listeners):
    closed = free_ports(40)
    text, proc = _scan(tmp_path, "127.0.0.1", "-p", _ports_arg(listeners + closed), "--all",
                       "--workers", "3", "--concurrency", "30")
    recs = output.parse_jsonl(text)
    assert sorted(r["port"] for r in recs) == sorted(listeners + closed)  # each once
    assert sorted(r["port"] for r in recs if r["state"] == "open") == listeners
    assert all(r["status"] == "connection-refused" for r in recs if r["state"] == "closed")


def test_workers_count_what_they_do_not_write(listeners):
    closed = free_ports(25)
    proc = run_cli("scan", "127.0.0.1", "-p", _ports_arg(listeners + closed), "--workers", "2",
                   timeout=120, check_rc=0)
    recs = output.parse_jsonl(proc.stdout)
    assert sorted(r["port"] for r in recs) == listeners
    assert f"{len(listeners)} open, {len(closed)} closed, 0 filtered" in proc.stderr
    assert "2 workers" in proc.stderr


def test_workers_and_shards_partition_exactly(tmp_path, listeners):
    lo = min(listeners)
    seen = []
    for i in range(2):
        text, _ = _scan(tmp_path, "127.0.0.1", "-p", f"{lo}-{lo + 120}", "--all",
                        "--shards", "2", "--shard", str(i), "--workers", "3", "--seed", "5",
                        name=f"ws{i}")
        seen.extend(r["port"] for r in output.parse_jsonl(text))
    assert sorted(seen) == list(range(lo, lo + 121))


def test_workers_with_banners(tmp_path):
    with serving("daytime") as day, serving("upper") as up:
        closed = free_ports(10)
        text, _ = _scan(tmp_path, "127.0.0.1", "-p", _ports_arg([day.port, up.port] + closed),
                        "--banners", "--probe", f"{up.port}:hey\\n", "--workers", "2",
                        "--read-timeout", "2s")
    recs = {r["port"]: r for r in output.parse_jsonl(text)}
    assert set(recs) == {day.port, up.port}
    assert time.strftime("%Y") in recs[day.port]["banner"]
    assert recs[up.port]["banner"] == "HEY\r\n"
