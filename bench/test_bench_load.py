"""``cypoe load`` against the load generators people compare it with.

    python -m pytest bench/test_bench_load.py --benchmark-only -q -s

Every workload runs a server pinned to CPU 0 and a client pinned to CPU 1
(``taskset``), the clients taking turns in interleaved rounds against the
same server process; each round gives a ratio (cypoe / peer, above 1: cypoe
is faster), and the figure is the median of those per-round ratios.

- redis-server, PING inline, 50 connections, pipeline 1 and 16:
  ``cypoe load HOST:PORT -m PING --expect redis`` vs ``redis-benchmark -t
  ping_inline`` (its ``--csv`` line).
- nginx, a static 1 KiB file, keep-alive, 50 connections: ``cypoe load
  http://…`` vs ``wrk -t1 -c50``.
- cypoe's own line echo server (the cypoe Server of test_bench_components.py),
  pipeline 16, 64-byte lines: ``cypoe load`` vs the C line client of
  ``bench/test_bench_components.py``.
- Timer accuracy: against redis-server with one connection, the open-loop
  (``--rate 1000``) p50 minus the closed-loop p50, in the same run.
- The generator's own CPU per response: ``cypoe load``'s (the run's own
  user + system time, ``client_cpu`` in its report; the whole process's
  when the report has none), redis-benchmark's and wrk's (user + system
  time of the process, ``getrusage(RUSAGE_CHILDREN)`` around each run).

cypoe's figures come from ``cypoe load … --json -`` (``req_per_s``,
``responses``, ``latency_ms``).  The set-up installs redis-server,
redis-tools, nginx and wrk with apt-get when they are missing; a workload
whose tools cannot be had is skipped with the reason.  A workload the
installed ``cypoe load`` does not support yet (``--expect redis``, http
targets) falls back where an equivalent exists (``--expect line`` for
PING) and is skipped otherwise.

``CYPOE_BENCH_LOAD_SECONDS`` (default 5) sets each run's length and
``CYPOE_BENCH_LOAD_ROUNDS`` (default 3) the rounds.
"""
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
sys.path.insert(0, HERE)

from test_bench_components import Child, loadgen_bin  # noqa: E402,F401  (the C line client)

SECONDS = float(os.environ.get("CYPOE_BENCH_LOAD_SECONDS", "5"))
ROUNDS = int(os.environ.get("CYPOE_BENCH_LOAD_ROUNDS", "3"))
CONNS = 50
LINE_LEN = 64
RUN_TIMEOUT = 120.0
APT_PACKAGES = ["redis-server", "redis-tools", "nginx", "wrk"]
TOOLS = {"redis-server": "redis-server", "redis-benchmark": "redis-tools",
         "nginx": "nginx", "wrk": "wrk"}

SUMMARY = {}


# ---------------------------------------------------------------------------
# set-up: tools, pinning, processes
# ---------------------------------------------------------------------------

def _which(name):
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)


@pytest.fixture(scope="module")
def tools():
    """The peers' executables, installed with apt-get when missing; a
    dict name -> path, or name -> None with the reason in tools["_why"]."""
    missing = [n for n in TOOLS if _which(n) is None]
    why = ""
    if missing and shutil.which("apt-get"):
        pkgs = sorted({TOOLS[n] for n in missing})
        try:
            r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *pkgs],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600,
                               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
            if r.returncode:
                why = f"apt-get install {' '.join(pkgs)} failed: " \
                      f"{r.stdout.decode(errors='replace')[-300:]}"
        except (OSError, subprocess.SubprocessError) as exc:
            why = f"apt-get install {' '.join(pkgs)} failed: {exc}"
    elif missing:
        why = "no apt-get to install " + ", ".join(missing)
    found = {n: _which(n) for n in TOOLS}
    found["_why"] = why or "not installed"
    return found


def _need(tools, *names):
    lacking = [n for n in names if not tools.get(n)]
    if lacking:
        pytest.skip(f"{', '.join(lacking)}: {tools['_why']}")


def _pin(cpu, argv):
    """argv run on one CPU (taskset), when the machine has two or more."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)] + list(argv)
    return list(argv)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


class Server:
    """A server process pinned to CPU 0, stopped by its own PID."""

    def __init__(self, argv, port, cwd=None):
        self.proc = subprocess.Popen(_pin(0, argv), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=_env(), cwd=cwd)
        self.port = port
        try:
            _wait_port(port, self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        p = self.proc
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        p.stderr.close()


def redis_server(tools):
    port = _free_port()
    return Server([tools["redis-server"], "--port", str(port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--protected-mode", "no"], port)


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process off;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
    }}
}}
"""


