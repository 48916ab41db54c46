"""The network part of ``cypoe scan``: engines with the same results.

:class:`ConnectScanner` is a plain connect scan (no banners, no TLS) run by
the compiled :class:`cypoe._scan.ConnectScan`: Python sees only the ports
it reports.  :class:`Scanner` does everything, banners and TLS included,
over TCPMulti.  :class:`BannerScanner` joins the two: the compiled scan
finds the open ports and hands each one's connected socket to TCPMulti,
which reads the banner (and makes the TLS handshake) on that same
connection, so the closed and silent ports, nearly all of a scan, never
cost a Python object.  :func:`scan` picks the compiled engines when it can.

One TCPMulti session holds every connection in flight.  A :class:`Scanner`
feeds it from the plan's lazy order, up to ``concurrency`` at once and
``rate`` new ones per second (a token bucket refilled by a timer), retries
connect timeouts, reads bounded banners, and hands each final result to
``on_result``.  It registers with the kernel as a component, so Ctrl-C
(SIGINT/SIGTERM) stops new connections, lets the ones in flight end and
returns what was found.
"""
import errno
import os
import ssl as _ssl
import time
from collections import deque

from cypoe.cli import common, order
from cypoe.cli.output import make_result

# Errors that say "not now" rather than anything about the target: the
# probe goes back in the queue (without using a try) and launching pauses.
TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EAGAIN,
             errno.EADDRNOTAVAIL, errno.EADDRINUSE}
BACKOFF = 0.05


def check():
    common.require("TCPMulti", "Kernel", "Stream")


def _tls_context():
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = _ssl.CERT_NONE
    return ctx


def tls_info(sslobj):
    """What a TLS handshake showed: protocol, cipher, the peer certificate
    (DER, base64, and its SHA-256) and, when ``cryptography`` is installed,
    its subject, issuer and validity."""
    if sslobj is None:
        return None
    import base64
    import hashlib
    info = {"version": sslobj.version()}
    cipher = sslobj.cipher()
    if cipher:
        info["cipher"] = cipher[0]
    der = sslobj.getpeercert(binary_form=True)
    if der:
        info["certificate_sha256"] = hashlib.sha256(der).hexdigest()
        info["certificate"] = base64.b64encode(der).decode("ascii")
        try:
            from cryptography import x509
            cert = x509.load_der_x509_certificate(der)
            info["subject"] = cert.subject.rfc4514_string()
            info["issuer"] = cert.issuer.rfc4514_string()
            info["not_after"] = cert.not_valid_after_utc.isoformat()
        except Exception:  # noqa: BLE001 - optional detail
            pass
    return info


class _Probe:
    __slots__ = ("ip", "port", "version", "tries", "t0", "rtt", "connected", "data",
                 "size", "truncated", "done", "released", "tls", "index", "tc")

    def __init__(self, ip, port, version, tries=0, index=None):
        self.ip, self.port, self.version, self.tries = ip, port, version, tries
        self.index = index
        self.tc = None          # when the connection was made
        self.connected = False
        self.data = None
        self.size = 0
        self.truncated = False
        self.done = False
        self.released = False
        self.rtt = None
        self.tls = None


