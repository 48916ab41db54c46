# cython: language_level=3
"""The compiled load engine behind ``cypoe load`` (the built-in framings).

A load generator must never be the slowest thing in the test.  Going
through TCPMulti costs a Python callback and a Python histogram record per
response; here the life of a request is C:

* each connection is a kernel Handler (:class:`LoadConn`) with its state in
  C: the fd, a ring of the requests in flight (intended send time, actual
  send time, which message), the output not sent yet, the response
  parser's state;
* responses are framed and matched in C (``echo``, ``line``, ``any``,
  ``redis``, ``http``: the parsers of ``_framing_parsers.pxi``, shared with
  the library filters of :mod:`cypoe._framing`), and counted by kind;
* latencies go into :class:`Hist`, a counts array with HdrHistogram's
  bucket layout (1 µs to 1 h, 3 significant digits: the ``hdrh``
  package's), added into an ``hdrh.histogram.HdrHistogram`` by a C-level add
  of the counts once a second;
* the open loop is paced in C (wrk2's schedule): request ``k`` over all
  connections is due at ``start + k / rate`` and belongs to connection
  ``k % connections``; a due request waits while its connection has
  ``pipeline`` requests in flight; its latency counts from the time it was
  due (``hist``) and, beside it, from the time it was actually sent
  (``hist_raw``, the uncorrected figure);
* reads go into the kernel's shared receive buffer; the output of a
  connection is sent with one ``send()`` per loop iteration.

Python runs a few times a second (connect time-outs, reconnects, the live
line) and once at the end.
"""
cimport cython
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memset, memcpy, memcmp, memchr
from libc.errno cimport errno, EINTR, EAGAIN, EMFILE, ENFILE
from posix.unistd cimport close as c_close

from cypoe._kernel cimport Kernel, Handler, Timer, EV_READ, EV_WRITE
from cypoe._sockets cimport nb_connect

import ctypes
import errno as _errno
import os

from cypoe._framing cimport (RespParser, HttpParser, FR_MORE, FR_DONE, FR_ERROR,
                             RESP_MAX_DEPTH, RESP_MAX_DIGITS, HTTP_MAX_LINE, HTTP_MAX_HEADERS)
from cypoe.includes.debug cimport (CP_DBG_INC, CP_DBG_DEC, CP_DBG_LOAD_ENGINES,
                                   CP_DBG_LOAD_CONNS, CP_DBG_LOAD_HISTOGRAMS,
                                   CP_DBG_RESPONSE_PARSERS, cp_debug_counters)

include "_framing_parsers.pxi"

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    int getsockopt(int fd, int level, int name, void* val, socklen_t* len)
    int SOL_SOCKET, SO_ERROR
    int MSG_NOSIGNAL

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil

# What a response is (--expect).
cpdef enum:
    EXPECT_ECHO = 0
    EXPECT_LINE = 1
    EXPECT_ANY = 2
    EXPECT_REDIS = 3
    EXPECT_HTTP = 4

cdef enum:
    C_DOWN = 0          # waiting to (re)connect
    C_CONNECTING = 1
    C_UP = 2
    C_FAILED = 3        # for good (out of file descriptors)

cdef enum:
    PACE_BATCH = 65536  # due requests handed out per timer callback
    READS_PER_EVENT = 4

cdef double HOUSEKEEPING = 0.05      # connect timeouts, reconnects
cdef double RECONNECT_DELAY = 0.1
cdef double RECONNECT_MAX = 2.0
cdef int SAMPLE_BYTES = 64

def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()


EXPECT_NAMES = {"echo": EXPECT_ECHO, "line": EXPECT_LINE, "any": EXPECT_ANY,
                "redis": EXPECT_REDIS, "http": EXPECT_HTTP}


# ---------------------------------------------------------------------------
# The histogram

