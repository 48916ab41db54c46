"""cypoe load --idle: hold connections, report what each costs (end to end
against cypoe serve; no timing or size assertions beyond what must hold)."""
import json

from cypoe.cli import load, load_idle

from .conftest import free_ports, serving


def _cfg(port, n, duration=0.5, connect_rate=None):
    return load.Config("127.0.0.1", port, n, duration, 1, b"", "any",
                       connect_rate=connect_rate, timeout=5.0)


class Live:
    def __init__(self):
        self.snaps = []

    def add(self, snap, who=0):
        self.snaps.append(snap)

    def emit(self):
        pass


def test_idle_holds_a_few_hundred_connections():
    live = Live()
    with serving("echo", "--filter", "line") as srv:
        d = load_idle.run_idle(_cfg(srv.port, 300, duration=1.2), live)
    assert d["opened"] == 300 and d["failed"] == 0 and d["error_total"] == 0
    assert d["open_at_measure"] == 300 and d["closed_by_peer"] == 0
    # one descriptor per connection (nothing else opened meanwhile)
    assert d["fds_after"] - d["fds_before"] == 300 and d["fds_per_conn"] == 1.0
    assert d["rss_per_conn_bytes"] is not None and d["rss_after_bytes"] >= d["rss_before_bytes"] - (1 << 20)
    assert d["kernel_mem_per_conn_bytes"] is not None and d["kernel_slab_per_conn_bytes"] is not None
    assert d["tcp_sockets_after"] >= d["tcp_sockets_before"] + 300   # ours, and the server's
    assert live.snaps and max(s["conns"] for s in live.snaps) == 300
    json.dumps(d)
    text = load_idle.format_idle(d, "127.0.0.1:1")
    assert "per connection" in text and "errors       none" in text


def test_idle_with_connect_rate():
    with serving("echo") as srv:
        d = load_idle.run_idle(_cfg(srv.port, 20, duration=0.2, connect_rate=200), None)
    assert d["opened"] == 20 and d["open_at_measure"] == 20


def test_idle_refused():
    (port,) = free_ports(1)
    d = load_idle.run_idle(_cfg(port, 5, duration=0.2), None)
    assert d["opened"] == 0 and d["failed"] == 5
    assert d["errors"] == {"connect:ECONNREFUSED": 5}
    assert d["rss_per_conn_bytes"] is None       # nothing open: no per-connection figure


def test_proc_readers(tmp_path):
    p = tmp_path / "sockstat"
    p.write_text("sockets: used 17\nTCP: inuse 5 orphan 0 tw 1 alloc 6 mem 42\nUDP: inuse 0 mem 3\n")
    assert load_idle.tcp_mem_pages(str(p)) == 42
    assert load_idle.tcp_sockets_in_use(str(p)) == 5
    assert load_idle.tcp_mem_pages(str(tmp_path / "none")) is None
    assert load_idle.rss_bytes() > 0 and load_idle.open_fds() > 0


def test_idle_main_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "idle.json"
    with serving("echo") as srv:
        rc = load_idle.main(_cfg(srv.port, 10, duration=0.2), None, json_path=str(out))
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["opened"] == 10 and d["target"].startswith("127.0.0.1:")
    assert "RSS" in capsys.readouterr().out
    (port,) = free_ports(1)
    assert load_idle.main(_cfg(port, 2, duration=0.1), None) == 1
