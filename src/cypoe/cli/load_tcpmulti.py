"""``cypoe load --engine tcpmulti`` and the run every TCPMulti load engine shares.

One TCPMulti (POE::Component::Client::TCPMulti) session holds the
connections of a worker.  How a run goes is the same for
:class:`LoadRun` (this engine: one fixed request, answers framed by a
compiled filter) and :class:`cypoe.cli.load_script.ScriptRun` (``--script``)
and lives once in :class:`TCPMultiRun`: connect every connection (at
``--connect-rate``), reconnect one that is lost while the run goes on, stop
sending when the duration is up (or ``-n`` is reached, or on Ctrl-C), give
the requests in flight ``--timeout`` seconds of grace, finish (the TCPMulti
dies), and hand a snapshot of the current second to ``tick`` once a second.

Closed loop: each connection keeps ``pipeline`` requests in flight.  Open
loop (``--rate``): connection i's requests are due at ``start + phase_i +
k * interval`` with ``interval = connections / rate``; a due request waits
if its connection already has ``pipeline`` in flight, and its latency
counts from the time it was due (wrk2's correction for coordinated
omission).

A subclass of :class:`TCPMultiRun` sets what its seconds are
(:meth:`TCPMultiRun._snapshot`, :meth:`TCPMultiRun._fold`), sends
(:meth:`TCPMultiRun._send_due`) and handles input and errors.
"""
import time
from collections import deque

from cypoe.cli import common, report

RECONNECT_DELAY = 0.1
LIVE_INTERVAL = 1.0


class ConnState:
    """What the run keeps of one of its connections (``cfg.connections`` of
    them, each reconnected when lost)."""

    __slots__ = ("index", "conn", "outstanding", "due", "next_due", "timer", "alive")

    def __init__(self, index):
        self.index = index
        self.conn = None           # the TCPMulti Conn while connecting or connected
        self.outstanding = deque()  # per request in flight: its (intended) send time
        self.due = deque()         # open loop: due times not sent yet
        self.next_due = 0.0
        self.timer = None          # open loop: the next _rate_tick
        self.alive = False         # connected


