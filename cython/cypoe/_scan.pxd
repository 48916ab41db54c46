# The compiled connect scan's C face (cypoe scan; see _scan.pyx).

cimport cython
from libc.stdint cimport uint16_t, uint32_t, uint64_t

from cypoe._kernel cimport Kernel, Handler, Timer
from cypoe.includes.poller cimport cp_poller, cp_event
from cypoe.includes.socket cimport sockaddr_storage, socklen_t

cdef struct Slot:
    uint64_t index
    double t0
    uint32_t gen
    uint32_t tries
    bint busy

cdef struct Deadline:
    double when
    int fd
    uint32_t gen

cdef struct Retry:
    uint64_t index
    uint32_t tries


@cython.final
cdef class ScanOrder:
    cdef uint64_t m, pos, shards, shard, mask
    cdef uint64_t keys[8]
    cdef int nkeys, half
    cdef bint identity
    cdef bint next(self, uint64_t* out) noexcept


@cython.final
cdef class ConnectScan(Handler):
    cdef Kernel k
    cdef cp_poller poller
    cdef bint poller_open
    cdef cp_event* events
    cdef ScanOrder order
    cdef uint64_t nports
    cdef uint16_t* ports
    cdef object address_of
    cdef object on_result, on_other, on_done, on_open
    cdef bint report_others
    cdef bint have_target
    cdef uint64_t target
    cdef sockaddr_storage sa
    cdef socklen_t salen
    cdef int family
    cdef Slot* slots
    cdef int nslots
    cdef uint32_t gen
    cdef Deadline* ring
    cdef size_t ring_cap, ring_head, ring_len
    cdef Retry* rq
    cdef size_t rq_cap, rq_head, rq_len
    cdef double timeout, rate
    cdef uint32_t max_retries
    cdef readonly int concurrency
    cdef readonly uint64_t launched, n_open, n_closed, n_filtered, n_retried
    cdef readonly int inflight
    cdef readonly int held          # handed-over sockets not released yet
    cdef uint64_t unreported_closed, unreported_filtered
    cdef double t_start, paused_until, next_tick
    cdef Timer timer
    cdef double timer_when
    cdef bint pump_queued, started, stopping
    cdef readonly bint finished
    cdef int eager
    cdef bint immediate
    cdef bint recycle
    cdef int spare, spare_family
    cdef readonly uint64_t n_recycled
    cdef object _pump_cb, _timer_cb
    cdef int _pump(self) except -1
    cdef int _wake_at(self, double when) except -1
    cdef int _set_target(self, uint64_t t) except -1
    cdef int _launch(self, uint64_t index, uint32_t tries, double now) except -1
    cdef int _complete(self, int fd) except -1
    cdef int _connected(self, int fd, uint64_t index, double t0, double now) except -1
    cdef void _drop_spare(self) noexcept
    cdef int _failed(self, uint64_t index, uint32_t tries, int err, str op,
                     double now) except -1
    cdef int _timed_out(self, uint64_t index, uint32_t tries) except -1
    cdef int _expire(self, double now) except -1
    cdef int _report(self, uint64_t index, int state, int status, double rtt,
                     object error) except -1
    cdef int _flush_counts(self) except -1
    cdef int _finish(self) except -1
    cdef int _grow_slots(self, int fd) except -1
    cdef int _push_deadline(self, double when, int fd, uint32_t gen) except -1
    cdef void _pop_deadline(self) noexcept
    cdef int _requeue(self, uint64_t index, uint32_t tries) except -1
