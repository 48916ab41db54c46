# cython: language_level=3
"""The per-connection half of Server, Client and TCPMulti, compiled.

Every connection of a component is one ``_Link``: a ReadWrite subclass whose
event hooks call the user's callbacks directly, so the per-record path is
recv -> filter -> hook -> user callback with no Python in between.  What all
connections of a component share (callbacks, filter prototypes, timeouts)
lives once in the component's ``_Core``.

Timeouts (connect, input) are a deadline stored on the connection and checked
by one coarse sweep per component: resetting a timeout on every input is a
store, and a million connections over time leave no timers behind.  A
deadline fires between ``timeout`` and ``timeout * 1.125`` after it was set.

Terminal callbacks (disconnected, stopped) are queued with ``call_soon``,
never called from inside another callback of the same connection.
"""
cimport cython
from libc.math cimport ceil
from libc.errno cimport ETIMEDOUT, ECONNRESET, ECONNABORTED, ENOTCONN, EINVAL

from cypoe._kernel cimport Kernel, Handler, Timer, call_with_first
from cypoe._io cimport ReadWrite, SocketFactory, nb_connect, sockaddr_to_py, install_fast_put
from cypoe._filters cimport FilterBase
from cypoe.includes.debug cimport CP_DBG_INC, CP_DBG_DEC, CP_DBG_CORES, cp_debug_counters
from cypoe.includes.socket cimport sockaddr, sockaddr_storage, socklen_t, getsockname

import errno as _errno
import logging
import os
import socket as _socket

from cypoe.errors import CypoeError

cdef object _log = logging.getLogger("cypoe")


def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()



# A connection's S_* state bits: includes/consts.pxd.
from cypoe.includes.consts cimport *

cdef double MIN_SWEEP = 0.005
cdef double MAX_SWEEP = 1.0


# How long the socket of a Connection closed gracefully may stay open for
# the client to finish (see ReadWrite.c_close_lingering).
cdef double LINGER_SECONDS = 10.0


cdef inline unsigned int _to_ms(double seconds):
    cdef double ms
    if seconds <= 0.0:
        return 0
    ms = ceil(seconds * 1000.0 - 1e-6)
    if ms < 1.0:
        return 1
    if ms > 4000000000.0:
        return 4000000000u
    return <unsigned int>ms


cdef inline str _strerror(int err):
    return os.strerror(err)


cdef object make_filter(object spec, str name):
    """A fresh filter from a ``*_filter`` parameter: an instance is cloned, a
    class or factory is called."""
    if spec is None:
        return None
    if hasattr(spec, "get_one_start") and not isinstance(spec, type):
        return spec.clone()
    if callable(spec):
        return spec()
    raise TypeError(f"{name}: expected a Filter instance, a Filter class or a factory, "
                    f"not {type(spec).__name__}")


# -- user callbacks ------------------------------------------------------------
#
# Every callback of a component is called through invoke() (directly, or
# from a ReadWrite hook whose exception reaches _Link._user_exception, which
# reports through the same function): an exception is reported with its
# traceback through the kernel's exception handler (logger ``cypoe`` by
# default) and the caller closes what the callback concerned -- its
# connection, never the component or the loop.

@cython.final
cdef class _CallbackFailed:
    def __repr__(self):
        return "<cypoe callback failed>"

    def __bool__(self):
        return False


# What invoke() / call_user() return when the callback raised.
CALLBACK_FAILED = _CallbackFailed()


cdef int report_callback_exception(Kernel k, str where, object exc, object obj) except -1:
    if k is None:       # not attached to a kernel yet: nobody else to tell
        _log.error("Exception in %s", where, exc_info=exc)
        return 0
    k.report_exception(f"Exception in {where}", exc, obj)
    return 0


cdef object invoke(Kernel k, str where, object fn, object first, tuple args):
    """``fn(first, *args)``; CALLBACK_FAILED when it raised (reported)."""
    try:
        return call_with_first(fn, first, args)
    except Exception as exc:
        report_callback_exception(k, where, exc, first)
        return CALLBACK_FAILED


def call_user(Kernel kernel, str where, fn, first, *args):
    """``fn(first, *args)`` for the Python halves of the components: an
    exception is reported (``"Exception in " + where``) and CALLBACK_FAILED
    returned, for the caller to close what the callback concerned."""
    return invoke(kernel, where, fn, first, args)


def _default_error_is_quiet(int errnum):
    return errnum == 0 or errnum == ECONNRESET


