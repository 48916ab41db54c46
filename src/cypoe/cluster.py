"""``cypoe scan`` and ``cypoe load`` on a Dask cluster.

Dask distributed (``pip install "cypoe[cluster]"``) schedules the work;
this module is imported only when a cluster is asked for, and imports
``distributed`` only when it runs.  Workers that run cypoe's shares offer
the resource ``cypoe`` (``dask worker ADDRESS --nthreads 1 --resources
cypoe=1``): each such worker is one *agent*.

A share runs in a child process (``python -m cypoe.cli.agent``) that the
Dask task starts and speaks to over its pipes: signals work only in a
main thread, and a daemonic worker cannot fork worker processes.  The
child stops when its stdin closes, so no scan or load outlives the task,
whether it ends, is cancelled (Ctrl-C of the client, or a client that
died) or its worker dies.

Scan (:func:`scan`): the plan is cut into many small shards (default 8
per agent) under fixed task keys.  Records streamed live (``log_event``
on a topic, tagged with the shard and the attempt) feed only the
progress; what is yielded comes from the result Dask keeps for the
shard, so every (address, port) comes exactly once even when a worker
dies mid-shard (Dask runs the shard again; a shard that keeps killing
workers, ``KilledWorker``, is resubmitted under a new key up to
``retries`` times and then reported with the ``--shards N --shard I``
that re-runs it alone).

Load (:func:`load`): one share per agent, split exactly as ``--workers``
splits a load.  Agents set up, report ready and start at one wall-clock
instant (a Dask ``Variable`` holds the start on the scheduler's clock,
an ``Event`` releases the agents, each corrects it by its worker's clock
offset to the scheduler).  A share never runs late: an agent that gets
there after the start returns "late", and shares not finished by start
+ duration + timeout (+ a little slack) are cancelled; both count as
``worker:lost`` and make the run fail.  The histograms are merged from
their encoded form.
"""
import base64
import os
import queue
import subprocess
import sys
import threading
import time
import uuid

RESOURCE = "cypoe"
DEFAULT_SHARDS_PER_AGENT = 8
DEFAULT_RETRIES = 2
SETUP_TIMEOUT = 60.0
# Start this long after the last agent is ready (the Event and Variable
# round trips, and each agent's wake-up, fit well within it).
START_LEAD = 1.0
# A load share may report this long after start + duration + timeout.
CANCEL_SLACK = 3.0
AGENT_STOP_GRACE = 10.0
LIVE_LAG = 0.3


class ClusterError(Exception):
    """The cluster cannot run the job (no distributed, no address, no
    agents, a version mismatch…): the message says why."""


class AgentError(RuntimeError):
    """An agent failed (raised in the Dask task; the client reports it)."""


def require_distributed():
    """The ``distributed`` module; ClusterError (saying what to install)
    when Dask distributed is not installed."""
    try:
        import distributed
    except ImportError:
        raise ClusterError("running on a cluster needs Dask distributed: "
                           "pip install 'cypoe[cluster]'") from None
    return distributed


def resolve_address(value=None):
    """The scheduler to use: ``value``, else ``$CYPOE_CLUSTER``; ``auto``
    (or nothing) means Dask's own configuration (``scheduler-address``,
    ``$DASK_SCHEDULER_ADDRESS``).  A path to an existing file is a Dask
    scheduler file."""
    value = value or os.environ.get("CYPOE_CLUSTER") or "auto"
    if value == "auto":
        try:
            import dask.config
            value = dask.config.get("scheduler-address", None)
        except ImportError:
            value = None
        if not value:
            raise ClusterError("no cluster address: give --cluster ADDRESS (or a scheduler "
                               "file), set CYPOE_CLUSTER, or Dask's scheduler-address")
    return value