class Scanner:
    def __init__(self, plan, timing, on_result, *, banners=False, max_read=96 * 1024,
                 read_timeout=2.0, tls=False, sni=None, kernel=None, on_other=None):
        cy = common.require("TCPMulti", "Kernel", "Stream")
        self._setup(plan, timing, on_result, banners=banners, max_read=max_read,
                    read_timeout=read_timeout, tls=tls, sni=sni,
                    kernel=kernel if kernel is not None else cy.Kernel(), on_other=on_other)
        kw = {}
        if tls:
            # An open port that does not speak TLS fails its handshake
            # ("tls") within the connect timeout instead of hanging.
            kw = {"ssl": _tls_context(), "server_hostname": sni,
                  "tls_timeout": max(0.05, self.timeout)}
        self.multi = cy.TCPMulti(
            on_input=self._on_input, on_success=self._on_success, on_failure=self._on_failure,
            on_error=self._on_error,
            # without banners a probe ends at on_success/on_failure/on_timeout:
            # one callback per probe, not two
            on_disconnected=self._on_disconnected if banners else None,
            on_timeout=self._on_timeout, filter=cy.Stream(),
            connect_timeout=self.timeout, input_timeout=read_timeout if banners else 0,
            kernel=self.kernel, states={"pump": lambda multi: self._pump()}, **kw)
        # Timers go through the TCPMulti's session so that it stays alive
        # between connections (a session with nothing pending ends).
        self._delay = lambda seconds: self.multi.delay(seconds, "pump")

    def _setup(self, plan, timing, on_result, *, banners, max_read, read_timeout, tls, sni,
               kernel, on_other=None):
        """Everything but the network: the state the callbacks work on."""
        self.plan = plan
        self.on_result = on_result
        self.on_other = on_other
        self.banners = banners
        self.max_read = max_read
        self.read_timeout = read_timeout
        self.tls = tls
        self.sni = sni
        self.timeout = timing.timeout
        self.retries = timing.retries
        self.rate = timing.rate
        limit = common.raise_nofile(timing.concurrency + 256)
        self.concurrency = max(1, min(timing.concurrency, limit - 64))
        self.kernel = kernel
        self.indices = plan.indices()
        self.position = plan.start
        self.retry = deque()
        self.live = set()       # probes launched and not released
        for idx, tries in plan.pending:
            self.retry.append(_Probe(*plan.item(idx), tries, idx))
        self.exhausted = False
        self.inflight = 0
        self.launched = 0
        self.stopping = False
        self.interrupted = False
        self.finished = False
        self.paused_until = 0.0
        self.pump_timer = None
        self._delay = lambda seconds: self.kernel.delay(seconds, self._pump)

    # -- driving ------------------------------------------------------------

    def run(self):
        self.t0 = self.kernel.time()
        self.kernel.register_component(self)
        self._schedule(0)
        self.kernel.run()
        return self.info()

    def info(self):
        """What :func:`scan` returns: ``interrupted``, ``concurrency``, and
        for a resumed scan the walk's ``position`` reached and the
        ``pending`` probes ``[(index, tries)]`` (queued retries, and what
        was in flight when the scan stopped)."""
        pending = [(p.index, p.tries) for p in self.retry]
        pending += [(p.index, p.tries) for p in self.live if not p.done]
        return {"interrupted": self.interrupted, "concurrency": self.concurrency,
                "position": self.position, "pending": sorted(pending)}

    def shutdown(self):
        """SIGINT/SIGTERM: stop launching; connections in flight end."""
        if not self.finished:
            self.interrupted = True
            self.stopping = True
            self._finish()

    def _finish(self):
        if self.finished:
            return
        self.finished = True
        if self.pump_timer is not None:
            self.pump_timer.cancel()
            self.pump_timer = None
        self._delay = lambda seconds: self.kernel.delay(seconds, self._pump)
        self.multi.die()
        self.kernel.unregister_component(self)

    def _next(self):
        if self.retry:
            return self.retry.popleft()
        if self.exhausted:
            return None
        try:
            idx = next(self.indices)
        except StopIteration:
            self.exhausted = True
            return None
        self.position += 1
        return _Probe(*self.plan.item(idx), 0, idx)

    def _pump(self):
        self.pump_timer = None
        if self.stopping:
            return
        now = self.kernel.time()
        if now < self.paused_until:
            self._schedule(self.paused_until - now)
            return
        budget = self.concurrency - self.inflight
        if self.rate:
            allowed = int((now - self.t0) * self.rate) + 1 - self.launched
            # no bursts after a stall: at most one second's worth at once
            allowed = min(allowed, max(1, int(self.rate)))
            if allowed <= 0:
                self._schedule(max(0.001, (self.launched - (now - self.t0) * self.rate) / self.rate))
                return
            budget = min(budget, allowed)
        while budget > 0:
            p = self._next()
            if p is None:
                break
            self._launch(p)
            budget -= 1
        if self.exhausted and not self.retry and self.inflight == 0:
            self._finish()
        elif self.rate and self.inflight < self.concurrency and (self.retry or not self.exhausted):
            self._schedule(1.0 / self.rate if self.rate < 1000 else 0.001)

    def _schedule(self, delay):
        if self.pump_timer is None and not self.stopping and not self.finished:
            self.pump_timer = self._delay(delay)

    def _launch(self, p):
        self.inflight += 1
        self.launched += 1
        self.live.add(p)
        p.t0 = time.monotonic()
        self.multi.connect(p.ip, p.port, heap={"p": p})

    def _release(self, conn):
        p = conn.heap.get("p")
        if p is not None and not p.released:
            p.released = True
            self.live.discard(p)
            self.inflight -= 1
            if not self.stopping:
                self._schedule(0)  # one pump per loop iteration, not one per release
        return p

    def _result(self, p, state, status, error=None):
        if p.done:
            return
        p.done = True
        if state != "open" and self.on_other is not None:
            self.on_other(state)
            return
        banner = banner_time = None
        if p.connected and self.banners:
            banner = b"".join(p.data) if p.data else b""
            if p.tc is not None:
                banner_time = time.monotonic() - p.tc
        self.on_result(make_result(p.ip, p.port, state, status, rtt=p.rtt, banner=banner,
                                   truncated=p.truncated, error=error, tls=p.tls,
                                   banner_time=banner_time))

    @staticmethod
    def _said(p):
        """zgrab2's ``success`` for an open port whose read ended: it said
        something, or (with --tls) made its handshake."""
        return "success" if p.size or p.tls is not None else None

    # -- TCPMulti callbacks ----------------------------------------------------

    def _on_success(self, conn):
        p = conn.heap.get("p")
        if p is None:
            return
        if p.tc is None:    # (an adopted socket's was set when it came)
            p.tc = time.monotonic()
        if p.rtt is None:
            p.rtt = p.tc - p.t0
        local = conn.local_addr
        if local is not None and local[0] == p.ip and local[1] == p.port:
            # a TCP self-connect (simultaneous open with our own ephemeral
            # port): nothing listens there
            self._result(p, "closed", "connection-refused", error="self-connect")
            conn.shutdown()
            if not self.banners:
                self._release(conn)
            return
        p.connected = True
        if self.tls:
            p.tls = tls_info(getattr(conn, "tls_object", None))
        if not self.banners:
            self._result(p, "open", "success")
            conn.shutdown()
            self._release(conn)
            return
        p.data = []
        probe = self.plan.probe_for(p.port)
        if probe:
            conn.put(probe)

    def _on_input(self, conn, chunk):
        p = conn.heap.get("p")
        if p is None or p.done:
            return
        room = self.max_read - p.size
        if len(chunk) >= room:
            chunk = chunk[:room]
            p.truncated = True
        p.data.append(chunk)
        p.size += len(chunk)
        if p.truncated:
            self._result(p, "open", "success")
            conn.shutdown()

    def _on_error(self, conn, operation, errnum, errstr):
        p = conn.heap.get("p")
        if p is None or p.done:
            return
        if operation == "read" and errnum == 0:  # EOF: the banner is complete
            self._result(p, "open", self._said(p) or "connection-closed")
        elif operation == "tls":
            self._result(p, "open", "handshake-error", error=f"tls: {errstr}")
        else:
            said = self._said(p)
            self._result(p, "open", said or "connection-closed",
                         error=f"{operation}: {errstr}" if not said else None)
        conn.shutdown()

    def _on_timeout(self, conn):
        p = conn.heap.get("p")
        if p is None:
            return
        if p.connected:  # banner read timeout
            self._result(p, "open", self._said(p) or "io-timeout")
        elif not p.done:
            self._connect_timed_out(p)
        self._release(conn)

    def _connect_timed_out(self, p):
        # stopping: the retry is kept (pending) for a resumed scan
        if p.tries < self.retries:
            p.tries += 1
            self.retry.append(_Probe(p.ip, p.port, p.version, p.tries, p.index))
            p.done = True
        else:
            self._result(p, "filtered", "connection-timeout")

    def _on_failure(self, conn, operation, errnum, errstr):
        p = conn.heap.get("p")
        if p is None or p.done:
            self._release(conn)
            return
        if operation == "tls":  # the port is open; the handshake failed
            p.connected = True
            if p.rtt is None:
                p.rtt = time.monotonic() - p.t0
            self._result(p, "open", "handshake-error", error=f"tls: {errstr}")
        elif errnum == errno.ECONNREFUSED:
            self._result(p, "closed", "connection-refused")
        elif errnum == errno.ETIMEDOUT or operation == "timeout":
            self._connect_timed_out(p)
        elif errnum in TRANSIENT:
            p.done = True
            self.retry.append(_Probe(p.ip, p.port, p.version, p.tries, p.index))
            self.paused_until = self.kernel.time() + BACKOFF
        elif errnum in (errno.ECONNRESET, errno.EPIPE):
            self._result(p, "closed", "connection-refused", error=errstr or None)
        elif errnum in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
            self._result(p, "filtered", "unknown-error", error=f"{operation}: {errstr}")
        else:
            self._result(p, "filtered", "unknown-error", error=f"{operation}: {errstr}")
        self._release(conn)

    def _on_disconnected(self, conn):
        p = conn.heap.get("p")
        if p is not None and not p.done:
            self._result(p, "open", self._said(p) or "connection-closed")
        self._release(conn)