cdef class _Core:
    """What every connection of one component shares."""

    def __cinit__(self):
        self.conns = {}
        self._sweep_interval = 0.0
        self._sweep_timer = None
        CP_DBG_INC(CP_DBG_CORES)

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_CORES)

    cdef int arm(self, _Link link, double seconds) except -1:
        """Start (or restart, or with 0 stop) ``link``'s timeout."""
        cdef double interval
        link.timeout_s = seconds if seconds > 0.0 else 0.0
        if seconds <= 0.0:
            link.deadline = 0.0
            return 0
        link.deadline = self.kernel.now() + seconds
        interval = seconds / 8.0
        if interval < MIN_SWEEP:
            interval = MIN_SWEEP
        elif interval > MAX_SWEEP:
            interval = MAX_SWEEP
        if self._sweep_interval == 0.0 or interval < self._sweep_interval:
            self._sweep_interval = interval
            if self._sweep_timer is not None:
                self.kernel.cancel_timer(self._sweep_timer)
                self._sweep_timer = None
        if self._sweep_timer is None:
            self._schedule_sweep()
        return 0

    cdef int attach(self, _Link link, int fd, object in_proto, object out_proto,
                    bint connecting) except -1:
        """Register ``fd`` as ``link``'s socket.  The input filter is cloned
        from ``in_proto`` only when the first bytes arrive (a connection that
        never receives needs none); a built-in output filter is stateless
        and shared by every connection."""
        cdef object inf, outf
        if isinstance(in_proto, FilterBase):
            outf = in_proto if out_proto is None else out_proto
            if not isinstance(outf, FilterBase):
                outf = make_filter(outf, "output_filter")
            link.setup(self.kernel, fd, in_proto, outf, connecting)
            link._proto_in = in_proto
            return 0
        # A user filter (or a class / factory): one fresh instance, used for
        # both directions unless an output filter of its own is given.
        inf = make_filter(in_proto, "filter")
        if out_proto is None:
            outf = inf
        elif isinstance(out_proto, FilterBase):
            outf = out_proto
        else:
            outf = make_filter(out_proto, "output_filter")
        link.setup(self.kernel, fd, inf, outf, connecting)
        return 0

    cdef int _schedule_sweep(self) except -1:
        # The sweep keeps nothing alive: the connections do.
        self._sweep_timer = self.kernel.schedule(
            self.kernel.now() + self._sweep_interval, self._sweep, (), None, False)
        return 0

    def _sweep(self):
        cdef double now = self.kernel.now()
        cdef _Link link
        cdef list due = None
        cdef bint any_timed = False
        self._sweep_timer = None
        for obj in self.conns.values():
            link = <_Link>obj
            if link.deadline > 0.0:
                if link.deadline <= now:
                    if due is None:
                        due = []
                    due.append(link)
                else:
                    any_timed = True
        if due is not None:
            for obj in due:
                link = <_Link>obj
                # Re-check: an earlier expiry's callback may have changed it.
                if link.deadline > 0.0 and link.deadline <= now and not (link.state & S_ENDED):
                    link.deadline = 0.0
                    try:
                        self._expired(link)
                    except Exception as exc:
                        link._user_exception(exc)
            for obj in self.conns.values():
                if (<_Link>obj).deadline > 0.0:
                    any_timed = True
                    break
        if any_timed:
            self._schedule_sweep()
        else:
            self._sweep_interval = 0.0

    cdef int _expired(self, _Link link) except -1:
        return 0

    cdef int link_ended(self, _Link link) except -1:
        return 0


