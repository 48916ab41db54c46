"""Command-line parsing: --help, usage errors (exit 2), plans (no network)."""
import os
import subprocess
import sys

import pytest

from cypoe.cli import build_parser, main, timing
from cypoe.cli import load as load_cmd
from cypoe.cli import scan as scan_cmd

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")


@pytest.mark.parametrize("cmd", ["load", "scan", "serve", "bench"])
def test_help_for_each_command(cmd, capsys):
    assert main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cypoe {cmd}")
    assert "examples:" in out


def test_top_level_help_and_no_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("load", "scan", "serve", "bench"):
        assert cmd in out
    assert main([]) == 2
    assert "usage: cypoe" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["frobnicate"],
    ["scan", "127.0.0.1", "-T9"],
    ["scan", "127.0.0.1", "-p", "70000"],
    ["scan", "127.0.0.1", "-p", "10-1"],
    ["scan", "127.0.0.1", "-p", "0"],            # port 0 is not scannable
    ["scan", "127.0.0.1", "-p", "0-5"],
    ["scan", "127.0.0.1", "--probe", "0:hello"],
    ["scan", "999.0.0.1", "-p", "80"],
    ["scan", "-p", "80"],                        # no targets
    ["scan", "127.0.0.1", "--shards", "4", "--shard", "4"],
    ["scan", "127.0.0.1", "--rate", "-5"],
    ["scan", "127.0.0.1", "--timeout", "soon"],
    ["scan", "127.0.0.1", "--format", "yaml"],
    ["scan", "127.0.0.1", "-4", "-6"],
    ["scan", "-iL", "/nonexistent/targets.txt"],
    ["scan", "127.0.0.1", "--workers", "0"],
    ["scan", "127.0.0.1", "--workers", "4", "--concurrency", "3"],
    ["load", "-c", "0"],
    ["load", "-d", "-1"],
    ["load", "localhost"],                       # no port
    ["load", "127.0.0.1:99999"],
    ["load", "--size", "1"],
    ["load", "-m", "x", "--size", "10"],
    ["load", "--expect", "xml"],
    ["load", "-c", "2", "--workers", "3"],
    ["load", "--expect", "line", "-m", "a\\nb\\n"],
    ["load", "--source-addresses", "not-an-address"],
    ["load", "ftp://127.0.0.1/x"],
    ["load", "http://127.0.0.1:99999/"],
    ["load", "http://127.0.0.1:8080/", "-m", "PING"],     # a URL builds its request
    ["load", "127.0.0.1:9", "-H", "X-A: 1"],              # -H needs http
    ["load", "http://127.0.0.1:8080/", "-H", "no-colon"],
    ["load", "--expect", "redis"],                        # the built-in server echoes
    ["load", "--messages", "/nonexistent/requests.txt"],
    ["load", "-R", "0"],
    ["load", "-P", "0"],
    ["load", "-t", "0"],
    ["serve", "gopher"],
    ["serve", "--port", "-1"],
    ["serve", "--filter", "json"],
    ["serve", "--tls-key", "k.pem"],
    ["serve", "--workers", "0"],
    ["bench", "--bogus"],
])
def test_bad_arguments_exit_2_with_usage(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: cypoe" in err
    assert "error:" in err


@pytest.mark.parametrize("spec", ["0", "0-5", "22,0", "-0"])
def test_port_zero_is_rejected_naming_the_spec(spec, capsys):
    """issue 11, item 14: no traceback, a clear error that names the port
    specification, exit 2 with the scan's usage."""
    assert main(["scan", "127.0.0.1", f"--ports={spec}"]) == 2
    err = capsys.readouterr().err
    assert "usage: cypoe scan" in err
    assert "port 0" in err and repr(spec) in err
    assert "Traceback" not in err


def test_python_dash_m():
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ok = subprocess.run([sys.executable, "-m", "cypoe", "scan", "--help"], env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("usage: cypoe scan")
    bad = subprocess.run([sys.executable, "-m", "cypoe", "load", "--pipeline", "zero"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage: cypoe load" in bad.stderr


def _scan_args(*argv):
    return build_parser().parse_args(["scan", *argv])


def test_scan_plan_exact_and_seeded():
    a = _scan_args("127.0.0.1", "10.0.0.0/30", "-p", "20-29", "--seed", "3")
    plan = scan_cmd.build_plan(a)
    assert plan.total == 50 and plan.seed == 3
    items = [(ip, port) for ip, port, _v in plan.items()]
    assert len(set(items)) == 50
    assert set(items) == {(ip, p) for ip in ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3",
                                             "127.0.0.1"] for p in range(20, 30)}
    assert items == [(ip, port) for ip, port, _v in scan_cmd.build_plan(a).items()]
    assert items != sorted(items)
    seq = scan_cmd.build_plan(_scan_args("127.0.0.1", "-p", "1-5", "--sequential"))
    assert [p for _ip, p, _v in seq.items()] == [1, 2, 3, 4, 5]


def test_scan_shards_partition_targets_times_ports():
    seen = []
    for i in range(3):
        plan = scan_cmd.build_plan(_scan_args("127.0.0.1", "::1", "-p", "1-100", "--shards", "3",
                                              "--shard", str(i), "--seed", str(10 + i)))
        seen.extend((ip, p) for ip, p, _v in plan.items())
    assert len(seen) == 200 and len(set(seen)) == 200


def test_scan_excludes_and_input_list(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("10.0.0.0/29\n")
    x = tmp_path / "x.txt"
    x.write_text("10.0.0.7\n")
    plan = scan_cmd.build_plan(_scan_args("-iL", str(f), "--exclude", "10.0.0.0,10.0.0.1",
                                          "--excludefile", str(x), "-p", "80"))
    assert sorted(ip for ip, _p, _v in plan.items()) == [f"10.0.0.{i}" for i in range(2, 7)]


def test_scan_probes():
    probes = scan_cmd.parse_probes(["HEAD / HTTP/1.0\\r\\n\\r\\n", "25,587:EHLO x\\r\\n"])
    assert probes[None] == b"HEAD / HTTP/1.0\r\n\r\n"
    assert probes[25] == probes[587] == b"EHLO x\r\n"
    plan = scan_cmd.Plan(__import__("cypoe.cli.targets", fromlist=["x"]).TargetSet(["127.0.0.1"]),
                         [25, 80], probes=probes)
    assert plan.probe_for(25) == b"EHLO x\r\n" and plan.probe_for(80) == b"HEAD / HTTP/1.0\r\n\r\n"


def test_timing_presets():
    t4 = timing.resolve(4)
    assert t4.name == "aggressive" and t4.rate is None
    assert timing.resolve(None).name == "normal"
    t = timing.resolve(1, concurrency=50, rate=10.0, timeout=0.5, retries=0)
    assert (t.concurrency, t.rate, t.timeout, t.retries) == (50, 10.0, 0.5, 0)
    assert timing.resolve(0).rate < timing.resolve(1).rate < timing.resolve(2).rate
    a = _scan_args("127.0.0.1", "-T5")
    assert a.timing == 5


def _load_args(*argv):
    return build_parser().parse_args(["load", *argv])


def test_load_message():
    assert load_cmd.build_message(_load_args()) == b"PING\r\n"
    assert load_cmd.build_message(_load_args("-m", "GET\\n")) == b"GET\n"
    m = load_cmd.build_message(_load_args("--size", "100"))
    assert len(m) == 100 and m.endswith(b"\r\n") and m.count(b"\n") == 1


def test_load_usage_is_the_subcommand_s(capsys):
    assert main(["load", "--expect", "redis"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: cypoe load") and "--expect redis needs a target" in err


def test_load_http_request():
    req = load_cmd.build_http_request("GET", "/a?b=1", "example:8080", ["X-A: 1"])
    assert req == b"GET /a?b=1 HTTP/1.1\r\nHost: example:8080\r\nX-A: 1\r\n\r\n"
    req = load_cmd.build_http_request("POST", "/", "h", ["host: other"], "a\\x00b")
    assert req == b"POST / HTTP/1.1\r\nhost: other\r\nContent-Length: 3\r\n\r\na\x00b"
    assert load_cmd.parse_url("http://127.0.0.1/x") == ("127.0.0.1", 80, "/x", "127.0.0.1")


def test_load_messages_in_turn(tmp_path):
    f = tmp_path / "m.txt"
    f.write_text("SET k v\n\nGET k\\r\\n\n")
    assert load_cmd.build_messages(_load_args("--messages", str(f))) == [b"SET k v\r\n",
                                                                         b"GET k\r\n"]
    assert load_cmd.build_messages(_load_args("-m", "a", "-m", "b\\n")) == [b"a\r\n", b"b\n"]
    a = _load_args("-R", "100", "-P", "4", "-t", "2", "-c", "8")
    assert (a.rate, a.pipeline, a.workers) == (100.0, 4, 2)


def test_load_config_shares_add_up():
    cfg = load_cmd.Config("127.0.0.1", 9, 10, 1.0, 1, b"x\r\n", "echo", rate=1000.0,
                          requests=101, sources=["127.0.0.1", "127.0.0.2", "127.0.0.3"])
    shares = [cfg.share(i, 3) for i in range(3)]
    assert [s.connections for s in shares] == [4, 3, 3]
    assert sum(s.requests for s in shares) == 101
    assert abs(sum(s.rate for s in shares) - 1000.0) < 1e-9
    assert all(s.sources for s in shares)
    assert load_cmd.parse_sources("127.0.0.1-3") == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