# cypoe._scan's state and status numbers, by name.
STATE_NAMES = ("open", "closed", "filtered")
STATUS_NAMES = ("success", "connection-refused", "connection-timeout", "unknown-error")


class ConnectScanner:
    """A connect scan (no banners, no TLS) in C: the same results, order,
    retries, back-off and Ctrl-C behaviour as :class:`Scanner`.

    ``on_other(state, n)``, when given, receives the closed and filtered
    ports in counts instead of ``on_result`` records."""

    def __init__(self, plan, timing, on_result, *, kernel=None, on_other=None):
        cy = common.require("Kernel")
        self.plan = plan
        self.kernel = kernel if kernel is not None else cy.Kernel()
        limit = common.raise_nofile(timing.concurrency + 256)
        self.concurrency = max(1, min(timing.concurrency, limit - 64))
        self.interrupted = False
        self.core = _connect_scan(self.kernel, plan, timing, self.concurrency, on_result,
                                  on_other, self._on_done)

    def _on_done(self):
        self.kernel.unregister_component(self)

    def run(self):
        self.kernel.register_component(self)
        # started from inside run(): the loop's own descriptors (signal
        # pipe) come before the probes'
        self.kernel.delay(0, self.core.start)
        self.kernel.run()
        return {"interrupted": self.interrupted, "concurrency": self.concurrency,
                "position": self.core.position, "pending": sorted(self.core.pending())}

    def shutdown(self):
        """SIGINT/SIGTERM: stop launching; the probes in flight end (a second
        signal stops the kernel at once)."""
        if not self.core.finished:
            self.interrupted = True
            self.core.stop()