def nginx_server(tools, tmp_path):
    d = tmp_path / "nginx"
    (d / "www").mkdir(parents=True)
    (d / "www" / "1k.bin").write_bytes(bytes(97 + i % 26 for i in range(1024)))
    port = _free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=d, port=port, user=user))
    return Server([tools["nginx"], "-p", str(d), "-c", str(conf)], port)


# ---------------------------------------------------------------------------
# clients: each returns {"rps", "responses", "cpu_s", ...}
# ---------------------------------------------------------------------------

def _children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run(argv, timeout=RUN_TIMEOUT):
    """Run a client pinned to CPU 1; returns (CompletedProcess, its CPU seconds)."""
    cpu0 = _children_cpu()
    proc = subprocess.run(_pin(1, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, env=_env())
    return proc, _children_cpu() - cpu0


class Unsupported(Exception):
    """The installed ``cypoe load`` lacks a flag or a target kind."""


def _json_from(stdout):
    """The JSON report of ``--json -`` (after the text report)."""
    m = re.search(r"^\{", stdout, re.M)
    if not m:
        raise ValueError("no JSON report in the output")
    obj, _ = json.JSONDecoder().raw_decode(stdout[m.start():])
    return obj


def cypoe_load(target, *args, fallback=None):
    """``cypoe load TARGET ARGS -q --json -``; `fallback` replaces args the
    installed version rejects (exit 2) and is noted in the result."""
    argv = [sys.executable, "-m", "cypoe", "load", target, *args, "-q", "--json", "-"]
    proc, cpu = _run(argv)
    note = ""
    if proc.returncode == 2 and fallback is not None:
        note = f"fallback {' '.join(fallback)} ({proc.stderr.strip().splitlines()[-1]})"
        argv = [sys.executable, "-m", "cypoe", "load", target, *fallback, "-q", "--json", "-"]
        proc, cpu = _run(argv)
    if proc.returncode == 2:
        raise Unsupported(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "rc 2")
    if proc.returncode != 0:
        raise RuntimeError(f"cypoe load failed ({proc.returncode}): {proc.stderr[-800:]}")
    d = _json_from(proc.stdout)
    # the run's own CPU time when the report has it (the interpreter's
    # start-up and imports left out, as the peers have none to speak of)
    run_cpu = (d.get("client_cpu") or {}).get("cpu_s")
    return {"rps": d["req_per_s"], "responses": d["responses"],
            "cpu_s": run_cpu if run_cpu else cpu, "process_cpu_s": cpu,
            "p50_ms": d["latency_ms"]["p50"], "errors": d.get("error_total", 0),
            "note": note, "json": d}


def redis_benchmark(tools, port, pipeline, n):
    proc, cpu = _run([tools["redis-benchmark"], "-h", "127.0.0.1", "-p", str(port), "-c",
                      str(CONNS), "-P", str(pipeline), "-t", "ping_inline", "-n", str(n),
                      "--csv"])
    if proc.returncode:
        raise RuntimeError(f"redis-benchmark failed: {proc.stderr[-500:]}")
    for line in proc.stdout.splitlines():
        fields = [f.strip('"') for f in line.split(",")]
        if fields and fields[0] == "PING_INLINE":
            return {"rps": float(fields[1]), "responses": n, "cpu_s": cpu}
    raise RuntimeError(f"no PING_INLINE line in: {proc.stdout[-500:]}")


def wrk(tools, url):
    proc, cpu = _run([tools["wrk"], "-t1", f"-c{CONNS}", f"-d{SECONDS:g}s", url])
    if proc.returncode:
        raise RuntimeError(f"wrk failed: {proc.stderr[-500:]}")
    rps = re.search(r"Requests/sec:\s*([0-9.]+)", proc.stdout)
    n = re.search(r"^\s*(\d+) requests in", proc.stdout, re.M)
    if not rps or not n:
        raise RuntimeError(f"cannot read wrk's output: {proc.stdout[-500:]}")
    return {"rps": float(rps.group(1)), "responses": int(n.group(1)), "cpu_s": cpu}


def c_line_client(exe, port, pipeline, n):
    """The C line client of bench/test_bench_components.py: N requests."""
    from test_bench_components import cpu_seconds
    gen = Child(_pin(1, [exe, "echo", "127.0.0.1", str(port), str(CONNS), str(pipeline),
                         str(LINE_LEN)]))
    try:
        ready = gen.readline()
        assert ready == f"ready {CONNS}", ready
        cpu0 = cpu_seconds(gen.pid)
        gen.send(f"go {n}")
        reply = gen.readline(timeout=RUN_TIMEOUT).split()
        assert reply[0] == "ok", " ".join(reply)
        cpu = cpu_seconds(gen.pid) - cpu0
        return {"rps": int(reply[2]) / (int(reply[1]) / 1e9), "responses": int(reply[2]),
                "cpu_s": cpu}
    finally:
        gen.stop()


# ---------------------------------------------------------------------------
# the rounds
# ---------------------------------------------------------------------------

def _median(xs):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _cpu_us(r):
    return r["cpu_s"] / r["responses"] * 1e6 if r["responses"] else float("nan")


def interleaved(cypoe_run, peer_run, rounds=ROUNDS):
    """Alternate the two clients (the order flips every round); per-round
    ratios cypoe / peer of req/s and of CPU per response."""
    per = []
    for i in range(rounds):
        if i % 2 == 0:
            c, p = cypoe_run(), peer_run()
        else:
            p, c = peer_run(), cypoe_run()
        per.append((c, p))
    return {
        "ratio_rps": round(_median([c["rps"] / p["rps"] for c, p in per]), 3),
        "cypoe_rps": round(_median([c["rps"] for c, _ in per])),
        "peer_rps": round(_median([p["rps"] for _, p in per])),
        "cypoe_cpu_us_per_resp": round(_median([_cpu_us(c) for c, _ in per]), 3),
        "peer_cpu_us_per_resp": round(_median([_cpu_us(p) for _, p in per]), 3),
        "cpu_ratio": round(_median([_cpu_us(c) / _cpu_us(p) for c, p in per]), 3),
        "cypoe_errors": sum(c.get("errors", 0) for c, _ in per),
        "note": next((c["note"] for c, _ in per if c.get("note")), ""),
        "rounds": rounds,
    }


def _measure(benchmark, group, fn):
    """Run `fn` once under the benchmark fixture; returns what fn returned."""
    benchmark.group = group
    box = {}
    benchmark.pedantic(lambda: box.setdefault("info", fn()), rounds=1, iterations=1)
    return box["info"]


def _record(benchmark, group, peer, info):
    benchmark.extra_info["impl"] = "cypoe"
    benchmark.extra_info["peer"] = peer
    benchmark.extra_info.update(info)
    SUMMARY[group] = dict(info, peer=peer)


@pytest.mark.parametrize("pipeline", [1, 16])
def test_redis_ping(benchmark, tools, pipeline):
    _need(tools, "redis-server", "redis-benchmark")
    srv = redis_server(tools)
    try:
        target = f"127.0.0.1:{srv.port}"
        common = ["-c", str(CONNS), "--pipeline", str(pipeline), "-d", f"{SECONDS:g}",
                  "-m", "PING"]
        state = {}

        def cy():
            return cypoe_load(target, *common, "--expect", "redis",
                              fallback=[*common, "--expect", "line"])

        def rb():
            # as many requests as cypoe answered in a run: the same length
            n = int(state.get("n") or (150_000 if pipeline == 1 else 1_000_000) * SECONDS)
            return redis_benchmark(tools, srv.port, pipeline, n)

        def cy_sized():
            r = cy()
            state["n"] = max(10_000, r["responses"])
            return r

        cy_sized()                                   # warm-up, and the request count
        group = f"redis PING inline, {CONNS} conns, pipeline {pipeline}"
        info = _measure(benchmark, group, lambda: interleaved(cy_sized, rb))
    finally:
        srv.stop()
    _record(benchmark, group, "redis-benchmark", info)


def test_nginx_static(benchmark, tools, tmp_path):
    _need(tools, "nginx", "wrk")
    srv = nginx_server(tools, tmp_path)
    try:
        url = f"http://127.0.0.1:{srv.port}/1k.bin"
        try:
            cypoe_load(url, "-c", str(CONNS), "-d", "1")
        except Unsupported as exc:
            pytest.skip(f"this cypoe load does not load http targets yet: {exc}")
        group = f"nginx static 1 KiB, keep-alive, {CONNS} conns"
        info = _measure(benchmark, group, lambda: interleaved(
            lambda: cypoe_load(url, "-c", str(CONNS), "-d", f"{SECONDS:g}"),
            lambda: wrk(tools, url)))
    finally:
        srv.stop()
    _record(benchmark, group, "wrk -t1", info)


def test_line_echo(benchmark, loadgen_bin):
    if not loadgen_bin:
        pytest.skip("no C compiler for the C line client")
    # the line echo server of bench/test_bench_components.py (a cypoe
    # Server with Line(literal=b"\n"): the bytes of each line come back as
    # they were, which the C client checks)
    srv = Child(_pin(0, [sys.executable, os.path.join(HERE, "test_bench_components.py"),
                         "echo-server", "cypoe"]))
    line = srv.readline()
    assert line.startswith("port "), line
    port = int(line.split()[1])
    pipeline = 16
    try:
        target = f"127.0.0.1:{port}"
        state = {}

        def cy():
            r = cypoe_load(target, "-c", str(CONNS), "--pipeline", str(pipeline), "--size",
                           str(LINE_LEN), "--expect", "echo", "-d", f"{SECONDS:g}")
            state["n"] = max(10_000, r["responses"])
            return r

        def c():
            return c_line_client(loadgen_bin, port, pipeline, state["n"])

        cy()
        group = f"cypoe line echo server, {CONNS} conns, pipeline {pipeline}"
        info = _measure(benchmark, group, lambda: interleaved(cy, c))
    finally:
        srv.stop(terminate=True)
    _record(benchmark, group, "C line client", info)


def test_timer_accuracy(benchmark, tools):
    """Open loop at 1000 req/s on one connection vs closed loop, same server,
    same run: the p50 difference is the generator's own timer lag."""
    _need(tools, "redis-server")
    srv = redis_server(tools)
    try:
        target = f"127.0.0.1:{srv.port}"
        base = ["-c", "1", "-d", f"{SECONDS:g}", "-m", "PING"]

        def run(extra):
            return cypoe_load(target, *base, *extra, "--expect", "redis",
                              fallback=[*base, *extra, "--expect", "line"])

        def rounds():
            diffs, closed, opened = [], [], []
            for i in range(ROUNDS):
                a, b = (run([]), run(["--rate", "1000"])) if i % 2 == 0 else \
                    tuple(reversed((run(["--rate", "1000"]), run([]))))
                closed.append(a["p50_ms"])
                opened.append(b["p50_ms"])
                diffs.append((b["p50_ms"] - a["p50_ms"]) * 1000.0)
            return {"closed_p50_us": round(_median(closed) * 1000.0, 1),
                    "open_p50_us": round(_median(opened) * 1000.0, 1),
                    "p50_diff_us": round(_median(diffs), 1), "target_us": 50,
                    "note": a.get("note", ""), "rounds": ROUNDS}
        group = "timer accuracy: --rate 1000 -c 1 p50 - closed-loop p50"
        info = _measure(benchmark, group, rounds)
    finally:
        srv.stop()
    _record(benchmark, group, "itself", info)


# ---------------------------------------------------------------------------
# the summary
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def load_summary(request):
    yield
    if not SUMMARY:
        return
    tr = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    lines = format_summary(SUMMARY)

    def write():
        tr.write_line("")
        tr.section("cypoe load vs its peers (medians of per-round ratios; > 1: cypoe better)")
        for ln in lines:
            tr.write_line(ln)
    if tr is not None:
        if capture is not None:
            with capture.global_and_fixture_disabled():
                write()
        else:
            write()
    with open(os.path.join(HERE, ".load_ratios.json"), "w") as fh:
        json.dump(SUMMARY, fh, indent=1)


def format_summary(summary):
    out = []
    for group, v in summary.items():
        out.append(group)
        if "ratio_rps" in v:
            out.append(f"    req/s        cypoe {v['cypoe_rps']:>10}  {v['peer']} "
                       f"{v['peer_rps']:>10}  ratio {v['ratio_rps']:.2f}x  (target >= 1.0)")
            out.append(f"    CPU/response cypoe {v['cypoe_cpu_us_per_resp']:>8.3f} us  {v['peer']} "
                       f"{v['peer_cpu_us_per_resp']:>8.3f} us  cypoe/peer {v['cpu_ratio']:.2f}")
        if "p50_diff_us" in v:
            out.append(f"    p50 closed {v['closed_p50_us']} us, open {v['open_p50_us']} us: "
                       f"{v['p50_diff_us']} us apart (target <= {v['target_us']} us)")
        if v.get("note"):
            out.append(f"    note: {v['note']}")
    return out
