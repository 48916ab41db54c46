"""cypoe scan speaks nmap, masscan, zmap and zgrab2 (issue 15, items 1-2):
every accepted flag with its meaning, the output formats read back by
readers of those formats, --top-ports, metadata, and resume after Ctrl-C."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from cypoe.cli import main, output, ports as portspec, timing

from .conftest import ENV, free_ports, run_cli


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


def _ports(listeners, extra=5):
    closed = free_ports(extra)
    return sorted(listeners + closed), ",".join(map(str, sorted(listeners + closed)))


# -- readers of the formats, written from the formats' documentation --------

def read_grepable(text):
    """nmap's -oG: ``Host: IP (NAME)<TAB>Ports: port/state/proto/owner/
    service/rpc/version/, ...`` -> {ip: {port: (state, proto, service)}}."""
    hosts = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        assert fields[0].startswith("Host: "), line
        ip = fields[0].split()[1]
        ports = hosts.setdefault(ip, {})
        for f in fields[1:]:
            key, _, value = f.partition(": ")
            assert key in ("Ports", "Status", "Ignored State"), f
            if key == "Ports":
                for item in value.split(", "):
                    parts = item.split("/")
                    assert len(parts) == 8, item        # 7 fields, trailing '/'
                    ports[int(parts[0])] = (parts[1], parts[2], parts[4])
    return hosts


def read_normal(text):
    """nmap's -oN: per host ``Nmap scan report for IP`` then a
    ``PORT STATE SERVICE`` table -> {ip: {port: state}}."""
    hosts, ip, in_table = {}, None, False
    for line in text.splitlines():
        if line.startswith("Nmap scan report for "):
            ip = line.split()[-1].strip("()")
            hosts[ip] = {}
            in_table = False
        elif line.split() == ["PORT", "STATE", "SERVICE"]:
            in_table = True
        elif in_table and "/tcp" in line.split(" ")[0]:
            port, state = line.split()[:2]
            hosts[ip][int(port.split("/")[0])] = state
        elif not line.strip():
            in_table = False
    return hosts


def read_xml(text):
    """nmap's -oX by its element names -> {ip: {port: (state, service)}}."""
    root = ET.fromstring(text)
    assert root.tag == "nmaprun"
    assert root.find("scaninfo").get("type") == "connect"
    assert root.find("runstats/finished") is not None
    assert root.find("runstats/hosts") is not None
    hosts = {}
    for host in root.findall("host"):
        addr = host.find("address")
        assert addr.get("addrtype") in ("ipv4", "ipv6")
        ports = hosts.setdefault(addr.get("addr"), {})
        assert host.find("status").get("state") in ("up", "down")
        for port in host.findall("ports/port"):
            assert port.get("protocol") == "tcp"
            svc = port.find("service")
            ports[int(port.get("portid"))] = (port.find("state").get("state"),
                                              svc.get("name") if svc is not None else None)
    return root, hosts


# -- flags ---------------------------------------------------------------------

def test_nmap_noop_flags_change_nothing(tmp_path, listeners):
    ports, arg = _ports(listeners)
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    run_cli("scan", "127.0.0.1", "-p", arg, "-q", "-o", a, check_rc=0)
    run_cli("scan", "127.0.0.1", "-p", arg, "-q", "-o", b, "-Pn", "-n", "-sT", check_rc=0)
    found = lambda f: sorted(r["port"] for r in output.parse_jsonl(f.read_text()))  # noqa: E731
    assert found(a) == found(b) == listeners


def test_help_says_what_the_nmap_flags_mean():
    proc = run_cli("scan", "--help", check_rc=0)
    for flag, words in (("-Pn", "what cypoe always does"), ("-sT", "the only kind"),
                        ("-n ", "never makes reverse lookups"), ("--top-ports", "most common"),
                        ("--resume", "interrupted"), ("--metadata-file", "seed")):
        assert flag in proc.stdout and words in " ".join(proc.stdout.split()), flag