cdef class _Link(ReadWrite):
    """One connection of a component (internal base)."""

    def __cinit__(self):
        self.deadline = 0.0
        self.timeout_s = 0.0
        self.state = 0

    # -- shared behaviour -------------------------------------------------

    cdef int _own_filter(self) except -1:
        cdef object f = self._proto_in.clone()
        self._proto_in = None
        self._in_f = f
        self._cin = <FilterBase>f if isinstance(f, FilterBase) else None
        return 0

    cdef int _on_bytes(self) except -1:
        # The input timeout ends a connection that sends nothing for that
        # long: any bytes restart it, not only whole records (a slow line
        # must not be cut off).  One store per wakeup that read anything.
        if self.timeout_s > 0.0 and self.deadline > 0.0 and not (self.state & S_CONNECTING):
            self.deadline = self.kernel.now() + self.timeout_s
        return 0

    cdef int _feed(self, const char* data, Py_ssize_t n) except -1:
        if self._proto_in is not None:
            self._own_filter()
        return ReadWrite._feed(self, data, n)

    cdef int c_set_input_filter(self, object f) except -1:
        if self._proto_in is not None:
            self._own_filter()
        return ReadWrite.c_set_input_filter(self, f)

    def get_input_filter(self):
        if self._proto_in is not None:
            self._own_filter()
        return self._in_f

    cdef int _call_user(self, object fn, tuple args) except -1:
        """fn(self, *args) outside the ReadWrite hooks: an exception closes
        this connection only."""
        try:
            call_with_first(fn, self, args)
        except Exception as exc:
            self._user_exception(exc)
        return 0

    cdef int _user_exception(self, object exc) except -1:
        report_callback_exception(
            self.core.kernel if self.core is not None else self.kernel,
            f"a {type(self).__name__} callback (the connection is closed)", exc, self)
        self._end(True)
        return 0

    cdef int c_close(self) except -1:
        # Every way of closing (close(), an exception, ReadWrite itself)
        # ends the connection for its component too.
        return self._end(True)

    cdef int _end(self, bint notify) except -1:
        if self.state & S_ENDED:
            return 0
        self.state |= S_ENDED
        self.deadline = 0.0
        self._cancel_timers()
        if (self.state & S_SHUTTING) and type(self) is Connection:
            # a server's graceful close: the answer must reach a client
            # that is still sending
            self.c_close_lingering(LINGER_SECONDS)
        else:
            ReadWrite.c_close(self)
        if self.core is not None:
            if notify:
                # The terminal callback never runs inside another callback;
                # until it has run the connection still counts.
                self.core.kernel.call_soon(self._ended, ())
            else:
                self.core.conns.pop(self.id, None)
        return 0

    def _ended(self):
        self.core.conns.pop(self.id, None)
        self.core.link_ended(self)

    cdef int _graceful(self) except -1:
        """Stop input, flush pending output, then end.  Called again (an
        error while flushing drops the output) it ends the connection once
        nothing is left to write: a connection never waits for a flush that
        cannot come."""
        if self.state & S_ENDED:
            return 0
        if not (self.state & S_SHUTTING):
            self.state |= S_SHUTTING
            if self.fd >= 0:
                self.c_pause_input()
        if (self.fd >= 0 and not self.is_closed() and self.pending_out() > 0
                and not (self.state & S_CONNECTING)):
            return 0            # _on_flushed (or a write error) finishes it
        return self._end(True)

    cdef int _cancel_timers(self) except -1:
        cdef Kernel k = self.kernel
        if self._timers is None:
            return 0
        if k is None and self.core is not None:
            k = self.core.kernel
        for t in self._timers:
            k.cancel_timer(<Timer>t)
        self._timers = None
        return 0

    def _timer_fired(self, Timer t, event, tuple args):
        if self._timers is not None:
            try:
                self._timers.remove(t)
            except ValueError:
                pass
        if self.state & S_ENDED:
            return
        self._run_event(event, args)

    def _run_event(self, event, tuple args):
        if self.state & S_ENDED:
            return
        if callable(event):
            self._call_user(event, args)
            return
        self._named_event(event, args)

    def _named_event(self, str event, tuple args):
        if event == "shutdown":
            self._graceful()
            return
        states = self.core.owner._states
        fn = states.get(event) if states is not None else None
        if fn is None:
            self.core.kernel.report_exception(
                f"{type(self).__name__}: no state {event!r}",
                CypoeError(f"no state {event!r}"), self)
            return
        self._call_user(fn, args)

    # -- Python face shared by the three connection kinds -------------------

    @property
    def heap(self):
        if self._heap is None:
            self._heap = {}
        return self._heap

    @property
    def connected(self):
        return (self.state & S_OPEN) != 0 and not (self.state & S_ENDED)

    @property
    def shutting_down(self):
        return (self.state & S_SHUTTING) != 0

    @property
    def wheel(self):
        """The connection's ReadWrite: the connection itself."""
        return self

    @property
    def local_addr(self):
        if self.fd < 0 or not (self.state & S_OPEN):
            return None
        return self._sockname()

    def _sockname(self):
        cdef sockaddr_storage ss
        cdef socklen_t sl = sizeof(sockaddr_storage)
        if getsockname(self.fd, <sockaddr*>&ss, &sl) < 0:
            return None
        return sockaddr_to_py(<void*>&ss, sl)

    def __getitem__(self, key):
        return self.heap[key]

    def __setitem__(self, key, value):
        self.heap[key] = value

    def __delitem__(self, key):
        del self.heap[key]

    def __contains__(self, key):
        return self._heap is not None and key in self._heap

    def post(self, event, *args):
        """Queue ``event`` (a state name, ``"shutdown"``, or a callable) for
        this connection."""
        if not (isinstance(event, str) or callable(event)):
            raise TypeError(f"event: expected a state name or a callable, not "
                            f"{type(event).__name__}")
        if self.state & S_ENDED:
            return False
        self.kernel.call_soon(self._run_event, (event, args))
        return True

    def delay(self, seconds, event, *args):
        """Deliver ``event`` (state name, public event or callable) to this
        connection after ``seconds``; returns a Timer."""
        cdef Timer t
        cdef Kernel k
        if not (isinstance(event, str) or callable(event)):
            raise TypeError(f"event: expected a state name or a callable, not "
                            f"{type(event).__name__}")
        try:
            s = float(seconds)
        except (TypeError, ValueError):
            raise TypeError(f"seconds: expected a number, not {type(seconds).__name__}") from None
        if self.state & S_ENDED:
            raise CypoeError("delay: the connection has ended")
        k = self.kernel
        t = k.schedule(k.now() + s, self._timer_fired, None)
        t.args = (t, event, args)
        if self._timers is None:
            self._timers = []
        self._timers.append(t)
        return t

    def shutdown(self):
        """Graceful end: input ignored, pending output flushed, then closed."""
        self._graceful()