@cython.final
cdef class Hist:
    """Latencies in µs, counted in C in HdrHistogram's layout.

    The layout (``unit_magnitude``, ``sub_bucket_half_count_magnitude``,
    ``counts_len``) is taken from an ``hdrh`` histogram of the same range,
    so :meth:`add_to` can add the counts array into one directly.
    Values outside ``[lowest, highest]`` are clamped to the range."""

    def __cinit__(self):
        self.counts = NULL

    def __init__(self, lowest=1, highest=3600 * 1000 * 1000, significant_figures=3):
        from hdrh.histogram import HdrHistogram
        ref = HdrHistogram(lowest, highest, significant_figures)
        self.unit_mag = ref.unit_magnitude
        self.half_mag = ref.sub_bucket_half_count_magnitude
        self.half = ref.sub_bucket_half_count
        self.mask = ref.sub_bucket_mask
        self.counts_len = ref.counts_len
        self.lowest = lowest
        self.highest = highest
        self.counts = <int64_t*>malloc(sizeof(int64_t) * self.counts_len)
        if self.counts == NULL:
            raise MemoryError()
        CP_DBG_INC(CP_DBG_LOAD_HISTOGRAMS)
        memset(self.counts, 0, sizeof(int64_t) * self.counts_len)
        self._clear_totals()

    def __dealloc__(self):
        if self.counts != NULL:
            CP_DBG_DEC(CP_DBG_LOAD_HISTOGRAMS)
        free(self.counts)

    cdef inline void _clear_totals(self) noexcept:
        self.total = 0
        self.min_value = 0x7FFFFFFFFFFFFFFF
        self.max_value = 0
        self.lo_idx = self.counts_len
        self.hi_idx = -1

    cdef inline Py_ssize_t index_of(self, int64_t v) noexcept:
        # hdrh's counts_index_for (64 - clz(v | mask) is the bit length)
        cdef int pow2ceiling = 64 - __builtin_clzll(<unsigned long long>(v | self.mask))
        cdef int bucket = pow2ceiling - self.unit_mag - (self.half_mag + 1)
        cdef int64_t sub = v >> (bucket + self.unit_mag)
        return ((<Py_ssize_t>(bucket + 1)) << self.half_mag) + <Py_ssize_t>(sub - self.half)

    cdef inline void record(self, int64_t v) noexcept:
        cdef Py_ssize_t i
        if v < self.lowest:
            v = self.lowest
        elif v > self.highest:
            v = self.highest
        i = self.index_of(v)
        if i < 0 or i >= self.counts_len:
            return
        self.counts[i] += 1
        self.total += 1
        if v < self.min_value:
            self.min_value = v
        if v > self.max_value:
            self.max_value = v
        if i < self.lo_idx:
            self.lo_idx = i
        if i > self.hi_idx:
            self.hi_idx = i

    cdef inline void record_seconds(self, double dt) noexcept:
        # report.clamp_us: whole microseconds, truncated
        if dt < 0.0:
            dt = 0.0
        if dt > 4.0e9:
            dt = 4.0e9
        self.record(<int64_t>(dt * 1e6))

    def record_value(self, v):
        """Record one value (µs), as ``HdrHistogram.record_value`` would."""
        self.record(<int64_t>v)

    def record_values(self, values):
        for v in values:
            self.record(<int64_t>v)

    def counts_array(self):
        """The counts as a list (for tests)."""
        return [self.counts[i] for i in range(self.counts_len)]

    def reset(self):
        if self.hi_idx >= self.lo_idx:
            memset(self.counts + self.lo_idx, 0,
                   sizeof(int64_t) * (self.hi_idx - self.lo_idx + 1))
        self._clear_totals()

    def add_to(self, hdr, bint reset=True):
        """Add these counts into ``hdr`` (an ``hdrh.histogram.HdrHistogram``
        of the same layout) with one C loop, then (by default) reset."""
        cdef int64_t* dst
        cdef Py_ssize_t i
        if self.total == 0:
            return hdr
        if hdr.counts_len != self.counts_len or hdr.word_size != 8 \
                or hdr.unit_magnitude != self.unit_mag \
                or hdr.sub_bucket_half_count_magnitude != self.half_mag:
            raise ValueError("add_to: the histogram's layout differs")
        dst = <int64_t*><size_t>ctypes.addressof(hdr.counts)
        for i in range(self.lo_idx, self.hi_idx + 1):
            dst[i] += self.counts[i]
        hdr.total_count += self.total
        if self.min_value < hdr.min_value:
            hdr.min_value = self.min_value
        if self.max_value > hdr.max_value:
            hdr.max_value = self.max_value
        if reset:
            self.reset()
        return hdr


# ---------------------------------------------------------------------------
# One connection

