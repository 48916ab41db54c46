# The Kernel's C face, for the I/O layer and the components.
#
# An fd is watched by one Handler.  The kernel calls its on_readable /
# on_writable hooks from the readiness loop, and its on_flush hook at the end
# of every loop iteration in which it was marked dirty (ReadWrite's
# coalesced writes).  An exception escaping a hook is reported to the
# kernel's exception handler and the loop goes on.

from libc.stdint cimport uint32_t, uint64_t, int64_t

cdef enum:
    EV_READ = 1
    EV_WRITE = 2

cdef class Kernel
cdef class Session

# fn(first, *args) through vectorcall, without building a new tuple.
cdef object call_with_first(object fn, object first, tuple args)


cdef class Handler:
    cdef readonly int fd             # -1 while not registered
    cdef Kernel kernel
    cdef int interest                # EV_READ | EV_WRITE currently asked for
    cdef bint dirty                  # queued for on_flush this iteration
    cdef bint keepalive              # counts as work for run()
    cdef int on_readable(self) except -1
    cdef int on_writable(self) except -1
    cdef int on_flush(self) except -1


cdef class Timer:
    cdef readonly double when
    """When the timer fires, in kernel time (``Kernel.time()``, seconds)."""
    cdef uint64_t seq
    cdef object callback             # None once fired or cancelled
    cdef tuple args
    cdef Kernel kernel
    cdef Session session             # owner kept alive by this timer, or None
    cdef bint keepalive              # counts as work for run()
    cdef bint queued                 # still in the kernel's timer queue
    cdef bint counted                # counted as pending (debug build's counters)
    cdef int _fire(self) except -1


cdef class Kernel:
    cdef int _backend_kind
    cdef void* _poller               # cp_poller*, see includes/poller.h
    cdef void* _events               # cp_event[], filled by each wait
    cdef int _max_events
    cdef int64_t _last_timeout_ns    # of the last wait, -1: none (introspection)
    # Watchers by fd index: handlers[fd] (owned references) and a generation
    # per fd, bumped on every unregister so that events collected for an fd
    # that was closed (and maybe reused) earlier in the iteration are dropped.
    cdef void** _handlers
    cdef uint32_t* _gens
    cdef int _nhandlers_cap
    cdef readonly int n_handlers      # registered handlers that keep run() alive
    """Registered fd watchers that keep run() from returning."""
    cdef int _n_internal            # registered handlers that do not (wakeup fd)
    # Timers: the timer queue, a list in binary-heap order by (when, seq); lazy cancellation.
    cdef list _timer_queue
    cdef uint64_t _seq
    cdef readonly Py_ssize_t n_timers      # active timers with keepalive
    """Pending timers that keep run() from returning."""
    cdef Py_ssize_t _n_cancelled
    # Event queue: a list used as a FIFO with a moving head.
    cdef list _event_queue
    cdef Py_ssize_t _event_head         # index of the next event to deliver
    cdef list _dirty
    # Sessions, aliases, components.
    cdef dict _sessions
    cdef dict _aliases
    cdef uint64_t _next_id
    cdef readonly list _components
    # Threads and signals.
    cdef object _threadsafe            # collections.deque
    cdef int _wake_rfd, _wake_wfd
    cdef Handler _wake_handler
    cdef dict _signal_callbacks
    cdef dict _saved_signals
    cdef list _pending_signals
    cdef object _saved_wakeup_fd
    cdef bint _signals_installed
    cdef int _shutdown_signals        # INT/TERM received during this run()
    cdef bint _stopping
    cdef bint _graceful               # a first INT/TERM asked components to end
    cdef bint _running
    cdef int _sig_rfd, _sig_wfd       # made by the constructor, like every kernel fd
    cdef Handler _sig_handler
    cdef object _exception_handler
    cdef object _log
    # The shared receive buffer for every ReadWrite on this kernel.
    cdef char* rbuf
    cdef Py_ssize_t rbuf_size

    cdef double now(self)
    # Watchers.  register() takes fd ownership of the slot; set_interest()
    # changes what is watched (0: nothing, the handler stays registered);
    # unregister() must be called before the fd is closed.
    cdef int register(self, Handler h, int fd, int interest, bint keepalive=*) except -1
    cdef int set_interest(self, Handler h, int interest) except -1
    cdef int unregister(self, Handler h) except -1
    cdef int mark_dirty(self, Handler h) except -1
    # Timers and events.
    cdef Timer schedule(self, double when, object callback, tuple args,
                        Session session=*, bint keepalive=*)
    cdef int cancel_timer(self, Timer t) except -1
    cdef int call_soon(self, object callback, tuple args) except -1
    cdef int enqueue_event(self, object target, str event, tuple args) except -1
    # Report an exception raised by user code; never raises.  cpdef: the
    # Python halves of the components report through it too.
    cpdef void report_exception(self, str message, object exc, object obj=*)
    cdef int _run_once(self, double timeout) except -1
    cdef int _iteration(self, double timeout) except -1
    # Embedded in another loop (cypoe.aio): queued work pokes the wakeup fd.
    cdef bint _poke_on_queue
    cdef bint _iterating
    cdef bint _poked
    cdef void _queued(self) noexcept
    cdef int _ensure_fd(self, int fd) except -1
    cdef int _compact_timer_queue(self) except -1
    cdef bint _has_work(self)
    cdef int _drain_threadsafe(self) except -1
    cdef int _deliver_events(self, Py_ssize_t end) except -1
    cdef int _flush_dirty(self) except -1
    cdef int _install_signal(self, str name) except -1
    cdef int _install_signals(self) except -1
    cdef int _restore_signals(self) except -1
    cdef int _deliver_signals(self) except -1
    cdef int _select(self, object fdobj, object callback, int which) except -1
    cdef object _resolve(self, object target)


cdef class Session:
    cdef readonly uint64_t id
    """The session's id, unique within its kernel (a post() target)."""
    cdef readonly Kernel kernel
    """The kernel the session runs on."""
    cdef public dict heap
    cdef dict _states
    cdef object _alias
    cdef Py_ssize_t _refs             # pending events + timers + components
    cdef int _depth                   # handlers of this session running now
    cdef set _timers                  # its pending timers, cancelled by stop()
    cdef readonly bint stopped
    """True once the session has ended (its ``_stop`` ran)."""
    cdef object _dispatch(self, str event, tuple args)
    cdef int _retain(self) except -1
    cdef int _release(self) except -1
    cdef int _maybe_end(self) except -1
    cdef int _end(self) except -1