# ---------------------------------------------------------------------------
# Server

cdef class Connection(_Link):
    """One client connection of a Server (POE's per-client session)."""

    @property
    def server(self):
        """The Server this connection belongs to."""
        return self.core.owner

    @property
    def port(self):
        """The client's port (``remote_port``)."""
        return self.remote_port

    cdef int _on_input(self, object record) except -1:
        cdef _ServerCore core = <_ServerCore>self.core
        if self.state & S_SHUTTING:
            return 0
        core.client_input(self, record)
        return 0

    cdef int _on_error(self, str op, int errnum, str errstr) except -1:
        cdef _ServerCore core = <_ServerCore>self.core
        self.state |= S_ERROR
        if op == "tls" and not (self.state & S_CONNECTED):
            # The handshake failed: the client never "connected".
            if core.client_error is not None:
                core.client_error(self, op, errnum, errstr)
            else:
                _log.warning("cypoe: TLS handshake with %s:%s failed: %s",
                             self.remote_ip, self.remote_port, errstr)
            if not (self.state & S_ENDED):     # client_error may have closed it
                self._end(False)
                core.link_ended(self)
            return 0
        if core.client_error is not None:
            core.client_error(self, op, errnum, errstr)
        elif not _default_error_is_quiet(errnum):
            _log.warning("cypoe: client %s:%s %s error %d: %s", self.remote_ip,
                         self.remote_port, op, errnum, errstr)
        if core.shutdown_on_error or (self.state & S_SHUTTING):
            # Shutting already: a write error dropped what was waiting to
            # be flushed, so this ends it.
            self._graceful()
        return 0

    cdef int _on_flushed(self) except -1:
        cdef _ServerCore core = <_ServerCore>self.core
        # Before client_connected only the TLS handshake was written: not a
        # flush of the application's output.  (A shutting connection still
        # ends here.)
        if core.client_flushed is not None and (self.state & S_CONNECTED):
            core.client_flushed(self)
        if self.state & S_SHUTTING:
            self._end(True)
        return 0

    cdef int _on_high(self) except -1:
        cdef _ServerCore core = <_ServerCore>self.core
        if core.client_high is not None:
            core.client_high(self)
        return 0

    cdef int _on_low(self) except -1:
        cdef _ServerCore core = <_ServerCore>self.core
        if core.client_low is not None:
            core.client_low(self)
        return 0

    cdef int _on_handshake(self) except -1:
        (<_ServerCore>self.core).connected(self)
        return 0

    def __repr__(self):
        return f"<cypoe.Connection id={self.id} {self.remote_ip}:{self.remote_port}>"


@cython.final
cdef class _Listener(SocketFactory):
    cdef _ServerCore core

    cdef int _on_accept(self, int fd, object addr) except -1:
        return self.core.accepted(fd, addr)