def _connect_scan(kernel, plan, timing, concurrency, on_result, on_other, on_done,
                  on_open=None):
    """The compiled scan of ``plan``, with its order, its targets' addresses
    and the timing.  ``on_result(record)`` receives the ports reported, as
    :func:`make_result` records; closed and filtered ones too unless
    ``on_other(state, n)`` counts them."""
    from cypoe import _scan
    feistel = order.Permutation(plan.total, plan.seed).feistel
    keys, half = feistel if feistel is not None else (None, 0)
    walk = _scan.ScanOrder(plan.total, plan.shards, plan.shard, keys, half, plan.start)
    targets, ports, nports = plan.targets, plan.ports, plan.nports

    def record(index, state, status, rtt, error):
        t, pi = divmod(index, nports)
        on_result(make_result(targets[t], ports[pi], STATE_NAMES[state], STATUS_NAMES[status],
                              rtt=rtt, error=error))

    counted = None
    if on_other is not None:
        def counted(state, n):
            on_other(STATE_NAMES[state], n)

    core = _scan.ConnectScan(
        kernel, walk, ports, lambda t: (targets[t], targets.version_at(t)), record,
        concurrency=concurrency, rate=timing.rate or 0.0, timeout=timing.timeout,
        retries=timing.retries, report_others=on_other is None, on_other=counted,
        on_done=on_done, on_open=on_open)
    for index, tries in plan.pending:
        core.requeue(index, tries)
    return core


