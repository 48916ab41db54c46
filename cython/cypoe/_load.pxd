# The compiled load engine's C face (cypoe load --engine compiled; driven
# by cypoe.cli.load_compiled): the latency histogram, one connection's state and
# the engine.  The response parsers' state comes from _framing.pxd.

cimport cython
from libc.stdint cimport int64_t, uint32_t, uint64_t

from cypoe._kernel cimport Kernel, Handler, Timer
from cypoe._framing cimport RespParser, HttpParser

@cython.final
cdef class Hist:
    cdef int64_t* counts
    cdef readonly Py_ssize_t counts_len
    cdef int unit_mag, half_mag
    cdef int64_t half, mask
    cdef readonly int64_t lowest, highest
    cdef readonly int64_t total, min_value, max_value
    cdef Py_ssize_t lo_idx, hi_idx      # range of non-zero counts
    cdef inline void _clear_totals(self) noexcept
    cdef inline Py_ssize_t index_of(self, int64_t v) noexcept
    cdef inline void record(self, int64_t v) noexcept
    cdef inline void record_seconds(self, double dt) noexcept

cdef class LoadEngine



@cython.final
cdef class LoadConn(Handler):
    cdef LoadEngine eng
    cdef int idx
    cdef int state
    cdef int fails                   # consecutive failed connects
    cdef double deadline             # connect deadline / reconnect time
    # requests in flight, oldest first (a ring of `cap` = pipeline entries)
    cdef double* t_int
    cdef double* t_sent
    cdef uint32_t* req
    cdef int cap, head, count, unstamped
    # output not sent yet
    cdef char* obuf
    cdef Py_ssize_t olen, ooff, ocap
    cdef uint64_t next_msg
    # open loop: requests due and not sent yet, the first one's intended time
    cdef int64_t owed
    cdef double owed_t
    # response framing
    cdef Py_ssize_t echo_off
    cdef bint echo_bad
    cdef bint got_any                # expect any: bytes since the last response
    cdef RespParser* rp
    cdef HttpParser* hp
    cdef bint close_after            # Connection: close seen
    cdef int _init(self, LoadEngine eng, int idx) except -1
    cdef void _reset_framing(self) noexcept
    cdef int _connect(self, double now) except -1
    cdef int _connect_failed(self, str op, int err) except -1
    cdef int _up(self) except -1
    cdef void _drop_fd(self) noexcept
    cdef int _close(self) except -1
    cdef int _lost(self, str op, int err) except -1
    cdef int _eof(self) except -1
    cdef int _closed_by_peer(self) except -1
    cdef void _fail_in_flight(self, str kind)
    cdef inline int _queue(self, double intended) except -1
    cdef int _refill(self) except -1
    cdef int _send(self) except -1
    cdef inline int _complete(self, double now, int outcome) except -1
    cdef int _input(self, const char* data, Py_ssize_t n, double now) except -1
    cdef int _http_done(self, double now) except -1
    cdef int _protocol_error(self, str text) except -1


@cython.final
cdef class LoadEngine:
    cdef Kernel k
    cdef str host
    cdef int port, family
    cdef list sources
    cdef list conns
    cdef readonly int nconns, pipeline, expect
    cdef bint no_body
    cdef char* msgs
    cdef Py_ssize_t* msg_off
    cdef Py_ssize_t* msg_len
    cdef uint32_t nmsgs
    cdef readonly double duration, timeout, rate, connect_rate
    cdef double rate_interval, conn_interval
    cdef readonly int64_t max_requests
    # counters
    cdef public int64_t requests, responses, failed, mismatches, error_replies
    cdef public int64_t bytes_sent, bytes_received, unexpected, protocol_errors
    cdef public int64_t connections_opened, connections_failed, reopened
    cdef public int64_t in_flight
    cdef int64_t status_counts[6]
    cdef readonly int up, connecting, failed_for_good
    cdef public dict errors
    cdef readonly Hist hist, hist_raw
    cdef public object protocol_error_text
    cdef char sample[64]
    cdef int sample_len
    # time
    cdef readonly double t0, t_end, t_stop, t_done
    cdef uint64_t pace_k
    cdef double pace_next
    cdef int next_connect
    cdef Timer pace_timer, house_timer, end_timer, grace_timer
    cdef double next_tick
    cdef readonly bint started, stopping, finished, interrupted
    cdef readonly bint prepared, holding   # prepare(): connections open, nothing sent
    cdef bint finish_queued
    cdef object on_tick, on_done
    cdef object _pace_cb, _house_cb, _end_cb, _grace_cb, _finish_cb
    cdef void _sample(self, const char* data, Py_ssize_t n) noexcept
    cdef void _error(self, str kind, int64_t n=*)
    cdef int _check_conns(self, double now) except -1
    cdef int _stop_sending(self) except -1
    cdef int _maybe_done(self) except -1
    cdef int _finish_soon(self) except -1
    cdef int _finish(self) except -1
