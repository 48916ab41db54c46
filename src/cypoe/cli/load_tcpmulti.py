"""The run skeleton of the load engines built on one TCPMulti session.

``cypoe load --engine tcpmulti`` (:class:`cypoe.cli.load_engine.LoadRun`)
and ``cypoe load --script`` (:class:`cypoe.cli.load_script.ScriptRun`)
differ in what they send and how they read the answers; how a run goes is
the same and lives here once: connect every connection (at
``--connect-rate``), reconnect one that is lost while the run goes on, stop
sending when the duration is up (or ``-n`` is reached, or on Ctrl-C), give
the requests in flight ``--timeout`` seconds of grace, finish (the
TCPMulti dies), and hand a snapshot of the current second to ``tick`` once
a second.  Open loop (``--rate``): each connection's requests fall due on
a schedule fixed from the start, at most ``--pipeline`` in flight.

A subclass sets what its connections and its seconds are
(:meth:`TCPMultiRun._snapshot`, :meth:`TCPMultiRun._fold`), sends
(:meth:`TCPMultiRun._send_due`) and handles input and errors.
"""
from collections import deque

from cypoe.cli import report

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