class BannerScanner(Scanner):
    """Banners and TLS behind the compiled connect scan.

    The compiled :class:`cypoe._scan.ConnectScan` probes every port and
    hands each open port's connected socket to this object's TCPMulti
    (``TCPMulti.adopt``), which reads the banner as :class:`Scanner` does.
    An open port holds its place in the concurrency until its banner is
    read.  Once a port has been seen open it stays open in the results:
    what goes wrong afterwards is a status (``connection-closed``,
    ``io-timeout``, ``handshake-error``) and an error of an open port.
    ``on_other(state, n)``, when given, receives the closed and filtered
    ports in counts."""

    def __init__(self, plan, timing, on_result, *, kernel=None, on_other=None, **kw):
        super().__init__(plan, timing, on_result, kernel=kernel, **kw)
        self._retained = False
        self.core = _connect_scan(self.kernel, plan, timing, self.concurrency, on_result,
                                  on_other, lambda: self._schedule(0), on_open=self._on_open)

    def run(self):
        self.kernel.register_component(self)
        # The TCPMulti's session stays up between banner connections.
        self.multi.session.retain()
        self._retained = True
        self.kernel.delay(0, self.core.start)
        self.kernel.run()
        return self.info()

    def info(self):
        return {"interrupted": self.interrupted, "concurrency": self.concurrency,
                "position": self.core.position, "pending": sorted(self.core.pending())}

    def shutdown(self):
        """SIGINT/SIGTERM: no new probes; probes in flight end, banner reads
        in flight end now with what they have."""
        if self.finished or self.stopping:
            return
        self.interrupted = True
        self.stopping = True
        self.core.stop()
        for conn in list(self.multi):
            conn.shutdown()
        self._schedule(0)

    def _finish(self):
        if self.finished:
            return
        super()._finish()
        if self._retained:
            self._retained = False
            self.multi.session.release()

    def _schedule(self, delay):
        if self.pump_timer is None and not self.finished:
            self.pump_timer = self.kernel.delay(delay, self._pump)

    def _pump(self):
        # Nothing to launch here (the compiled scan launches): only the end.
        self.pump_timer = None
        if self.core.finished and self.inflight == 0:
            self._finish()

    def _on_open(self, index, fd, rtt):
        t, pi = divmod(index, self.plan.nports)
        p = _Probe(self.plan.targets[t], self.plan.ports[pi], self.plan.targets.version_at(t),
                   0, index)
        p.tc = time.monotonic()
        p.t0 = p.tc - rtt
        p.rtt = rtt
        if self.stopping or self.finished:
            os.close(fd)
            self.core.release()
            self._result(p, "open", "success", error="interrupted before the banner was read")
            return
        self.multi.adopt(fd, p.ip, p.port, heap={"p": p})
        self.inflight += 1
        self.launched += 1

    def _release(self, conn):
        p = conn.heap.get("p")
        first = p is not None and not p.released
        super()._release(conn)
        if first:
            self.core.release()
            if self.stopping:
                self._schedule(0)
        return p

    def _connect_timed_out(self, p):
        # The socket came connected: only a TLS handshake can be this late.
        self._result(p, "open", "io-timeout")

    def _result(self, p, state, status, error=None):
        if state != "open":
            # seen open by the scan; the connection failed afterwards
            error = error or status
            state, status = "open", "connection-closed"
        super()._result(p, state, status, error)


def compiled_available():
    try:
        from cypoe import _scan  # noqa: F401
    except ImportError:
        return False
    return True


ENGINES = ("auto", "compiled", "tcpmulti")


