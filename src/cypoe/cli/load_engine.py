"""The network part of ``cypoe load``: TCPMulti glue, the worker process
loop and the built-in echo server.

One TCPMulti session holds the connections of a worker.  Closed loop: each
connection keeps ``pipeline`` requests in flight.  Open loop (``rate``):
connection i's requests are due at ``start + phase_i + k * interval`` with
``interval = connections / rate``; a due request waits if its connection
already has ``pipeline`` in flight, and its latency counts from the time it
was due (wrk2's correction for coordinated omission).
"""
import os
import signal
import time
from collections import deque

from cypoe.cli import common, report

RECONNECT_DELAY = 0.1
LIVE_INTERVAL = 1.0


def check(embedded=False):
    common.require("TCPMulti", "Kernel", "Block", "Line", "Stream", "RedisReply",
                   "HTTPResponse")
    if embedded:
        from cypoe.cli import serve_engine
        serve_engine.check()


class _Conn:
    __slots__ = ("index", "conn", "sent", "due", "next_due", "timer", "alive")

    def __init__(self, index):
        self.index = index
        self.conn = None
        self.sent = deque()     # send (or intended send) time of each request in flight
        self.due = deque()      # open loop: intended times not sent yet
        self.next_due = 0.0
        self.timer = None
        self.alive = False


