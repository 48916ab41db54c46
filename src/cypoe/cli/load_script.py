"""``cypoe load --script scenario.py``: a conversation written in Python.

The compiled engine sends one fixed request and frames the answers in C;
a protocol with several steps (log in, then query; SET, then GET the key
back) needs code.  A scenario file defines a class, one instance per
connection, over one TCPMulti (POE::Component::Client::TCPMulti) session::

    import cypoe

    class Scenario:
        filter = cypoe.Line()            # records in and out (default Line())

        def on_connect(self, conn):      # connected: start the conversation
            conn.request()               # a request starts now (latency clock)
            conn.send(b"PING")

        def on_input(self, conn, record):
            conn.response()              # answered: latency recorded
            if conn.request():           # False once the run is over
                conn.send(b"PING")

        def on_error(self, conn, operation, errnum, errstr):   # optional
            pass

        def on_disconnect(self, conn):   # optional
            pass

Latency is what the script's ``conn.request()`` / ``conn.response()``
calls say: ``request()`` marks a request's (intended) send time,
``response()`` records the latency of the oldest request still
outstanding on that connection.  ``conn.fail(kind)`` ends the oldest
request as an error (a wrong answer).

Open loop (``--rate``): the scenario defines ``on_request(self, conn)``,
and the runner calls it when the connection's next request is due (wrk2's
schedule: ``rate`` per second over all connections, at most ``--pipeline``
in flight per connection, a late request's latency counted from its due
time; the uncorrected latency is reported beside it).  A scenario with a
handshake sets ``handshake = True`` and calls ``conn.ready()`` when the
requests may start.  In closed loop ``on_request``, when defined, is
called ``--pipeline`` times once the connection is ready and once after
each ``response()`` or ``fail()``; without it the script sends its next
request itself (from ``on_input``).

Every record goes through Python, so this is much slower than the
compiled engine (tens of thousands of requests per second per core rather
than a million); the report's CPU line says when the client was the
bottleneck.  An exception in a callback is counted as a
``script:ExceptionName`` error (its traceback printed once) and closes
that connection only.
"""
import importlib.util
import inspect
import os
import sys
import traceback
from cypoe.cli import common, report
from cypoe.cli.load_tcpmulti import ConnState, TCPMultiRun


class ScriptError(common.Unavailable):
    """The scenario file cannot be used (says why).  A kind of
    common.Unavailable, so that the command's error path reports it in one
    line (``cypoe load: scenario.py: ...``, exit status 1)."""