def scan(plan, timing, on_result, *, engine="auto", banners=False, tls=False, on_other=None,
         kernel=None, **kw):
    """Run a scan to the end (or to Ctrl-C); returns an info dict.

    ``engine``: "compiled" (:class:`ConnectScanner`, or with banners or TLS
    :class:`BannerScanner`), "tcpmulti" (:class:`Scanner`) or "auto": the
    compiled one whenever it is built."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "auto":
        engine = "compiled" if compiled_available() else "tcpmulti"
    if engine == "compiled":
        if on_other is not None:
            counted = on_other
            on_other = lambda state, n: counted(state, n)  # noqa: E731
        if banners or tls:
            return BannerScanner(plan, timing, on_result, banners=True, tls=tls,
                                 on_other=on_other, kernel=kernel, **kw).run()
        return ConnectScanner(plan, timing, on_result, kernel=kernel, on_other=on_other).run()
    if on_other is not None:
        counted = on_other
        on_other = lambda state: counted(state, 1)  # noqa: E731
    return Scanner(plan, timing, on_result, banners=banners, tls=tls, on_other=on_other,
                   kernel=kernel, **kw).run()


# -- several processes ---------------------------------------------------------

def worker_share(plan, timing, workers, w, plans=None):
    """Worker ``w``'s part of a scan split over ``workers`` processes: the
    shard ``plan.shard + w * plan.shards`` of ``plan.shards * workers`` (so
    the workers' parts partition the plan's exactly), with its share of the
    concurrency and the rate.  ``plans``: the workers' plans as a resumed
    scan has them."""
    from cypoe.cli.scan import Plan
    if plans is not None:
        sub = plans[w]
    else:
        sub = Plan(plan.targets, plan.ports, seed=plan.seed, shards=plan.shards * workers,
                   shard=plan.shard + w * plan.shards, probes=plan.probes)
    conc = timing.concurrency // workers + (1 if w < timing.concurrency % workers else 0)
    rate = timing.rate / workers if timing.rate else timing.rate
    return sub, timing._replace(concurrency=max(1, conc), rate=rate)


def _worker_main(plan, timing, wfd, counted, kw):
    """A worker process: scans its share and writes what it finds to
    ``wfd`` as JSON lines: ``["r", record]``, ``["c", state, n]`` (closed
    and filtered ports when only counts are wanted), ``["d", info]`` last."""
    import json
    pipe = os.fdopen(wfd, "w", buffering=1 << 16)
    # The parent gone (its own stdout closed, or killed): the first write
    # that fails ends this worker, quietly (OutputClosed leaves the loop).
    out = common.ClosedPipeGuard(pipe)

    def on_result(rec):
        out.write(json.dumps(["r", rec], separators=(",", ":")) + "\n")
        if rec["state"] == "open":
            out.flush()

    def on_other(state, n):
        out.write(f'["c","{state}",{n}]\n')
        out.flush()

    cy = common.require("Kernel")
    kernel = cy.Kernel()
    # Ctrl-C reaches the whole process group; the parent decides and sends
    # SIGTERM (graceful, then at once), as it does when it alone is signalled.
    kernel.signal("INT", lambda name: None)
    info = scan(plan, timing, on_result, on_other=on_other if counted else None,
                kernel=kernel, **kw)
    out.write(json.dumps(["d", info]) + "\n")
    out.flush()
    pipe.close()


def scan_workers(plan, timing, workers, on_result, *, on_other=None, plans=None, **kw):
    """:func:`scan` split over ``workers`` forked processes (see
    :func:`worker_share`); their records and counts come back to this
    process, which calls ``on_result``/``on_other`` as :func:`scan` does.
    The first SIGINT or SIGTERM asks every worker to stop launching and end
    its probes in flight; a second one stops them at once.  Returns the
    info dict of :func:`scan`, with ``workers``, ``failed`` (workers
    that died without finishing) and ``parts``: per worker its shard, the
    position its walk reached and its pending probes (a worker that died
    has its part as it began: a resumed scan does it again)."""
    import json
    from cypoe.cli.workers import WorkerPool

    shares = [worker_share(plan, timing, workers, w, plans) for w in range(workers)]
    subs = [sub for sub, _ in shares]
    finished = {}      # worker index -> its info

    def work(index, wfd):
        sub, tm = shares[index]
        _worker_main(sub, tm, wfd, on_other is not None, kw)

    def on_line(worker, line):
        msg = json.loads(line)
        if msg[0] == "r":
            on_result(msg[1])
        elif msg[0] == "c":
            on_other(msg[1], msg[2])
        elif msg[0] == "d":
            finished[worker.index] = msg[1]

    pool = WorkerPool(workers, work, prog="cypoe scan")
    pool.run(on_line)
    infos = list(finished.values())
    parts = []
    for index, sub in enumerate(subs):
        i = finished.get(index)
        parts.append({"shards": sub.shards, "shard": sub.shard,
                      "position": i.get("position", sub.start) if i else sub.start,
                      "pending": i.get("pending", sub.pending) if i else sub.pending})
    return {"interrupted": bool(pool.signals) or any(i.get("interrupted") for i in infos),
            "concurrency": sum(i.get("concurrency", 0) for i in infos),
            "workers": workers, "failed": workers - len(finished), "parts": parts}