def connect(address=None, *, security=None, timeout=30.0):
    """A ``distributed.Client`` for ``address`` (see :func:`resolve_address`),
    with Dask's security configuration (``distributed.comm.tls.*``) unless
    ``security`` (a ``distributed.Security``) is given."""
    distributed = require_distributed()
    addr = resolve_address(address)
    if security is None:
        security = distributed.Security()
    kw = dict(security=security, timeout=timeout, set_as_default=False)
    if os.path.isfile(addr):
        return distributed.Client(scheduler_file=addr, **kw)
    if addr.startswith("tls://") and not (security.tls_client_cert or security.tls_ca_file):
        raise ClusterError(f"{addr}: a tls:// scheduler needs Dask's TLS configuration "
                           "(distributed.comm.tls.ca-file, .client.cert, .client.key; e.g. "
                           "DASK_DISTRIBUTED__COMM__TLS__CA_FILE)")
    try:
        return distributed.Client(addr, **kw)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {addr}: {exc}") from None


def agents(client):
    """Addresses of the workers that offer the ``cypoe`` resource."""
    info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) \
        else client.scheduler_info()
    out = sorted(addr for addr, w in info.get("workers", {}).items()
                 if w.get("resources", {}).get(RESOURCE, 0) >= 1)
    if not out:
        raise ClusterError(f"no Dask worker offers the resource {RESOURCE!r}: start them with "
                           f"`dask worker SCHEDULER --nthreads 1 --resources {RESOURCE}=1`")
    return out


def _takes_n_workers(client):
    import inspect
    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


def _version():
    import cypoe
    return cypoe.__version__


# -- the task's side: the agent child process ------------------------------------

