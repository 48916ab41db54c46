"""The cluster agent: the child program a Dask task runs for one share of
a ``cypoe scan`` or ``cypoe load`` (``python -m cypoe.cli.agent``).

A Dask task runs in a worker thread, where signals cannot be handled and
from which a daemonic worker cannot fork worker processes; so the task
starts this program as a child and speaks to it over its pipes, in JSON
lines.

stdin (from the task): first the job, ``{"version": …, "kind": "scan" |
"load", …}``; for a load, later ``{"start": WALL_CLOCK_TIME}`` (or
``{"cancel": REASON}``).  **The agent stops when its stdin closes** (its
task ended, was cancelled, or its Dask worker died): a thread reading
stdin sends the agent SIGTERM (the engines' graceful stop), and after a
grace period kills the agent's whole process group, so no scan or load
outlives its worker.

stdout (to the task), one object a line:
``{"ready": {...}}`` set up, ``{"record": REC}`` a scan result,
``{"progress": {...}}`` live counts each second, ``{"result": {...}}``
the final counts (a load: ``LoadStats.to_dict()``), ``{"error": TEXT}``.

The agent refuses a job from another version of cypoe (exit status 2).
"""
import base64
import json
import os
import signal
import sys
import threading
import time

# After stdin closes: how long the graceful stop may take before the
# agent's process group is killed.
STOP_GRACE = 5.0
EXIT_VERSION = 2
# Set when the job is done: a stdin closing after that is the normal end.
FINISHED = threading.Event()


class Channel:
    """Writes JSON lines to stdout (one lock: the engine's callbacks and the
    progress timer may both write)."""

    def __init__(self, fh):
        self.fh = fh
        self.lock = threading.Lock()

    def send(self, kind, value):
        line = json.dumps({kind: value}, separators=(",", ":")) + "\n"
        with self.lock:
            try:
                self.fh.write(line)
                self.fh.flush()
            except (BrokenPipeError, ValueError):
                pass  # the task is gone: the stdin watcher ends us


class StdinWatch(threading.Thread):
    """Reads the task's later messages; on end of file stops the agent."""

    def __init__(self, fh):
        super().__init__(daemon=True, name="cypoe-agent-stdin")
        self.fh = fh
        self.messages = []
        self.cond = threading.Condition()
        self.closed = False

    def run(self):
        for line in self.fh:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                self.messages.append(msg)
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if not FINISHED.is_set():
            stop_self()

    def wait_message(self, timeout):
        """The next message, or None at end of file or after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.messages and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.messages.pop(0) if self.messages else None


def stop_self():
    """stdin closed: SIGTERM to ourselves (the engines stop gracefully and
    pass it on to their worker processes), then the process group's end."""
    try:
        os.kill(os.getpid(), signal.SIGTERM)
    except OSError:
        pass
    time.sleep(STOP_GRACE)
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(1)


# -- scan ------------------------------------------------------------------------

def plan_from_job(job):
    from cypoe.cli.scan import Plan
    from cypoe.cli.targets import TargetSet
    probes = {}
    for port, payload in job.get("probes", {}).items():
        probes[None if port == "*" else int(port)] = base64.b64decode(payload)
    return Plan(TargetSet.from_intervals(job["intervals"]), job["ports"], seed=job["seed"],
                shards=job["shards"], shard=job["shard"], probes=probes)


def run_scan(job, chan, watch):
    from cypoe.cli import scan_engine, timing as timingmod
    plan = plan_from_job(job)
    tm = timingmod.Timing(**job["timing"])
    scan_engine.check()
    chan.send("ready", {"pid": os.getpid(), "time": time.time(), "total": plan.total})
    counts = {"open": 0, "closed": 0, "filtered": 0}
    progress = {"done": 0}
    lock = threading.Lock()

    def on_result(rec):
        with lock:
            counts[rec["state"]] += 1
            progress["done"] += 1
        chan.send("record", rec)

    def on_other(state, n):
        with lock:
            counts[state] += n
            progress["done"] += n

    ticker = _Ticker(lambda: chan.send("progress", {"done": progress["done"],
                                                    "open": counts["open"]}))
    ticker.start()
    kw = dict(banners=job["banners"], max_read=job["max_read"],
              read_timeout=job["read_timeout"], tls=job["tls"], sni=job["sni"],
              on_other=None if job["all"] else on_other)
    try:
        if job.get("workers", 1) > 1:
            info = scan_engine.scan_workers(plan, tm, job["workers"], on_result, **kw)
        else:
            info = scan_engine.scan(plan, tm, on_result, **kw)
    finally:
        ticker.stop()
    chan.send("result", {"counts": counts, "info": info, "total": plan.total,
                         "ended_at": time.time()})
    return 0


class _Ticker(threading.Thread):
    """Calls ``fn`` every second until stopped (live progress)."""

    def __init__(self, fn, interval=1.0):
        super().__init__(daemon=True, name="cypoe-agent-progress")
        self.fn = fn
        self.interval = interval
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(self.interval):
            self.fn()

    def stop(self):
        self.stopped.set()


# -- load ------------------------------------------------------------------------