cdef class _ServerCore(_Core):
    cdef public object client_input, client_connected, client_disconnected
    cdef public object client_error, client_flushed, client_pre_connect
    cdef public object client_high, client_low, acceptor, error
    cdef public object stopped_cb
    cdef public object in_filter, out_filter
    cdef public tuple client_args
    cdef public bint shutdown_on_error
    cdef public double input_timeout
    cdef public Py_ssize_t high_mark, low_mark
    cdef public object tls_context
    cdef public Py_ssize_t count
    cdef public Py_ssize_t concurrency
    cdef public object listener
    cdef public bint shutting_down
    cdef public bint stopped
    cdef public bint accept_paused
    cdef public int family

    def __init__(self, Kernel kernel, owner):
        self.kernel = kernel
        self.owner = owner
        self.client_args = ()
        self.shutdown_on_error = True
        self.count = 0
        self.concurrency = -1

    def make_listener(self, **kw):
        cdef _Listener l = _Listener(**kw)
        l.core = self
        self.listener = l
        return l

    cdef int accepted(self, int fd, object addr) except -1:
        cdef Connection conn
        if self.shutting_down or self.stopped:
            os.close(fd)
            return 0
        self.count += 1
        self.check_concurrency()
        if isinstance(addr, tuple):
            rip, rport = addr[0], addr[1]
        else:
            rip, rport = "LOCAL", None
        if self.acceptor is not None:
            sock = _socket.socket(self.family, _socket.SOCK_STREAM, 0, fd)
            if invoke(self.kernel, "the Server's acceptor (the connection is closed)",
                      self.acceptor, self.owner, (sock, addr, rport)) is CALLBACK_FAILED:
                # the connection the acceptor failed on ends here: its
                # socket closes and its slot is free again
                sock.close()
                self._release_slot()
            return 0
        conn = Connection.__new__(Connection)
        conn.core = self
        conn.remote_ip = rip
        conn.remote_port = rport
        conn.remote_addr = addr
        conn.state = S_OPEN
        if self.client_pre_connect is not None:
            sock = _socket.socket(self.family, _socket.SOCK_STREAM, 0, fd)
            result = invoke(self.kernel, "client_pre_connect (the connection is closed)",
                            self.client_pre_connect, conn, (sock,))
            if result is None or result is CALLBACK_FAILED:
                sock.close()
                conn.state |= S_ENDED
                self._release_slot()
                return 0
            return self._start_with_socket(conn, result)
        self.attach(conn, fd, self.in_filter, self.out_filter, False)
        return self._started(conn)

    cdef int _start_with_socket(self, Connection conn, object sock) except -1:
        ssl_ctx = None
        server_side = True
        if type(sock).__name__ == "SSLSocket":
            ssl_ctx = sock.context
            server_side = sock.server_side
            plain = _socket.socket(sock.family, sock.type, sock.proto, sock.detach())
            sock = plain
        sock.setblocking(False)
        conn._sock = sock
        self.attach(conn, sock.fileno(), self.in_filter, self.out_filter, False)
        if ssl_ctx is not None:
            self.conns[conn.id] = conn
            if self.high_mark > 0:
                conn.set_marks(self.high_mark, self.low_mark)
            conn.start_tls(ssl_ctx, server_side, None, 10.0)
            if self.input_timeout > 0.0:
                self.arm(conn, self.input_timeout)
            return 0
        return self._started(conn)

    cdef int _started(self, Connection conn) except -1:
        self.conns[conn.id] = conn
        if self.high_mark > 0:
            conn.set_marks(self.high_mark, self.low_mark)
        if self.input_timeout > 0.0:
            self.arm(conn, self.input_timeout)
        if self.tls_context is not None:
            conn.start_tls(self.tls_context, True, None, 10.0)
            return 0
        return self.connected(conn)

    cdef int connected(self, Connection conn) except -1:
        conn.state |= S_CONNECTED
        if self.client_connected is not None:
            conn._call_user(self.client_connected, self.client_args)
        return 0

    cdef int link_ended(self, _Link link) except -1:
        cdef Connection conn = <Connection>link
        if conn.state & S_CONNECTED and self.client_disconnected is not None:
            invoke(self.kernel, "client_disconnected", self.client_disconnected, conn, ())
        self._release_slot()
        return 0

    cdef int _release_slot(self) except -1:
        self.count -= 1
        self.check_concurrency()
        if self.shutting_down and self.count <= 0:
            self.finish()
        return 0

    cdef int _expired(self, _Link link) except -1:
        cdef Connection conn = <Connection>link
        if conn.state & S_SHUTTING:
            # Already closing and still silent: no second wait for a flush.
            conn._end(True)
            return 0
        if self.client_error is not None:
            conn._call_user(self.client_error,
                            ("timeout", ETIMEDOUT, _strerror(ETIMEDOUT)))
        if not (conn.state & S_ENDED):
            conn._graceful()
        return 0

    def check_concurrency(self):
        l = self.listener
        if l is None or self.shutting_down:
            return
        want_pause = self.concurrency >= 0 and self.count >= self.concurrency
        if want_pause and not self.accept_paused:
            self.accept_paused = True
            l.pause_accept()
        elif not want_pause and self.accept_paused:
            self.accept_paused = False
            l.resume_accept()

    def disconnected(self):
        """A custom acceptor's connection ended (bookkeeping for concurrency)."""
        if self.count > 0:
            self._release_slot()

    def close_listener(self):
        l = self.listener
        self.listener = None
        if l is not None:
            l.close()

    def shutdown(self):
        """Stop accepting; connections finish; then stopped."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self.close_listener()
        if self.count <= 0:
            self.kernel.call_soon(self.finish_py, ())

    def shutdown_connections(self):
        for conn in list(self.conns.values()):
            (<Connection>conn)._graceful()

    def finish_py(self):
        self.finish()

    cdef int finish(self) except -1:
        if self.stopped:
            return 0
        self.stopped = True
        self.owner._finished(True)
        return 0


# ---------------------------------------------------------------------------
# TCPMulti

cdef class Conn(_Link):
    """One connection of a TCPMulti (POE's CHEAP)."""

    @property
    def port(self):
        """The port connected to."""
        return self._port

    def filter(self, f):
        """Set the input and output filter."""
        self.c_set_input_filter(f)
        self.c_set_output_filter(f)

    def input_filter(self, f):
        """Use ``f`` for this connection's input from now on (buffered,
        unparsed input moves to it)."""
        self.c_set_input_filter(f)

    def output_filter(self, f):
        """Use ``f`` for what this connection's ``put`` sends from now on."""
        self.c_set_output_filter(f)

    def timeout(self, seconds=None):
        """Get the current timeout, or set and restart it (0 disables)."""
        cdef double s
        if seconds is None:
            if self.state & (S_CONNECTING | S_RESOLVING):
                return self._connect_ms / 1000.0
            return self._input_ms / 1000.0
        try:
            s = float(seconds)
        except (TypeError, ValueError):
            raise TypeError(f"seconds: expected a number, not {type(seconds).__name__}") from None
        if s < 0:
            raise ValueError(f"seconds: must be >= 0, not {seconds!r}")
        if self.state & S_ENDED:
            return None
        if self.state & (S_CONNECTING | S_RESOLVING):
            self._connect_ms = _to_ms(s)
        else:
            self._input_ms = _to_ms(s)
        self.core.arm(self, s)
        return None

    @property
    def multi(self):
        """The TCPMulti this connection belongs to."""
        return self.core.owner

    cdef int _on_input(self, object record) except -1:
        if self.state & S_SHUTTING:
            return 0
        (<_MultiCore>self.core).on_input(self, record)
        return 0

    cdef int _on_connected(self) except -1:
        cdef _MultiCore core = <_MultiCore>self.core
        self.state = (self.state & ~S_CONNECTING) | S_OPEN
        if core.tls_context is not None:
            # From here the handshake's own deadline (tls_timeout) applies.
            core.arm(self, 0.0)
            self.start_tls(core.tls_context, False,
                           core.server_hostname if core.server_hostname is not None
                           else self.addr, core.tls_timeout)
            return 0
        return self._success()

    cdef int _on_handshake(self) except -1:
        return self._success()

    cdef int _success(self) except -1:
        cdef _MultiCore core = <_MultiCore>self.core
        self.state |= S_CONNECTED
        core.arm(self, self._input_ms / 1000.0)
        if core.on_success is not None:
            core.on_success(self)
        return 0

    cdef int _on_error(self, str op, int errnum, str errstr) except -1:
        cdef _MultiCore core = <_MultiCore>self.core
        self.state |= S_ERROR
        if not (self.state & S_CONNECTED):
            # connect or TLS handshake failed
            if core.on_failure is not None:
                core.on_failure(self, op, errnum, errstr)
            self._end(True)
            return 0
        if core.on_error is not None:
            core.on_error(self, op, errnum, errstr)
        elif not _default_error_is_quiet(errnum):
            _log.warning("cypoe: TCPMulti %s:%s %s error %d: %s", self.addr, self._port,
                         op, errnum, errstr)
        self._graceful()
        return 0

    cdef int _on_flushed(self) except -1:
        if self.state & S_SHUTTING:
            self._end(True)
        return 0

    def __repr__(self):
        return f"<cypoe.TCPMulti.Conn id={self.id} {self.addr}:{self._port}>"


cdef class _MultiCore(_Core):
    cdef public object on_input, on_success, on_failure, on_error
    cdef public object on_disconnected, on_timeout, on_initialize
    cdef public object in_filter, out_filter
    cdef public double connect_timeout, input_timeout
    cdef public object bind_address
    cdef public int domain
    cdef public object tls_context
    cdef public object server_hostname
    cdef public double tls_timeout
    cdef public bint dying

    def __init__(self, Kernel kernel, owner):
        self.kernel = kernel
        self.owner = owner
        self.tls_timeout = 10.0

    def connect(self, str address, int port, bind_address, bind_port,
                connect_timeout, input_timeout, heap):
        cdef double ct = self.connect_timeout if connect_timeout is None else connect_timeout
        cdef Conn c = self._new_conn(address, port, ct, input_timeout, heap, S_RESOLVING)
        ba = bind_address if bind_address is not None else self.bind_address
        bind = (ba, bind_port or 0) if (ba is not None or bind_port) else None
        # A numeric address is used as it is; a name is looked up off the loop.
        family = _family_of(address)
        if self.on_initialize is not None:
            # an exception ends the connection: on_disconnected follows
            c._call_user(self.on_initialize, ())
        if c.state & S_ENDED:
            return c
        if family == 0:
            self.owner._resolve(c, address, port, bind)
        else:
            self.start(c, family, address, bind)
        return c

    cdef Conn _new_conn(self, str address, int port, double ct, object input_timeout,
                        dict heap, unsigned int state):
        # A Conn counted, with its connect deadline armed, before its socket
        # is there (the id, from ReadWrite, never changes).
        cdef Conn c = Conn.__new__(Conn)
        cdef double it = self.input_timeout if input_timeout is None else input_timeout
        c.core = self
        c.addr = address
        c._port = port
        c._connect_ms = _to_ms(ct)
        c._input_ms = _to_ms(it)
        c._heap = heap
        c.kernel = self.kernel     # until setup(): lets delay()/post() work at once
        c.state = state
        self.conns[c.id] = c
        self.arm(c, ct)
        return c

    def adopt(self, int fd, str address, int port, input_timeout, heap):
        """Take over ``fd``, a non-blocking TCP socket connected (or
        connecting) to ``address``:``port``: the connection goes on as if
        connect() had opened it (TLS first when configured, then
        on_success).  ``fd`` belongs to the connection from here on."""
        cdef Conn c = self._new_conn(address, port, self.connect_timeout, input_timeout, heap,
                                     S_CONNECTING)
        if self.on_initialize is not None:
            c._call_user(self.on_initialize, ())
        if c.state & S_ENDED:
            os.close(fd)
            return c
        try:
            self.attach(c, fd, self.in_filter, self.out_filter, True)
        except BaseException:
            self.conns.pop(c.id, None)
            os.close(fd)
            raise
        return c

    def start(self, Conn c, int family, str numeric, bind):
        """Open the socket and start connecting to a numeric address."""
        cdef int err = 0
        cdef const char* op = NULL
        cdef int fd
        cdef str bhost = None
        cdef int bport = 0
        if c.state & S_ENDED:
            return
        if bind is not None:
            bhost = bind[0]
            bport = bind[1]
        try:
            fd = nb_connect(family, numeric, c._port, bhost, bport, &err, &op)
        except ValueError as exc:
            self.fail(c, "connect", EINVAL, str(exc))
            return
        if fd < 0:
            self.fail(c, (<bytes>op).decode(), err, _strerror(err))
            return
        c.state = (c.state & ~S_RESOLVING) | S_CONNECTING
        self.attach(c, fd, self.in_filter, self.out_filter, True)

    def fail(self, Conn c, str op, int errnum, str errstr):
        """A connect attempt failed before it reached the socket layer."""
        if c.state & S_ENDED:
            return
        c.state |= S_ERROR
        self.kernel.call_soon(self._fail_later, (c, op, errnum, errstr))

    def _fail_later(self, Conn c, op, errnum, errstr):
        if c.state & S_ENDED:
            return
        if self.on_failure is not None:
            c._call_user(self.on_failure, (op, errnum, errstr))
        c._end(True)

    cdef int _expired(self, _Link link) except -1:
        cdef Conn c = <Conn>link
        c._end(False)
        if self.on_timeout is not None:
            invoke(self.kernel, "on_timeout", self.on_timeout, c, ())
            self.owner._conn_gone(c)
        else:
            # Without on_timeout the terminal callback is on_disconnected.
            self.link_ended(c)
        return 0

    cdef int link_ended(self, _Link link) except -1:
        if self.on_disconnected is not None:
            invoke(self.kernel, "on_disconnected", self.on_disconnected, link, ())
        self.owner._conn_gone(link)
        return 0

    def shutdown_all(self):
        for c in list(self.conns.values()):
            (<Conn>c)._graceful()

    def count(self):
        return len(self.conns)


# ---------------------------------------------------------------------------
# Client

cdef class ClientLink(_Link):
    """The connection of a Client (internal: user code sees the Client)."""

    cdef int _on_input(self, object record) except -1:
        if self.state & S_SHUTTING:
            return 0
        (<_ClientCore>self.core).server_input(self.core.owner, record)
        return 0

    cdef int _on_connected(self) except -1:
        self.state = (self.state & ~S_CONNECTING) | S_OPEN
        self.deadline = 0.0
        self.timeout_s = 0.0
        self.core.owner._tcp_connected(self)
        return 0

    cdef int _on_handshake(self) except -1:
        self.core.owner._ready(self)
        return 0

    cdef int _on_error(self, str op, int errnum, str errstr) except -1:
        cdef _ClientCore core = <_ClientCore>self.core
        self.state |= S_ERROR
        if not (self.state & S_CONNECTED):
            self.core.owner._connect_failed(self, op, errnum, errstr)
            return 0
        if core.server_error is not None:
            core.server_error(core.owner, op, errnum, errstr)
        elif not _default_error_is_quiet(errnum):
            _log.warning("cypoe: Client %s error %d: %s", op, errnum, errstr)
        if self.core.owner._link is self or (self.state & S_SHUTTING):
            self._graceful()
        return 0

    cdef int _on_flushed(self) except -1:
        cdef _ClientCore core = <_ClientCore>self.core
        if core.server_flushed is not None and (self.state & S_CONNECTED):
            core.server_flushed(core.owner)
        if self.state & S_SHUTTING:
            self._end(True)
        return 0

    cdef int _on_high(self) except -1:
        cdef _ClientCore core = <_ClientCore>self.core
        if core.server_high is not None:
            core.server_high(core.owner)
        return 0

    cdef int _on_low(self) except -1:
        cdef _ClientCore core = <_ClientCore>self.core
        if core.server_low is not None:
            core.server_low(core.owner)
        return 0

    cdef int _user_exception(self, object exc) except -1:
        report_callback_exception(
            self.core.kernel, "a Client callback (the connection is closed)", exc,
            self.core.owner)
        self._end(True)
        return 0

    def mark_connected(self):
        self.state |= S_CONNECTED

    def adopt(self, sock):
        """From now on ``sock`` owns the fd: closing the link closes it."""
        self._sock = sock

    def begin(self, Kernel k, int fd, inf, outf):
        self.state = S_CONNECTING
        self.setup(k, fd, inf, outf, True)

    def abort(self, bint notify):
        self._end(notify)

    def graceful(self):
        self._graceful()

    def tls(self, ctx, server_hostname, double timeout):
        self.start_tls(ctx, False, server_hostname, timeout)

    def marks(self, Py_ssize_t high, Py_ssize_t low):
        self.set_marks(high, low)

    @property
    def ended(self):
        return (self.state & S_ENDED) != 0

    @property
    def established(self):
        """Connected (after TLS) and not ended: ``disconnected`` follows its end."""
        return (self.state & S_CONNECTED) != 0 and not (self.state & S_ENDED)

    @property
    def fd_(self):
        return self.fd


cdef class _ClientCore(_Core):
    cdef public object server_input, server_error, server_flushed
    cdef public object server_high, server_low

    def __init__(self, Kernel kernel, owner):
        self.kernel = kernel
        self.owner = owner

    def new_link(self):
        cdef ClientLink l = ClientLink.__new__(ClientLink)
        l.core = self
        return l

    def arm_link(self, ClientLink l, double seconds):
        self.arm(l, seconds)
        self.conns[l.id] = l

    cdef int _expired(self, _Link link) except -1:
        self.owner._connect_timed_out(link)
        return 0

    cdef int link_ended(self, _Link link) except -1:
        self.owner._link_ended(link)
        return 0


cdef int _family_of(str address) except -1:
    """AF_INET / AF_INET6 for a numeric address, 0 for a name to resolve."""
    try:
        _socket.inet_pton(_socket.AF_INET, address)
        return _socket.AF_INET
    except OSError:
        pass
    try:
        _socket.inet_pton(_socket.AF_INET6, address)
        return _socket.AF_INET6
    except OSError:
        return 0


def family_of(address):
    return _family_of(address)


def call_soon(Kernel kernel, fn, *args):
    """Queue ``fn(*args)`` on ``kernel``'s event queue (loop thread only;
    unlike call_soon_threadsafe it costs no system call)."""
    kernel.call_soon(fn, args)


def make_filter_py(spec, name):
    return make_filter(spec, name)


# put() on a connection: the same METH_FASTCALL method as ReadWrite.put, in
# each class's own dict so that CPython's call specialisation applies.
install_fast_put(Connection)
install_fast_put(Conn)
install_fast_put(ClientLink)