class TCPMultiRun:
    """One worker's load over one TCPMulti session.

    The subclass builds ``self.multi`` (the TCPMulti, with this object's
    ``_on_*`` callbacks) after calling ``__init__``, and ``self.conns``
    holds one :class:`ConnState` (or subclass) per connection."""

    def __init__(self, cfg, kernel, tick):
        self.cfg = cfg
        self.kernel = kernel
        self.tick = tick
        self.stats = report.LoadStats()
        self.stopping = False       # no new request is sent
        self.finished = False       # the TCPMulti has died: the run is over
        self.interrupted = False    # stopped by SIGINT/SIGTERM
        self.connected = 0
        self.timers = []            # connects, reconnects, the stop: cancelled on stop
        self.grace = None
        self.live_timer = None
        self.t_stop = None
        self.interval = (cfg.connections / cfg.rate) if cfg.rate else None
        self.max_requests = getattr(cfg, "requests", None)

    # -- hooks for the subclass ---------------------------------------------------

    def _later(self, seconds, fn, *args):
        """A timer that keeps the run going while every connection is down."""
        raise NotImplementedError

    def _snapshot(self):
        """The current second, as the live line and the parent want it."""
        raise NotImplementedError

    def _fold(self):
        """Close the current second: its latencies into the run's histograms."""
        raise NotImplementedError

    def _count_error(self, kind):
        raise NotImplementedError

    def _send_due(self, st):
        """Open loop: send the due requests the pipeline window allows."""
        raise NotImplementedError

    def _unanswered(self, n):
        """At the finish, ``n`` requests are still in flight."""
        self.stats.in_flight += n

    def _lost_extra(self, st):
        """A connection was lost (after its requests were counted)."""

    # -- the run ---------------------------------------------------------------------

    def _start(self):
        """Schedule the connects, the stop and the live line; then the
        caller runs the kernel and calls :meth:`_end`."""
        k = self.kernel
        self.t0 = k.time()
        self.t_end = self.t0 + self.cfg.duration
        k.register_component(self)
        rate = getattr(self.cfg, "connect_rate", None)
        for st in self.conns:
            if rate:
                self.timers.append(self._later(st.index / rate, self._connect, st))
            else:
                self._connect(st)
        self.timers.append(self._later(self.t_end - k.time(), self._stop_sending))
        if self.tick is not None:
            self.live_timer = self._later(LIVE_INTERVAL, self._live)

    def _end(self):
        self._fold()
        end = self.t_stop if self.t_stop is not None else self.kernel.time()
        self.stats.duration = end - self.t0

    def shutdown(self):
        """SIGINT / SIGTERM, through the Kernel (a registered component)."""
        self.interrupted = True
        self._stop_sending()
        self._finish()

    def _live(self):
        if self.finished:
            return
        snap = self._snapshot()
        self._fold()
        self.tick(snap)
        self.live_timer = self._later(LIVE_INTERVAL, self._live)

    def _stop_sending(self):
        if self.stopping:
            return
        self.stopping = True
        self.t_stop = self.kernel.time()
        for t in self.timers:
            t.cancel()
        for st in self.conns:
            if st.timer is not None:
                st.timer.cancel()
                st.timer = None
            st.due.clear()
        if self._outstanding() == 0:
            self._finish()
        else:
            self.grace = self._later(self.cfg.timeout, self._finish)

    def _outstanding(self):
        return sum(len(st.outstanding) for st in self.conns)

    def _maybe_finish(self):
        if self.stopping and not self.finished and self._outstanding() == 0:
            self._finish()

    def _finish(self):
        if self.finished:
            return
        self.finished = True
        if self.grace is not None:
            self.grace.cancel()
        if self.live_timer is not None:
            self.live_timer.cancel()
        self._unanswered(self._outstanding())
        for st in self.conns:
            st.outstanding.clear()
            st.alive = False
        self.multi.die()
        self.kernel.unregister_component(self)

    def _connect(self, st):
        if self.stopping:
            return
        cfg = self.cfg
        sources = getattr(cfg, "sources", None)
        bind = sources[st.index % len(sources)] if sources else None
        st.conn = self.multi.connect(cfg.host, cfg.port, bind_address=bind, heap={"state": st})

    def _start_schedule(self, st):
        """Open loop: a connection is ready; its schedule is fixed from the
        start, so a late connection owes the requests it missed, and they
        count as late."""
        now = self.kernel.time()
        phase = self.interval * st.index / max(1, self.cfg.connections)
        first = self.t0 + phase
        st.next_due = first if first >= now - self.interval else now
        self._rate_tick(st)

    def _rate_tick(self, st):
        st.timer = None
        if self.stopping or not st.alive:
            return
        now = self.kernel.time()
        while st.next_due <= now and st.next_due < self.t_end:
            st.due.append(st.next_due)
            st.next_due += self.interval
        self._send_due(st)
        if st.next_due < self.t_end and not self.stopping and st.alive:
            st.timer = self._later(st.next_due - now, self._rate_tick, st)

    def _lost(self, st):
        """A connection ended: its requests in flight are lost; reconnect
        while the run goes on."""
        if st.alive:
            st.alive = False
            self.connected -= 1
        if st.timer is not None:
            st.timer.cancel()
            st.timer = None
        self._lose_in_flight(st)
        st.due.clear()
        self._lost_extra(st)
        if self.stopping:
            self._maybe_finish()
        else:
            self.timers.append(self._later(RECONNECT_DELAY, self._connect, st))

    def _lose_in_flight(self, st):
        if st.outstanding:
            self.stats.error("lost-in-flight", len(st.outstanding))
            self._lost_requests(len(st.outstanding))
            st.outstanding.clear()

    def _lost_requests(self, n):
        """``n`` requests in flight were lost with their connection (they
        are already counted as ``lost-in-flight`` errors)."""

    # -- TCPMulti callbacks, the same for every engine --------------------------

    def _connected(self, conn):
        """``on_success``'s common part: the state, or None when the run
        is stopping (the new connection is shut down)."""
        st = conn.heap["state"]
        st.conn = conn
        st.alive = True
        self.connected += 1
        self.stats.connections_opened += 1
        if self.stopping:
            conn.shutdown()
            return None
        return st

    def _on_failure(self, conn, operation, errnum, errstr):
        st = conn.heap["state"]
        if self.finished:
            return
        self.stats.connections_failed += 1
        self._count_error(report.error_kind(operation, errnum))
        st.conn = None
        if not st.alive and not self.stopping:
            self.timers.append(self._later(RECONNECT_DELAY, self._connect, st))

    def _on_timeout(self, conn):
        st = conn.heap["state"]
        if self.finished:
            return
        if not st.alive:
            self.stats.connections_failed += 1
            self._count_error("connect:ETIMEDOUT")
            if not self.stopping:
                self.timers.append(self._later(RECONNECT_DELAY, self._connect, st))
        else:
            self._count_error("timeout")
            self._lost(st)

    def _on_disconnected(self, conn):
        st = conn.heap["state"]
        if st.alive and not self.finished:
            self._lost(st)
        elif st.alive:
            st.alive = False
            self.connected -= 1


def check():
    """Raise common.Unavailable unless the compiled modules this engine
    needs are built."""
    common.require("TCPMulti", "Kernel", "Block", "Line", "Stream", "RedisReply",
                   "HTTPResponse")


