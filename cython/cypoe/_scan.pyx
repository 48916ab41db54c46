# cython: language_level=3
"""The compiled connect scan behind ``cypoe scan`` (without banners or TLS).

A port scan is millions of connections that each live for one round trip
and end in one of three words.  Going through TCPMulti costs a Python
object, a kernel registration and a Python callback per port; here the
whole life of a probe is C:

* the order (the seeded Feistel permutation of :mod:`cypoe.cli.order`,
  bit for bit, and the shard's stride) is :class:`ScanOrder`;
* probes in flight live in a table indexed by fd, in their own epoll (or
  kqueue) set, which is itself one fd in the Kernel's loop, so signals,
  timers and other connections go on as usual;
* connect timeouts are a FIFO of deadlines (every probe has the same
  timeout, so launch order is deadline order);
* a probe is answered without the poller when the network answers during
  ``connect()`` (loopback and local addresses do: the RST or SYN-ACK is
  processed before ``connect()`` returns).  On Linux a second ``connect()``
  on the same socket returns that answer, and a refused socket goes back
  to the unconnected state, ready for the next probe: a closed port costs
  two system calls and no socket of its own (creating and destroying a
  socket was half the kernel's work per port).  Elsewhere the check is
  ``getsockopt(SO_ERROR)``, with a socket per probe.  Where the check
  keeps finding nothing (remote hosts), it is made for one probe in 64.

Python is called for the ports that are reported (open ones; closed and
filtered ones too when the output keeps them), and a few times a second
with counts of the rest.
"""
cimport cython
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memset, memcpy, memcmp
from libc.errno cimport (errno, EINTR, EINPROGRESS, EALREADY, EMFILE, ENFILE, ENOBUFS,
                         ENOMEM, EAGAIN, EADDRNOTAVAIL, EADDRINUSE, ECONNREFUSED,
                         ECONNRESET, EPIPE, ETIMEDOUT)
from posix.unistd cimport close as fd_close

from cypoe._kernel cimport Kernel, Handler, Timer, EV_READ
from cypoe.includes.debug cimport CP_DBG_INC, CP_DBG_DEC, CP_DBG_SCANS, cp_debug_counters
from cypoe.includes.poller cimport (CP_WRITE, CP_BACKEND_EPOLL, CP_BACKEND_KQUEUE,
                                    cp_backend_available, cp_poller_init, cp_poller_close,
                                    cp_poller_ctl, cp_poller_wait)
from cypoe.includes.socket cimport (sockaddr, sockaddr_in, sockaddr_in6, socket, connect,
                                    getsockopt, getsockname, getpeername, htons, inet_pton,
                                    c_SOCK_NONBLOCK, c_SOCK_CLOEXEC, c_SOCK_STREAM, c_AF_INET,
                                    c_AF_INET6, SOL_SOCKET, SO_ERROR)

import os
import sys

from cypoe.errors import CypoeError


def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()

# What a probe ended as: the state and zgrab2 status words, by number
# (cypoe.cli.scan_engine names them).
cpdef enum:
    OPEN = 0
    CLOSED = 1
    FILTERED = 2

cpdef enum:
    SUCCESS = 0
    CONNECTION_REFUSED = 1
    CONNECTION_TIMEOUT = 2
    UNKNOWN_ERROR = 3

cdef enum:
    MAX_EVENTS = 1024
    # Launches per turn of the loop: a scan of a fast network (loopback)
    # would otherwise run start to end inside one callback, deaf to signals.
    LAUNCH_BATCH = 2048
    # The connect-time refusal check: kept on while it finds answers, then
    # made for one probe in EAGER_SAMPLE.
    EAGER_CREDIT = 64
    EAGER_SAMPLE = 64

cdef double BACKOFF = 0.05          # pause after EMFILE, EADDRNOTAVAIL, ...
cdef double TICK = 0.2              # how often counts of unreported ports go up


