# cython: language_level=3
"""The Kernel: readiness loop, timers, the event queue, sessions and signals.

One loop iteration (``_run_once``):

1. wait for readiness (epoll | kqueue | poll) with the GIL released, for at
   most the time until the next timer (0 when work is already queued), to
   the nanosecond: see includes/poller.h for how each backend does it;
2. dispatch readiness to the watchers, found by fd index;
3. run Python-level signal handlers, then deliver the signals;
4. fire the timers that are due, in (due time, order set);
5. deliver the events that were queued when the iteration began (FIFO);
6. call ``on_flush`` on every watcher marked dirty (coalesced writes).
"""
cimport cython
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_SET_ITEM
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyTypeObject, traverseproc, visitproc, inquiry
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memset, memmove
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.errno cimport errno, EINTR
from libc.math cimport ceil
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.unistd cimport close as fd_close

import collections
import logging
import os
import signal as _signal
import threading

from cypoe.errors import CypoeError
from cypoe.includes.debug cimport (CP_DBG_INC, CP_DBG_DEC, CP_DBG_ADD, CP_DBG_KERNELS,
                                   CP_DBG_HANDLERS, CP_DBG_TIMERS, CP_DBG_SESSIONS,
                                   cp_debug_counters)

cdef extern from "Python.h":
    object PyObject_Vectorcall(object callable, PyObject** args, size_t nargsf,
                               PyObject* kwnames)
    ctypedef struct PyListObject:
        PyObject** ob_item
    void Py_SET_SIZE(object o, Py_ssize_t size)

cdef extern from "includes/timerslack.h" nogil:
    long cp_timer_slack_get()
    int cp_timer_slack_set(long ns)

# Timer slack while run() runs: 1 us, so that a precise poll timeout is not
# stretched by the default 50 us (see includes/timerslack.h).
cdef long RUN_TIMER_SLACK_NS = 1000

from cypoe.includes.poller cimport (
    cp_event, cp_poller, CP_READ, CP_WRITE, CP_ERROR, CP_BACKEND_EPOLL, CP_BACKEND_KQUEUE,
    CP_BACKEND_POLL, CP_PRECISE_AUTO, CP_PRECISE_TIMERFD, cp_backend_available,
    cp_default_backend, cp_poller_init, cp_poller_enable_precise, cp_poller_wait_mechanism,
    cp_poller_close, cp_poller_ctl, cp_poller_wait_ns, cp_pipe_open, cp_wakeup_open,
    cp_wakeup_signal, cp_wakeup_drain)

cdef enum:
    MAX_EVENTS = 1024
    RBUF_SIZE = 262144
    MAX_VECTOR_ARGS = 8

cdef dict _BACKENDS = {"epoll": CP_BACKEND_EPOLL, "kqueue": CP_BACKEND_KQUEUE,
                       "poll": CP_BACKEND_POLL}
cdef dict _BACKEND_NAMES = {v: k for k, v in _BACKENDS.items()}

# CYPOE_EPOLL_WAIT=timerfd makes new epoll Kernels use the timerfd fallback
# even where epoll_pwait2 exists (for the tests of that path).
cdef str _EPOLL_WAIT_ENV = "CYPOE_EPOLL_WAIT"

cdef object _log = logging.getLogger("cypoe")

# The event of the garbage-collection check queued for every new session
# (POE's EN_GC): not a str, so no state -- not even _default -- can see it.
cdef object _GC_CHECK = object()


cdef object call_with_first(object fn, object first, tuple args):
    """fn(first, *args) without building a new argument tuple."""
    cdef Py_ssize_t n = len(args), i
    cdef PyObject* stack[MAX_VECTOR_ARGS + 1]
    if n > MAX_VECTOR_ARGS:
        return fn(first, *args)
    stack[0] = <PyObject*>first
    for i in range(n):
        stack[i + 1] = PyTuple_GET_ITEM(args, i)
    return PyObject_Vectorcall(fn, stack, <size_t>(n + 1), NULL)


cdef str _signal_name(object sig):
    """'INT' for 'INT', 'SIGINT', signal.SIGINT or 2."""
    if isinstance(sig, str):
        name = sig.upper()
        if name.startswith("SIG"):
            name = name[3:]
        if not hasattr(_signal, "SIG" + name):
            raise ValueError(f"signame: unknown signal {sig!r}")
        return name
    try:
        return _signal.Signals(int(sig)).name[3:]
    except (ValueError, TypeError):
        raise ValueError(f"signame: unknown signal {sig!r}") from None


# -- the kernel's own lists (timer queue, event queue, dirty handlers) -------
# Indexes are always in range and the lists are never None, so these replace
# Cython's generic item assignment, pop and slice deletion (a slice object
# per `del l[:k]`) with struct access; the lists keep their item arrays.

cdef inline void _list_set(list l, Py_ssize_t i, object v) noexcept:
    """l[i] = v, i in range; the old item is referenced elsewhere (a sift)."""
    cdef PyObject* old = PyList_GET_ITEM(l, i)
    Py_INCREF(v)
    PyList_SET_ITEM(l, i, v)
    Py_XDECREF(old)


cdef inline object _list_take(list l, Py_ssize_t i):
    """The item at i, leaving None in its slot (the list stays valid)."""
    cdef object v = <object>PyList_GET_ITEM(l, i)
    Py_INCREF(None)
    PyList_SET_ITEM(l, i, None)
    Py_DECREF(v)            # the list's reference, now held by v
    return v


cdef inline object _list_pop_last(list l):
    """l.pop() of a non-empty list, keeping its item array."""
    cdef Py_ssize_t n = PyList_GET_SIZE(l) - 1
    cdef object v = <object>PyList_GET_ITEM(l, n)
    Py_SET_SIZE(l, n)
    Py_DECREF(v)            # the list's reference, now held by v
    return v