def load_scenario(path):
    """The scenario class of the file at `path`: a class named
    ``Scenario``, else the only class defined there with ``on_input``."""
    if not os.path.isfile(path):
        raise ScriptError(f"{path}: no such file")
    name = "cypoe_scenario_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a user's file: say what went wrong
        raise ScriptError(f"{path}: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, "Scenario", None)
    if cls is None:
        found = [v for v in vars(module).values()
                 if inspect.isclass(v) and v.__module__ == name and hasattr(v, "on_input")]
        if len(found) != 1:
            raise ScriptError(f"{path}: define a class named Scenario (with on_connect and "
                              f"on_input methods)" + (f"; found {len(found)} candidates"
                                                      if found else ""))
        cls = found[0]
    if not inspect.isclass(cls):
        raise ScriptError(f"{path}: Scenario must be a class")
    if not callable(getattr(cls, "on_input", None)):
        raise ScriptError(f"{path}: {cls.__name__} has no on_input(self, conn, record) method")
    return cls


def _make_filter(spec, cy):
    """The scenario's ``filter``: an instance (cloned), a class or a
    zero-argument factory; default Line()."""
    if spec is None:
        return cy.Line()
    if isinstance(spec, cy.Filter):
        return spec.clone()
    f = spec()
    if not isinstance(f, cy.Filter):
        raise ScriptError(f"filter must be a cypoe filter, a filter class or a factory, "
                          f"not {type(f).__name__}")
    return f


class ScriptConn(ConnState):
    """What a scenario's callbacks get as ``conn``: one connection."""

    # outstanding: (intended time, actual time) per request in flight
    __slots__ = ("run", "scenario", "in_f", "out_f", "is_ready", "__weakref__")

    def __init__(self, run, index):
        super().__init__(index)
        self.run = run
        self.scenario = None
        self.in_f = self.out_f = None
        self.is_ready = False

    # -- for scripts ---------------------------------------------------------

    @property
    def id(self):
        return self.conn.id if self.conn is not None else None

    @property
    def sending(self):
        """True while the run still sends requests."""
        return not self.run.stopping

    @property
    def in_flight(self):
        return len(self.outstanding)

    def request(self):
        """A request starts: stamps its (intended) send time and counts it.
        Returns False, counting nothing, once the run is over (or ``-n`` is
        reached): then do not send it."""
        return self.run.begin_request(self)

    def response(self):
        """The oldest outstanding request is answered: records its latency.
        Returns the latency in seconds (None if nothing was outstanding,
        which counts as an ``unexpected-response`` error)."""
        return self.run.end_request(self, ok=True)

    def fail(self, kind="mismatch"):
        """The oldest outstanding request got a wrong answer: counted as an
        error of `kind` (``mismatch`` counts against requests)."""
        return self.run.end_request(self, ok=False, kind=kind)

    def send(self, *records):
        """Send records through the scenario's filter."""
        if self.conn is None or not self.alive:
            return
        chunks = self.out_f.put(list(records))
        n = 0
        for c in chunks:
            n += len(c)
        self.run.stats.bytes_sent += n
        self.run.window["bytes_sent"] += n
        self.conn.put(*chunks)

    put = send

    def ready(self):
        """The handshake is done: requests may start (see ``handshake``)."""
        if not self.is_ready:
            self.is_ready = True
            self.run.start_requests(self)


    def close(self):
        """Close this connection (gracefully: queued output is sent first)."""
        if self.conn is not None:
            self.conn.shutdown()

    shutdown = close

    def delay(self, seconds, fn, *args):
        """Call ``fn(*args)`` after `seconds` (a think time); returns the timer."""
        return self.run.later(seconds, fn, *args, sc=self)

    def __repr__(self):
        return f"<ScriptConn {self.index} in_flight={len(self.outstanding)}>"


class ScriptRun(TCPMultiRun):
    """``cypoe load --script``: each connection runs an instance of the
    scenario class (see :mod:`cypoe.cli.load_tcpmulti` for the run)."""

    def __init__(self, cfg, scenario_cls, tick=None, kernel=None):
        self.cy = cy = common.require("TCPMulti", "Kernel", "Stream", "Line")
        # the per-second history is kept whether or not anyone watches
        super().__init__(cfg, kernel if kernel is not None else cy.Kernel(),
                         tick if tick is not None else (lambda snap: None))
        self.scenario_cls = scenario_cls
        self.prototype = _make_filter(getattr(scenario_cls, "filter", None), cy)
        self.handshake = bool(getattr(scenario_cls, "handshake", False))
        self.has_on_request = callable(getattr(scenario_cls, "on_request", None))
        if cfg.rate and not self.has_on_request:
            raise ScriptError(f"--rate needs {scenario_cls.__name__}.on_request(self, conn): "
                              f"the runner calls it when a request is due")
        self.window_hist = report.new_histogram()
        self.window = self._empty_window()
        self.window_raw_hist = report.new_histogram()
        self.second = 0
        self.tracebacks_shown = set()
        self.conns = [ScriptConn(self, i) for i in range(cfg.connections)]
        self.open_loop = self.interval is not None
        self.multi = cy.TCPMulti(
            on_input=self._on_input, on_success=self._on_success, on_failure=self._on_failure,
            on_error=self._on_error, on_disconnected=self._on_disconnected,
            on_timeout=self._on_timeout, filter=cy.Stream(),
            connect_timeout=cfg.timeout, input_timeout=0, kernel=self.kernel,
            states={"cli_call": lambda multi, fn, *args: fn(*args)})

    @staticmethod
    def _empty_window():
        return {f: 0 for f in report.HISTORY_FIELDS}

    # -- scheduling ------------------------------------------------------------

    def _later(self, seconds, fn, *args):
        return self.later(seconds, fn, *args)

    def later(self, seconds, fn, *args, sc=None):
        """A timer on the TCPMulti's session (it keeps the session alive
        while every connection is down); an exception in `fn` is an error
        of connection `sc`."""
        return self.multi.delay(max(0.0, seconds), "cli_call", self._guard, sc, fn, args)

    def _guard(self, sc, fn, args):
        """Run script code; an exception is an error of that connection."""
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - a user's script
            self._script_failed(sc, exc)
            return None

    def _script_failed(self, sc, exc):
        kind = f"script:{type(exc).__name__}"
        self._count_error(kind)
        if kind not in self.tracebacks_shown:
            self.tracebacks_shown.add(kind)
            sys.stderr.write(f"cypoe load: --script: {type(exc).__name__} in the scenario "
                             f"(counted as {kind}; that connection is closed):\n")
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        if sc is not None and sc.conn is not None:
            sc.conn.shutdown()

    def _call(self, sc, name, *args):
        fn = getattr(sc.scenario, name, None)
        if fn is None:
            return None
        try:
            return fn(sc, *args)
        except Exception as exc:  # noqa: BLE001
            self._script_failed(sc, exc)
            return None

    # -- the run ---------------------------------------------------------------

    def run(self):
        """Run to the end; returns the LoadStats."""
        clock = report.CpuClock()
        self._start()
        self.kernel.run()
        self._end()
        clock.stop(self.stats)
        return self.stats

    def _snapshot(self):
        return {"type": "tick", "responses": self.window["responses"],
                "errors": self.window["errors"], "conns": self.connected,
                "hist": report.encode_histogram(self.window_hist)}

    def _fold(self):
        """The current second's counts into the history, its latencies into
        the run's histograms."""
        self.second += 1
        if any(self.window.values()):
            self.stats.second(self.second, **self.window)
        self.window = self._empty_window()
        if self.window_hist.get_total_count():
            self.stats.hist.add(self.window_hist)
            self.window_hist = report.new_histogram()
        if self.window_raw_hist.get_total_count():
            self.stats.hist_raw.add(self.window_raw_hist)
            self.window_raw_hist = report.new_histogram()

    # -- requests ----------------------------------------------------------------

    def begin_request(self, sc):
        if self.stopping or not sc.alive:
            return False
        if self.max_requests is not None and self.stats.requests >= self.max_requests:
            self._stop_sending()
            return False
        now = self.kernel.time()
        intended = sc.due.popleft() if (self.open_loop and sc.due) else now
        sc.outstanding.append((intended, now))
        self.stats.requests += 1
        self.window["requests"] += 1
        return True

    def end_request(self, sc, ok=True, kind="mismatch"):
        if not sc.outstanding:
            self._count_error("unexpected-response")
            return None
        intended, actual = sc.outstanding.popleft()
        now = self.kernel.time()
        latency = now - intended
        if ok:
            self.window_hist.record_value(report.clamp_us(latency))
            if self.open_loop:
                self.window_raw_hist.record_value(report.clamp_us(now - actual))
            self.stats.responses += 1
            self.window["responses"] += 1
        else:
            if kind == "mismatch":
                self.stats.mismatches += 1
            self.stats.failed += 1
            self._count_error(kind)
        if self.stopping:
            self._maybe_finish()
        elif self.open_loop:
            self._send_due(sc)
        elif self.has_on_request:
            self.call_on_request(sc)
        return latency if ok else None

    def start_requests(self, sc):
        """The connection is ready: open loop starts its schedule; closed
        loop with on_request sends `pipeline` requests."""
        if self.stopping or not sc.alive:
            return
        if self.open_loop:
            self._start_schedule(sc)
        elif self.has_on_request:
            for _ in range(self.cfg.pipeline):
                if not self.call_on_request(sc):
                    break

    def call_on_request(self, sc):
        if self.stopping or not sc.alive:
            return False
        before = self.stats.requests
        self._call(sc, "on_request")
        return self.stats.requests > before

    def _send_due(self, sc):
        """Open loop: call on_request for the due requests the pipeline allows."""
        while sc.due and sc.alive and not self.stopping \
                and len(sc.outstanding) < self.cfg.pipeline:
            n = len(sc.due)
            self._call(sc, "on_request")
            if len(sc.due) == n:
                # on_request sent nothing: that request is skipped, not owed
                sc.due.popleft()

    def _count_error(self, kind):
        self.stats.error(kind)
        self.window["errors"] += 1

    # -- TCPMulti callbacks ------------------------------------------------------

    def _on_success(self, conn):
        sc = self._connected(conn)
        if sc is None:
            return
        sc.in_f = self.prototype.clone()
        sc.out_f = self.prototype.clone()
        sc.is_ready = False
        try:
            sc.scenario = self.scenario_cls()
        except Exception as exc:  # noqa: BLE001
            self._script_failed(sc, exc)
            return
        self._call(sc, "on_connect")
        if not self.handshake and sc.alive:
            sc.ready()

    def _on_input(self, conn, data):
        sc = conn.heap["state"]
        if not sc.alive or sc.scenario is None:
            return
        n = len(data)
        self.stats.bytes_received += n
        self.window["bytes_received"] += n
        try:
            records = sc.in_f.get([data])
        except Exception as exc:  # noqa: BLE001 - malformed input for the filter
            self._count_error(f"protocol:{type(exc).__name__}")
            conn.shutdown()
            return
        for record in records:
            if not sc.alive:
                break
            self._call(sc, "on_input", record)

    def _lost_requests(self, n):
        self.stats.failed += n
        self.window["errors"] += n

    def _lost_extra(self, sc):
        if sc.scenario is not None:
            self._call(sc, "on_disconnect")
            sc.scenario = None

    def _on_error(self, conn, operation, errnum, errstr):
        if self.finished:
            return
        sc = conn.heap["state"]
        self._count_error(report.error_kind(operation, errnum))
        if sc.scenario is not None:
            self._call(sc, "on_error", operation, errnum, errstr)
        conn.shutdown()


def _scenario_of(cfg):
    path = getattr(cfg, "script", None)
    if not path:
        raise ScriptError("no --script given")
    return load_scenario(path)


def run_script(cfg, live):
    """Run the scenario ``cfg.script`` against ``cfg.host:cfg.port`` in this
    process; `live` (load.py's LiveLine, or None) gets the per-second
    snapshots.  Returns the LoadStats (``.interrupted`` set on Ctrl-C).
    Raises ScriptError when the scenario cannot be used."""
    cls = _scenario_of(cfg)

    def tick(snap):
        if live is not None:
            live.add(snap)
            live.emit()
    r = ScriptRun(cfg, cls, tick=tick)
    stats = r.run()
    stats.interrupted = r.interrupted
    return stats


def script_worker_main(cfg, wfd):
    """A worker process running the scenario: JSON lines on `wfd` as
    load_tcpmulti.worker_main writes them (ticks, then ``done``)."""
    def run(tick):
        r = ScriptRun(cfg, _scenario_of(cfg), tick=tick)
        return r.run(), r.interrupted
    return common.pipe_worker(run, wfd, lambda stats: stats.to_dict())