class _Agent:
    """``python -m cypoe.cli.agent`` as a child of this (worker) process."""

    def __init__(self, job):
        import json
        self.json = json
        # A process group of its own (its last resort kills the group), but
        # not a session of its own: with the kernel's autogroup scheduling a
        # new session is a new CPU group, and on a busy host that halved a
        # loopback load's throughput.  (Before Python 3.11 the agent makes
        # its group itself.)
        group = {"process_group": 0} if sys.version_info >= (3, 11) else {}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cypoe.cli.agent"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **group)
        self.tail = []
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._err.start()
        self.buf = b""
        self.send(job)

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.tail.append(line.decode("utf-8", "replace").rstrip())
            del self.tail[:-20]

    def send(self, obj):
        try:
            self.proc.stdin.write((self.json.dumps(obj) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def messages(self, stop, poll=0.2):
        """Parsed lines from the child until its stdout ends, or until
        ``stop()`` is true (checked every ``poll`` seconds)."""
        import selectors
        fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        try:
            while True:
                while b"\n" in self.buf:
                    line, _, self.buf = self.buf.partition(b"\n")
                    if line.strip():
                        yield self.json.loads(line)
                if not sel.select(poll):
                    if stop():
                        return
                    continue
                data = os.read(fd, 1 << 16)
                if not data:
                    return
                self.buf += data
        finally:
            sel.close()

    def close(self, grace=AGENT_STOP_GRACE):
        """Close its stdin (it stops), wait, and kill its process group if
        it is still there."""
        import signal
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()

    def failure(self, what):
        tail = "\n".join(self.tail[-5:])
        return f"{what} (exit status {self.proc.poll()})" + (f": {tail}" if tail else "")


def _stop_check(worker, key):
    """True once the task is no longer wanted (cancelled, released, its
    client gone) or the worker is closing."""
    def stop():
        status = getattr(worker.status, "name", str(worker.status))
        if status not in ("running", "paused", "init"):
            return True
        ts = worker.state.tasks.get(key)
        return ts is None or ts.state != "executing"
    return stop


def scan_task(job, topic, shard, attempt):
    """One shard of a scan (a Dask task): runs the agent, streams its
    records (advisory) and returns them all."""
    from distributed import get_worker
    worker = get_worker()
    key = worker.get_current_task()
    stop = _stop_check(worker, key)
    run = f"{attempt}.{uuid.uuid4().hex[:8]}"
    tag = {"shard": shard, "attempt": attempt, "run": run}

    def emit(kind, **kw):
        worker.log_event(topic, dict(tag, kind=kind, **kw))

    agent = _Agent(job)
    records, batch, result = [], [], None
    last = time.monotonic()
    try:
        for msg in agent.messages(stop):
            if "record" in msg:
                records.append(msg["record"])
                batch.append(msg["record"])
            elif "progress" in msg:
                emit("progress", **msg["progress"])
            elif "ready" in msg:
                emit("started", worker=worker.address, worker_pid=os.getpid(),
                     agent_pid=msg["ready"]["pid"], total=msg["ready"]["total"],
                     time=msg["ready"]["time"])
            elif "result" in msg:
                result = msg["result"]
            elif "error" in msg:
                raise AgentError(f"agent on {worker.address}: {msg['error']}")
            now = time.monotonic()
            if batch and (len(batch) >= 1000 or now - last >= 0.2):
                emit("records", records=batch)
                batch, last = [], now
        if batch:
            emit("records", records=batch)
    finally:
        agent.close()
    if result is None:
        if stop():
            raise AgentError("cancelled")
        raise AgentError(agent.failure(f"the agent on {worker.address} ended without a result"))
    return {"shard": shard, "attempt": attempt, "run": run, "records": records,
            "counts": result["counts"], "info": result["info"], "worker": worker.address}


def load_task(job, topic, index, ns):
    """One agent's share of a load (a Dask task): set up, report ready,
    start at the common instant (or return "late"), stream live figures,
    return the LoadStats (encoded)."""
    from distributed import Event, Variable, get_client, get_worker
    worker = get_worker()
    key = worker.get_current_task()
    stop = _stop_check(worker, key)

    def emit(kind, **kw):
        worker.log_event(topic, dict(kw, agent=index, kind=kind))

    base = {"agent": index, "worker": worker.address}
    agent = _Agent(job)
    try:
        msgs = agent.messages(stop)
        for msg in msgs:
            if "ready" in msg:
                break
            if "error" in msg:
                raise AgentError(f"agent on {worker.address}: {msg['error']}")
        else:
            if stop():
                raise AgentError("cancelled")
            raise AgentError(agent.failure(f"the agent on {worker.address} did not get ready"))
        # this host's clock against the scheduler's (the worker's own
        # estimate, from one heartbeat, can be off by a busy loop's delay)
        offset = _scheduler_offset(get_client())
        emit("ready", worker=worker.address, worker_pid=os.getpid(),
             agent_pid=msg["ready"]["pid"], clock_offset_ms=round(offset * 1000.0, 3),
             connections_up=msg["ready"].get("connections_up"))
        go = Event(f"{ns}-go")
        waited = time.monotonic()
        while not go.wait(timeout=0.5):
            if stop():
                raise AgentError("cancelled")
            if time.monotonic() - waited > job.get("setup_timeout", SETUP_TIMEOUT):
                return dict(base, status="late", reason="no start time came")
        start_sched = Variable(f"{ns}-start").get(timeout=30)
        start_local = start_sched - offset
        if time.time() >= start_local:
            # never run a share late: the others are already under way
            return dict(base, status="late", reason="the start time had passed")
        agent.send({"start": start_local})
        result = None
        for msg in msgs:
            if "progress" in msg:
                emit("progress", **msg["progress"])
            elif "result" in msg:
                result = msg["result"]
            elif "error" in msg:
                raise AgentError(f"agent on {worker.address}: {msg['error']}")
    finally:
        agent.close()
    if result is None or "stats" not in result:
        if stop():
            raise AgentError("cancelled")
        raise AgentError(agent.failure(f"the agent on {worker.address} ended without a result"))
    # onto the scheduler's clock; started_local is the agent's own timestamp
    return dict(base, status="ok", stats=result["stats"], interrupted=result["interrupted"],
                started_at=result["started_at"] + offset, ended_at=result["ended_at"] + offset,
                started_local=result["started_at"], clock_offset_ms=round(offset * 1000.0, 3))


# -- the client's side: scan ------------------------------------------------------

def _is_killed_worker(exc):
    try:
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, KilledWorker)


def _describe(exc):
    if _is_killed_worker(exc):
        return f"KilledWorker: the shard's workers died ({exc.last_worker.address} last)"
    return f"{type(exc).__name__}: {exc}"


def _plan_job(plan, timing, *, banners=False, max_read=96 * 1024, read_timeout=2.0, tls=False,
              sni=None, all_results=False, workers=1):
    return {
        "version": _version(), "kind": "scan",
        "intervals": [list(iv) for iv in plan.targets.intervals],
        "ports": list(plan.ports),
        "probes": {("*" if k is None else str(k)): base64.b64encode(v).decode("ascii")
                   for k, v in plan.probes.items()},
        "seed": plan.seed, "timing": dict(timing._asdict()),
        "banners": banners, "max_read": max_read, "read_timeout": read_timeout,
        "tls": tls, "sni": sni, "all": all_results, "workers": workers,
    }


class ScanRun:
    """A scan over the cluster; iterate it for the records (each
    (address, port) once).  Afterwards: ``counts`` (open/closed/filtered),
    ``failed`` (shards given up, with the options that re-run each),
    ``interrupted``, ``agents``, ``shards``, ``resubmitted``, ``streamed``
    (records seen live)."""

    def __init__(self, plan, timing, client, *, shards_per_agent=DEFAULT_SHARDS_PER_AGENT,
                 retries=DEFAULT_RETRIES, on_event=None, owns_client=False, **job_options):
        self.plan, self.client = plan, client
        self.owns_client = owns_client
        self.retries = retries
        self.on_event = on_event
        self.agents = agents(client)
        n = len(self.agents)
        workers = job_options.get("workers", 1)
        # one task per agent at a time: each gets that share of the totals
        conc = max(1, timing.concurrency // n)
        if workers > conc:
            raise ClusterError(f"--workers ({workers}) must not exceed the concurrency per "
                               f"agent ({conc})")
        self.timing = timing._replace(concurrency=conc,
                                      rate=timing.rate / n if timing.rate else timing.rate)
        self.shards = max(1, min(n * shards_per_agent, plan.total or 1))
        self.job = _plan_job(plan, self.timing, **job_options)
        # as --workers splits it: n shards side by side add up to the total
        self.n_agents = n
        self.conc_total = timing.concurrency
        self.id = uuid.uuid4().hex[:12]
        self.topic = f"cypoe-scan-{self.id}"
        self.counts = {"open": 0, "closed": 0, "filtered": 0}
        self.failed = []
        self.resubmitted = 0
        self.interrupted = False
        self.streamed = 0
        self.live_done = {}      # (shard, run) -> probes done, while it runs
        self.done_probes = 0     # probes of the shards finished
        self.open_found = 0

    # the task of shard j covers shard plan.shard + j * plan.shards of plan.shards * shards
    def shard_args(self, j):
        """Shard ``j`` of this run as ``(shards, shard, options)``: its place
        in the whole scan and the ``cypoe scan`` options that run it alone."""
        total = self.plan.shards * self.shards
        index = self.plan.shard + j * self.plan.shards
        order = f"--seed {self.plan.seed}" if self.plan.seed is not None else "--sequential"
        return total, index, f"{order} --shards {total} --shard {index}"

    def _submit(self, j, attempt):
        total, index, _ = self.shard_args(j)
        job = dict(self.job, shards=total, shard=index)
        n = self.n_agents
        conc = self.conc_total // n + (1 if j % n < self.conc_total % n else 0)
        job["timing"] = dict(job["timing"], concurrency=max(1, conc))
        key = f"cypoe-scan-{self.id}-shard{j}-try{attempt}"
        fut = self.client.submit(scan_task, job, self.topic, j, attempt, key=key,
                                 resources={RESOURCE: 1}, pure=False)
        fut.add_done_callback(lambda f: self._q.put(("done", (j, attempt, f))))
        return fut

    def _event(self, ev):
        if self.on_event is not None:
            self.on_event(ev)

    def _live(self, msg):
        kind = msg.get("kind")
        if kind == "records":
            self.streamed += len(msg["records"])
        elif kind == "progress":
            self.live_done[(msg["shard"], msg["run"])] = msg.get("done", 0)
        self._event(msg)

    @property
    def done_estimate(self):
        """Probes done so far: the finished shards' and what the running
        ones last reported."""
        return self.done_probes + sum(self.live_done.values())

    def __iter__(self):
        self._q = queue.Queue()
        self.client.subscribe_topic(self.topic, lambda ev: self._q.put(("event", ev[1])))
        self.t0 = time.monotonic()
        pending = {}
        attempts = {}
        try:
            for j in range(self.shards):
                attempts[j] = 0
                pending[j] = self._submit(j, 0)
            while pending:
                try:
                    kind, obj = self._q.get(timeout=0.5)
                except queue.Empty:
                    continue
                if kind == "event":
                    self._live(obj)
                    continue
                j, attempt, fut = obj
                if pending.get(j) is not fut:
                    continue  # an attempt given up already
                for k in [k for k in self.live_done if k[0] == j]:
                    del self.live_done[k]
                if fut.status == "finished":
                    res = fut.result()
                    del pending[j]
                    for state, n in res["counts"].items():
                        self.counts[state] += n
                    self.done_probes += sum(res["counts"].values())
                    self.open_found += res["counts"]["open"]
                    self._event({"kind": "done", "shard": j, "attempt": attempt,
                                 "run": res["run"], "worker": res["worker"],
                                 "records": len(res["records"])})
                    yield from res["records"]
                elif fut.status == "error":
                    exc = fut.exception()
                    if _is_killed_worker(exc) and attempts[j] < self.retries:
                        attempts[j] += 1
                        self.resubmitted += 1
                        self._event({"kind": "resubmitted", "shard": j,
                                     "attempt": attempts[j], "reason": _describe(exc)})
                        pending[j] = self._submit(j, attempts[j])
                        continue
                    del pending[j]
                    if "version mismatch" in str(exc):
                        raise ClusterError(str(exc))
                    self._fail(j, _describe(exc))
                else:  # cancelled
                    del pending[j]
                    self._fail(j, "cancelled")
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self.elapsed = time.monotonic() - self.t0
            if pending:
                try:
                    self.client.cancel(list(pending.values()), force=True)
                except Exception:  # noqa: BLE001 - the client may be gone
                    pass
            try:
                self.client.unsubscribe_topic(self.topic)
            except Exception:  # noqa: BLE001
                pass
            if self.owns_client:
                self.client.close()

    def _fail(self, j, reason):
        total, index, line = self.shard_args(j)
        self.failed.append({"shard": index, "shards": total, "rerun": line,
                            "reason": str(reason) or type(reason).__name__})
        self._event({"kind": "failed", "shard": j, "rerun": line, "reason": str(reason)})


def scan(targets, ports="1-1024", *, cluster=None, client=None, exclude=(), family=None,
         seed=None, sequential=False, shards=1, shard=0, timing=3, concurrency=None, rate=None,
         timeout=None, retries=None, banners=False, probes=None, max_read=96 * 1024,
         read_timeout=None, tls=False, sni=None, all_results=False, workers=1,
         shards_per_agent=DEFAULT_SHARDS_PER_AGENT, cluster_retries=DEFAULT_RETRIES,
         on_event=None):
    """Scan on a Dask cluster; returns a :class:`ScanRun`, whose iteration
    yields the result records (open ports only unless ``all_results``),
    shard by shard, each (address, port) exactly once.

    ``targets`` and ``ports`` take what ``cypoe scan`` takes (a list of
    specs, ``"22,80,8000-8100"``); ``cluster`` an address or scheduler
    file (or ``client`` a ``distributed.Client``); the rest are ``cypoe
    scan``'s options.  ``on_event(dict)`` sees the live events (``started``,
    ``records``, ``progress``, ``done``, ``resubmitted``, ``failed``)."""
    from cypoe.cli import order, ports as portspec, targets as targetspec, timing as tmod
    from cypoe.cli.scan import Plan, parse_probes
    if isinstance(targets, str):
        targets = [targets]
    tset = targetspec.TargetSet(list(targets), exclude=list(exclude), family=family)
    plist = portspec.parse_ports(ports) if isinstance(ports, str) else list(ports)
    if isinstance(probes, (list, tuple)):
        probes = parse_probes(probes)
    if not sequential and seed is None:
        seed = order.random_seed()
    plan = Plan(tset, plist, seed=None if sequential else seed, shards=shards, shard=shard,
                probes=probes or {})
    tm = tmod.resolve(timing, concurrency, rate, timeout, retries)
    owns = client is None
    if owns:
        client = connect(cluster)
    try:
        return ScanRun(plan, tm, client, shards_per_agent=shards_per_agent,
                       retries=cluster_retries, on_event=on_event, owns_client=owns,
                       banners=banners or tls or bool(probes), max_read=max_read,
                       read_timeout=read_timeout if read_timeout is not None
                       else max(1.0, tm.timeout),
                       tls=tls, sni=sni, all_results=all_results, workers=workers)
    except BaseException:
        if owns:
            client.close()
        raise


# -- the client's side: load ------------------------------------------------------

def _scheduler_offset(client, samples=5):
    """The scheduler's clock minus ours: the midpoint of the quickest of a
    few round trips (as NTP filters), so a slow answer does not skew it."""
    best = None
    for _ in range(samples):
        t0 = time.time()
        ts = client.run_on_scheduler(time.time)
        t1 = time.time()
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, ts - (t0 + t1) / 2.0)
    return best[1]


class LoadRun:
    """A load over the cluster.  ``run()`` returns ``(LoadStats, per_agent,
    interrupted)``; ``per_agent`` is a list of dicts (``agent``, ``worker``,
    ``status``: ok, late, lost, error or interrupted, ``share``, figures)."""

    def __init__(self, cfg, client, *, workers=1, live=None, setup_timeout=SETUP_TIMEOUT,
                 owns_client=False, on_event=None):
        self.cfg, self.client, self.workers = cfg, client, workers
        self.on_event = on_event
        self.owns_client = owns_client
        self.live = live
        self.setup_timeout = setup_timeout
        self.agents = agents(client)
        n = len(self.agents)
        if cfg.connections < n * workers:
            raise ClusterError(f"--connections ({cfg.connections}) must be at least agents × "
                               f"--workers ({n} × {workers})")
        self.shares = [cfg.share(i, n) for i in range(n)]
        self.id = uuid.uuid4().hex[:12]
        self.ns = f"cypoe-load-{self.id}"
        self.interrupted = False
        self.start_skew_ms = None
        self.setup_s = None     # from the submission to every agent ready
        self.lost = 0

    def _job(self, share):
        d = {k: getattr(share, k) for k in ("host", "port", "connections", "duration",
                                            "pipeline", "expect", "rate", "connect_rate",
                                            "requests", "timeout")}
        d["messages"] = [base64.b64encode(m).decode("ascii") for m in share.messages]
        d["no_body"] = bool(share.no_body)
        d["sources"] = list(share.sources)
        return {"version": _version(), "kind": "load", "config": d, "workers": self.workers,
                "setup_timeout": self.setup_timeout}

    def run(self):
        """Run the load on every agent and merge what they report; returns
        ``(LoadStats, per_agent, interrupted)`` (see the class)."""
        from distributed import Event, Variable
        from cypoe.cli import report
        q = queue.Queue()
        n = len(self.agents)
        self.client.subscribe_topic(self.ns, lambda ev: q.put(("event", ev[1])))
        futures = {}
        for i, share in enumerate(self.shares):
            fut = self.client.submit(load_task, self._job(share), self.ns, i, self.ns,
                                     key=f"{self.ns}-agent{i}", resources={RESOURCE: 1},
                                     pure=False)
            fut.add_done_callback(lambda f, i=i: q.put(("done", (i, f))))
            futures[i] = fut
        per = {i: {"agent": i, "status": "pending",
                   "share": {"connections": s.connections, "rate": s.rate,
                             "requests": s.requests}} for i, s in enumerate(self.shares)}
        ready, results = set(), {}
        live = {i: {"responses": 0, "errors": 0, "hist": report.new_histogram()}
                for i in range(n)}
        running = set()
        go_event = Event(f"{self.ns}-go", client=self.client)
        start_var = Variable(f"{self.ns}-start", client=self.client)

        def handle(kind, obj):
            if kind == "event":
                if self.on_event is not None:
                    self.on_event(obj)
                i = obj["agent"]
                if obj["kind"] == "ready":
                    ready.add(i)
                    per[i].update(worker=obj["worker"], status="ready")
                elif obj["kind"] == "progress":
                    running.add(i)
                    lv = live[i]
                    lv["responses"] += obj["responses"]
                    lv["errors"] += obj["errors"]
                    if obj.get("hist"):
                        h = report.decode_histogram(obj["hist"])
                        lv["hist"].add(h)
                        if self.live is not None:
                            self.live.add(obj, i, h)
                    elif self.live is not None:
                        self.live.add(obj, i, None)
            else:
                i, fut = obj
                running.discard(i)
                if fut.status == "finished":
                    results[i] = fut.result()
                elif fut.status == "error":
                    exc = fut.exception()
                    if "version mismatch" in str(exc):
                        results[i] = {"status": "error", "reason": str(exc)}
                    else:
                        results[i] = {"status": "lost", "reason": f"{type(exc).__name__}: {exc}"}
                else:
                    results[i] = {"status": "lost", "reason": "cancelled"}

        t_submit = time.monotonic()
        try:
            # 1. every agent set up (or failed, or the set-up time is over)
            deadline = time.monotonic() + self.setup_timeout
            while len(ready | set(results)) < n and time.monotonic() < deadline:
                try:
                    handle(*q.get(timeout=0.5))
                except queue.Empty:
                    pass
            mismatch = [r["reason"] for r in results.values() if r.get("status") == "error"]
            if mismatch and len(results) == n:
                raise ClusterError(mismatch[0])
            self.setup_s = round(time.monotonic() - t_submit, 3)
            # 2. one start instant, on the scheduler's clock
            offset = _scheduler_offset(self.client)
            start_sched = time.time() + offset + START_LEAD
            start_var.set(start_sched)
            go_event.set()
            start_local = start_sched - offset
            if self.live is not None:
                self.live.begin(start_local)
            # 3. results, until start + duration + timeout
            end = start_local + self.cfg.duration + self.cfg.timeout + CANCEL_SLACK
            # a little after each second: the agents' ticks of that second are in
            next_tick = start_local + 1.0 + LIVE_LAG
            while len(results) < n:
                now = time.time()
                if now >= end:
                    break
                try:
                    handle(*q.get(timeout=max(0.01, min(next_tick, end) - now)))
                except queue.Empty:
                    pass
                if self.live is not None and time.time() >= next_tick:
                    self.live.emit(len(running), n)
                    next_tick += 1.0
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            left = [f for i, f in futures.items() if i not in results]
            if left:
                try:
                    self.client.cancel(left, force=True)
                except Exception:  # noqa: BLE001
                    pass
            try:
                self.client.unsubscribe_topic(self.ns)
                start_var.delete()
            except Exception:  # noqa: BLE001 - the client may be gone (Ctrl-C)
                pass
        return self._merge(per, results, live)

    def _merge(self, per, results, live):
        from cypoe.cli import report
        total = report.LoadStats()
        lost = 0
        starts = []
        for i, info in per.items():
            res = results.get(i)
            if res is None:
                if self.interrupted:
                    # what its live lines showed before the stop
                    st = report.LoadStats()
                    st.responses = live[i]["responses"]
                    st.hist = live[i]["hist"]
                    total.merge(st)
                    info.update(status="interrupted", responses=st.responses)
                    continue
                res = {"status": "lost", "reason": "not finished by start + duration + timeout"}
            if res.get("status") == "ok":
                st = report.LoadStats.from_dict(res["stats"])
                total.merge(st)
                starts.append(res["started_at"])
                info.update(status="ok", worker=res["worker"], started_at=res["started_at"],
                            started_local=res["started_local"],
                            clock_offset_ms=res["clock_offset_ms"],
                            requests=st.requests, responses=st.responses,
                            errors=dict(st.errors), latency_count=st.hist.get_total_count(),
                            duration_s=round(st.duration, 3))
                if res.get("interrupted"):
                    self.interrupted = True
            else:
                lost += 1
                info.update(status=res.get("status", "lost"),
                            reason=res.get("reason", "late"))
                if res.get("worker"):
                    info["worker"] = res["worker"]
        if lost:
            total.error("worker:lost", lost)
        if len(starts) > 1:
            self.start_skew_ms = round((max(starts) - min(starts)) * 1000.0, 3)
            t0 = min(starts)
            for info in per.values():
                if "started_at" in info:
                    info["start_offset_ms"] = round((info["started_at"] - t0) * 1000.0, 3)
        elif starts:
            self.start_skew_ms = 0.0
        self.lost = lost
        return total, [per[i] for i in sorted(per)], self.interrupted


class LiveTotal:
    """The load's live line: the cluster's total each second and how many
    agents are running."""

    def __init__(self, stream=None, quiet=False):
        from cypoe.cli import report
        self.report = report
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.lines = []
        self._reset()

    def _reset(self):
        self.responses = 0
        self.errors = 0
        self.hist = self.report.new_histogram()
        self.since = time.monotonic()
        self.conns = getattr(self, "conns", {})

    def begin(self, start_wall):
        """The load starts at ``start_wall`` (time.time()'s clock)."""
        self.t0 = time.monotonic() + (start_wall - time.time())
        self._reset()
        self.since = self.t0

    def add(self, snap, who, hist):
        """Count one agent's second (``snap``: responses, errors,
        connections; ``hist``: its latencies) into the current line."""
        self.responses += snap["responses"]
        self.errors += snap["errors"]
        self.conns[who] = snap["conns"]
        if hist is not None:
            self.hist.add(hist)

    def emit(self, running, agents_total):
        """Write the live line of the second that ended (unless quiet) and
        start the next."""
        now = time.monotonic()
        line = (self.report.format_live(now - self.t0, now - self.since, self.responses,
                                        self.hist, self.errors, sum(self.conns.values()))
                + f"  agents {running}/{agents_total}")
        self.lines.append(line)
        if not self.quiet:
            self.stream.write(line + "\n")
            self.stream.flush()
        self._reset()


def load(target, *, cluster=None, client=None, connections=16, duration=10.0, requests=None,
         pipeline=1, message="PING", size=None, rate=None, connect_rate=None, expect="echo",
         source_addresses=None, workers=1, timeout=5.0, per_agent=True,
         setup_timeout=SETUP_TIMEOUT, live=None, on_event=None):
    """Run ``cypoe load`` on a Dask cluster; returns the merged report (the
    dict ``cypoe load --json`` writes) with ``cluster`` (agents, start
    skew, lost shares) and, with ``per_agent``, each agent's figures.

    ``target`` is ``"HOST:PORT"`` or a (host, port) pair; the totals
    (``connections``, ``rate``, ``requests``, ``connect_rate``) are split
    exactly across the agents, ``workers`` is processes per agent.
    ``live`` (a :class:`LiveTotal`) prints the live line; ``on_event(dict)``
    sees the agents' events (``ready``, ``progress``)."""
    import argparse
    from cypoe.cli import common
    from cypoe.cli.load import Config, build_messages, parse_sources
    host, port = common.hostport(target) if isinstance(target, str) else target
    # one message, or a list of messages sent in turn (as -m repeated)
    texts = [message] if isinstance(message, (str, bytes)) else list(message)
    texts = [t.decode("latin-1") if isinstance(t, bytes) else t for t in texts]
    msgs = build_messages(argparse.Namespace(size=size, message=texts, messages=None))
    cfg = Config(host, port, connections, duration, pipeline, msgs[0], expect, rate=rate,
                 connect_rate=connect_rate, requests=requests,
                 sources=parse_sources(source_addresses), timeout=timeout, messages=msgs)
    owns = client is None
    if owns:
        client = connect(cluster)
    try:
        run = LoadRun(cfg, client, workers=workers, live=live, setup_timeout=setup_timeout,
                      owns_client=owns, on_event=on_event)
    except BaseException:
        if owns:
            client.close()
        raise
    try:
        stats, agents_info, interrupted = run.run()
    finally:
        if owns:
            client.close()
    return summarize(run, stats, agents_info, interrupted, per_agent=per_agent)


def summarize(run, stats, agents_info, interrupted, *, per_agent=True, **extra):
    """The JSON summary of a cluster load: ``cypoe load``'s (from the
    merged ``stats``) with a ``cluster`` section (agents, workers per
    agent, set-up time, start skew, agents lost) and, with
    ``per_agent``, the ``agents`` list."""
    cfg = run.cfg
    host, port = cfg.host, cfg.port
    summary = stats.summary(
        target=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        concurrency=cfg.connections, pipeline=cfg.pipeline, workers=run.workers,
        rate=cfg.rate, expect=cfg.expect, message_bytes=len(cfg.message),
        interrupted=interrupted, **extra)
    summary["cluster"] = {"agents": len(run.agents), "workers_per_agent": run.workers,
                          "setup_s": run.setup_s, "start_skew_ms": run.start_skew_ms,
                          "lost": run.lost}
    if per_agent:
        summary["agents"] = agents_info
    return summary