class LoadRun:
    def __init__(self, cfg, tick=None, kernel=None):
        self.cypoe = common.require("TCPMulti", "Kernel", "Block", "Line", "Stream")
        cy = self.cypoe
        self.cfg = cfg
        self.kernel = kernel if kernel is not None else cy.Kernel()
        self.tick = tick
        self.msg = cfg.message
        self.stats = report.LoadStats()
        # Each response is recorded once, into the current second's window;
        # the window is folded into the run's histogram (a C-level add)
        # each second and at the end.
        self.window = report.new_histogram()
        self.live_responses = 0
        self.live_errors = 0
        self.stopping = False
        self.finished = False
        self.interrupted = False
        self.conns = [_Conn(i) for i in range(cfg.connections)]
        self.connected = 0
        self.timers = []
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
        self.interval = (cfg.connections / cfg.rate) if cfg.rate else None
        self.max_requests = cfg.requests

    # -- running ------------------------------------------------------------

    def _later(self, seconds, fn, *args):
        """A kernel timer: it keeps run() going while every connection is
        down (an idle TCPMulti comes back at the next connect), and it
        still works while the TCPMulti is being shut down by a signal."""
        return self.kernel.delay(max(0.0, seconds), fn, *args)

    def run(self):
        k = self.kernel
        self.t0 = k.time()
        self.t_end = self.t0 + self.cfg.duration
        k.register_component(self)
        for st in self.conns:
            if self.cfg.connect_rate:
                self.timers.append(self._later(st.index / self.cfg.connect_rate, self._connect, st))
            else:
                self._connect(st)
        self.timers.append(self._later(self.t_end - k.time(), self._stop_sending))
        if self.tick is not None:
            self.live_timer = self._later(LIVE_INTERVAL, self._live)
        k.run()
        self._fold()
        self.stats.duration = min(k.time(), self.t_stop) - self.t0 if hasattr(self, "t_stop") \
            else k.time() - self.t0
        return self.stats, self.interrupted

    def shutdown(self):  # SIGINT / SIGTERM
        self.interrupted = True
        self._stop_sending()
        self._finish()

    def _live(self):
        if self.finished:
            return
        self.tick({"type": "tick", "responses": self.live_responses, "errors": self.live_errors,
                   "conns": self.connected, "hist": report.encode_histogram(self.window)})
        self.live_responses = 0
        self.live_errors = 0
        self._fold()
        self.live_timer = self._later(LIVE_INTERVAL, self._live)

    def _fold(self):
        if self.window.get_total_count():
            self.stats.hist.add(self.window)
            self.window = report.new_histogram()

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
        return sum(len(st.sent) for st in self.conns)

    def _finish(self):
        if self.finished:
            return
        self.finished = True
        if getattr(self, "grace", None) is not None:
            self.grace.cancel()
        if getattr(self, "live_timer", None) is not None:
            self.live_timer.cancel()
        unanswered = self._outstanding()
        if self.interrupted:
            # stopped by Ctrl-C: still in flight, not failed
            self.stats.in_flight = unanswered
        elif unanswered:
            self.stats.error("timeout:unanswered", unanswered)
        for st in self.conns:
            st.sent.clear()
            st.alive = False
        self.multi.die()
        self.kernel.unregister_component(self)

    def _connect(self, st):
        if self.stopping:
            return
        cfg = self.cfg
        bind = cfg.sources[st.index % len(cfg.sources)] if cfg.sources else None
        st.conn = self.multi.connect(cfg.host, cfg.port, bind_address=bind, heap={"st": st})

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
            st.sent.append(when)
        self.stats.requests += n
        self.stats.bytes_sent += n * len(self.msg)

    def _send_due(self, st):
        """Open loop: send the due requests the pipeline window allows."""
        room = self.cfg.pipeline - len(st.sent)
        while room > 0 and st.due and not self.stopping:
            if self.max_requests is not None and self.stats.requests >= self.max_requests:
                self._stop_sending()
                return
            st.conn.put(self.msg)
            st.sent.append(st.due.popleft())
            self.stats.requests += 1
            self.stats.bytes_sent += len(self.msg)
            room -= 1

    def _rate_tick(self, st):
        st.timer = None
        if self.stopping or not st.alive:
            return
        now = self.kernel.time()
        while st.next_due <= now and st.next_due < self.t_end:
            st.due.append(st.next_due)
            st.next_due += self.interval
        self._send_due(st)
        if st.next_due < self.t_end and not self.stopping:
            st.timer = self._later(st.next_due - now, self._rate_tick, st)

    # -- TCPMulti callbacks ------------------------------------------------------

    def _on_success(self, conn):
        st = conn.heap["st"]
        st.conn = conn
        st.alive = True
        self.connected += 1
        self.stats.connections_opened += 1
        if self.stopping:
            conn.shutdown()
            return
        if self.interval is None:
            self._send(st, self.cfg.pipeline, time.monotonic())
        else:
            now = self.kernel.time()
            phase = self.interval * st.index / max(1, self.cfg.connections)
            # the schedule is fixed from the start: a late connection owes
            # the requests it missed, and they count as late
            first = self.t0 + phase
            st.next_due = first if first >= now - self.interval else now
            self._rate_tick(st)

    def _on_input(self, conn, record):
        st = conn.heap["st"]
        if not st.sent:
            if st.alive:
                self._count_error("unexpected-response")
            return
        if self.interval is None:
            now = time.monotonic()
            t0 = st.sent.popleft()
        else:
            now = self.kernel.time()
            t0 = st.sent.popleft()
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
            if self._outstanding() == 0:
                self._finish()
        elif self.interval is None:
            self._send(st, 1, now)
        else:
            self._send_due(st)

    def _count_error(self, kind):
        self.stats.error(kind)
        self.live_errors += 1

    def _lost(self, st):
        """A connection ended: its requests in flight are lost; reconnect
        while the run goes on."""
        if st.alive:
            st.alive = False
            self.connected -= 1
        if st.timer is not None:
            st.timer.cancel()
            st.timer = None
        if st.sent:
            self.stats.error("lost-in-flight", len(st.sent))
            self.live_errors += len(st.sent)
            st.sent.clear()
        st.due.clear()
        if self.stopping:
            if self._outstanding() == 0:
                self._finish()
        else:
            self.timers.append(self._later(RECONNECT_DELAY, self._connect, st))

    def _on_failure(self, conn, operation, errnum, errstr):
        st = conn.heap["st"]
        if self.finished:
            return
        self.stats.connections_failed += 1
        self._count_error(report.error_kind(operation, errnum))
        st.conn = None
        if not st.alive and not self.stopping:
            self.timers.append(self._later(RECONNECT_DELAY, self._connect, st))

    def _on_error(self, conn, operation, errnum, errstr):
        if self.finished:
            return
        self._count_error(report.error_kind(operation, errnum))
        conn.shutdown()

    def _on_timeout(self, conn):
        st = conn.heap["st"]
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
        st = conn.heap["st"]
        if st.alive and not self.finished:
            self._lost(st)
        elif st.alive:
            st.alive = False
            self.connected -= 1


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


class EmbeddedServer:
    """``cypoe serve echo`` in a child process on 127.0.0.1, port 0; the
    child writes its port to a pipe."""

    def __init__(self, filter_kind="stream", protocol="echo", timeout=10.0):
        from cypoe.cli import serve_engine
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (SIGTERM)
                code = serve_engine.serve_forever(protocol, "127.0.0.1", 0, filter_kind,
                                                  ready_fd=w, quiet=True, ignore_sigint=True)
            except BaseException:  # noqa: BLE001
                import traceback
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(w)
        self.pid = pid
        try:
            self.port = _read_port(r, timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(r)

    def stop(self, timeout=5.0):
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        common.reap([pid], timeout, signal.SIGTERM)


def _read_port(fd, timeout):
    import select
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("the server did not report its port in time")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 64)
            if not chunk:
                raise RuntimeError("the server exited before listening")
            buf += chunk
    text = buf.split(b"\n", 1)[0].decode()
    if not text.isdigit():
        raise RuntimeError(f"the server failed: {text}")
    return int(text)
