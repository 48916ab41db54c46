"""cypoe load on a Dask cluster against ``cypoe serve``: one merged report,
lost shares reported, and no agent outliving its client."""
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.cli.conftest import serving
from tests.cluster.conftest import SRC, alive, kill, wait_until

ENV = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
ENV.pop("CYPOE_CLUSTER", None)


def test_agents_are_ready_with_their_connections_open(dask_cluster):
    # The compiled engine (built here) opens an agent's connections before it
    # reports ready, so the load starts with them set up.
    from cypoe import cluster as cl
    from cypoe.cli import load_compiled
    assert load_compiled.available()
    ready = {}

    def on_event(ev):
        if ev["kind"] == "ready":
            ready[ev["agent"]] = ev.get("connections_up")

    with serving("echo") as srv:
        r = cl.load(f"127.0.0.1:{srv.port}", client=dask_cluster.client, connections=5,
                    duration=0.5, on_event=on_event)
    assert sorted(ready.values()) == [2, 3]       # each agent's share, all up
    assert r["responses"] > 0 and r["connections"]["opened"] == 5


def test_load_report_is_the_sum_of_the_agents(dask_cluster, tmp_path):
    out = tmp_path / "r.json"
    with serving("echo") as srv:
        proc = subprocess.run(
            [sys.executable, "-m", "cypoe", "load", f"127.0.0.1:{srv.port}", "-c", "5", "-d", "1s",
             "--cluster", dask_cluster.file, "--json", str(out)],
            env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    agents = r["agents"]
    assert [a["status"] for a in agents] == ["ok", "ok"]
    assert sorted(a["share"]["connections"] for a in agents) == [2, 3]   # split exactly
    assert r["responses"] > 0
    assert r["responses"] == sum(a["responses"] for a in agents) == r["latency_ms"]["count"]
    assert r["requests"] == sum(a["requests"] for a in agents)
    assert sum(a["latency_count"] for a in agents) == r["latency_ms"]["count"]
    assert r["cluster"] == {"agents": 2, "workers_per_agent": 1, "lost": 0,
                            "setup_s": r["cluster"]["setup_s"],
                            "start_skew_ms": r["cluster"]["start_skew_ms"]}
    assert r["cluster"]["start_skew_ms"] is not None and r["cluster"]["setup_s"] is not None
    assert "2 agent(s) × 1 process(es)" in proc.stdout
    assert dask_cluster.agent_pids() == []


def test_killed_load_agent_is_worker_lost(dask_cluster):
    from cypoe import cluster as cl
    cluster = dask_cluster
    seen = {}

    def on_event(ev):
        if ev["kind"] == "ready":
            seen.setdefault("ready", {})[ev["agent"]] = (ev["worker_pid"], ev["agent_pid"])
        elif ev["kind"] == "progress" and ev["agent"] == 0 and "killed" not in seen:
            seen["killed"] = seen["ready"][0]
            kill(seen["killed"][0])          # agent 0's worker, mid-load

    with serving("echo") as srv:
        r = cl.load(f"127.0.0.1:{srv.port}", client=cluster.client, connections=4, duration=3,
                    timeout=1.0, on_event=on_event)
    assert "killed" in seen
    a0, a1 = r["agents"]
    assert a0["status"] in ("late", "lost") and a1["status"] == "ok"
    assert r["errors"]["worker:lost"] == 1 and r["cluster"]["lost"] == 1
    assert r["responses"] == a1["responses"]      # the lost share is not counted
    wait_until(lambda: not alive(seen["killed"][1]), 30, "the killed worker's agent to end")
    cluster.client.wait_for_workers(2, timeout=60)   # its nanny restarted it


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_client(args):
    # Started with SIGINT ignored, as a shell without job control starts a
    # background command: Ctrl-C must stop the cluster client all the same.
    return subprocess.Popen([sys.executable, "-m", "cypoe", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ignore_sigint)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_stopping_the_client_stops_every_remote_load(dask_cluster, sig):
    dask_cluster.client.wait_for_workers(2, timeout=60)
    with serving("echo") as srv:
        proc = _start_client(["load", f"127.0.0.1:{srv.port}", "-c", "2", "-d", "300s",
                              "--cluster", dask_cluster.file])
        try:
            # the load is running on both agents
            for line in proc.stderr:
                if "agents 2/2" in line:
                    break
            else:
                pytest.fail("the load did not start: " + proc.stdout.read())
            agents = dask_cluster.agent_pids()
            assert len(agents) == 2
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=60)
            if sig == signal.SIGINT:
                assert proc.returncode == 130
                assert "responses" in out
            wait_until(lambda: not any(alive(p) for p in agents), 60,
                       "the remote agents to end")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wait_until(lambda: dask_cluster.agent_pids() == [], 30, "every agent to end")


def test_ctrl_c_stops_a_cluster_scan(dask_cluster, tmp_path):
    proc = _start_client(["scan", "127.0.0.0/22", "-p", "1-4", "--rate", "20", "--cluster",
                          dask_cluster.file, "-o", tmp_path / "o.jsonl"])
    try:
        agents = wait_until(lambda: dask_cluster.agent_pids() if len(
            dask_cluster.agent_pids()) == 2 else None, 60, "two agents")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "(interrupted)" in err
        wait_until(lambda: not any(alive(p) for p in agents), 60, "the remote agents to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