cdef inline void _list_drop_nones(list l, Py_ssize_t k) noexcept:
    """del l[:k] where l[:k] are the Nones _list_take left: what was
    appended after them moves down, the item array is kept."""
    cdef Py_ssize_t n = PyList_GET_SIZE(l), i
    cdef PyObject** items = (<PyListObject*><PyObject*>l).ob_item
    for i in range(k):
        Py_DECREF(None)
    memmove(items, items + k, (n - k) * sizeof(PyObject*))
    Py_SET_SIZE(l, n - k)


cdef inline bint _timer_lt(Timer a, Timer b) noexcept:
    return a.when < b.when or (a.when == b.when and a.seq < b.seq)


cdef void _timer_queue_push(list queue, Timer t):
    cdef Py_ssize_t i, parent
    cdef Timer p
    queue.append(t)
    i = len(queue) - 1
    while i > 0:
        parent = (i - 1) >> 1
        p = <Timer>queue[parent]
        if not _timer_lt(t, p):
            break
        _list_set(queue, i, p)
        i = parent
    _list_set(queue, i, t)


cdef Timer _timer_queue_pop(list queue):
    cdef Py_ssize_t n = len(queue), i, child
    cdef Timer top = <Timer>queue[0]
    cdef Timer last = <Timer>_list_pop_last(queue)
    cdef Timer c
    n -= 1
    if n == 0:
        return top
    i = 0
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and _timer_lt(<Timer>queue[child + 1], <Timer>queue[child]):
            child += 1
        c = <Timer>queue[child]
        if not _timer_lt(c, last):
            break
        _list_set(queue, i, c)
        i = child
    _list_set(queue, i, last)
    return top


cdef void _timer_queue_reorder(list queue):
    # Rebuild by re-pushing: only used for compaction after many cancels.
    cdef list items = queue[:]
    del queue[:]
    for t in items:
        _timer_queue_push(queue, <Timer>t)


cdef class Handler:
    """A C-level fd watcher (internal).  Subclasses override the hooks."""

    def __cinit__(self):
        self.fd = -1
        self.kernel = None
        self.interest = 0
        self.dirty = False
        self.keepalive = True

    cdef int on_readable(self) except -1:
        return 0

    cdef int on_writable(self) except -1:
        return 0

    cdef int on_flush(self) except -1:
        return 0


@cython.final
cdef class _Watcher(Handler):
    """The watcher behind select_read/select_write: Python callbacks."""
    cdef object read_cb
    cdef object write_cb

    cdef int on_readable(self) except -1:
        if self.read_cb is not None:
            self.read_cb(self.fd)
        return 0

    cdef int on_writable(self) except -1:
        if self.write_cb is not None:
            self.write_cb(self.fd)
        return 0


@cython.final
cdef class _WakeHandler(Handler):
    """Drains a wakeup fd; the work it announces is picked up by the loop."""

    cdef int on_readable(self) except -1:
        cp_wakeup_drain(self.fd)
        return 0


cdef class Timer:
    """A pending call made by ``delay``/``alarm``; ``cancel()`` it at will."""

    def __cinit__(self):
        self.queued = False

    def __dealloc__(self):
        if self.counted:        # dropped with its kernel, never fired
            CP_DBG_DEC(CP_DBG_TIMERS)

    cdef int _fire(self) except -1:
        cdef object cb = self.callback
        cdef tuple args = self.args
        cdef Session s = self.session
        self.callback = None
        self.counted = False
        CP_DBG_DEC(CP_DBG_TIMERS)
        self.args = None
        if self.keepalive:
            self.kernel.n_timers -= 1
        if s is not None:
            self.session = None
            s._timers.discard(self)
            s._refs -= 1
            if not s.stopped:
                s._dispatch(<str>cb, args)
            return 0
        cb(*args)
        return 0

    def cancel(self):
        """Cancel the timer; it never fires.  Cancelling twice is harmless."""
        self.kernel.cancel_timer(self)

    @property
    def active(self):
        """True until the timer fires or is cancelled."""
        return self.callback is not None

    def __repr__(self):
        state = "active" if self.callback is not None else "done"
        return f"<cypoe.Timer when={self.when:.6f} {state}>"