cdef inline uint64_t _feistel(uint64_t x, const uint64_t* keys, int nkeys, int half,
                              uint64_t mask) noexcept nogil:
    # Same arithmetic as cypoe.cli.order.Permutation._encrypt (mod 2**64).
    cdef uint64_t left = x >> half, right = x & mask, t
    cdef int shift = 64 - half, r
    for r in range(nkeys):
        t = left ^ (((right ^ keys[r]) * <uint64_t>0x9E3779B97F4A7C15ULL) >> shift)
        left = right
        right = t
    return (left << half) | right


@cython.final
cdef class ScanOrder:
    """This shard's indices of ``range(total)`` in the seed's order: the
    same sequence as :func:`cypoe.cli.order.shard_order`, computed in C.

    ``keys``/``half`` are a :class:`cypoe.cli.order.Permutation`'s
    (``keys=None``: natural order).  ``start`` skips the first ``start``
    positions of the walk (a resumed scan); ``position`` is how many have
    been taken."""

    def __init__(self, m, shards, shard, keys=None, half=0, start=0):
        if not 0 <= start <= m:
            raise ValueError(f"start must be in 0..{m}, not {start}")
        self.m = m
        self.pos = start
        self.shards = shards
        self.shard = shard
        self.identity = keys is None
        self.nkeys = 0
        if not self.identity:
            if len(keys) > 8:
                raise ValueError("at most 8 Feistel rounds")
            for k in keys:
                self.keys[self.nkeys] = <uint64_t>k
                self.nkeys += 1
            self.half = half
            self.mask = (<uint64_t>1 << half) - 1

    cdef bint next(self, uint64_t* out) noexcept:
        cdef uint64_t x
        if self.pos >= self.m:
            return False
        x = self.pos
        self.pos += 1
        if not self.identity:
            x = _feistel(x, self.keys, self.nkeys, self.half, self.mask)
            while x >= self.m:
                x = _feistel(x, self.keys, self.nkeys, self.half, self.mask)
        out[0] = self.shard + x * self.shards
        return True

    @property
    def remaining(self):
        return self.m - self.pos

    @property
    def position(self):
        return self.pos

    def __iter__(self):
        return self

    def __next__(self):
        cdef uint64_t x
        if not self.next(&x):
            raise StopIteration
        return x




cdef inline bint _transient(int err) noexcept:
    # "Not now", nothing about the target: the probe goes back in the queue
    # without using a try, and launching pauses.
    return (err == EMFILE or err == ENFILE or err == ENOBUFS or err == ENOMEM
            or err == EAGAIN or err == EADDRNOTAVAIL or err == EADDRINUSE)