def config_from_job(d):
    from cypoe.cli.load import Config
    messages = [base64.b64decode(m) for m in d["messages"]]
    return Config(d["host"], d["port"], d["connections"], d["duration"], d["pipeline"],
                  messages[0], d["expect"], rate=d.get("rate"),
                  connect_rate=d.get("connect_rate"), requests=d.get("requests"),
                  sources=d.get("sources") or (), timeout=d.get("timeout", 5.0),
                  messages=messages, no_body=d.get("no_body", False))


class _TickRelay:
    """What ``load.run_workers`` calls its live line: sums the worker
    processes' snapshots and passes one a second on."""

    def __init__(self, tick):
        from cypoe.cli import report
        self.report = report
        self.tick = tick
        self.conns = {}
        self._reset()

    def _reset(self):
        self.responses = 0
        self.errors = 0
        self.hist = self.report.new_histogram()

    def add(self, snap, who=0):
        self.responses += snap["responses"]
        self.errors += snap["errors"]
        self.conns[who] = snap["conns"]
        if snap.get("hist"):
            self.hist.add(self.report.decode_histogram(snap["hist"]))

    def emit(self):
        self.tick({"type": "tick", "responses": self.responses, "errors": self.errors,
                   "conns": sum(self.conns.values()),
                   "hist": self.report.encode_histogram(self.hist)})
        self._reset()


def prepare_load(cfg, workers, tick):
    """The load engine for this share, set up and not started; returns a
    callable that runs it and returns ``(LoadStats, interrupted)``.

    This adapter is the one place the agent touches the load engine: the
    compiled engine (:mod:`cypoe.cli.load_compiled`) when it is built, else the
    TCPMulti engine, as ``cypoe load --engine auto`` chooses; ``workers`` > 1
    forks worker processes as ``cypoe load --workers`` does.

    One process on the compiled engine: its connections are opened here
    (``FastRun.prepare``, up to ``cfg.timeout``), so ready means connected;
    the callable then has ``connections_up``.  Forked workers and the
    TCPMulti engine still connect when they start."""
    from cypoe.cli import common, load, load_compiled, load_tcpmulti
    engine = load_compiled if load_compiled.available() else load_tcpmulti
    engine.check()
    common.raise_nofile(cfg.connections + 256)
    if workers <= 1:
        if engine is load_compiled:
            # Connections opened now, before "ready": the load starts at
            # the common instant with its connections set up.
            fast = load_compiled.FastRun(cfg, tick=tick)
            fast.prepare(cfg.timeout)

            def run_prepared():
                return fast.run()
            run_prepared.connections_up = fast.engine.conns_up
            return run_prepared
        return load_tcpmulti.LoadRun(cfg, tick=tick).run
    relay = _TickRelay(tick)

    def run_forked():
        # run_workers stops its workers on SIGINT (its own handler): the
        # stdin watcher's SIGTERM becomes one.
        old = signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(),
                                                                          signal.SIGINT))
        try:
            return load.run_workers(cfg, workers, relay, engine)
        finally:
            signal.signal(signal.SIGTERM, old)
    return run_forked


def run_load(job, chan, watch):
    cfg = config_from_job(job["config"])
    run = prepare_load(cfg, job.get("workers", 1), lambda snap: chan.send("progress", snap))
    ready = {"pid": os.getpid(), "time": time.time()}
    if getattr(run, "connections_up", None) is not None:
        ready["connections_up"] = run.connections_up
    chan.send("ready", ready)
    msg = watch.wait_message(job.get("setup_timeout", 60.0) + 5.0)
    if msg is None or "start" not in msg:
        chan.send("result", {"late": False, "cancelled": True,
                             "reason": (msg or {}).get("cancel", "no start time came")})
        return 0
    start = float(msg["start"])
    # Sleep most of the way, then the last few milliseconds in short steps:
    # every agent starts at the same wall-clock instant.
    while True:
        left = start - time.time()
        if left <= 0:
            break
        time.sleep(left - 0.002 if left > 0.004 else 0.0002)
    started_at = time.time()
    stats, interrupted = run()
    chan.send("result", {"stats": stats.to_dict(), "interrupted": interrupted,
                         "started_at": started_at, "ended_at": time.time()})
    return 0


# -- main ------------------------------------------------------------------------

def main(argv=None):
    import cypoe
    # Own process group: the stdin watcher's last resort kills it whole
    # (the agent and any worker processes it forked).
    if os.getpgrp() != os.getpid():
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1 << 16)
    # Nothing else may write to the channel: stray prints go to stderr.
    sys.stdout = sys.stderr
    chan = Channel(out)
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # no job: the task went away before sending it
    try:
        job = json.loads(line)
    except ValueError as exc:
        chan.send("error", f"bad job line: {exc}")
        return 1
    mine = cypoe.__version__
    if job.get("version") != mine:
        chan.send("error", f"version mismatch: this agent runs cypoe {mine} "
                           f"(python {sys.executable}), the client cypoe {job.get('version')}; "
                           f"install the same cypoe on every worker host")
        return EXIT_VERSION
    watch = StdinWatch(sys.stdin)
    watch.start()
    try:
        if job.get("kind") == "scan":
            return run_scan(job, chan, watch)
        if job.get("kind") == "load":
            return run_load(job, chan, watch)
        chan.send("error", f"unknown job kind {job.get('kind')!r}")
        return 1
    except Exception as exc:  # noqa: BLE001 - reported to the client
        import traceback
        traceback.print_exc()
        chan.send("error", f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        FINISHED.set()


if __name__ == "__main__":
    sys.exit(main())