cdef class Kernel:
    """The event loop: readiness, timers, events, sessions, signals."""

    def __cinit__(self, *args, **kwargs):
        self._poller = NULL
        self._events = NULL
        self._handlers = NULL
        self._gens = NULL
        self._nhandlers_cap = 0
        self.rbuf = NULL
        self._wake_rfd = -1
        self._wake_wfd = -1
        self._sig_rfd = -1
        self._sig_wfd = -1
        CP_DBG_INC(CP_DBG_KERNELS)

    def __init__(self, backend="auto"):
        cdef int kind
        cdef int rfd = -1, wfd = -1
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str, not {type(backend).__name__}")
        if backend == "auto":
            kind = cp_default_backend()
        elif backend in _BACKENDS:
            kind = _BACKENDS[backend]
            if not cp_backend_available(kind):
                raise ValueError(f"backend {backend!r} is not available on this platform")
        else:
            raise ValueError(
                f"backend must be 'auto', 'epoll', 'kqueue' or 'poll', not {backend!r}")
        self._backend_kind = kind
        self._poller = malloc(sizeof(cp_poller))
        self._events = malloc(sizeof(cp_event) * MAX_EVENTS)
        self.rbuf = <char*>malloc(RBUF_SIZE)
        if self._poller == NULL or self._events == NULL or self.rbuf == NULL:
            raise MemoryError()
        self.rbuf_size = RBUF_SIZE
        self._max_events = MAX_EVENTS
        if cp_poller_init(<cp_poller*>self._poller, kind, MAX_EVENTS) < 0:
            free(self._poller)
            self._poller = NULL
            raise OSError(errno, os.strerror(errno))
        how = CP_PRECISE_AUTO
        if os.environ.get(_EPOLL_WAIT_ENV) == "timerfd":
            how = CP_PRECISE_TIMERFD
        if cp_poller_enable_precise(<cp_poller*>self._poller, how) < 0:
            raise OSError(errno, os.strerror(errno))
        self._last_timeout_ns = -1
        self._timer_queue = []
        self._seq = 0
        self.n_timers = 0
        self._n_cancelled = 0
        self._event_queue = []
        self._event_head = 0
        self._dirty = []
        self._sessions = {}
        self._aliases = {}
        self._next_id = 1
        self._components = []
        self._threadsafe = collections.deque()
        self._signal_callbacks = {}
        self._saved_signals = {}
        self._pending_signals = []
        self._saved_wakeup_fd = None
        self._signals_installed = False
        self._shutdown_signals = 0
        self._stopping = False
        self._graceful = False
        self._running = False
        self._exception_handler = None
        self._log = _log
        # Every fd the kernel needs is taken here, not in run(): a program
        # that has used up RLIMIT_NOFILE (connections failing with EMFILE
        # one by one) can still run the loop, install signals, fire timers.
        if cp_wakeup_open(&rfd, &wfd) < 0:
            raise OSError(errno, os.strerror(errno))
        self._wake_rfd = rfd
        self._wake_wfd = wfd
        self._wake_handler = _WakeHandler()
        self.register(self._wake_handler, rfd, EV_READ, False)
        # No back reference: the handlers array is invisible to the cycle
        # collector, so kernel -> array -> handler -> kernel would keep a
        # dropped Kernel (and its fds) alive for ever.
        self._wake_handler.kernel = None
        # The signal wakeup pipe, handed to signal.set_wakeup_fd by run()
        # (an eventfd cannot take its one-byte writes).
        if cp_pipe_open(&rfd, &wfd) < 0:
            raise OSError(errno, os.strerror(errno))
        self._sig_rfd = rfd
        self._sig_wfd = wfd

    def __dealloc__(self):
        cdef int fd
        CP_DBG_DEC(CP_DBG_KERNELS)
        if self._handlers != NULL:
            for fd in range(self._nhandlers_cap):
                if self._handlers[fd] != NULL:
                    CP_DBG_DEC(CP_DBG_HANDLERS)
                Py_XDECREF(<PyObject*>self._handlers[fd])
            free(self._handlers)
            self._handlers = NULL
        free(self._gens)
        self._gens = NULL
        if self._poller != NULL:
            cp_poller_close(<cp_poller*>self._poller)
            free(self._poller)
            self._poller = NULL
        free(self._events)
        self._events = NULL
        free(self.rbuf)
        self.rbuf = NULL
        if self._wake_rfd >= 0:
            fd_close(self._wake_rfd)
        if self._wake_wfd >= 0 and self._wake_wfd != self._wake_rfd:
            fd_close(self._wake_wfd)
        self._wake_rfd = self._wake_wfd = -1
        if self._sig_rfd >= 0:
            fd_close(self._sig_rfd)
        if self._sig_wfd >= 0:
            fd_close(self._sig_wfd)
        self._sig_rfd = self._sig_wfd = -1

    # ------------------------------------------------------------------
    # C face

    cdef double now(self):
        cdef timespec ts
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9

    cdef int _ensure_fd(self, int fd) except -1:
        cdef int ncap, i
        cdef void** nh
        cdef uint32_t* ng
        if fd < self._nhandlers_cap:
            return 0
        ncap = self._nhandlers_cap if self._nhandlers_cap else 256
        while ncap <= fd:
            ncap *= 2
        nh = <void**>realloc(self._handlers, sizeof(void*) * ncap)
        if nh == NULL:
            raise MemoryError()
        self._handlers = nh
        ng = <uint32_t*>realloc(self._gens, sizeof(uint32_t) * ncap)
        if ng == NULL:
            raise MemoryError()
        self._gens = ng
        for i in range(self._nhandlers_cap, ncap):
            self._handlers[i] = NULL
            self._gens[i] = 0
        self._nhandlers_cap = ncap
        return 0

    cdef int register(self, Handler h, int fd, int interest, bint keepalive=True) except -1:
        if fd < 0:
            raise ValueError(f"fd must be >= 0, not {fd}")
        if h.fd >= 0:
            raise CypoeError(f"handler is already registered for fd {h.fd}")
        self._ensure_fd(fd)
        if self._handlers[fd] != NULL:
            raise CypoeError(f"fd {fd} is already watched")
        if interest:
            if cp_poller_ctl(<cp_poller*>self._poller, fd, self._gens[fd], 0, interest) < 0:
                raise OSError(errno, os.strerror(errno))
        Py_INCREF(h)
        CP_DBG_INC(CP_DBG_HANDLERS)
        self._handlers[fd] = <void*>h
        h.fd = fd
        h.kernel = self
        h.interest = interest
        h.keepalive = keepalive
        if keepalive:
            self.n_handlers += 1
        else:
            self._n_internal += 1
        return 0

    cdef int set_interest(self, Handler h, int interest) except -1:
        cdef int fd = h.fd
        if fd < 0 or interest == h.interest:
            return 0
        if cp_poller_ctl(<cp_poller*>self._poller, fd, self._gens[fd], h.interest, interest) < 0:
            raise OSError(errno, os.strerror(errno))
        h.interest = interest
        return 0

    cdef int unregister(self, Handler h) except -1:
        cdef int fd = h.fd
        if fd < 0 or fd >= self._nhandlers_cap or self._handlers[fd] != <void*>h:
            return 0
        if h.interest:
            # A failure here means the fd is already gone; the slot is freed anyway.
            cp_poller_ctl(<cp_poller*>self._poller, fd, self._gens[fd], h.interest, 0)
        self._gens[fd] += 1
        self._handlers[fd] = NULL
        CP_DBG_DEC(CP_DBG_HANDLERS)
        h.fd = -1
        h.interest = 0
        if h.keepalive:
            self.n_handlers -= 1
        else:
            self._n_internal -= 1
        Py_XDECREF(<PyObject*>h)
        return 0

    cdef int mark_dirty(self, Handler h) except -1:
        if not h.dirty:
            h.dirty = True
            self._dirty.append(h)
            if self._poke_on_queue:
                self._queued()
        return 0

    cdef void _queued(self) noexcept:
        """Work was queued: when the kernel is embedded in another loop and
        no iteration is running, wake that loop (once per iteration) so
        the work is done, as if the call had come from a callback."""
        if not self._iterating and not self._poked and self._wake_wfd >= 0:
            self._poked = True
            cp_wakeup_signal(self._wake_wfd)

    def _set_embedded(self, bint on):
        """For cypoe.aio: poke the wakeup fd when timers, events or output
        are queued from outside an iteration (from the host loop's code)."""
        self._poke_on_queue = on

    cdef Timer schedule(self, double when, object callback, tuple args,
                        Session session=None, bint keepalive=True):
        cdef Timer t = Timer.__new__(Timer)
        t.when = when
        t.seq = self._seq
        self._seq += 1
        t.callback = callback
        t.counted = True
        CP_DBG_INC(CP_DBG_TIMERS)
        t.args = args
        t.kernel = self
        t.session = session
        t.keepalive = keepalive
        t.queued = True
        if keepalive:
            self.n_timers += 1
        _timer_queue_push(self._timer_queue, t)
        if self._poke_on_queue:
            self._queued()
        return t

    cdef int cancel_timer(self, Timer t) except -1:
        cdef Session s
        if t.callback is None:
            return 0
        t.callback = None
        t.args = None
        t.counted = False
        CP_DBG_DEC(CP_DBG_TIMERS)
        if t.keepalive:
            self.n_timers -= 1
        if t.queued:
            self._n_cancelled += 1
            if self._n_cancelled > 1024 and self._n_cancelled * 2 > len(self._timer_queue):
                self._compact_timer_queue()
        s = t.session
        if s is not None:
            t.session = None
            s._timers.discard(t)
            s._release()
        return 0

    cdef int _compact_timer_queue(self) except -1:
        cdef list live = []
        for t in self._timer_queue:
            if (<Timer>t).callback is not None:
                live.append(t)
            else:
                (<Timer>t).queued = False
        self._timer_queue = live
        _timer_queue_reorder(self._timer_queue)
        self._n_cancelled = 0
        return 0

    cdef int call_soon(self, object callback, tuple args) except -1:
        self._event_queue.append((callback, None, args))
        if self._poke_on_queue:
            self._queued()
        return 0

    cdef int enqueue_event(self, object target, str event, tuple args) except -1:
        if isinstance(target, Session):
            (<Session>target)._refs += 1
        self._event_queue.append((target, event, args))
        if self._poke_on_queue:
            self._queued()
        return 0

    cpdef void report_exception(self, str message, object exc, object obj=None):
        """Report ``exc``, raised by user code, to the exception handler
        (``handler(kernel, {"message", "exception", "object"})``), or log
        it with its traceback on logger ``cypoe``; never raises."""
        cdef dict context = {"message": message, "exception": exc}
        if obj is not None:
            context["object"] = obj
        handler = self._exception_handler
        try:
            if handler is not None:
                handler(self, context)
                return
        except BaseException as e2:
            try:
                self._log.error("cypoe: exception handler failed: %r", e2, exc_info=e2)
            except BaseException:
                pass
        try:
            self._log.error("%s", message, exc_info=exc)
        except BaseException:
            pass

    cdef object _resolve(self, object target):
        if isinstance(target, Session):
            return None if (<Session>target).stopped else target
        if isinstance(target, str):
            return self._aliases.get(target)
        if isinstance(target, int) and not isinstance(target, bool):
            return self._sessions.get(target)
        raise TypeError(
            f"target must be an alias (str), a session id (int) or a Session, "
            f"not {type(target).__name__}")

    cdef bint _has_work(self):
        return (self.n_handlers > 0 or self.n_timers > 0 or len(self._components) > 0
                or len(self._sessions) > 0 or self._event_head < len(self._event_queue)
                or len(self._threadsafe) > 0 or len(self._dirty) > 0
                # a signal that arrived during the last callback is delivered
                or len(self._pending_signals) > 0)

    cdef int _drain_threadsafe(self) except -1:
        cdef object dq = self._threadsafe
        while dq:
            cb, args = dq.popleft()
            self._event_queue.append((cb, None, args))
        return 0

    cdef int _run_once(self, double timeout) except -1:
        # While embedded in another loop, work queued from outside an
        # iteration pokes the wakeup fd (see _queued); inside one it is
        # seen by this iteration or the next.
        self._iterating = True
        self._poked = False
        try:
            return self._iteration(timeout)
        finally:
            self._iterating = False

    cdef int _iteration(self, double timeout) except -1:
        cdef int n, i, fd, ev
        cdef int64_t timeout_ns
        cdef cp_event* evs = <cp_event*>self._events
        cdef cp_poller* poller = <cp_poller*>self._poller
        cdef Handler h
        cdef void* hp
        cdef Timer t
        cdef double now, wait
        cdef Py_ssize_t end, k
        cdef list timers = self._timer_queue
        cdef list due
        cdef object entry, target

        if self._threadsafe:
            self._drain_threadsafe()
        # How long may we sleep?
        if (self._event_head < len(self._event_queue) or self._dirty or self._pending_signals
                or self._stopping):
            timeout = 0.0
        else:
            while timers and (<Timer>timers[0]).callback is None:
                (<Timer>_timer_queue_pop(timers)).queued = False
                self._n_cancelled -= 1
            if timers:
                wait = (<Timer>timers[0]).when - self.now()
                if wait < 0.0:
                    wait = 0.0
                if timeout < 0.0 or wait < timeout:
                    timeout = wait
        # Not rounded to milliseconds: a timer fires within tens of
        # microseconds of its due time on an idle loop (never before it).
        if timeout < 0.0:
            timeout_ns = -1
        elif timeout > 86400.0:
            timeout_ns = <int64_t>86400 * 1000000000
        else:
            timeout_ns = <int64_t>ceil(timeout * 1e9)
        self._last_timeout_ns = timeout_ns

        with nogil:
            n = cp_poller_wait_ns(poller, evs, MAX_EVENTS, timeout_ns)
        if n < 0:
            if errno != EINTR:
                raise OSError(errno, os.strerror(errno))
            n = 0

        # 2. readiness
        for i in range(n):
            fd = evs[i].fd
            if fd < 0 or fd >= self._nhandlers_cap:
                continue
            hp = self._handlers[fd]
            if hp == NULL or self._gens[fd] != evs[i].gen:
                continue
            h = <Handler>hp
            ev = evs[i].events
            if ev & CP_ERROR:
                ev |= h.interest
            if (ev & CP_READ) and (h.interest & EV_READ):
                try:
                    h.on_readable()
                except Exception as exc:
                    self.report_exception("Exception in a read watcher", exc, h)
                if self._handlers[fd] != hp or self._gens[fd] != evs[i].gen:
                    continue
            if (ev & CP_WRITE) and (h.interest & EV_WRITE):
                try:
                    h.on_writable()
                except Exception as exc:
                    self.report_exception("Exception in a write watcher", exc, h)

        # 3. signals: run Python-level handlers (they record), then deliver.
        PyErr_CheckSignals()   # declared except -1: a raised exception propagates
        if self._pending_signals:
            self._deliver_signals()

        # 4. timers that are due
        if timers:
            now = self.now()
            if (<Timer>timers[0]).when <= now:
                due = []
                while timers and (<Timer>timers[0]).when <= now:
                    t = _timer_queue_pop(timers)
                    t.queued = False
                    if t.callback is None:
                        self._n_cancelled -= 1
                        continue
                    due.append(t)
                for t in due:
                    if t.callback is None:
                        continue
                    try:
                        t._fire()
                    except Exception as exc:
                        self.report_exception("Exception in a timer callback", exc, t)

        # 5. events queued before this point, FIFO
        if self._threadsafe:
            self._drain_threadsafe()
        end = len(self._event_queue)
        if self._event_head < end:
            self._deliver_events(end)

        # 6. coalesced writes
        if self._dirty:
            self._flush_dirty()
        return 0

    cdef int _deliver_events(self, Py_ssize_t end) except -1:
        cdef list queue = self._event_queue
        cdef Py_ssize_t k
        cdef object entry, target, event
        cdef tuple args
        cdef Session s
        while self._event_head < end:
            k = self._event_head
            entry = _list_take(queue, k)
            self._event_head = k + 1
            target = (<tuple>entry)[0]
            event = (<tuple>entry)[1]
            args = <tuple>(<tuple>entry)[2]
            try:
                if event is None:
                    target(*args)
                elif isinstance(target, Session):
                    s = <Session>target
                    s._refs -= 1
                    if s.stopped:
                        pass
                    elif event is _GC_CHECK:
                        if s._depth == 0:
                            s._maybe_end()
                    else:
                        s._dispatch(<str>event, args)
                else:
                    target._cypoe_event(event, args)
            except Exception as exc:
                self.report_exception(f"Exception in handler of event {event!r}"
                                      if event is not None else "Exception in a callback",
                                      exc, target)
        if self._event_head >= PyList_GET_SIZE(queue):
            _list_drop_nones(queue, self._event_head)
            self._event_head = 0
        elif self._event_head > 4096 and self._event_head * 2 > PyList_GET_SIZE(queue):
            _list_drop_nones(queue, self._event_head)
            self._event_head = 0
        return 0

    cdef int _flush_dirty(self) except -1:
        cdef list dirty = self._dirty
        cdef Handler h
        cdef object o
        cdef Py_ssize_t i, end = PyList_GET_SIZE(dirty)
        # Handlers marked during this pass are appended after `end` and
        # flushed by the next iteration.
        for i in range(end):
            o = _list_take(dirty, i)
            if o is None:       # left by a pass that a BaseException cut short
                continue
            h = <Handler>o
            h.dirty = False
            try:
                h.on_flush()
            except Exception as exc:
                self.report_exception("Exception while flushing output", exc, h)
        _list_drop_nones(dirty, end)
        return 0

    # ------------------------------------------------------------------
    # signals

    def _on_signal(self, signum, frame):
        # Runs as a Python-level signal handler: record only.
        self._pending_signals.append(signum)

    cdef int _install_signal(self, str name) except -1:
        signum = getattr(_signal, "SIG" + name)
        if signum in self._saved_signals:
            return 0
        self._saved_signals[signum] = _signal.signal(signum, self._on_signal)
        return 0

    cdef int _install_signals(self) except -1:
        # The pipe was made by the constructor: no fd is taken here.
        cp_wakeup_drain(self._sig_rfd)
        self._saved_wakeup_fd = _signal.set_wakeup_fd(self._sig_wfd, warn_on_full_buffer=False)
        self._sig_handler = _WakeHandler()
        self.register(self._sig_handler, self._sig_rfd, EV_READ, False)
        self._sig_handler.kernel = None   # as _wake_handler's
        self._signals_installed = True
        for name in ("INT", "TERM"):
            self._install_signal(name)
        for name in list(self._signal_callbacks):
            self._install_signal(name)
        return 0

    cdef int _restore_signals(self) except -1:
        if not self._signals_installed:
            return 0
        self._signals_installed = False
        for signum, old in self._saved_signals.items():
            try:
                _signal.signal(signum, old if old is not None else _signal.SIG_DFL)
            except (ValueError, OSError, TypeError):
                pass
        self._saved_signals.clear()
        try:
            _signal.set_wakeup_fd(self._saved_wakeup_fd if self._saved_wakeup_fd is not None
                                  else -1)
        except (ValueError, OSError):
            pass
        self._saved_wakeup_fd = None
        self.unregister(self._sig_handler)
        self._sig_handler = None
        return 0

    cdef int _deliver_signals(self) except -1:
        cdef list pending = self._pending_signals
        self._pending_signals = []
        for signum in pending:
            try:
                name = _signal.Signals(signum).name[3:]
            except ValueError:
                continue
            cb = self._signal_callbacks.get(name)
            if cb is not None:
                try:
                    cb(name)
                except Exception as exc:
                    self.report_exception(f"Exception in the {name} signal callback", exc, cb)
                continue
            if name == "INT" or name == "TERM":
                self._shutdown_signals += 1
                if self._shutdown_signals == 1:
                    self._log.info("cypoe: SIG%s: shutting down gracefully", name)
                    self.shutdown()
                else:
                    self._log.info("cypoe: SIG%s again: stopping now", name)
                    self._stopping = True
        return 0

    # ------------------------------------------------------------------
    # Python face

    @property
    def backend(self):
        """The readiness backend in use: 'epoll', 'kqueue' or 'poll'."""
        return _BACKEND_NAMES[self._backend_kind]

    @property
    def running(self):
        """True while run() runs."""
        return self._running

    def time(self):
        """Monotonic seconds (the clock of ``alarm`` and timers)."""
        return self.now()

    def fileno(self):
        """The poller's fd (epoll or kqueue): readable when a watched fd is
        ready, for embedding the kernel in another loop.  The poll backend
        has none: CypoeError."""
        cdef cp_poller* p = <cp_poller*>self._poller
        if p.kfd < 0:
            raise CypoeError(f"fileno(): the {self.backend} backend has no fd to wait on")
        return p.kfd

    def next_deadline(self):
        """When the loop next has something to do without any fd being ready:
        ``time()`` now if events, callbacks, writes or signals are queued,
        else the due time of the earliest pending timer (maybe past), or
        None when nothing is scheduled."""
        cdef list timers = self._timer_queue
        if (self._event_head < len(self._event_queue) or self._threadsafe or self._dirty
                or self._pending_signals):
            return self.now()
        while timers and (<Timer>timers[0]).callback is None:
            (<Timer>_timer_queue_pop(timers)).queued = False
            self._n_cancelled -= 1
        if timers:
            return (<Timer>timers[0]).when
        return None

    @property
    def _wait_mechanism(self):
        """How the readiness wait honours a timeout (introspection, tests):
        'epoll_pwait2', 'timerfd', 'kevent', 'ppoll' or 'milliseconds'."""
        return cp_poller_wait_mechanism(<cp_poller*>self._poller).decode()

    @property
    def _last_poll_timeout_ns(self):
        """The timeout in nanoseconds given to the last readiness wait
        (-1: none or for ever); introspection for the tests."""
        return self._last_timeout_ns

    def run(self):
        """Run until nothing is left to do, ``stop()`` is called, or a
        shutdown signal's graceful shutdown has finished."""
        if self._running:
            raise CypoeError("run(): the kernel is already running")
        self._running = True
        self._stopping = False
        self._graceful = False
        self._shutdown_signals = 0
        in_main = threading.current_thread() is threading.main_thread()
        cdef long saved_slack = cp_timer_slack_get()
        if saved_slack > 0:
            cp_timer_slack_set(RUN_TIMER_SLACK_NS)
        try:
            if in_main:
                self._install_signals()
            while not self._stopping:
                if self._graceful:
                    if not self._components and not self._dirty:
                        break
                elif not self._has_work():
                    break
                self._run_once(-1.0)
        finally:
            if saved_slack > 0:
                cp_timer_slack_set(saved_slack)
            self._running = False
            self._stopping = False
            if in_main:
                self._restore_signals()

    def run_once(self, timeout=0.0):
        """One loop iteration, waiting at most ``timeout`` seconds for
        readiness (None: until a timer or an fd is ready)."""
        cdef double t = -1.0 if timeout is None else float(timeout)
        if t < 0.0 and timeout is not None:
            raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
        self._run_once(t)

    def stop(self):
        """Make ``run()`` return at the end of the current iteration."""
        self._stopping = True

    def shutdown(self):
        """Ask every registered component to shut down gracefully; ``run()``
        then returns when the last one has finished."""
        self._graceful = True
        for comp in list(self._components):
            try:
                comp.shutdown()
            except Exception as exc:
                self.report_exception("Exception while shutting a component down", exc, comp)

    def delay(self, seconds, callback, *args):
        """Call ``callback(*args)`` after ``seconds``; returns a Timer."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        return self.schedule(self.now() + _seconds(seconds), callback, args)

    def alarm(self, when, callback, *args):
        """Call ``callback(*args)`` at ``when`` (on ``time()``'s clock)."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        try:
            w = float(when)
        except (TypeError, ValueError):
            raise TypeError(f"when must be a number, not {type(when).__name__}") from None
        return self.schedule(w, callback, args)

    def post(self, target, event, *args):
        """Queue ``event`` for ``target`` (alias, session id or Session).
        Returns False when the target does not exist."""
        if not isinstance(event, str):
            raise TypeError(f"event must be a str, not {type(event).__name__}")
        obj = self._resolve(target)
        if obj is None:
            return False
        self.enqueue_event(obj, event, args)
        return True

    def call(self, target, event, *args):
        """Deliver ``event`` to ``target`` now and return the handler's value."""
        if not isinstance(event, str):
            raise TypeError(f"event must be a str, not {type(event).__name__}")
        obj = self._resolve(target)
        if obj is None:
            raise CypoeError(f"call: no session or alias {target!r}")
        if isinstance(obj, Session):
            return (<Session>obj)._dispatch(event, args)
        return obj._cypoe_event(event, args)

    def alias_set(self, name, session):
        """Give ``session`` (or a component) the alias ``name``."""
        if not isinstance(name, str) or not name:
            raise TypeError("name must be a non-empty str")
        cur = self._aliases.get(name)
        if cur is not None and cur is not session:
            raise CypoeError(f"alias {name!r} is already in use")
        if not isinstance(session, Session) and not hasattr(session, "_cypoe_event"):
            raise TypeError(f"session must be a Session or a component, not "
                            f"{type(session).__name__}")
        self._aliases[name] = session
        if isinstance(session, Session) and (<Session>session)._alias is None:
            (<Session>session)._alias = name

    def alias_remove(self, name):
        """Forget the alias ``name`` (nothing happens when it is unknown)."""
        obj = self._aliases.pop(name, None)
        if isinstance(obj, Session) and (<Session>obj)._alias == name:
            (<Session>obj)._alias = None

    def alias_resolve(self, name):
        """The Session (or component) known by ``name``, or None."""
        return self._aliases.get(name)

    def select_read(self, fd, callback):
        """Call ``callback(fd)`` while ``fd`` is readable; None removes it."""
        self._select(fd, callback, EV_READ)

    def select_write(self, fd, callback):
        """Call ``callback(fd)`` while ``fd`` is writable; None removes it."""
        self._select(fd, callback, EV_WRITE)

    cdef int _select(self, object fdobj, object callback, int which) except -1:
        cdef int fd = _fileno(fdobj)
        cdef _Watcher w
        cdef void* hp = NULL
        cdef int interest
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {type(callback).__name__}")
        if fd < self._nhandlers_cap:
            hp = self._handlers[fd]
        if hp != NULL and not isinstance(<object>hp, _Watcher):
            raise CypoeError(f"fd {fd} is watched by a cypoe component")
        if hp == NULL:
            if callback is None:
                return 0
            w = _Watcher()
            if which == EV_READ:
                w.read_cb = callback
            else:
                w.write_cb = callback
            self.register(w, fd, which)
            return 0
        w = <_Watcher>hp
        if which == EV_READ:
            w.read_cb = callback
        else:
            w.write_cb = callback
        interest = (EV_READ if w.read_cb is not None else 0) | \
                   (EV_WRITE if w.write_cb is not None else 0)
        if interest == 0:
            self.unregister(w)
        else:
            self.set_interest(w, interest)
        return 0

    def signal(self, signame, callback):
        """Call ``callback(signame)`` when the signal arrives during ``run()``;
        None removes it.  A callback for INT or TERM replaces the default
        graceful shutdown."""
        name = _signal_name(signame)
        if callback is None:
            self._signal_callbacks.pop(name, None)
            return
        if not callable(callback):
            raise TypeError(f"callback must be callable or None, not {type(callback).__name__}")
        self._signal_callbacks[name] = callback
        if self._signals_installed:
            self._install_signal(name)

    def call_soon_threadsafe(self, callback, *args):
        """Call ``callback(*args)`` from the loop; safe from any thread."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self._threadsafe.append((callback, args))
        cp_wakeup_signal(self._wake_wfd)

    def set_exception_handler(self, handler):
        """``handler(kernel, context)`` for exceptions raised by callbacks;
        None restores the default (log on logger 'cypoe' and go on)."""
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be callable or None, not {type(handler).__name__}")
        self._exception_handler = handler

    def get_exception_handler(self):
        """The handler set by ``set_exception_handler``, or None (the default)."""
        return self._exception_handler

    def register_component(self, component):
        """Register a component (anything with ``shutdown()``): it counts as
        work for ``run()`` and is shut down gracefully on SIGINT/SIGTERM."""
        if not hasattr(component, "shutdown"):
            raise TypeError("component must have a shutdown() method")
        if component not in self._components:
            self._components.append(component)
            if self._graceful:
                # Born during a graceful shutdown: it ends too.
                self.call_soon(component.shutdown, ())

    def unregister_component(self, component):
        """Undo ``register_component``: the component no longer counts as
        work for ``run()`` and is not shut down by a signal (nothing
        happens when it is not registered)."""
        try:
            self._components.remove(component)
        except ValueError:
            pass

    @property
    def sessions(self):
        """The number of sessions alive on this kernel."""
        return len(self._sessions)

    def __repr__(self):
        return (f"<cypoe.Kernel backend={self.backend} handlers={self.n_handlers} "
                f"timers={self.n_timers} sessions={len(self._sessions)}>")


# The watchers array holds owned references that Cython's generated
# tp_traverse does not see: a Kernel dropped while a watcher is registered
# (watcher.kernel -> Kernel -> array -> watcher) would never be collected,
# and neither would the watcher's fd be closed.  The Kernel's traverse and
# clear slots are extended to visit and drop the array's references.
cdef traverseproc _kernel_base_traverse = NULL
cdef inquiry _kernel_base_clear = NULL


cdef int _kernel_traverse(PyObject* o, visitproc visit, void* arg) noexcept:
    cdef Kernel k = <Kernel>o
    cdef int fd, r
    if _kernel_base_traverse != NULL:
        r = _kernel_base_traverse(o, visit, arg)
        if r:
            return r
    if k._handlers != NULL:
        for fd in range(k._nhandlers_cap):
            if k._handlers[fd] != NULL:
                r = visit(<PyObject*>k._handlers[fd], arg)
                if r:
                    return r
    return 0


cdef int _kernel_clear(object o) noexcept:
    cdef Kernel k = <Kernel>o
    cdef int fd
    cdef void* h
    if k._handlers != NULL:
        for fd in range(k._nhandlers_cap):
            h = k._handlers[fd]
            if h != NULL:
                # The watcher keeps its fd number: one that owns its fd
                # closes it when it is collected in turn.
                k._handlers[fd] = NULL
                CP_DBG_DEC(CP_DBG_HANDLERS)
                Py_XDECREF(<PyObject*>h)
    if _kernel_base_clear != NULL:
        return _kernel_base_clear(o)
    return 0


_kernel_base_traverse = (<PyTypeObject*>Kernel).tp_traverse
_kernel_base_clear = (<PyTypeObject*>Kernel).tp_clear
(<PyTypeObject*>Kernel).tp_traverse = <traverseproc>_kernel_traverse
(<PyTypeObject*>Kernel).tp_clear = <inquiry>_kernel_clear


cdef double _seconds(object seconds) except? -1.0:
    try:
        return float(seconds)
    except (TypeError, ValueError):
        raise TypeError(f"seconds must be a number, not {type(seconds).__name__}") from None


cdef int _fileno(object fdobj) except -1:
    cdef int fd
    if isinstance(fdobj, int):
        fd = fdobj
    elif hasattr(fdobj, "fileno"):
        fd = fdobj.fileno()
    else:
        raise TypeError(f"fd must be an int or have fileno(), not {type(fdobj).__name__}")
    if fd < 0:
        raise ValueError(f"fd must be >= 0, not {fd}")
    return fd


cdef class Session:
    """A set of named states sharing a heap (POE::Session).

    ``Session(states, *, alias=None, heap=None, args=(), kernel=None)``;
    ``_start`` runs inside the constructor with ``args``.  The session ends
    (``_stop`` runs once) when no events, timers or components keep it alive,
    or on ``stop()``.  A new session is not ended inside its constructor: as
    in POE, a queued check looks at it once the loop runs, so events posted
    to it right after the constructor are delivered.
    """

    def __cinit__(self, *args, **kwargs):
        CP_DBG_INC(CP_DBG_SESSIONS)

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_SESSIONS)

    def __init__(self, states, *, alias=None, heap=None, args=(), kernel=None):
        cdef Kernel k
        if not isinstance(states, dict):
            raise TypeError(f"states must be a dict, not {type(states).__name__}")
        for name, fn in states.items():
            if not isinstance(name, str):
                raise TypeError(f"states: state names must be str, not {type(name).__name__}")
            if not callable(fn):
                raise TypeError(f"states: handler for {name!r} is not callable")
        if heap is not None and not isinstance(heap, dict):
            raise TypeError(f"heap must be a dict, not {type(heap).__name__}")
        if kernel is None:
            kernel = default_kernel()
        elif not isinstance(kernel, Kernel):
            raise TypeError(f"kernel must be a Kernel, not {type(kernel).__name__}")
        k = <Kernel>kernel
        self.kernel = k
        self._states = dict(states)
        self.heap = heap if heap is not None else {}
        self._alias = None
        self._refs = 0
        self._depth = 0
        self._timers = set()
        self.stopped = False
        self.id = k._next_id
        k._next_id += 1
        k._sessions[self.id] = self
        if alias is not None:
            k.alias_set(alias, self)
        # As in POE, whether a new session has work is checked once the loop
        # runs, not inside its constructor: the queued check holds the
        # session until then, so events posted to it (or its alias) right
        # after the constructor are delivered.  Queued before _start, so a
        # _start that raises still leaves the session to be collected.
        self._refs = 1
        k._event_queue.append((self, _GC_CHECK, ()))
        self._dispatch("_start", tuple(args))

    @property
    def alias(self):
        """The session's alias, or None."""
        return self._alias

    cdef object _dispatch(self, str event, tuple args):
        cdef object handler = self._states.get(event)
        cdef object result = None
        if handler is None:
            if event == "_start" or event == "_stop":
                if event == "_start":
                    self._maybe_end()
                return None
            handler = self._states.get("_default")
            if handler is None:
                self._maybe_end()
                return None
            args = (event, args)
        self._depth += 1
        try:
            result = call_with_first(handler, self, args)
        finally:
            self._depth -= 1
            if self._depth == 0 and event != "_stop":
                self._maybe_end()
        return result

    cdef int _retain(self) except -1:
        self._refs += 1
        return 0

    cdef int _release(self) except -1:
        self._refs -= 1
        if self._refs <= 0 and self._depth == 0:
            self._maybe_end()
        return 0

    cdef int _maybe_end(self) except -1:
        if not self.stopped and self._refs <= 0:
            self._end()
        return 0

    cdef int _end(self) except -1:
        cdef Kernel k = self.kernel
        if self.stopped:
            return 0
        self.stopped = True
        for t in list(self._timers):
            (<Timer>t).session = None
            k.cancel_timer(<Timer>t)
        self._timers.clear()
        try:
            handler = self._states.get("_stop")
            if handler is not None:
                self._depth += 1
                try:
                    call_with_first(handler, self, ())
                finally:
                    self._depth -= 1
        finally:
            k._sessions.pop(self.id, None)
            for name in [a for a, o in k._aliases.items() if o is self]:
                del k._aliases[name]
            self._alias = None
        return 0

    def post(self, event, *args):
        """Queue ``event`` for this session."""
        if not isinstance(event, str):
            raise TypeError(f"event must be a str, not {type(event).__name__}")
        if self.stopped:
            return False
        self.kernel.enqueue_event(self, event, args)
        return True

    def call(self, event, *args):
        """Run this session's handler for ``event`` now; returns its value."""
        if not isinstance(event, str):
            raise TypeError(f"event must be a str, not {type(event).__name__}")
        if self.stopped:
            raise CypoeError(f"call: session {self.id} has stopped")
        return self._dispatch(event, args)

    def delay(self, seconds, event, *args):
        """Deliver ``event`` to this session after ``seconds``; returns a Timer."""
        cdef Timer t
        if not isinstance(event, str):
            raise TypeError(f"event must be a str, not {type(event).__name__}")
        if self.stopped:
            raise CypoeError(f"delay: session {self.id} has stopped")
        t = self.kernel.schedule(self.kernel.now() + _seconds(seconds), event, args, self)
        self._refs += 1
        self._timers.add(t)
        return t

    def retain(self):
        """Keep the session alive (for components it owns); pair with release()."""
        self._retain()

    def release(self):
        """Undo one ``retain()``: the session ends once nothing else keeps it alive."""
        self._release()

    def stop(self):
        """End the session now: pending events and timers are dropped, ``_stop`` runs."""
        self._end()

    def __repr__(self):
        return f"<cypoe.Session id={self.id} alias={self._alias!r}{' stopped' if self.stopped else ''}>"


cdef Kernel _default = None


def default_kernel():
    """The process's default Kernel (created on first use)."""
    global _default
    if _default is None:
        _default = Kernel()
    return _default


def debug_counters():
    """This module's debug counters (a dict), or None in a release build;
    cypoe.debug_counters() sums every compiled module's."""
    return cp_debug_counters()


def _backend_available(name):
    return name in _BACKENDS and bool(cp_backend_available(_BACKENDS[name]))