@cython.final
cdef class ConnectScan(Handler):
    """Connect probes to every index of a scan's order (internal; driven by
    :class:`cypoe.cli.scan_engine.ConnectScanner`).

    ``address_of(t)`` gives target ``t``'s numeric address and IP version;
    index ``i`` is target ``i // len(ports)``, port ``ports[i % len(ports)]``.
    ``on_result(index, state, status, rtt, error)`` is called for each open
    port, and for every port when ``report_others``; otherwise closed and
    filtered ports are counted and handed to ``on_other(state, n)`` in
    batches.  ``on_done()`` is called once, when the last probe has ended or
    after ``stop()``.

    With ``on_open``, an open port's connected socket is handed over instead
    of closed: ``on_open(index, fd, rtt)`` owns ``fd`` from then on (to read
    a banner from it) and the port holds one place of the concurrency until
    ``release()`` is called for it.  ``on_result`` then sees closed and
    filtered ports only.

    ``immediate=False`` leaves every answer to the poller, as for a remote
    target (the tests' way to exercise that path on loopback).
    """
    # the current target's address (port filled in per probe)
    # probes in flight, by fd
    # settings
    # state
    # Linux: a socket whose connect was refused, to be connected again

    def __cinit__(self):
        self.poller_open = False
        self.events = NULL
        self.ports = NULL
        self.spare = -1
        self.slots = NULL
        self.ring = NULL
        self.rq = NULL
        CP_DBG_INC(CP_DBG_SCANS)

    def __init__(self, Kernel kernel not None, ScanOrder order not None, ports, address_of,
                 on_result, *, int concurrency=1000, double rate=0.0, double timeout=2.0,
                 int retries=0, bint report_others=False, on_other=None, on_done=None,
                 on_open=None, bint immediate=True):
        cdef int kind
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        kind = CP_BACKEND_EPOLL if cp_backend_available(CP_BACKEND_EPOLL) else CP_BACKEND_KQUEUE
        if not cp_backend_available(kind):
            raise CypoeError("the compiled scan needs epoll or kqueue")
        ports = list(ports)
        if not ports:
            raise ValueError("no ports")
        self.ports = <uint16_t*>malloc(sizeof(uint16_t) * len(ports))
        self.events = <cp_event*>malloc(sizeof(cp_event) * MAX_EVENTS)
        if self.ports == NULL or self.events == NULL:
            raise MemoryError()
        for i, p in enumerate(ports):
            if not 0 < p < 65536:
                raise ValueError(f"port {p} is out of range")
            self.ports[i] = <uint16_t>p
        self.nports = len(ports)
        if cp_poller_init(&self.poller, kind, MAX_EVENTS) < 0:
            raise OSError(errno, os.strerror(errno))
        self.poller_open = True
        self.k = kernel
        self.order = order
        self.address_of = address_of
        self.on_result = on_result
        self.on_other = on_other
        self.on_done = on_done
        self.on_open = on_open
        self.report_others = report_others
        self.concurrency = concurrency
        self.rate = rate if rate > 0 else 0.0
        self.timeout = timeout
        self.max_retries = retries
        self.eager = EAGER_CREDIT
        self.immediate = immediate
        self.recycle = sys.platform.startswith("linux")
        self.timer = None
        self._pump_cb = self._pump_soon
        self._timer_cb = self._on_timer

    def __dealloc__(self):
        cdef int fd
        CP_DBG_DEC(CP_DBG_SCANS)
        if self.slots != NULL:
            for fd in range(self.nslots):
                if self.slots[fd].busy:
                    fd_close(fd)
        self._drop_spare()
        if self.poller_open:
            cp_poller_close(&self.poller)
        free(self.slots)
        free(self.ring)
        free(self.rq)
        free(self.ports)
        free(self.events)

    # -- Python face ---------------------------------------------------------

    def start(self):
        """Begin (from inside or before ``kernel.run()``)."""
        if self.started:
            raise CypoeError("this scan has already started")
        self.started = True
        self.t_start = self.k.now()
        self.next_tick = self.t_start + TICK
        self.k.register(self, self.poller.kfd, EV_READ, True)
        self._pump()

    def stop(self, bint at_once=False):
        """Launch nothing more.  The probes in flight end as they would and
        the scan finishes with the last of them: what Ctrl-C does.  A probe
        that would be tried again (a timeout with retries left, EMFILE...)
        is not reported but kept, with the retries queued: :meth:`pending`
        lists them, for a resumed scan.  ``at_once`` closes the probes in
        flight too, unreported (kept as pending), and finishes now."""
        cdef int fd
        self.stopping = True
        if self.finished or not self.started:
            return
        if at_once:
            for fd in range(self.nslots):
                if self.slots[fd].busy:
                    self.slots[fd].busy = False
                    fd_close(fd)
                    self.inflight -= 1
                    self._requeue(self.slots[fd].index, self.slots[fd].tries)
            self._finish()
        else:
            self._pump()

    def release(self):
        """An ``on_open`` socket's work is over: its place in the
        concurrency goes back to new probes."""
        if self.held <= 0:
            raise CypoeError("release() without a socket handed over")
        self.held -= 1
        if self.started and not self.finished and not self.pump_queued:
            self.pump_queued = True
            self.k.call_soon(self._pump_cb, ())

    @property
    def done(self):
        return self.n_open + self.n_closed + self.n_filtered

    @property
    def position(self):
        """How many positions of the order's walk have been taken."""
        return self.order.pos

    def pending(self):
        """``[(index, tries), ...]``: probes taken from the order but not
        reported: queued retries, and the probes in flight.  After a
        ``stop()`` these and the order from :attr:`position` on are what
        is left of the scan."""
        cdef size_t i
        cdef int fd
        out = []
        for i in range(self.rq_len):
            out.append((self.rq[(self.rq_head + i) % self.rq_cap].index,
                        self.rq[(self.rq_head + i) % self.rq_cap].tries))
        for fd in range(self.nslots):
            if self.slots[fd].busy:
                out.append((self.slots[fd].index, self.slots[fd].tries))
        return out

    def requeue(self, index, tries=0):
        """Probe ``index`` before the order's next (a resumed scan's pending
        probes); ``tries`` retries of it have been made already."""
        if self.finished:
            raise CypoeError("this scan has finished")
        if not 0 <= index < self.order.shard + self.order.m * self.order.shards:
            raise ValueError(f"index {index} is outside the scan")
        self._requeue(index, tries)

    @property
    def unlaunched(self):
        """Indices not tried yet (0 once the order is exhausted)."""
        return self.order.remaining

    # -- the loop's side -------------------------------------------------------

    cdef int on_readable(self) except -1:
        cdef int n, i, fd
        cdef cp_event* ev
        while True:
            n = cp_poller_wait(&self.poller, self.events, MAX_EVENTS, 0)
            if n < 0:
                if errno == EINTR:
                    continue
                raise OSError(errno, os.strerror(errno))
            for i in range(n):
                ev = &self.events[i]
                fd = ev.fd
                if fd < self.nslots and self.slots[fd].busy and self.slots[fd].gen == ev.gen:
                    self._complete(fd)
            if n < MAX_EVENTS:
                break
        self._pump()
        return 0

    def _pump_soon(self):
        self.pump_queued = False
        self._pump()

    def _on_timer(self):
        self.timer = None
        self._pump()

    cdef int _pump(self) except -1:
        cdef double now, allowed_f, cap, wake = 0.0
        cdef int budget = 0, n
        cdef uint64_t index
        cdef uint32_t tries
        cdef bint more, by_rate = False
        if self.finished:
            return 0
        now = self.k.now()
        self._expire(now)
        n = 0
        if not self.stopping and now >= self.paused_until:
            budget = self.concurrency - self.inflight - self.held
            if self.rate > 0:
                allowed_f = (now - self.t_start) * self.rate + 1.0 - <double>self.launched
                # no burst after a stall: at most one second's worth at once
                cap = <double>(<int>self.rate) if self.rate >= 1.0 else 1.0
                if allowed_f > cap:
                    allowed_f = cap
                if allowed_f < budget:
                    budget = <int>allowed_f
                    by_rate = True
            if budget > LAUNCH_BATCH:
                budget = LAUNCH_BATCH
                by_rate = False
            while n < budget and now >= self.paused_until:
                if self.rq_len:
                    index = self.rq[self.rq_head].index
                    tries = self.rq[self.rq_head].tries
                    self.rq_head = (self.rq_head + 1) % self.rq_cap
                    self.rq_len -= 1
                elif not self.order.next(&index):
                    break
                else:
                    tries = 0
                self._launch(index, tries, now)
                n += 1
        if now >= self.next_tick:
            self.next_tick = now + TICK
            self._flush_counts()
        more = not self.stopping and (self.rq_len > 0 or self.order.pos < self.order.m)
        if not more and self.inflight == 0:
            self._finish()
            return 0
        # When to look again, besides poller events.  Launches cut short by
        # the batch or the concurrency (probes answered at once free their
        # place at once) go on at the next turn of the loop.
        if (more and n >= budget and not by_rate and now >= self.paused_until
                and self.inflight + self.held < self.concurrency):
            if not self.pump_queued:
                self.pump_queued = True
                self.k.call_soon(self._pump_cb, ())
            return 0
        if self.ring_len:
            wake = self.ring[self.ring_head].when
        if more and self.inflight + self.held < self.concurrency:
            if now < self.paused_until:
                wake = self.paused_until if wake == 0.0 or self.paused_until < wake else wake
            elif self.rate > 0:
                allowed_f = self.t_start + (<double>self.launched) / self.rate
                if allowed_f < now + 0.001:
                    allowed_f = now + 0.001
                wake = allowed_f if wake == 0.0 or allowed_f < wake else wake
        if wake > 0.0 and self.on_other is not None and self.next_tick < wake:
            wake = self.next_tick
        if wake > 0.0:
            self._wake_at(wake)
        return 0

    cdef int _wake_at(self, double when) except -1:
        if self.timer is not None:
            if self.timer_when <= when and self.timer.callback is not None:
                return 0
            self.k.cancel_timer(self.timer)
        self.timer_when = when
        self.timer = self.k.schedule(when, self._timer_cb, (), None, True)
        return 0

    # -- one probe ---------------------------------------------------------------

    cdef int _set_target(self, uint64_t t) except -1:
        cdef sockaddr_in* sin
        cdef sockaddr_in6* sin6
        cdef bytes host
        address, version = self.address_of(t)
        host = address.encode("ascii")
        memset(&self.sa, 0, sizeof(sockaddr_storage))
        if version == 6:
            sin6 = <sockaddr_in6*>&self.sa
            sin6.sin6_family = c_AF_INET6
            if inet_pton(c_AF_INET6, host, &sin6.sin6_addr) != 1:
                raise ValueError(f"{address!r} is not a numeric IPv6 address")
            self.salen = sizeof(sockaddr_in6)
            self.family = c_AF_INET6
        else:
            sin = <sockaddr_in*>&self.sa
            sin.sin_family = c_AF_INET
            if inet_pton(c_AF_INET, host, &sin.sin_addr) != 1:
                raise ValueError(f"{address!r} is not a numeric IPv4 address")
            self.salen = sizeof(sockaddr_in)
            self.family = c_AF_INET
        self.target = t
        self.have_target = True
        return 0

    cdef int _launch(self, uint64_t index, uint32_t tries, double now) except -1:
        cdef uint64_t t = index // self.nports
        cdef unsigned short port = self.ports[index % self.nports]
        cdef int fd, rc, err = 0
        cdef socklen_t elen = sizeof(int)
        cdef double t0
        if not self.have_target or t != self.target:
            try:
                self._set_target(t)
            except (ValueError, UnicodeError) as exc:
                self.have_target = False
                self.launched += 1
                return self._report(index, FILTERED, UNKNOWN_ERROR, -1.0, f"address: {exc}")
        if self.family == c_AF_INET6:
            (<sockaddr_in6*>&self.sa).sin6_port = htons(port)
        else:
            (<sockaddr_in*>&self.sa).sin_port = htons(port)
        self.launched += 1
        if self.spare >= 0 and self.spare_family == self.family:
            fd = self.spare
            self.spare = -1
            self.n_recycled += 1
        else:
            self._drop_spare()
            fd = socket(self.family, c_SOCK_STREAM | c_SOCK_NONBLOCK | c_SOCK_CLOEXEC, 0)
            if fd < 0:
                return self._failed(index, tries, errno, "socket", now)
        t0 = self.k.now()     # the batch's `now` is too coarse for an rtt
        rc = connect(fd, <sockaddr*>&self.sa, self.salen)
        if rc < 0 and errno != EINPROGRESS and errno != EINTR:
            err = errno
            fd_close(fd)
            return self._failed(index, tries, err, "connect", now)
        if self.immediate and (self.eager > 0 or (self.launched % EAGER_SAMPLE) == 0):
            if self.recycle:
                # Linux: the second connect() reports how the first ended
                # (0, ECONNREFUSED, ...) or EALREADY while it goes on, and
                # leaves a refused socket unconnected, ready to be reused.
                rc = connect(fd, <sockaddr*>&self.sa, self.salen)
                if rc == 0:
                    self.eager = EAGER_CREDIT
                    return self._connected(fd, index, t0, self.k.now())
                err = errno
                if err == EALREADY or err == EINPROGRESS or err == EINTR:
                    err = 0
                elif err == ECONNREFUSED:
                    self.spare = fd
                    self.spare_family = self.family
            else:
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen)
            if err:
                if self.spare != fd:
                    fd_close(fd)
                self.eager = EAGER_CREDIT
                return self._failed(index, tries, err, "connect", now)
            if self.eager > 0:
                self.eager -= 1
        self.gen += 1
        if cp_poller_ctl(&self.poller, fd, self.gen, 0, CP_WRITE) < 0:
            err = errno
            fd_close(fd)
            return self._failed(index, tries, err if err else ENOMEM, "connect", now)
        if fd >= self.nslots:
            self._grow_slots(fd)
        self.slots[fd].index = index
        self.slots[fd].t0 = t0
        self.slots[fd].gen = self.gen
        self.slots[fd].tries = tries
        self.slots[fd].busy = True
        self.inflight += 1
        self._push_deadline(now + self.timeout, fd, self.gen)
        return 0

    cdef int _complete(self, int fd) except -1:
        # The poller says the connect has ended, one way or the other.
        cdef Slot* s = &self.slots[fd]
        cdef int err = 0
        cdef socklen_t elen = sizeof(int)
        cdef double now = self.k.now()
        s.busy = False
        self.inflight -= 1
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0:
            err = errno
        if err == 0:
            return self._connected(fd, s.index, s.t0, now)
        fd_close(fd)
        return self._failed(s.index, s.tries, err, "connect", now)

    cdef int _connected(self, int fd, uint64_t index, double t0, double now) except -1:
        # A connect that succeeded: an open port, unless the socket is
        # connected to itself.  Closes fd.
        cdef sockaddr_storage local, peer
        cdef socklen_t llen = sizeof(sockaddr_storage), plen = sizeof(sockaddr_storage)
        cdef bint self_connect = (
            getsockname(fd, <sockaddr*>&local, &llen) == 0
            and getpeername(fd, <sockaddr*>&peer, &plen) == 0
            and llen == plen and memcmp(&local, &peer, llen) == 0)
        if self_connect:
            # a TCP self-connect (simultaneous open with our own ephemeral
            # port): nothing listens there
            fd_close(fd)
            return self._report(index, CLOSED, CONNECTION_REFUSED, -1.0, "self-connect")
        if self.on_open is None:
            fd_close(fd)
            return self._report(index, OPEN, SUCCESS, now - t0, None)
        self.n_open += 1
        self.held += 1
        try:
            self.on_open(index, fd, now - t0)
        except Exception as exc:
            # The receiver did not take the socket: the port is still
            # reported open, the way it is without on_open.
            self.held -= 1
            self.n_open -= 1
            fd_close(fd)
            self.k.report_exception("Exception in a scan's open-port callback", exc, self)
            return self._report(index, OPEN, SUCCESS, now - t0, f"not handed over: {exc!r}")
        return 0

    cdef void _drop_spare(self) noexcept:
        if self.spare >= 0:
            fd_close(self.spare)
            self.spare = -1

    cdef int _failed(self, uint64_t index, uint32_t tries, int err, str op,
                     double now) except -1:
        if err == ECONNREFUSED:
            return self._report(index, CLOSED, CONNECTION_REFUSED, -1.0, None)
        if err == ETIMEDOUT:
            return self._timed_out(index, tries)
        if _transient(err):
            self._requeue(index, tries)
            if now + BACKOFF > self.paused_until:
                self.paused_until = now + BACKOFF
            return 0
        if err == ECONNRESET or err == EPIPE:
            return self._report(index, CLOSED, CONNECTION_REFUSED, -1.0, os.strerror(err))
        return self._report(index, FILTERED, UNKNOWN_ERROR, -1.0,
                            f"{op}: {os.strerror(err)}")

    cdef int _timed_out(self, uint64_t index, uint32_t tries) except -1:
        if tries < self.max_retries:
            # stopping: kept (pending) for a resumed scan, not launched
            self.n_retried += 1
            return self._requeue(index, tries + 1)
        return self._report(index, FILTERED, CONNECTION_TIMEOUT, -1.0, None)

    cdef int _expire(self, double now) except -1:
        cdef Deadline* d
        cdef Slot* s
        while self.ring_len:
            d = &self.ring[self.ring_head]
            if d.fd < self.nslots:
                s = &self.slots[d.fd]
                if s.busy and s.gen == d.gen:
                    if d.when > now:
                        break
                    s.busy = False
                    self.inflight -= 1
                    fd_close(d.fd)
                    self._pop_deadline()
                    self._timed_out(s.index, s.tries)
                    continue
            self._pop_deadline()
        return 0

    cdef int _report(self, uint64_t index, int state, int status, double rtt,
                     object error) except -1:
        if state == OPEN:
            self.n_open += 1
        elif state == CLOSED:
            self.n_closed += 1
        else:
            self.n_filtered += 1
        if state == OPEN or self.report_others or self.on_other is None:
            try:
                self.on_result(index, state, status, rtt if rtt >= 0 else None, error)
            except Exception as exc:
                self.k.report_exception("Exception in a scan's result callback", exc, self)
        elif state == CLOSED:
            self.unreported_closed += 1
        else:
            self.unreported_filtered += 1
        return 0

    cdef int _flush_counts(self) except -1:
        cdef uint64_t c = self.unreported_closed, f = self.unreported_filtered
        if self.on_other is None:
            return 0
        self.unreported_closed = 0
        self.unreported_filtered = 0
        try:
            if c:
                self.on_other(CLOSED, c)
            if f:
                self.on_other(FILTERED, f)
        except Exception as exc:
            self.k.report_exception("Exception in a scan's count callback", exc, self)
        return 0

    cdef int _finish(self) except -1:
        if self.finished:
            return 0
        self.finished = True
        self._drop_spare()
        if self.timer is not None:
            self.k.cancel_timer(self.timer)
            self.timer = None
        self.k.unregister(self)
        if self.poller_open:
            self.poller_open = False
            cp_poller_close(&self.poller)
        self._flush_counts()
        if self.on_done is not None:
            try:
                self.on_done()
            except Exception as exc:
                self.k.report_exception("Exception in a scan's done callback", exc, self)
        return 0

    # -- storage -------------------------------------------------------------------

    cdef int _grow_slots(self, int fd) except -1:
        cdef int n = self.nslots if self.nslots else 1024
        cdef Slot* p
        while n <= fd:
            n *= 2
        p = <Slot*>realloc(self.slots, sizeof(Slot) * n)
        if p == NULL:
            raise MemoryError()
        memset(p + self.nslots, 0, sizeof(Slot) * (n - self.nslots))
        self.slots = p
        self.nslots = n
        return 0

    cdef int _push_deadline(self, double when, int fd, uint32_t gen) except -1:
        cdef size_t n, i
        cdef Deadline* p
        if self.ring_len == self.ring_cap:
            n = self.ring_cap * 2 if self.ring_cap else 4096
            p = <Deadline*>malloc(sizeof(Deadline) * n)
            if p == NULL:
                raise MemoryError()
            for i in range(self.ring_len):
                p[i] = self.ring[(self.ring_head + i) % self.ring_cap]
            free(self.ring)
            self.ring = p
            self.ring_cap = n
            self.ring_head = 0
        i = (self.ring_head + self.ring_len) % self.ring_cap
        self.ring[i].when = when
        self.ring[i].fd = fd
        self.ring[i].gen = gen
        self.ring_len += 1
        return 0

    cdef void _pop_deadline(self) noexcept:
        self.ring_head = (self.ring_head + 1) % self.ring_cap
        self.ring_len -= 1

    cdef int _requeue(self, uint64_t index, uint32_t tries) except -1:
        cdef size_t n, i
        cdef Retry* p
        if self.rq_len == self.rq_cap:
            n = self.rq_cap * 2 if self.rq_cap else 256
            p = <Retry*>malloc(sizeof(Retry) * n)
            if p == NULL:
                raise MemoryError()
            for i in range(self.rq_len):
                p[i] = self.rq[(self.rq_head + i) % self.rq_cap]
            free(self.rq)
            self.rq = p
            self.rq_cap = n
            self.rq_head = 0
        i = (self.rq_head + self.rq_len) % self.rq_cap
        self.rq[i].index = index
        self.rq[i].tries = tries
        self.rq_len += 1
        return 0