def test_verbose_tells_each_open_port(tmp_path, listeners):
    ports, arg = _ports(listeners)
    proc = run_cli("scan", "127.0.0.1", "-p", arg, "-v", "-o", tmp_path / "o", check_rc=0)
    for p in listeners:
        assert f"Discovered open port {p}/tcp on 127.0.0.1" in proc.stderr
    assert proc.stderr.count("Discovered open port") == len(listeners)


def test_open_overrides_all(tmp_path, listeners):
    ports, arg = _ports(listeners)
    out = tmp_path / "o.jsonl"
    run_cli("scan", "127.0.0.1", "-p", arg, "-q", "--all", "--open", "-o", out, check_rc=0)
    recs = output.parse_jsonl(out.read_text())
    assert {r["state"] for r in recs} == {"open"} and len(recs) == 3


@pytest.mark.parametrize("argv, words", [
    (["127.0.0.1", "-p", "22", "--bogus"], "unrecognized arguments: --bogus"),
    (["127.0.0.1", "-oZ", "x"], "unknown output option -oZ"),
    (["127.0.0.1", "-sS"], "TCP connect scans only"),
    (["127.0.0.1", "-p", "22", "--top-ports", "5"], "use one"),
    (["127.0.0.1", "--shards", "3/2"], "1 <= X <= Y"),
    (["127.0.0.1", "--shards", "4", "--shard", "2/3"], "disagree"),
    (["127.0.0.1", "--min-rate", "100", "--max-rate", "10"], "above --max-rate"),
    (["127.0.0.1", "-oN", "-", "-o", "-"], "only one output"),
    (["127.0.0.1", "--top-ports", "70000"], "--top-ports takes"),
    (["--resume", "/nonexistent/paused.json"], "--resume /nonexistent/paused.json"),
])
def test_errors_show_the_scan_usage(argv, words, capsys):
    assert main(["scan", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: cypoe scan "), err     # the command's, not cypoe's
    assert words in err


def test_unknown_option_of_other_commands_shows_their_usage(capsys):
    assert main(["serve", "--bogus"]) == 2
    assert capsys.readouterr().err.startswith("usage: cypoe serve ")


def _dry(*args, env=None):
    proc = subprocess.run([sys.executable, "-m", "cypoe", "scan", *map(str, args)],
                          env=env or ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines(), proc.stderr


def test_dryrun_lists_and_scans_nothing(listeners):
    lines, err = _dry("10.0.0.0/30", "127.0.0.1", "-p", "80", "-sL")
    assert lines == ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0.0.1"]
    assert "dry run: 5 addresses x 1 ports" in err
    # -v: every probe, in the scan's order; the same as the scan makes
    lines, _ = _dry("127.0.0.1", "-p", ",".join(map(str, listeners)), "--dryrun", "-v",
                    "--seed", "4")
    assert sorted(lines) == [f"127.0.0.1 {p}" for p in listeners]
    again, _ = _dry("127.0.0.1", "-p", ",".join(map(str, listeners)), "--dryrun", "-v",
                    "--seed", "4")
    assert again == lines


def test_masscan_shards_form_is_the_zmap_form():
    a, _ = _dry("10.0.0.0/28", "-p", "1-20", "--dryrun", "-v", "--seed", "9", "--shards", "2/3")
    b, _ = _dry("10.0.0.0/28", "-p", "1-20", "--dryrun", "-v", "--seed", "9", "--shards", "3",
                "--shard", "1")
    c, _ = _dry("10.0.0.0/28", "-p", "1-20", "--dryrun", "-v", "--seed", "9", "--shard", "2/3")
    assert a == b == c and len(a) == 320 // 3 + (1 if 320 % 3 > 1 else 0)
    every = []
    for x in (1, 2, 3):
        part, _ = _dry("10.0.0.0/28", "-p", "1-20", "--dryrun", "-v", "--seed", "9",
                       "--shards", f"{x}/3")
        every += part
    assert len(every) == len(set(every)) == 320


def test_top_ports_counts_and_default_set():
    for n in (1, 10, 100, 1000):
        lines, err = _dry("127.0.0.1", "--top-ports", n, "--dryrun", "-v")
        assert len(lines) == len(set(lines)) == n
    lines, err = _dry("127.0.0.1", "--dryrun", "-v")          # the default: top 1000
    assert len(lines) == portspec.DEFAULT_TOP == 1000
    lines, _ = _dry("127.0.0.1", "--dryrun", "-v", "--top-ports", "1000",
                    "--port-ranking", "builtin")
    got = {int(x.split()[1]) for x in lines}
    assert {22, 80, 443, 3306, 5432, 6379, 8080, 27017} <= got
    assert len(got) == 1000


def test_top_ports_rank_by_nmap_services_when_installed(tmp_path):
    # nmap's file format, with made-up frequencies: the order follows them
    fake = tmp_path / "nmap-services"
    fake.write_text("# a test file in nmap-services' format\n"
                    "alpha\t7777/tcp\t0.9\t# most frequent\n"
                    "beta\t7777/udp\t0.99\n"
                    "gamma\t12/tcp\t0.5\n"
                    "delta\t31337/tcp\t0.7\n")
    env = dict(ENV, CYPOE_NMAP_SERVICES=str(fake))
    lines, err = _dry("127.0.0.1", "--top-ports", "3", "--dryrun", "-v", "--sequential",
                      env=env)
    assert lines == ["127.0.0.1 12", "127.0.0.1 7777", "127.0.0.1 31337"]
    assert "nmap-services" in err
    # the ports nmap does not list come after, in cypoe's own order
    lines, _ = _dry("127.0.0.1", "--top-ports", "4", "--dryrun", "-v", env=env)
    assert {int(x.split()[1]) for x in lines} == {12, 7777, 31337, portspec.HAND_RANKED[0]}
    lines, err = _dry("127.0.0.1", "--top-ports", "2", "--dryrun", "-v", "--port-ranking",
                      "builtin", env=env)
    assert {int(x.split()[1]) for x in lines} == set(portspec.HAND_RANKED[:2])
    assert "builtin" in err
    proc = subprocess.run([sys.executable, "-m", "cypoe", "scan", "127.0.0.1", "--dryrun",
                           "--port-ranking", "nmap"], env=dict(ENV, CYPOE_NMAP_SERVICES=""),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "nmap-services is not installed" in proc.stderr


@pytest.mark.skipif(not os.path.exists("/usr/share/nmap/nmap-services"),
                    reason="nmap is not installed")
def test_default_ranking_is_nmaps_when_installed():
    env = dict(ENV)
    env.pop("CYPOE_NMAP_SERVICES", None)
    freq = portspec.read_nmap_services("/usr/share/nmap/nmap-services")
    top = sorted(freq, key=lambda p: -freq[p])[:20]
    lines, err = _dry("127.0.0.1", "--top-ports", "20", "--dryrun", "-v", env=env)
    assert {int(x.split()[1]) for x in lines} == set(top)


def test_rates_polite_off_loopback():
    _, err = _dry("10.0.0.1", "-p", "80", "--dryrun")
    assert "1000/s" in err                          # -T3 off loopback
    _, err = _dry("127.0.0.1", "-p", "80", "--dryrun")
    assert "unlimited rate" in err                  # loopback keeps the fast default
    _, err = _dry("10.0.0.1", "-p", "80", "--dryrun", "-T4")
    assert "5000/s" in err
    _, err = _dry("10.0.0.1", "-p", "80", "--dryrun", "--max-rate", "50")
    assert "50/s" in err
    _, err = _dry("10.0.0.1", "-p", "80", "--dryrun", "--rate", "0")
    assert "unlimited rate" in err
    _, err = _dry("10.0.0.1", "-p", "80", "--dryrun", "-T2", "--min-rate", "40")
    assert "40/s" in err and "polite" in err        # -T2's 2.5/s raised to 40
    assert timing.resolve(3, loopback=False).rate == timing.REMOTE_RATE[3]
    assert timing.resolve(3, loopback=True).rate is None
    assert timing.resolve(1, loopback=False).rate == timing.PRESETS[1].rate


# -- output formats ---------------------------------------------------------------

def test_oA_writes_the_three_nmap_formats(tmp_path, listeners):
    ports, arg = _ports(listeners)
    base = tmp_path / "run"
    proc = run_cli("scan", "127.0.0.1", "-p", arg, "-oA", base, "-q", check_rc=0)
    assert proc.stdout == ""        # the outputs went to files
    closed = len(ports) - len(listeners)

    g = read_grepable((tmp_path / "run.gnmap").read_text())
    assert g == {"127.0.0.1": {p: ("open", "tcp", g["127.0.0.1"][p][2]) for p in listeners}}
    assert f"Ignored State: closed ({closed})" in (tmp_path / "run.gnmap").read_text()

    normal = (tmp_path / "run.nmap").read_text()
    assert read_normal(normal) == {"127.0.0.1": {p: "open" for p in listeners}}
    assert normal.startswith("# cypoe ") and " scan initiated " in normal
    assert f"Not shown: {closed} closed tcp ports (conn-refused)" in normal
    assert "# cypoe done at " in normal and "1 IP address (1 host up)" in normal

    root, hosts = read_xml((tmp_path / "run.xml").read_text())
    assert {p: s for p, (s, _) in hosts["127.0.0.1"].items()} == {p: "open" for p in listeners}
    extra = root.find("host/ports/extraports")
    assert (extra.get("state"), extra.get("count")) == ("closed", str(closed))
    assert root.find("runstats/hosts").get("up") == "1"


def test_oX_well_formed_with_banners_and_services(tmp_path):
    # a banner with bytes XML 1.0 cannot hold, on a known service port name
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    import threading

    def answer():
        c, _ = srv.accept()
        c.sendall(b"HELLO \x00\x1b[31m<&>\"'\xff\r\n")
        c.close()
    t = threading.Thread(target=answer, daemon=True)
    t.start()
    out = tmp_path / "o.xml"
    run_cli("scan", "127.0.0.1", "-p", f"{port},ssh", "--banners", "--read-timeout", "3s",
            "-oX", out, "-q", "--all", check_rc=0)
    t.join(10)
    srv.close()
    root, hosts = read_xml(out.read_text())
    assert hosts["127.0.0.1"][port][0] == "open"
    assert hosts["127.0.0.1"][22][1] == "ssh"             # service name="ssh" (from the table)
    script = root.find(f"host/ports/port[@portid='{port}']/script")
    assert script.get("id") == "banner"
    assert script.get("output").startswith("HELLO \\x00\\x1b[31m<&>\"'")


def test_nmap_output_options_parse_as_themselves():
    from cypoe.cli import build_parser
    parser = build_parser()
    a = parser.parse_args(["scan", "127.0.0.1", "-oA", "base", "-oX", "x.xml", "-oN", "n",
                           "-oG", "g", "-oL", "l", "-oJ", "j"])
    assert a.output_all == "base" and a.output is None   # not "-o A"
    assert a.outputs == [("xml", "x.xml"), ("normal", "n"), ("grepable", "g"), ("list", "l"),
                         ("jsonl", "j")]
    a = parser.parse_args(["scan", "127.0.0.1", "-Pn", "-n", "-sT", "-vv", "--open",
                           "--top-ports", "20", "-sL", "--min-rate", "5", "--max-rate", "9",
                           "--shards", "2/5"])
    assert (a.no_ping, a.no_dns, a.connect_scan, a.verbose, a.open_only) == \
        (True, True, True, 2, True)
    assert (a.top_ports, a.dryrun, a.min_rate, a.rate, a.shards) == (20, True, 5.0, 9.0, (5, 1))


def test_oL_oJ_and_o_together(tmp_path, listeners):
    ports, arg = _ports(listeners)
    run_cli("scan", "127.0.0.1", "-p", arg, "-q", "-oL", tmp_path / "l.txt",
            "-oJ", tmp_path / "j.jsonl", "-oG", tmp_path / "g", "-o", tmp_path / "c.csv",
            "--format", "csv", check_rc=0)
    assert sorted(r["port"] for r in output.parse_list((tmp_path / "l.txt").read_text())) \
        == listeners
    assert sorted(r["port"] for r in output.parse_jsonl((tmp_path / "j.jsonl").read_text())) \
        == listeners
    assert sorted(read_grepable((tmp_path / "g").read_text())["127.0.0.1"]) == listeners
    assert sorted(r["port"] for r in output.parse_csv((tmp_path / "c.csv").read_text())) \
        == listeners


# -- metadata and resume -----------------------------------------------------------------

def test_metadata_file(tmp_path, listeners):
    ports, arg = _ports(listeners)
    meta = tmp_path / "meta.json"
    run_cli("scan", "127.0.0.1", "-p", arg, "-q", "--seed", "17", "--shards", "1/1",
            "--metadata-file", meta, "-o", tmp_path / "o", check_rc=0)
    m = json.loads(meta.read_text())
    assert m["seed"] == 17 and (m["shards"], m["shard"]) == (1, 0)
    assert m["targets"]["ranges"] == [["127.0.0.1", "127.0.0.1"]] and m["targets"]["count"] == 1
    assert m["ports"]["list"] == portspec.format_ports(ports)
    assert m["counts_by_status"] == {"success": 3, "connection-refused": len(ports) - 3}
    assert m["counts_by_state"] == {"open": 3, "closed": len(ports) - 3, "filtered": 0}
    assert m["start_time"] <= m["end_time"] and m["start_time"].endswith("Z")
    assert m["cypoe_version"] and "--metadata-file" in m["arguments"]
    assert m["interrupted"] is False and m["probes"]["done"] == len(ports)


def _interrupt(tmp_path, args, out, state, wait_for):
    """Run a scan, SIGINT it once ``wait_for`` records are written."""
    proc = subprocess.Popen([sys.executable, "-m", "cypoe", "scan", *map(str, args),
                             "-o", str(out), "--resume-file", str(state)],
                            env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and out.read_text().count("\n") >= wait_for:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    return err


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupt_and_resume_make_the_whole_scan(tmp_path, listeners, workers):
    lo = listeners[0]
    ports = f"{lo - 200}-{lo + 200},{listeners[1]},{listeners[2]}"
    # slow enough (4 s) that the interrupt comes in the middle
    args = ["127.0.0.1", "-p", ports, "--all", "--seed", "31", "--rate", "100",
            "--workers", workers]
    full = tmp_path / "full.jsonl"
    run_cli("scan", *args[:-4], "--rate", "0", "-q", "-o", full, check_rc=0)
    whole = sorted((r["port"], r["state"]) for r in output.parse_jsonl(full.read_text()))

    first, state = tmp_path / "first.jsonl", tmp_path / "paused.json"
    err = _interrupt(tmp_path, args, first, state, wait_for=40)
    assert "state saved to" in err and state.exists()
    saved = json.loads(state.read_text())
    assert saved["seed"] == 31 and len(saved["parts"]) == workers
    second = tmp_path / "second.jsonl"
    meta = tmp_path / "meta.json"
    run_cli("scan", "--resume", state, "--all", "-q", "-o", second, "--metadata-file", meta,
            check_rc=0)
    a = output.parse_jsonl(first.read_text())
    b = output.parse_jsonl(second.read_text())
    assert a and b
    # everything, each once (states compared only where the test decides
    # them: other programs may open and close ports of loopback meanwhile)
    assert sorted(r["port"] for r in a + b) == [p for p, _ in whole]
    assert {r["port"] for r in a + b if r["state"] == "open"} >= set(listeners)
    assert len({r["port"] for r in a} & {r["port"] for r in b}) == 0
    m = json.loads(meta.read_text())
    assert m["resumed"] and m["seed"] == 31 and m["probes"]["done"] == len(b)


def test_resume_state_after_a_second_interrupt(tmp_path, listeners):
    """A resumed scan interrupted again saves a state that resumes in turn."""
    lo = listeners[0]
    args = ["127.0.0.1", "-p", f"{lo}-{lo + 240}", "--all", "--seed", "8", "--rate", "60"]
    s1, s2 = tmp_path / "s1.json", tmp_path / "s2.json"
    _interrupt(tmp_path, args, tmp_path / "a.jsonl", s1, wait_for=20)
    _interrupt(tmp_path, ["--resume", s1, "--all"], tmp_path / "b.jsonl", s2, wait_for=20)
    run_cli("scan", "--resume", s2, "--all", "-q", "-o", tmp_path / "c.jsonl", check_rc=0)
    got = []
    for name in "abc":
        got += [r["port"] for r in output.parse_jsonl((tmp_path / f"{name}.jsonl").read_text())]
    assert sorted(got) == list(range(lo, lo + 241))


def test_resume_refuses_new_targets(tmp_path, capsys):
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"cypoe_resume": 1, "targets": [[4, 1, 1]], "ports": "80",
                                 "seed": 1, "shards": 1, "shard": 0, "workers": 1,
                                 "settings": {}, "parts": [{"shards": 1, "shard": 0,
                                                            "position": 0, "pending": []}]}))
    assert main(["scan", "--resume", str(state), "10.0.0.1"]) == 2
    assert "give neither" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["scan", "--resume", str(bad)]) == 2
    assert "not a cypoe scan state" in capsys.readouterr().err


@pytest.mark.parametrize("engine,banners", [("compiled", False), ("compiled", True),
                                            ("tcpmulti", False), ("tcpmulti", True)])
def test_engines_stop_and_resume_without_loss_or_duplicate(listeners, engine, banners):
    """The library's side of --resume, for every engine: what a stopped
    scan reported, plus what the plan resumed from its position and
    pending probes reports, is every probe once."""
    from cypoe import Kernel
    from cypoe.cli import scan_engine
    from cypoe.cli.scan import Plan
    from cypoe.cli.targets import TargetSet
    ports = sorted(set(listeners + free_ports(150)))
    targets = TargetSet(["127.0.0.1"])
    plan = Plan(targets, ports, seed=12)
    tm = timing.Timing("t", 20, 200.0, 2.0, 1)
    first = []
    k = Kernel()
    kw = dict(banners=banners, read_timeout=0.2) if banners else {}
    scanner_info = {}

    def stop_soon():
        # the kernel's components get the shutdown, as on SIGINT
        k.shutdown()
    k.delay(0.3, stop_soon)
    scanner_info = scan_engine.scan(plan, tm, first.append, engine=engine, kernel=k, **kw)
    assert scanner_info["interrupted"]
    assert 0 < len(first) < len(ports)
    rest = Plan(targets, ports, seed=12, start=scanner_info["position"],
                pending=scanner_info["pending"])
    second = []
    info = scan_engine.scan(rest, tm, second.append, engine=engine, kernel=Kernel(), **kw)
    assert not info["interrupted"]
    got = sorted(r["port"] for r in first + second)
    assert got == ports
    assert {r["port"] for r in first + second if r["state"] == "open"} == set(listeners)


def test_second_ctrl_c_keeps_what_was_in_flight(tmp_path, listeners):
    """A second Ctrl-C ends the probes in flight unreported: the state
    keeps them as pending, and the resumed scan probes them."""
    from .test_scan_compiled import Blackholes
    holes = Blackholes(4)
    closed = free_ports(20)
    ports = sorted(holes.ports + closed + listeners)
    state, first = tmp_path / "st.json", tmp_path / "first.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "cypoe", "scan", "127.0.0.1", "-p",
                             ",".join(map(str, ports)), "--all", "--timeout", "60s",
                             "--retries", "0", "-o", str(first), "--resume-file", str(state)],
                            env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:      # open ports are flushed as found
            if first.exists() and first.read_text().count('"open"') >= 3:
                break
            time.sleep(0.05)
        time.sleep(0.5)     # the closed ones answer at once; the blackholes never
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)   # well before the 60 s connect timeout
    finally:
        holes.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    a = output.parse_jsonl(first.read_text())
    assert set(listeners) <= {r["port"] for r in a}
    assert not {r["port"] for r in a} & set(holes.ports)     # never reported...
    saved = json.loads(state.read_text())
    [part] = saved["parts"]
    pending_ports = {ports[i] for i, _ in part["pending"]}
    assert set(holes.ports) <= pending_ports                  # ...but kept
    # the blackholes are gone: the resumed scan finds those ports closed
    second = tmp_path / "second.jsonl"
    run_cli("scan", "--resume", state, "--all", "-q", "-o", second, check_rc=0)
    b = output.parse_jsonl(second.read_text())
    assert set(holes.ports) <= {r["port"] for r in b}
    assert sorted(r["port"] for r in a + b) == ports