@cython.final
cdef class LoadConn(Handler):

    def __cinit__(self):
        self.t_int = NULL
        self.t_sent = NULL
        self.req = NULL
        self.obuf = NULL
        self.rp = NULL
        self.hp = NULL

    def __dealloc__(self):
        if self.t_int != NULL and self.t_sent != NULL and self.req != NULL:
            CP_DBG_DEC(CP_DBG_LOAD_CONNS)
        if self.rp != NULL:
            CP_DBG_DEC(CP_DBG_RESPONSE_PARSERS)
        if self.hp != NULL:
            CP_DBG_DEC(CP_DBG_RESPONSE_PARSERS)
        free(self.t_int)
        free(self.t_sent)
        free(self.req)
        free(self.obuf)
        free(self.rp)
        if self.hp != NULL:
            http_reset(self.hp)        # its split-line buffer, if any
        free(self.hp)

    cdef int _init(self, LoadEngine eng, int idx) except -1:
        self.eng = eng
        self.idx = idx
        self.cap = eng.pipeline
        self.t_int = <double*>malloc(sizeof(double) * self.cap)
        self.t_sent = <double*>malloc(sizeof(double) * self.cap)
        self.req = <uint32_t*>malloc(sizeof(uint32_t) * self.cap)
        if self.t_int == NULL or self.t_sent == NULL or self.req == NULL:
            raise MemoryError()
        CP_DBG_INC(CP_DBG_LOAD_CONNS)
        if eng.expect == EXPECT_REDIS:
            self.rp = <RespParser*>malloc(sizeof(RespParser))
            if self.rp == NULL:
                raise MemoryError()
            CP_DBG_INC(CP_DBG_RESPONSE_PARSERS)
        elif eng.expect == EXPECT_HTTP:
            self.hp = <HttpParser*>malloc(sizeof(HttpParser))
            if self.hp == NULL:
                raise MemoryError()
            CP_DBG_INC(CP_DBG_RESPONSE_PARSERS)
            http_init(self.hp)
        self.next_msg = <uint64_t>idx
        self._reset_framing()
        return 0

    cdef void _reset_framing(self) noexcept:
        self.echo_off = 0
        self.echo_bad = False
        self.got_any = False
        self.close_after = False
        if self.rp != NULL:
            resp_reset(self.rp)
        if self.hp != NULL:
            http_reset(self.hp)
            self.hp.no_body = self.eng.no_body

    # -- the loop's hooks -------------------------------------------------------

    cdef int on_readable(self) except -1:
        cdef LoadEngine e = self.eng
        cdef Kernel k = e.k
        cdef ssize_t n
        cdef int reads = 0
        cdef double now
        while self.state == C_UP and not self.close_after:
            n = recv(self.fd, k.rbuf, k.rbuf_size, 0)
            if n > 0:
                now = k.now()
                e.bytes_received += n
                if e.sample_len < SAMPLE_BYTES:
                    e._sample(k.rbuf, n)
                self._input(k.rbuf, n, now)
                reads += 1
                if n < k.rbuf_size or reads >= READS_PER_EVENT:
                    break
            elif n == 0:
                return self._eof()
            else:
                if errno == EAGAIN or errno == EINTR:
                    break
                return self._lost("read", errno)
        if self.state != C_UP:
            return 0
        if self.close_after:
            return self._closed_by_peer()
        self._refill()
        if self.olen > self.ooff:
            self._send()
        return 0

    cdef int on_writable(self) except -1:
        cdef int err = 0
        cdef socklen_t elen = sizeof(int)
        if self.state == C_CONNECTING:
            if getsockopt(self.fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0:
                err = errno
            if err:
                return self._connect_failed("connect", err)
            return self._up()
        if self.state == C_UP:
            self._send()
        return 0

    cdef int on_flush(self) except -1:
        if self.state == C_UP and self.olen > self.ooff:
            self._send()
        return 0

    # -- connecting ---------------------------------------------------------------

    cdef int _connect(self, double now) except -1:
        cdef LoadEngine e = self.eng
        cdef int err = 0, fd
        cdef const char* op = NULL
        bind = e.sources[self.idx % len(e.sources)] if e.sources else None
        fd = nb_connect(e.family, e.host, e.port, bind, 0, &err, &op)
        if fd < 0:
            return self._connect_failed((<bytes>op).decode(), err)
        try:
            e.k.register(self, fd, EV_WRITE, True)
        except BaseException:
            c_close(fd)
            raise
        self.state = C_CONNECTING
        self.deadline = now + e.timeout
        e.connecting += 1
        return 0

    cdef int _connect_failed(self, str op, int err) except -1:
        cdef LoadEngine e = self.eng
        if self.state == C_CONNECTING:
            e.connecting -= 1
        self._drop_fd()
        e.connections_failed += 1
        e._error(_kind(op, err))
        self.fails += 1
        if err == EMFILE or err == ENFILE:
            # the limit will not go away by trying again: this connection
            # fails for good, the others go on
            self.state = C_FAILED
            self.owed = 0
            e.failed_for_good += 1
            return 0
        self.state = C_DOWN
        self.deadline = e.k.now() + min(RECONNECT_DELAY * (1 << min(self.fails - 1, 5)),
                                        RECONNECT_MAX)
        return 0

    cdef int _up(self) except -1:
        cdef LoadEngine e = self.eng
        e.connecting -= 1
        e.up += 1
        e.connections_opened += 1
        self.state = C_UP
        self.fails = 0
        self._reset_framing()
        e.k.set_interest(self, EV_READ)
        if e.stopping:
            return self._close()
        self._refill()
        if self.olen > self.ooff:
            self._send()
        return 0

    cdef void _drop_fd(self) noexcept:
        cdef int fd = self.fd
        if fd >= 0:
            try:
                self.eng.k.unregister(self)
            except BaseException:
                pass
            c_close(fd)
        self.olen = self.ooff = 0
        self.unstamped = 0

    cdef int _close(self) except -1:
        # Our own close (end of the run, Connection: close): no error.
        if self.state == C_UP:
            self.eng.up -= 1
        elif self.state == C_CONNECTING:
            self.eng.connecting -= 1
        self._drop_fd()
        self.state = C_DOWN
        return 0

    cdef int _lost(self, str op, int err) except -1:
        # The connection broke: what was in flight is lost; reconnect.
        cdef LoadEngine e = self.eng
        e._error(_kind(op, err))
        self._fail_in_flight("lost-in-flight")
        self._close()
        self.deadline = e.k.now() + RECONNECT_DELAY
        return e._maybe_done()

    cdef int _eof(self) except -1:
        cdef int st
        if self.hp != NULL:
            st = http_eof(self.hp)
            if st == FR_DONE:
                self._http_done(self.eng.k.now())
                return self._closed_by_peer()
        if self.count == 0:
            # an idle connection the server closed: reconnect, no error
            return self._closed_by_peer()
        return self._lost("read", 0)

    cdef int _closed_by_peer(self) except -1:
        cdef LoadEngine e = self.eng
        if self.count:
            self._fail_in_flight("lost-in-flight")
        e.reopened += 1
        self._close()
        self.deadline = e.k.now()
        if not e.stopping:
            self._connect(self.deadline)
        return e._maybe_done()

    cdef void _fail_in_flight(self, str kind):
        cdef LoadEngine e = self.eng
        if self.count:
            e._error(kind, self.count)
            e.failed += self.count
            e.in_flight -= self.count
        self.count = 0
        self.head = 0
        self.unstamped = 0

    # -- sending ----------------------------------------------------------------

    cdef inline int _queue(self, double intended) except -1:
        # Append the next message to the output and to the ring.
        cdef LoadEngine e = self.eng
        cdef uint32_t m = <uint32_t>(self.next_msg % e.nmsgs)
        cdef Py_ssize_t ln = e.msg_len[m], need
        cdef int slot
        cdef char* p
        self.next_msg += 1
        need = self.olen + ln
        if need > self.ocap:
            if self.ooff > 0:
                memcpy(self.obuf, self.obuf + self.ooff, self.olen - self.ooff)
                self.olen -= self.ooff
                self.ooff = 0
                need = self.olen + ln
            if need > self.ocap:
                p = <char*>realloc(self.obuf, need * 2 if need > 256 else 512)
                if p == NULL:
                    raise MemoryError()
                self.obuf = p
                self.ocap = need * 2 if need > 256 else 512
        memcpy(self.obuf + self.olen, e.msgs + e.msg_off[m], ln)
        self.olen += ln
        slot = self.head + self.count
        if slot >= self.cap:
            slot -= self.cap
        self.t_int[slot] = intended
        self.req[slot] = m
        self.count += 1
        self.unstamped += 1
        e.requests += 1
        e.in_flight += 1
        e.bytes_sent += ln
        return 0

    cdef int _refill(self) except -1:
        cdef LoadEngine e = self.eng
        if e.stopping or e.holding:
            # holding: prepare() opened the connection; nothing is sent
            # before start()
            return 0
        if e.rate_interval == 0.0:
            while self.count < self.cap:
                if e.max_requests >= 0 and e.requests >= e.max_requests:
                    e._stop_sending()
                    return 0
                self._queue(0.0)
        else:
            while self.owed > 0 and self.count < self.cap:
                if e.max_requests >= 0 and e.requests >= e.max_requests:
                    e._stop_sending()
                    return 0
                self._queue(self.owed_t)
                self.owed_t += e.conn_interval
                self.owed -= 1
        return 0

    cdef int _send(self) except -1:
        cdef LoadEngine e = self.eng
        cdef ssize_t n
        cdef double now
        cdef int i, slot
        if self.unstamped:
            now = e.k.now()
            slot = self.head + self.count - self.unstamped
            if slot >= self.cap:
                slot -= self.cap
            for i in range(self.unstamped):
                self.t_sent[slot] = now
                if e.rate_interval == 0.0:
                    self.t_int[slot] = now
                slot += 1
                if slot == self.cap:
                    slot = 0
            self.unstamped = 0
        n = send(self.fd, self.obuf + self.ooff, self.olen - self.ooff, MSG_NOSIGNAL)
        if n > 0:
            self.ooff += n
            if self.ooff == self.olen:
                self.ooff = self.olen = 0
                if self.interest & EV_WRITE:
                    e.k.set_interest(self, EV_READ)
            elif not (self.interest & EV_WRITE):
                e.k.set_interest(self, EV_READ | EV_WRITE)
            return 0
        if n < 0 and (errno == EAGAIN or errno == EINTR):
            if not (self.interest & EV_WRITE):
                e.k.set_interest(self, EV_READ | EV_WRITE)
            return 0
        return self._lost("write", errno if n < 0 else 0)

    # -- receiving ----------------------------------------------------------------

    cdef inline int _complete(self, double now, int outcome) except -1:
        # The oldest request in flight got its response.  outcome: 0 ok,
        # 1 mismatch (echo), 2 error reply (redis -ERR).
        cdef LoadEngine e = self.eng
        cdef int slot = self.head
        self.head += 1
        if self.head == self.cap:
            self.head = 0
        self.count -= 1
        e.in_flight -= 1
        if self.unstamped > self.count:
            # answered before it was sent (the peer talks first): stamp now
            self.unstamped = self.count
            self.t_sent[slot] = now
            if e.rate_interval == 0.0:
                self.t_int[slot] = now
        if outcome == 0:
            e.responses += 1
            e.hist.record_seconds(now - self.t_int[slot])
            e.hist_raw.record_seconds(now - self.t_sent[slot])
        elif outcome == 1:
            e.mismatches += 1
            e.failed += 1
        else:
            e.error_replies += 1
            e.failed += 1
        if e.stopping and e.in_flight == 0:
            e._finish_soon()
        return 0

    cdef int _input(self, const char* data, Py_ssize_t n, double now) except -1:
        cdef LoadEngine e = self.eng
        cdef Py_ssize_t i = 0, take, ln
        cdef const char* q
        cdef const char* want
        cdef int st
        cdef int x = e.expect
        if x == EXPECT_ECHO:
            while i < n:
                if self.count == 0:
                    e.unexpected += 1
                    return 0
                ln = e.msg_len[self.req[self.head]]
                want = e.msgs + e.msg_off[self.req[self.head]] + self.echo_off
                take = ln - self.echo_off
                if take > n - i:
                    take = n - i
                if memcmp(data + i, want, take) != 0:
                    self.echo_bad = True
                self.echo_off += take
                i += take
                if self.echo_off == ln:
                    self.echo_off = 0
                    self._complete(now, 1 if self.echo_bad else 0)
                    self.echo_bad = False
        elif x == EXPECT_LINE:
            while i < n:
                q = <const char*>memchr(data + i, 10, n - i)
                if q == NULL:
                    break
                i = (q - data) + 1
                if self.count == 0:
                    e.unexpected += 1
                    return 0
                self._complete(now, 0)
        elif x == EXPECT_ANY:
            if self.count == 0:
                e.unexpected += 1
                return 0
            self._complete(now, 0)
        elif x == EXPECT_REDIS:
            while i < n:
                take = resp_feed(self.rp, data + i, n - i, &st)
                i += take
                if st == FR_DONE:
                    if self.count == 0:
                        e.unexpected += 1
                        return 0
                    self._complete(now, 2 if self.rp.last_error else 0)
                elif st == FR_ERROR:
                    return self._protocol_error(resp_error_text(self.rp))
        else:
            while i < n:
                take = http_feed(self.hp, data + i, n - i, &st)
                i += take
                if st == FR_DONE:
                    self._http_done(now)
                    if self.close_after:
                        if i < n:
                            e.unexpected += 1
                        return 0
                elif st == FR_ERROR:
                    return self._protocol_error(http_error_text(self.hp))
        return 0

    cdef int _http_done(self, double now) except -1:
        cdef LoadEngine e = self.eng
        cdef int cls = self.hp.last_status // 100
        if self.count == 0:
            e.unexpected += 1
            return 0
        if 1 <= cls <= 5:
            e.status_counts[cls] += 1
        else:
            e.status_counts[0] += 1
        if self.hp.last_close:
            self.close_after = True
        return self._complete(now, 0)

    cdef int _protocol_error(self, str text) except -1:
        # Input that does not frame: nothing after it can be trusted on this
        # connection.  Its requests fail; it reconnects.
        cdef LoadEngine e = self.eng
        e.protocol_errors += 1
        if e.protocol_error_text is None:
            e.protocol_error_text = text
        e._error("protocol")
        self._fail_in_flight("lost-in-flight")
        self._close()
        self.deadline = e.k.now() + RECONNECT_DELAY
        return e._maybe_done()


cdef str _kind(str op, int err):
    if err == 0:
        return f"{op}:EOF" if op == "read" else f"{op}:0"
    return f"{op}:{_errno.errorcode.get(err, str(err))}"


# ---------------------------------------------------------------------------
# The engine

@cython.final
cdef class LoadEngine:
    """One process's load (internal; driven by :mod:`cypoe.cli.load_compiled`).

    ``messages``: the requests, sent in turn (connection ``i`` starts at
    message ``i``).  ``expect``: ``"echo" | "line" | "any" | "redis" |
    "http"``.  ``rate`` (requests/s over all connections) makes the loop
    open; 0 keeps it closed.  ``max_requests`` < 0: no limit.
    ``on_tick(engine)`` is called about once a second; ``on_done(engine)``
    once, at the end.
    """

    def __cinit__(self):
        self.msgs = NULL
        self.msg_off = NULL
        self.msg_len = NULL
        CP_DBG_INC(CP_DBG_LOAD_ENGINES)

    def __init__(self, Kernel kernel not None, str host, int port, messages, *,
                 int connections=16, int pipeline=1, str expect="echo", double rate=0.0,
                 double duration=10.0, long long max_requests=-1, double timeout=5.0,
                 double connect_rate=0.0, sources=(), int family=2, bint no_body=False,
                 on_tick=None, on_done=None):
        cdef Py_ssize_t total = 0, off = 0
        cdef bytes m
        cdef LoadConn c
        if connections < 1:
            raise ValueError("connections must be >= 1")
        if pipeline < 1:
            raise ValueError("pipeline must be >= 1")
        if expect not in EXPECT_NAMES:
            raise ValueError(f"expect must be one of {', '.join(EXPECT_NAMES)}, not {expect!r}")
        messages = [bytes(x) for x in messages]
        if not messages or any(len(x) == 0 for x in messages):
            raise ValueError("messages: at least one, none empty")
        self.k = kernel
        self.host = host
        self.port = port
        self.family = family
        self.sources = list(sources)
        self.nconns = connections
        self.pipeline = pipeline
        self.expect = EXPECT_NAMES[expect]
        self.no_body = no_body
        self.nmsgs = len(messages)
        for m in messages:
            total += len(m)
        self.msgs = <char*>malloc(total)
        self.msg_off = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * self.nmsgs)
        self.msg_len = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * self.nmsgs)
        if self.msgs == NULL or self.msg_off == NULL or self.msg_len == NULL:
            raise MemoryError()
        for i, m in enumerate(messages):
            memcpy(self.msgs + off, <const char*>m, len(m))
            self.msg_off[i] = off
            self.msg_len[i] = len(m)
            off += len(m)
        self.duration = duration
        self.timeout = timeout
        self.rate = rate if rate > 0 else 0.0
        self.rate_interval = 1.0 / rate if rate > 0 else 0.0
        self.conn_interval = connections / rate if rate > 0 else 0.0
        self.connect_rate = connect_rate if connect_rate > 0 else 0.0
        self.max_requests = max_requests
        self.errors = {}
        self.hist = Hist()
        self.hist_raw = Hist()
        memset(self.status_counts, 0, sizeof(self.status_counts))
        self.conns = []
        for i in range(connections):
            c = LoadConn.__new__(LoadConn)
            c._init(self, i)
            self.conns.append(c)
        self.on_tick = on_tick
        self.on_done = on_done
        self._pace_cb = self._pace
        self._house_cb = self._housekeeping
        self._end_cb = self._stop_sending_py
        self._grace_cb = self._grace_over
        self._finish_cb = self._finish_py

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_LOAD_ENGINES)
        free(self.msgs)
        free(self.msg_off)
        free(self.msg_len)

    # -- Python face ----------------------------------------------------------

    def prepare(self, double timeout=5.0):
        """Open every connection now (``connect_rate`` does not apply) and
        send nothing: drive the kernel (``run_once``) until each connection
        is up or has failed for good (EMFILE), or ``timeout`` seconds have
        passed.  Connect failures meanwhile follow the run's rules (retry
        with back-off; the ones still down are retried after ``start()``).
        Call before ``start()`` and outside ``kernel.run()``; returns the
        number of connections up.  ``start()`` then sends at once on the
        connections that are up, so a cluster agent reports ready with its
        connections open and the load begins at the common start instant."""
        cdef double now, deadline, wait
        cdef LoadConn c
        if self.started or self.prepared:
            raise RuntimeError("prepare(): call it once, before start()")
        self.prepared = True
        self.holding = True
        now = self.k.now()
        deadline = now + (timeout if timeout > 0 else 0.0)
        while self.next_connect < self.nconns:
            c = <LoadConn>self.conns[self.next_connect]
            self.next_connect += 1
            c._connect(now)
        while self.up + self.failed_for_good < self.nconns:
            now = self.k.now()
            if now >= deadline:
                break
            self._check_conns(now)
            wait = deadline - now
            self.k.run_once(wait if wait < HOUSEKEEPING else HOUSEKEEPING)
        return self.up

    def start(self):
        """Begin; call before or inside ``kernel.run()``.  The connections
        are opened from the loop, so the kernel's own descriptors (signal
        pipe) are taken before the connections can use up the limit.  After
        ``prepare()``, the connections already up send at once (closed
        loop); the open loop's schedule starts now either way."""
        cdef LoadConn c
        if self.started:
            raise RuntimeError("this load has already started")
        self.started = True
        self.holding = False
        self.k.register_component(self)
        self.t0 = self.k.now()
        self.t_end = self.t0 + self.duration
        self.next_tick = self.t0 + 1.0
        self.end_timer = self.k.schedule(self.t_end, self._end_cb, (), None, True)
        self.house_timer = self.k.schedule(self.t0, self._house_cb, (), None, True)
        if self.rate > 0:
            self.pace_k = 0
            self.pace_next = self.t0
            self.pace_timer = self.k.schedule(self.t0, self._pace_cb, (), None, True)
        elif self.prepared:
            for c in self.conns:
                if self.stopping:
                    break
                if c.state == C_UP:
                    c._refill()
                    if c.state == C_UP and c.olen > c.ooff:
                        c._send()

    def shutdown(self):
        """SIGINT/SIGTERM (the kernel's component protocol): stop at once;
        requests in flight are reported as such (``in_flight``)."""
        self.interrupted = True
        self.stopping = True
        self._finish()

    def stop(self):
        """Send nothing more; finish when the responses in flight are in
        (or after ``timeout``)."""
        self._stop_sending()

    @property
    def status_classes(self):
        """Responses by HTTP status class, e.g. ``{"2xx": 10}``."""
        out = {}
        for i in range(1, 6):
            if self.status_counts[i]:
                out[f"{i}xx"] = self.status_counts[i]
        if self.status_counts[0]:
            out["other"] = self.status_counts[0]
        return out

    @property
    def sample_bytes(self):
        """The first bytes the server sent (for diagnostics)."""
        return self.sample[:self.sample_len]

    @property
    def conns_up(self):
        return self.up

    def all_errors(self):
        """Errors by kind, the per-response ones included."""
        d = dict(self.errors)
        if self.mismatches:
            d["mismatch"] = d.get("mismatch", 0) + self.mismatches
        if self.error_replies:
            d["redis:ERR"] = d.get("redis:ERR", 0) + self.error_replies
        if self.unexpected:
            d["unexpected-response"] = d.get("unexpected-response", 0) + self.unexpected
        return d

    # -- internals --------------------------------------------------------------

    cdef void _sample(self, const char* data, Py_ssize_t n) noexcept:
        cdef Py_ssize_t take = SAMPLE_BYTES - self.sample_len
        if take > n:
            take = n
        memcpy(self.sample + self.sample_len, data, take)
        self.sample_len += <int>take

    cdef void _error(self, str kind, int64_t n=1):
        self.errors[kind] = self.errors.get(kind, 0) + n

    def _housekeeping(self):
        # Connects (at --connect-rate), connect timeouts, reconnects, ticks.
        cdef double now = self.k.now()
        cdef LoadConn c
        cdef int budget
        self.house_timer = None
        if self.finished:
            return
        if not self.stopping:
            if self.next_connect < self.nconns:
                if self.connect_rate > 0:
                    budget = <int>((now - self.t0) * self.connect_rate) + 1 - self.next_connect
                else:
                    budget = self.nconns
                while budget > 0 and self.next_connect < self.nconns:
                    c = <LoadConn>self.conns[self.next_connect]
                    self.next_connect += 1
                    c._connect(now)
                    budget -= 1
            self._check_conns(now)
        if now >= self.next_tick:
            self.next_tick += 1.0
            if self.next_tick < now:
                self.next_tick = now + 1.0
            if self.on_tick is not None:
                self.on_tick(self)
        if not self.finished:
            self.house_timer = self.k.schedule(now + HOUSEKEEPING, self._house_cb, (), None,
                                               True)

    cdef int _check_conns(self, double now) except -1:
        # Connect timeouts and reconnects of the connections started.
        cdef LoadConn c
        cdef int i
        # connections started and not up (connecting, or down waiting to
        # reconnect): none in a steady run, so no scan at all
        if self.next_connect - self.up - self.failed_for_good == 0:
            return 0
        i = 0
        while i < self.next_connect:
            c = <LoadConn>self.conns[i]
            i += 1
            if c.state == C_CONNECTING and now >= c.deadline:
                c._connect_failed("connect", _errno.ETIMEDOUT)
            elif c.state == C_DOWN and now >= c.deadline:
                c._connect(now)
        return 0

    def _pace(self):
        # wrk2's schedule: request k is due at t0 + k / rate, on connection
        # k % connections.
        cdef double now = self.k.now()
        cdef LoadConn c
        cdef int n = 0
        cdef double due
        self.pace_timer = None
        if self.stopping:
            return
        while n < PACE_BATCH:
            due = self.t0 + self.pace_k * self.rate_interval
            if due > now:
                break
            if due >= self.t_end:
                return
            c = <LoadConn>self.conns[self.pace_k % self.nconns]
            self.pace_k += 1
            n += 1
            if c.state == C_FAILED:
                continue
            if c.owed == 0:
                c.owed_t = due
            c.owed += 1
            if c.state == C_UP and c.count < c.cap:
                c._refill()
                if self.stopping:
                    return
                if c.olen > c.ooff:
                    self.k.mark_dirty(c)
        due = self.t0 + self.pace_k * self.rate_interval
        if due < self.t_end:
            self.pace_timer = self.k.schedule(due, self._pace_cb, (), None, True)

    cdef int _stop_sending(self) except -1:
        cdef LoadConn c
        if self.stopping:
            return 0
        self.stopping = True
        self.t_stop = self.k.now()
        for t in (self.pace_timer, self.end_timer):
            if t is not None:
                self.k.cancel_timer(<Timer>t)
        self.pace_timer = self.end_timer = None
        for c in self.conns:
            c.owed = 0
        if self.in_flight == 0:
            self._finish_soon()
        else:
            self.grace_timer = self.k.schedule(self.k.now() + self.timeout, self._grace_cb, (),
                                               None, True)
        return 0

    def _stop_sending_py(self):
        self.end_timer = None
        self._stop_sending()

    def _grace_over(self):
        # The responses still missing after the grace period: unanswered.
        self.grace_timer = None
        if self.in_flight > 0:
            self._error("timeout:unanswered", self.in_flight)
            self.failed += self.in_flight
            self.in_flight = 0
        self._finish()

    cdef int _maybe_done(self) except -1:
        if self.stopping and self.in_flight == 0:
            self._finish_soon()
        return 0

    cdef int _finish_soon(self) except -1:
        if not self.finish_queued and not self.finished:
            self.finish_queued = True
            self.k.call_soon(self._finish_cb, ())
        return 0

    def _finish_py(self):
        self._finish()

    cdef int _finish(self) except -1:
        cdef LoadConn c
        if self.finished:
            return 0
        self.finished = True
        self.t_done = self.k.now()
        if not self.t_stop:
            self.t_stop = self.t_done
        for t in (self.pace_timer, self.end_timer, self.grace_timer, self.house_timer):
            if t is not None:
                self.k.cancel_timer(<Timer>t)
        self.pace_timer = self.end_timer = self.grace_timer = self.house_timer = None
        for c in self.conns:
            c.count = 0      # in flight: stays counted in self.in_flight
            c._close()
        self.k.unregister_component(self)
        if self.on_done is not None:
            self.on_done(self)
        return 0
