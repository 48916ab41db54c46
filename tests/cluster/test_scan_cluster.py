"""cypoe scan on a Dask cluster: the same result as one process, each
(address, port) exactly once, whatever dies on the way."""
import os
import re
import subprocess
import sys

import pytest

from tests.cluster.conftest import SRC, alive, kill, read_jsonl, wait_until

NET = "127.0.0.0/23"
ENV = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
ENV.pop("CYPOE_CLUSTER", None)


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "cypoe", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def keyed(records):
    return sorted((r["ip"], r["port"], r["state"], r["status"]) for r in records)


_SINGLE = {}


def single_process(tmp_path, ports, *extra):
    """The same scan in one process (--all), the reference."""
    key = (tuple(ports), extra)
    if key not in _SINGLE:
        out = tmp_path / "single.jsonl"
        proc = cli("scan", NET, "-p", ",".join(map(str, ports)), "--seed", 7, "--all", "-q",
                   "-o", out, *extra)
        assert proc.returncode == 0, proc.stderr
        _SINGLE[key] = read_jsonl(out)
    return list(_SINGLE[key])


def test_cluster_scan_equals_single_process(dask_cluster, listeners, tmp_path):
    out = tmp_path / "cluster.jsonl"
    proc = cli("scan", NET, "-p", ",".join(map(str, listeners)), "--seed", 7, "--all",
               "--cluster", dask_cluster.file, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "cluster of 2 agent(s), 16 shards" in proc.stderr
    got = read_jsonl(out)
    want = single_process(tmp_path, listeners)
    assert len(got) == 512 * 3
    assert keyed(got) == keyed(want)
    opened = {(r["ip"], r["port"]) for r in got if r["state"] == "open"}
    assert opened == {("127.0.0.1", p) for p in listeners} | {("127.0.1.7", listeners[0])}
    # the agents are gone with their tasks
    assert dask_cluster.agent_pids() == []


def test_cluster_scan_open_only_and_shard_of_shards(dask_cluster, listeners, tmp_path):
    """--shards/--shard compose: the cluster covers shard 1 of 2."""
    out = tmp_path / "cluster.jsonl"
    proc = cli("scan", NET, "-p", ",".join(map(str, listeners)), "--seed", 7, "--shards", 2,
               "--shard", 1, "--cluster", dask_cluster.file, "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr
    want = [r for r in single_process(tmp_path, listeners, "--shards", 2, "--shard", 1)
            if r["state"] == "open"]
    assert keyed(read_jsonl(out)) == keyed(want)


def test_an_agent_of_another_version_refuses(dask_cluster, monkeypatch):
    """The job carries the client's cypoe version; agents running another
    refuse it, and the run stops with that message."""
    from cypoe import cluster as cl
    monkeypatch.setattr(cl, "_version", lambda: "0.0.0-client")
    run = cl.scan([NET], "1", client=dask_cluster.client, seed=7)
    with pytest.raises(cl.ClusterError, match="version mismatch.*0.0.0-client"):
        list(run)
    wait_until(lambda: dask_cluster.agent_pids() == [], 30, "every agent to end")


def _scan_killing(cluster, ports, kill_what, **kw):
    """Scan (the Python API) and SIGKILL the worker (and maybe its nanny)
    running the first shard that streams records; returns (records, run,
    the killed attempt's run id, the events)."""
    from cypoe import cluster as cl
    nanny_of = {}
    for nanny in cluster.nannies:
        for pid in wait_until(lambda: children_of(nanny.pid), what="the worker process"):
            nanny_of[pid] = nanny.pid
    killed = {}
    events = []

    def on_event(ev):
        events.append(ev)
        if ev["kind"] == "started":
            killed.setdefault("agents", {})[ev["run"]] = ev["agent_pid"]
            killed.setdefault("workers", {})[ev["run"]] = ev["worker_pid"]
        if ev["kind"] == "records" and "run" not in killed:
            killed["run"] = ev["run"]
            killed["shard"] = ev["shard"]
            wpid = killed["workers"][ev["run"]]
            if kill_what == "nanny":
                kill(nanny_of[wpid])
            kill(wpid)

    run = cl.scan([NET], ",".join(map(str, ports)), client=cluster.client, seed=7,
                  all_results=True, rate=400, shards_per_agent=2, on_event=on_event, **kw)
    records = list(run)
    return records, run, killed, events


def parent_of(pid):
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def children_of(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except OSError:
                pass
    return out


@pytest.mark.parametrize("kill_what", ["worker", "nanny"])
def test_sigkill_mid_scan_no_duplicates_no_gaps(dask_cluster, fresh_cluster, listeners, tmp_path,
                                                kill_what):
    # a worker killed alone comes back (its nanny restarts it): the shared
    # cluster will do; a worker killed with its nanny is gone for good
    cluster = dask_cluster if kill_what == "worker" else fresh_cluster()
    cluster.client.wait_for_workers(2, timeout=60)
    records, run, killed, events = _scan_killing(cluster, listeners, kill_what)
    assert "run" in killed, "no shard streamed records"
    want = single_process(tmp_path, listeners)
    pairs = [(r["ip"], r["port"]) for r in records]
    assert len(pairs) == len(set(pairs)) == 512 * 3       # no duplicates
    assert keyed(records) == keyed(want)                   # no gaps, same results
    assert run.failed == [] and not run.interrupted
    # the shard hit was finished by another attempt than the one killed, whose
    # streamed records were advisory only
    done = [e for e in events if e["kind"] == "done" and e["shard"] == killed["shard"]]
    assert len(done) == 1 and done[0]["run"] != killed["run"]
    # the killed attempt's agent did not outlive its worker
    wait_until(lambda: not alive(killed["agents"][killed["run"]]), 30,
               "the killed worker's agent to end")
    wait_until(lambda: cluster.agent_pids() == [], 30, "every agent to end")


def test_killed_worker_is_resubmitted(fragile_cluster, listeners, tmp_path):
    """allowed-failures 0: a worker's death is a KilledWorker at once; the
    shard is resubmitted under a new key (--cluster-retries 1)."""
    cluster = fragile_cluster
    cluster.client.wait_for_workers(2, timeout=60)
    want = keyed(single_process(tmp_path, listeners))
    records, run, killed, events = _scan_killing(cluster, listeners, "worker",
                                                 cluster_retries=1)
    # the shard killed, and any queued on that worker, came back under a new key
    resub = [e for e in events if e["kind"] == "resubmitted"]
    assert killed["shard"] in {e["shard"] for e in resub}
    assert all(e["attempt"] == 1 and e["reason"].startswith("KilledWorker") for e in resub)
    done = [e for e in events if e["kind"] == "done" and e["shard"] == killed["shard"]]
    assert [d["attempt"] for d in done] == [1]
    assert run.failed == [] and keyed(records) == want


def test_cli_reports_the_rerun_line(fragile_cluster, listeners, tmp_path):
    """With --cluster-retries 0 a KilledWorker shard is given up: the command
    prints the --shards/--shard line that re-runs it and exits 1; that
    re-run fills the gap exactly."""
    cluster = fragile_cluster
    cluster.client.wait_for_workers(2, timeout=60)
    out = tmp_path / "c.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cypoe", "scan", NET, "-p", ",".join(map(str, listeners)),
         "--seed", "7", "--rate", "400", "--all", "--cluster", cluster.file,
         "--cluster-retries", "0", "--cluster-shards", "1", "-o", str(out)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        agents = wait_until(lambda: cluster.agent_pids(), 60, "an agent")
        kill(parent_of(agents[0]))   # the worker running that agent's task
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    reruns = re.findall(r"re-run it with: (--seed 7 --shards 2 --shard \d)", err)
    assert reruns, err
    got = read_jsonl(out)
    for i, line in enumerate(reruns):
        rerun = tmp_path / f"rerun{i}.jsonl"
        done = cli("scan", NET, "-p", ",".join(map(str, listeners)), "--all", "-q", "-o", rerun,
                   *line.split())
        assert done.returncode == 0, done.stderr
        got += read_jsonl(rerun)
    pairs = [(r["ip"], r["port"]) for r in got]
    assert len(pairs) == len(set(pairs))
    assert keyed(got) == keyed(single_process(tmp_path, listeners))


def test_tls_cluster_with_dask_security_config(fresh_cluster, listeners, tmp_path, tls_cert):
    """A tls:// scheduler: cypoe passes Dask's TLS configuration (here from
    DASK_DISTRIBUTED__COMM__TLS__* variables) through; without it, a clear
    refusal."""
    import json
    cluster = fresh_cluster(workers=1, tls=tls_cert)
    with open(cluster.file) as fh:
        address = json.load(fh)["address"]
    assert address.startswith("tls://")
    ca, cert, key = tls_cert
    refused = cli("scan", NET, "-p", listeners[0], "--cluster", address)
    assert refused.returncode == 1 and "TLS configuration" in refused.stderr
    out = tmp_path / "tls.jsonl"
    env = dict(ENV, DASK_DISTRIBUTED__COMM__TLS__CA_FILE=ca,
               DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT=cert,
               DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY=key,
               DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION="True")
    proc = subprocess.run(
        [sys.executable, "-m", "cypoe", "scan", NET, "-p", ",".join(map(str, listeners)),
         "--seed", "7", "--cluster", address, "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "cluster of 1 agent(s)" in proc.stderr
    want = [r for r in single_process(tmp_path, listeners) if r["state"] == "open"]
    assert keyed(read_jsonl(out)) == keyed(want)