class LoadRun(TCPMultiRun):
    """``cypoe load --engine tcpmulti``: one fixed request, answers framed
    by a compiled filter (the run: :class:`TCPMultiRun`)."""

    def __init__(self, cfg, tick=None, kernel=None):
        self.cypoe = common.require("TCPMulti", "Kernel", "Block", "Line", "Stream")
        cy = self.cypoe
        super().__init__(cfg, kernel if kernel is not None else cy.Kernel(), tick)
        self.msg = cfg.message
        # Each response is recorded once, into the current second's window;
        # the window is folded into the run's histogram (a C-level add)
        # each second and at the end.
        self.window = report.new_histogram()
        self.live_responses = 0
        self.live_errors = 0
        self.conns = [ConnState(i) for i in range(cfg.connections)]
        if cfg.expect == "echo":
            in_filter = cy.Block(block_size=len(self.msg))
        elif cfg.expect == "line":
            in_filter = cy.Line()
        elif cfg.expect == "redis":
            in_filter = cy.RedisReply()
        elif cfg.expect == "http":
            in_filter = cy.HTTPResponse(head=getattr(cfg, "no_body", False))
        else:
            in_filter = cy.Stream()
        self.stats.status_classes = {}
        self.multi = cy.TCPMulti(
            on_input=self._on_input, on_success=self._on_success, on_failure=self._on_failure,
            on_error=self._on_error, on_disconnected=self._on_disconnected,
            on_timeout=self._on_timeout, input_filter=in_filter, output_filter=cy.Stream(),
            connect_timeout=cfg.timeout, input_timeout=0, kernel=self.kernel)

    # -- the run's hooks ---------------------------------------------------------

    def _later(self, seconds, fn, *args):
        """A kernel timer: it keeps run() going while every connection is
        down (an idle TCPMulti comes back at the next connect), and it
        still works while the TCPMulti is being shut down by a signal."""
        return self.kernel.delay(max(0.0, seconds), fn, *args)

    def run(self):
        """Run to the end; returns ``(LoadStats, interrupted)``."""
        self._start()
        self.kernel.run()
        self._end()
        return self.stats, self.interrupted

    def _snapshot(self):
        snap = {"type": "tick", "responses": self.live_responses, "errors": self.live_errors,
                "conns": self.connected, "hist": report.encode_histogram(self.window)}
        self.live_responses = 0
        self.live_errors = 0
        return snap

    def _fold(self):
        if self.window.get_total_count():
            self.stats.hist.add(self.window)
            self.window = report.new_histogram()

    def _unanswered(self, n):
        if self.interrupted:
            # stopped by Ctrl-C: still in flight, not failed
            self.stats.in_flight = n
        elif n:
            self.stats.error("timeout:unanswered", n)

    def _count_error(self, kind):
        self.stats.error(kind)
        self.live_errors += 1

    def _lost_requests(self, n):
        self.live_errors += n

    # -- sending ---------------------------------------------------------------

    def _send(self, st, n, when):
        """Send n requests on st, all stamped `when` (closed loop)."""
        if self.max_requests is not None:
            n = min(n, self.max_requests - self.stats.requests)
            if n <= 0:
                self._stop_sending()
                return
        st.conn.put(*([self.msg] * n)) if n > 1 else st.conn.put(self.msg)
        for _ in range(n):
            st.outstanding.append(when)
        self.stats.requests += n
        self.stats.bytes_sent += n * len(self.msg)

    def _send_due(self, st):
        room = self.cfg.pipeline - len(st.outstanding)
        while room > 0 and st.due and not self.stopping:
            if self.max_requests is not None and self.stats.requests >= self.max_requests:
                self._stop_sending()
                return
            st.conn.put(self.msg)
            st.outstanding.append(st.due.popleft())
            self.stats.requests += 1
            self.stats.bytes_sent += len(self.msg)
            room -= 1

    # -- TCPMulti callbacks ------------------------------------------------------

    def _on_success(self, conn):
        st = self._connected(conn)
        if st is None:
            return
        if self.interval is None:
            self._send(st, self.cfg.pipeline, time.monotonic())
        else:
            self._start_schedule(st)

    def _on_input(self, conn, record):
        st = conn.heap["state"]
        if not st.outstanding:
            if st.alive:
                self._count_error("unexpected-response")
            return
        if self.interval is None:
            now = time.monotonic()
            t0 = st.outstanding.popleft()
        else:
            now = self.kernel.time()
            t0 = st.outstanding.popleft()
        if self.cfg.expect == "echo" and record != self.msg:
            self.stats.mismatches += 1
            self._count_error("mismatch")
        elif self.cfg.expect == "redis" and record[:1] == b"-":
            self._count_error("redis:ERR")
        else:
            if self.cfg.expect == "http":
                cls = f"{record[9:10].decode('latin-1')}xx"
                sc = self.stats.status_classes
                sc[cls] = sc.get(cls, 0) + 1
            self.window.record_value(report.clamp_us(now - t0))
            self.stats.responses += 1
            self.live_responses += 1
        self.stats.bytes_received += len(record) + (2 if self.cfg.expect == "line" else 0)
        if self.stopping:
            self._maybe_finish()
        elif self.interval is None:
            self._send(st, 1, now)
        else:
            self._send_due(st)

    def _on_error(self, conn, operation, errnum, errstr):
        if self.finished:
            return
        self._count_error(report.error_kind(operation, errnum))
        conn.shutdown()


def run_load(cfg, live):
    """Run one worker's load in this process; `live` gets the snapshots."""
    def tick(snap):
        live.add(snap)
        live.emit()
    return LoadRun(cfg, tick=tick).run()


def worker_main(cfg, wfd):
    """A worker process: run, writing JSON lines to `wfd`; returns the exit code."""
    return common.pipe_worker(lambda tick: LoadRun(cfg, tick=tick).run(), wfd,
                              lambda stats: stats.to_dict())
