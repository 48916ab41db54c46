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

from cypoe.cli import common, report
from cypoe.cli.load_tcpmulti import ConnState, TCPMultiRun


def check(embedded=False):
    common.require("TCPMulti", "Kernel", "Block", "Line", "Stream", "RedisReply",
                   "HTTPResponse")
    if embedded:
        from cypoe.cli import serve_engine
        serve_engine.check()


class LoadRun(TCPMultiRun):
    """``cypoe load --engine tcpmulti``: one fixed request, answers framed
    by a compiled filter (see :mod:`cypoe.cli.load_tcpmulti` for the run)."""

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
