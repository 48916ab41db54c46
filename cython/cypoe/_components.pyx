# cython: language_level=3
"""The compiled half of Server, Client and TCPMulti.

Every connection of a component is one ``ComponentConnection``: a ReadWrite
subclass whose event hooks call the user's callbacks directly, so the
per-record path is recv -> filter -> hook -> user callback with no Python in
between.  What all connections of a component share (callbacks, filter
prototypes, timeouts) and the component's state machine live once in its
``ComponentCore`` (``ServerCore``, ``ClientCore``, ``MultiCore``); a
connection reaches it only through the core's typed hooks (see
_components.pxd).  One connect path (``ComponentCore.open_connection``) and
the one name-resolution service (``NameLookup``, _lookup.pyx) serve
Client and TCPMulti.

Words for the end of things (docs/decisions.rst): ``end_now`` closes a
connection at once and, when asked, queues its terminal callback (its end);
``c_shutdown`` is the graceful end (input ignored, output flushed, then
end_now); ``close_conn`` closes the Client's connection without reporting
it; a core's ``conn_ended`` is the terminal callback's hook and its ``end``
the component's own end.

Timeouts (connect, input) are a deadline stored on the connection and checked
by one coarse sweep per component: resetting a timeout on every input is a
store, and a million connections over time leave no timers behind.  A
deadline fires between ``timeout`` and ``timeout * 1.125`` after it was set.

Terminal callbacks (disconnected, stopped) are queued with ``call_soon``,
never called from inside another callback of the same connection.
"""
cimport cython
from libc.math cimport ceil
from libc.errno cimport ETIMEDOUT, ECONNRESET, ECONNABORTED, ENOTCONN, EINVAL, EINPROGRESS

from cypoe._kernel cimport Kernel, Handler, Timer, call_with_first
from cypoe._readwrite cimport ReadWrite, install_fast_put
from cypoe._socketfactory cimport SocketFactory
from cypoe._sockets cimport nb_connect, sockaddr_to_py
from cypoe._lookup cimport NameLookup
from cypoe._checks cimport check_filter_spec as _check_filter_spec, check_timeout as _check_timeout
from cypoe._checks import (check_filter_spec as _check_filter_spec_py,
                           check_timeout as _check_timeout_py)
from cypoe._filters cimport FilterBase
from cypoe.includes.debug cimport CP_DBG_INC, CP_DBG_DEC, CP_DBG_CORES, cp_debug_counters
from cypoe.includes.socket cimport (sockaddr, sockaddr_storage, socklen_t, getsockname,
                                    inet_pton, c_AF_INET, c_AF_INET6)
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.string cimport strlen

import errno as _errno
import logging
import os
import socket as _socket

from cypoe.errors import CypoeError

cdef object _log = logging.getLogger("cypoe")
cdef int _AF_UNIX = _socket.AF_UNIX
cdef int _SOCK_STREAM_NB = _socket.SOCK_STREAM | _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC


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


# The parameter checks (check_timeout, check_filter_spec, ...) are
# _checks.pyx's, shared with ReadWrite; re-exported here for old imports.
check_timeout = _check_timeout_py
check_filter_spec = _check_filter_spec_py


cdef object make_filter(object spec, str name):
    """A fresh filter from a checked ``*_filter`` parameter: an instance is
    cloned, a class or factory is called."""
    if spec is None:
        return None
    if hasattr(spec, "get_one_start") and not isinstance(spec, type):
        return spec.clone()
    return _check_filter_spec(name, spec)()


# -- user callbacks ------------------------------------------------------------
#
# Every callback of a component is called through invoke() (directly, or
# from a ReadWrite hook whose exception reaches ComponentConnection._user_exception, which
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


# -- name resolution ------------------------------------------------------------
#
# The components use the one name-resolution service (NameLookup in
# _lookup.pyx): a name that is not a numeric address is looked up in a
# thread, and the answer reaches the component's core through its typed
# ``resolved`` hook, on the loop.

@cython.final
cdef class _ConnLookup(NameLookup):
    """One lookup in flight for ``conn`` of ``core``."""
    cdef ComponentCore core
    cdef ComponentConnection conn
    cdef object bind_host, bind_port

    cdef int resolved(self, int family, str numeric, object sockaddr, int errnum,
                      str errstr) except -1:
        cdef ComponentCore core = self.core
        cdef ComponentConnection conn = self.conn
        self.core = None
        self.conn = None
        return core.resolved(conn, family, numeric, errnum, errstr, self.bind_host,
                             self.bind_port)


cdef int start_lookup(ComponentCore core, ComponentConnection conn, object host, object port,
                      int family, object bind_host, object bind_port) except -1:
    """Look ``host`` up off the loop; ``core.resolved(conn, ...)`` follows
    (with ``bind_host``/``bind_port`` for the connect)."""
    cdef _ConnLookup q = _ConnLookup.__new__(_ConnLookup)
    q.core = core
    q.conn = conn
    q.bind_host = bind_host
    q.bind_port = bind_port
    q.start(core.kernel, host, port, family, _socket.SOCK_STREAM, False)
    return 0


# -- the connect path -----------------------------------------------------------

cdef int connect_socket(int family, str numeric, object port, object bind_host,
                        object bind_port, int* err, const char** op) except -2:
    """A non-blocking socket connecting to a numeric address (a path for
    AF_UNIX): its fd, or -1 with ``err``/``op`` set (op "socket", "bind" or
    "connect")."""
    cdef int fd
    if family != _AF_UNIX:
        try:
            return nb_connect(family, numeric, port, bind_host,
                              bind_port if bind_port is not None else 0, err, op)
        except ValueError:
            err[0] = EINVAL
            op[0] = "connect"
            return -1
    # A UNIX socket connects to a path; EAGAIN is a full backlog there, not a
    # connect in progress: the attempt has failed.
    op[0] = "socket"
    try:
        sock = _socket.socket(_AF_UNIX, _SOCK_STREAM_NB)
    except OSError as exc:
        err[0] = exc.errno or 0
        return -1
    try:
        if bind_host is not None:
            op[0] = "bind"
            sock.bind(bind_host)
        op[0] = "connect"
        rc = sock.connect_ex(numeric)
    except OSError as exc:
        sock.close()
        err[0] = exc.errno or 0
        return -1
    if rc != 0 and rc != EINPROGRESS:
        sock.close()
        err[0] = rc
        return -1
    return sock.detach()


cdef class ComponentCore:
    """What every connection of one component shares, and the component's
    state machine: the hooks below are what its connections call."""

    def __cinit__(self):
        self.conns = {}
        self._sweep_interval = 0.0
        self._sweep_timer = None
        CP_DBG_INC(CP_DBG_CORES)

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_CORES)

    cdef int unregister(self) except -1:
        """The component has ended: it no longer counts as work for the
        kernel, and its alias goes."""
        if self.hook is not None:
            self.kernel.unregister_component(self.hook)
        if self.alias is not None and self.kernel.alias_resolve(self.alias) is self.owner:
            self.kernel.alias_remove(self.alias)
        return 0

    cdef int open_connection(self, ComponentConnection conn, int family, str numeric,
                             object port, object bind_host, object bind_port) except -1:
        cdef int err = 0
        cdef const char* op = NULL
        cdef int fd = connect_socket(family, numeric, port, bind_host, bind_port, &err, &op)
        if fd < 0:
            conn.state |= S_ERROR
            # Reported like an asynchronous failure: never from inside the
            # call that started the connect.
            self.kernel.call_soon(self._connect_failed_soon,
                                  (conn, (<bytes>op).decode(), err, _strerror(err)))
            return 0
        conn.state = (conn.state & ~S_RESOLVING) | S_CONNECTING
        self.attach(conn, fd, self.in_filter, self.out_filter, True)
        return 0

    def _connect_failed_soon(self, ComponentConnection conn, str op, int errnum, str errstr):
        if not (conn.state & S_ENDED):
            self.connect_failed(conn, op, errnum, errstr)

    cdef int resolved(self, ComponentConnection conn, int family, str numeric, int errnum,
                      str errstr, object bind_host, object bind_port) except -1:
        return 0

    cdef int tcp_connected(self, ComponentConnection conn) except -1:
        return self.conn_ready(conn)

    cdef int conn_ready(self, ComponentConnection conn) except -1:
        return 0

    cdef int connect_failed(self, ComponentConnection conn, str op, int errnum,
                            str errstr) except -1:
        return 0

    cdef int arm(self, ComponentConnection conn, double seconds) except -1:
        """Start (or restart, or with 0 stop) ``conn``'s timeout."""
        cdef double interval
        conn.timeout_ms = _to_ms(seconds)
        if seconds <= 0.0:
            conn.deadline = 0.0
            return 0
        conn.deadline = self.kernel.now() + seconds
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

    cdef int attach(self, ComponentConnection conn, int fd, object in_proto, object out_proto,
                    bint connecting) except -1:
        """Register ``fd`` as ``conn``'s socket.  The input filter is cloned
        from ``in_proto`` only when the first bytes arrive (a connection that
        never receives needs none); a built-in output filter is stateless
        and shared by every connection."""
        cdef object inf, outf
        if isinstance(in_proto, FilterBase):
            outf = in_proto if out_proto is None else out_proto
            if not isinstance(outf, FilterBase):
                outf = make_filter(outf, "output_filter")
            conn.setup(self.kernel, fd, in_proto, outf, connecting)
            conn._proto_in = in_proto
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
        conn.setup(self.kernel, fd, inf, outf, connecting)
        return 0

    cdef int _schedule_sweep(self) except -1:
        # The sweep keeps nothing alive: the connections do.
        self._sweep_timer = self.kernel.schedule(
            self.kernel.now() + self._sweep_interval, self._sweep, (), None, False)
        return 0

    def _sweep(self):
        cdef double now = self.kernel.now()
        cdef ComponentConnection conn
        cdef list due = None
        cdef bint any_timed = False
        self._sweep_timer = None
        for obj in self.conns.values():
            conn = <ComponentConnection>obj
            if conn.deadline > 0.0:
                if conn.deadline <= now:
                    if due is None:
                        due = []
                    due.append(conn)
                else:
                    any_timed = True
        if due is not None:
            for obj in due:
                conn = <ComponentConnection>obj
                # Re-check: an earlier expiry's callback may have changed it.
                if conn.deadline > 0.0 and conn.deadline <= now and not (conn.state & S_ENDED):
                    conn.deadline = 0.0
                    try:
                        self.timed_out(conn)
                    except Exception as exc:
                        conn._user_exception(exc)
            for obj in self.conns.values():
                if (<ComponentConnection>obj).deadline > 0.0:
                    any_timed = True
                    break
        if any_timed:
            self._schedule_sweep()
        else:
            self._sweep_interval = 0.0

    cdef int timed_out(self, ComponentConnection conn) except -1:
        return 0

    cdef int conn_ended(self, ComponentConnection conn) except -1:
        return 0


cdef class ComponentConnection(ReadWrite):
    """One connection of a component (internal base)."""

    def __cinit__(self):
        self.deadline = 0.0
        self.timeout_ms = 0
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
        if self.timeout_ms and self.deadline > 0.0 and not (self.state & S_CONNECTING):
            self.deadline = self.kernel.now() + self.timeout_ms * 0.001
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
        self.end_now(True)
        return 0

    cdef int c_close(self) except -1:
        # Every way of closing (close(), an exception, ReadWrite itself)
        # ends the connection for its component too.
        return self.end_now(True)

    cdef int end_now(self, bint notify) except -1:
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
                self.core.kernel.call_soon(self._report_end, ())
            else:
                self.core.conns.pop(self.id, None)
        return 0

    def _report_end(self):
        self.core.conns.pop(self.id, None)
        self.core.conn_ended(self)

    cdef int c_shutdown(self) except -1:
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
        return self.end_now(True)

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
            self.c_shutdown()
            return
        states = self.core.states
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
        self.c_shutdown()


# ---------------------------------------------------------------------------
# Server

cdef class Connection(ComponentConnection):
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
        cdef ServerCore core = <ServerCore>self.core
        if self.state & S_SHUTTING:
            return 0
        core.client_input(self, record)
        return 0

    cdef int _on_error(self, str op, int errnum, str errstr) except -1:
        cdef ServerCore core = <ServerCore>self.core
        self.state |= S_ERROR
        if op == "tls" and not (self.state & S_CONNECTED):
            # The handshake failed: the client never "connected".
            if core.client_error is not None:
                core.client_error(self, op, errnum, errstr)
            else:
                _log.warning("cypoe: TLS handshake with %s:%s failed: %s",
                             self.remote_ip, self.remote_port, errstr)
            if not (self.state & S_ENDED):     # client_error may have closed it
                self.end_now(False)
                core.conn_ended(self)
            return 0
        if core.client_error is not None:
            core.client_error(self, op, errnum, errstr)
        elif not _default_error_is_quiet(errnum):
            _log.warning("cypoe: client %s:%s %s error %d: %s", self.remote_ip,
                         self.remote_port, op, errnum, errstr)
        if core.shutdown_on_error or (self.state & S_SHUTTING):
            # Shutting already: a write error dropped what was waiting to
            # be flushed, so this ends it.
            self.c_shutdown()
        return 0

    cdef bint _wants_flushed(self) except -1:
        return (<ServerCore>self.core).client_flushed is not None or (self.state & S_SHUTTING)

    cdef int _on_flushed(self) except -1:
        cdef ServerCore core = <ServerCore>self.core
        # Before client_connected only the TLS handshake was written: not a
        # flush of the application's output.  (A shutting connection still
        # ends here.)
        if core.client_flushed is not None and (self.state & S_CONNECTED):
            core.client_flushed(self)
        if self.state & S_SHUTTING:
            self.end_now(True)
        return 0

    cdef int _on_high(self) except -1:
        cdef ServerCore core = <ServerCore>self.core
        if core.client_high is not None:
            core.client_high(self)
        return 0

    cdef int _on_low(self) except -1:
        cdef ServerCore core = <ServerCore>self.core
        if core.client_low is not None:
            core.client_low(self)
        return 0

    cdef int _on_handshake(self) except -1:
        return self.core.conn_ready(self)

    def __repr__(self):
        return f"<cypoe.Connection id={self.id} {self.remote_ip}:{self.remote_port}>"


@cython.final
cdef class _Listener(SocketFactory):
    cdef ServerCore core

    cdef int _on_accept(self, int fd, object addr) except -1:
        return self.core.accepted(fd, addr)


cdef class ServerCore(ComponentCore):
    cdef public object client_input, client_connected, client_disconnected
    cdef public object client_error, client_flushed, client_pre_connect
    cdef public object client_high, client_low, acceptor, error
    cdef public object stopped_cb
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
    cdef public object listen_error       # (op, errnum, errstr) when listening failed
    cdef public object sockname           # the listening socket's address, or None

    cdef object port(self):
        return self.sockname[1] if isinstance(self.sockname, tuple) else None

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
        return self.conn_ready(conn)

    cdef int conn_ready(self, ComponentConnection conn) except -1:
        conn.state |= S_CONNECTED
        if self.client_connected is not None:
            conn._call_user(self.client_connected, self.client_args)
        return 0

    cdef int conn_ended(self, ComponentConnection c) except -1:
        cdef Connection conn = <Connection>c
        if conn.state & S_CONNECTED and self.client_disconnected is not None:
            invoke(self.kernel, "client_disconnected", self.client_disconnected, conn, ())
        self._release_slot()
        return 0

    cdef int _release_slot(self) except -1:
        self.count -= 1
        self.check_concurrency()
        if self.shutting_down and self.count <= 0:
            self.end(True)
        return 0

    cdef int timed_out(self, ComponentConnection c) except -1:
        cdef Connection conn = <Connection>c
        if conn.state & S_SHUTTING:
            # Already closing and still silent: no second wait for a flush.
            conn.end_now(True)
            return 0
        if self.client_error is not None:
            conn._call_user(self.client_error,
                            ("timeout", ETIMEDOUT, _strerror(ETIMEDOUT)))
        if not (conn.state & S_ENDED):
            conn.c_shutdown()
        return 0

    cpdef int check_concurrency(self) except -1:
        # cpdef: accepted and the connection ends call it typed, on every
        # accept; server.py through Python.
        cdef bint want_pause
        l = self.listener
        if l is None or self.shutting_down:
            return 0
        want_pause = self.concurrency >= 0 and self.count >= self.concurrency
        if want_pause and not self.accept_paused:
            self.accept_paused = True
            l.pause_accept()
        elif not want_pause and self.accept_paused:
            self.accept_paused = False
            l.resume_accept()
        return 0

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
        """Stop accepting; connections end in their own time; then stopped."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self.close_listener()
        if self.count <= 0:
            self.kernel.call_soon(self.end, (True,))

    def shutdown_connections(self):
        for conn in list(self.conns.values()):
            (<Connection>conn).c_shutdown()

    def signal_shutdown(self):
        """SIGINT/SIGTERM (the kernel's graceful shutdown): stop accepting
        and shut every connection down."""
        if self.ended:
            return
        self.shutdown()
        self.shutdown_connections()

    # -- the listener's events (its on_success / on_failure) --------------

    def listener_success(self, sf, sock, addr, port):  # pragma: no cover
        sock.close()

    def listener_failure(self, sf, str op, int errnum, str errstr):
        if op in ("socket", "bind", "listen", "setsockopt", "resolve"):
            self.listen_error = (op, errnum, errstr)
            self.listen_failed(op, errnum, errstr)
            return
        self.report_error(op, errnum, errstr)

    def listen_failed(self, str op, int errnum, str errstr):
        """The Server could not listen: reported, and it ends without
        ``stopped``."""
        if self.ended:
            return
        self.report_error(op, errnum, errstr)
        self.close_listener()
        self.end(False)

    cdef int report_error(self, str op, int errnum, str errstr) except -1:
        if self.error is not None:
            invoke(self.kernel, "the Server's error callback", self.error, self.owner,
                   (op, errnum, errstr))
            return 0
        _log.error("cypoe: Server on port %s: %s error %d: %s", self.port(), op, errnum,
                   errstr)
        if op != "accept":
            self.shutdown()
        return 0

    def end(self, bint call_stopped):
        """The Server has ended (once): it unregisters, then ``stopped``."""
        if self.ended:
            return
        self.ended = True
        self.stopped = True
        self.unregister()
        if call_stopped and self.stopped_cb is not None:
            invoke(self.kernel, "the Server's stopped callback", self.stopped_cb, self.owner, ())


# ---------------------------------------------------------------------------
# TCPMulti

cdef class Conn(ComponentConnection):
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
                return self.timeout_ms / 1000.0
            return self._input_ms / 1000.0
        try:
            s = float(seconds)
        except (TypeError, ValueError):
            raise TypeError(f"seconds: expected a number, not {type(seconds).__name__}") from None
        if s < 0:
            raise ValueError(f"seconds: must be >= 0, not {seconds!r}")
        if self.state & S_ENDED:
            return None
        if not (self.state & (S_CONNECTING | S_RESOLVING)):
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
        (<MultiCore>self.core).on_input(self, record)
        return 0

    cdef int _on_connected(self) except -1:
        return self.core.tcp_connected(self)

    cdef int _on_handshake(self) except -1:
        return self.core.conn_ready(self)

    cdef int _on_error(self, str op, int errnum, str errstr) except -1:
        cdef MultiCore core = <MultiCore>self.core
        self.state |= S_ERROR
        if not (self.state & S_CONNECTED):
            # connect or TLS handshake failed
            return core.connect_failed(self, op, errnum, errstr)
        if core.on_error is not None:
            core.on_error(self, op, errnum, errstr)
        elif not _default_error_is_quiet(errnum):
            _log.warning("cypoe: TCPMulti %s:%s %s error %d: %s", self.addr, self._port,
                         op, errnum, errstr)
        self.c_shutdown()
        return 0

    cdef bint _wants_flushed(self) except -1:
        return (self.state & S_SHUTTING) != 0

    cdef int _on_flushed(self) except -1:
        if self.state & S_SHUTTING:
            self.end_now(True)
        return 0

    def __repr__(self):
        return f"<cypoe.TCPMulti.Conn id={self.id} {self.addr}:{self._port}>"


cdef class MultiCore(ComponentCore):
    """TCPMulti's state machine: its connections, and its session, which
    ends when the TCPMulti is idle and is started again when it is used."""
    cdef public object on_input, on_success, on_failure, on_error
    cdef public object on_disconnected, on_timeout, on_initialize
    cdef public double connect_timeout, input_timeout
    cdef public object bind_address
    cdef public int domain
    cdef public object tls_context
    cdef public object server_hostname
    cdef public double tls_timeout
    cdef public bint dying
    cdef readonly Session session     # the live session, or None
    cdef public dict heap             # the session's heap (kept across sessions)
    cdef public dict session_states   # the session's states, without _start/_stop
    cdef public object user_stop      # the user's _stop state, or None
    cdef bint held                    # live connections retain the session

    def __init__(self, Kernel kernel, owner):
        self.kernel = kernel
        self.owner = owner
        self.tls_timeout = 10.0

    # -- the session --------------------------------------------------------

    def new_session(self, tuple args=(), user_start=None):
        """Start a session for this TCPMulti: at construction, and again when
        it is used after it went idle."""
        states = dict(self.session_states)
        states["_start"] = _SessionStart(self, user_start)
        states["_stop"] = self.session_stopped
        Session(states, heap=self.heap, args=args, kernel=self.kernel)
        return self.session

    cdef int session_started(self, Session session, object user_start, tuple args) except -1:
        self.session = session
        # Held until the next loop iteration, so that connect() can be
        # called right after the constructor.
        session.retain()
        self.kernel.call_soon(session.release, ())
        self.kernel.register_component(self.hook)
        if user_start is not None:
            invoke(self.kernel, "TCPMulti state '_start'", user_start, self.owner, args)
        return 0

    def session_stopped(self, session):
        # The session ends: for good after die(), otherwise because the
        # TCPMulti is idle (no connection, event or timer): it then keeps
        # nothing alive until it is used again.
        self.held = False
        self.kernel.unregister_component(self.hook)
        if self.dying:
            self.end()

    cpdef object wake(self, str what):
        """The live session; one that ended because the TCPMulti was idle is
        replaced by a new one (same states and heap).  CypoeError once the
        TCPMulti has ended or is dying."""
        cdef Session s
        if self.ended or self.dying:
            raise CypoeError(f"{what}: this TCPMulti has ended")
        s = self.session
        if s is None or s.stopped:
            return self.new_session()
        return s

    cdef int hold(self) except -1:
        if not self.held:
            # Live connections keep the session alive.
            self.held = True
            self.session.retain()
        return 0

    cdef int after_conn_ended(self) except -1:
        if self.conns:
            return 0
        if self.dying and not self.ended:
            self.held = False
            self.end_session()
        elif self.held:
            self.held = False
            self.session.release()
        return 0

    cdef int end_session(self) except -1:
        if self.session is not None and not self.session.stopped:
            self.session.stop()         # session_stopped ends the TCPMulti
        else:
            self.end()
        return 0

    def end(self):
        """The TCPMulti has ended (once): it unregisters; then the user's
        ``_stop``."""
        if self.ended:
            return
        self.ended = True
        self.unregister()
        if self.user_stop is not None:
            invoke(self.kernel, "TCPMulti state '_stop'", self.user_stop, self.owner, ())

    def die(self):
        """Shut every connection down gracefully and end the session."""
        if self.ended or self.dying:
            return
        self.dying = True
        for c in list(self.conns.values()):
            (<Conn>c).c_shutdown()
        if not self.conns:
            self.held = False
            self.end_session()

    # -- connections --------------------------------------------------------

    def connect(self, address, port, bind_address=None, bind_port=None,
                connect_timeout=None, input_timeout=None, heap=None):
        """TCPMulti.connect(), its parameter checks included (the TCPMulti's
        connect is this method)."""
        cdef double ct, it
        cdef Conn c
        cdef int family
        if self.ended or self.dying:
            raise CypoeError("connect: this TCPMulti has ended")
        if not isinstance(address, str) or not address:
            raise TypeError(f"address: expected a host name or address (str), not {address!r}")
        if type(port) is not int or not (0 < port <= 65535):
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
                raise ValueError(f"port: expected a port number 1-65535, not {port!r}")
        if bind_address is not None and not isinstance(bind_address, str):
            raise TypeError("bind_address: expected a str")
        if bind_port is not None and (isinstance(bind_port, bool) or not isinstance(bind_port, int)
                                      or not 0 <= bind_port <= 65535):
            raise ValueError(f"bind_port: expected a port number 0-65535, not {bind_port!r}")
        ct = self.connect_timeout if connect_timeout is None else \
            _check_timeout("connect_timeout", connect_timeout)
        it = self.input_timeout if input_timeout is None else \
            _check_timeout("input_timeout", input_timeout)
        if heap is not None and not isinstance(heap, dict):
            raise TypeError(f"heap: expected a dict, not {type(heap).__name__}")
        s = self.session
        if s is None or (<Session>s).stopped:
            self.wake("connect")
        c = self._new_conn(address, port, ct, it, heap, S_RESOLVING)
        self.hold()
        if bind_address is None:
            bind_address = self.bind_address
        if bind_address is None and not bind_port:
            bind_port = None
        if self.on_initialize is not None:
            # an exception ends the connection: on_disconnected follows
            c._call_user(self.on_initialize, ())
            if c.state & S_ENDED:
                return c
        # A numeric address is used as it is; a name is looked up off the loop.
        family = _family_of(address)
        if family == 0:
            start_lookup(self, c, address, port, self.domain, bind_address, bind_port)
        else:
            self.open_connection(c, family, address, port, bind_address, bind_port)
        return c

    cdef Conn _new_conn(self, str address, int port, double ct, double it,
                        dict heap, unsigned int state):
        # A Conn counted, with its connect deadline armed, before its socket
        # is there (the id, from ReadWrite, never changes).
        cdef Conn c = Conn.__new__(Conn)
        c.core = self
        c.addr = address
        c._port = port
        c._input_ms = _to_ms(it)
        c._heap = heap
        c.kernel = self.kernel     # until setup(): lets delay()/post() work at once
        c.state = state
        self.conns[c.id] = c
        self.arm(c, ct)
        return c

    def adopt(self, int fd, str address, int port, input_timeout, heap):
        """TCPMulti.adopt() after its parameter checks: ``fd`` belongs to the
        connection from here on."""
        cdef double it = self.input_timeout if input_timeout is None else input_timeout
        cdef Conn c
        try:
            self.wake("adopt")
        except BaseException:
            os.close(fd)
            raise
        c = self._new_conn(address, port, self.connect_timeout, it, heap, S_CONNECTING)
        self.hold()
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

    cdef int resolved(self, ComponentConnection conn, int family, str numeric, int errnum,
                      str errstr, object bind_host, object bind_port) except -1:
        cdef Conn c = <Conn>conn
        if c.state & S_ENDED:
            return 0
        if family == 0:
            c.state |= S_ERROR
            return self.connect_failed(c, "resolve", errnum, errstr)
        return self.open_connection(c, family, numeric, c._port, bind_host, bind_port)

    cdef int tcp_connected(self, ComponentConnection conn) except -1:
        cdef Conn c = <Conn>conn
        c.state = (c.state & ~S_CONNECTING) | S_OPEN
        if self.tls_context is not None:
            # From here the handshake's own deadline (tls_timeout) applies.
            self.arm(c, 0.0)
            c.start_tls(self.tls_context, False,
                        self.server_hostname if self.server_hostname is not None else c.addr,
                        self.tls_timeout)
            return 0
        return self.conn_ready(c)

    cdef int conn_ready(self, ComponentConnection conn) except -1:
        cdef Conn c = <Conn>conn
        c.state |= S_CONNECTED
        self.arm(c, c._input_ms / 1000.0)
        if self.on_success is not None:
            self.on_success(c)
        return 0

    cdef int connect_failed(self, ComponentConnection conn, str op, int errnum,
                            str errstr) except -1:
        # From a hook (an exception closes the connection) or queued by
        # open_connection / a failed lookup (reported here).
        conn.state |= S_ERROR
        if self.on_failure is not None:
            conn._call_user(self.on_failure, (op, errnum, errstr))
        conn.end_now(True)
        return 0

    cdef int timed_out(self, ComponentConnection conn) except -1:
        conn.end_now(False)
        if self.on_timeout is not None:
            invoke(self.kernel, "on_timeout", self.on_timeout, conn, ())
            self.after_conn_ended()
        else:
            # Without on_timeout the terminal callback is on_disconnected.
            self.conn_ended(conn)
        return 0

    cdef int conn_ended(self, ComponentConnection conn) except -1:
        if self.on_disconnected is not None:
            invoke(self.kernel, "on_disconnected", self.on_disconnected, conn, ())
        self.after_conn_ended()
        return 0

    def count(self):
        return len(self.conns)


@cython.final
cdef class _SessionStart:
    """A TCPMulti session's ``_start`` state."""
    cdef MultiCore core
    cdef object user_start

    def __init__(self, MultiCore core, user_start):
        self.core = core
        self.user_start = user_start

    def __call__(self, session, *args):
        cdef MultiCore core = self.core
        self.core = None        # no cycle through the session's states
        core.session_started(session, self.user_start, args)


# ---------------------------------------------------------------------------
# Client

cdef class ClientConnection(ComponentConnection):
    """The connection of a Client (internal: user code sees the Client)."""

    cdef int _on_input(self, object record) except -1:
        if self.state & S_SHUTTING:
            return 0
        (<ClientCore>self.core).server_input(self.core.owner, record)
        return 0

    cdef int _on_connected(self) except -1:
        return self.core.tcp_connected(self)

    cdef int _on_handshake(self) except -1:
        return self.core.conn_ready(self)

    cdef int _on_error(self, str op, int errnum, str errstr) except -1:
        cdef ClientCore core = <ClientCore>self.core
        self.state |= S_ERROR
        if not (self.state & S_CONNECTED):
            return core.connect_failed(self, op, errnum, errstr)
        if core.server_error is not None:
            core.server_error(core.owner, op, errnum, errstr)
        elif not _default_error_is_quiet(errnum):
            _log.warning("cypoe: Client %s error %d: %s", op, errnum, errstr)
        if core.conn is self or (self.state & S_SHUTTING):
            self.c_shutdown()
        return 0

    cdef bint _wants_flushed(self) except -1:
        return (<ClientCore>self.core).server_flushed is not None or (self.state & S_SHUTTING)

    cdef int _on_flushed(self) except -1:
        cdef ClientCore core = <ClientCore>self.core
        if core.server_flushed is not None and (self.state & S_CONNECTED):
            core.server_flushed(core.owner)
        if self.state & S_SHUTTING:
            self.end_now(True)
        return 0

    cdef int _on_high(self) except -1:
        cdef ClientCore core = <ClientCore>self.core
        if core.server_high is not None:
            core.server_high(core.owner)
        return 0

    cdef int _on_low(self) except -1:
        cdef ClientCore core = <ClientCore>self.core
        if core.server_low is not None:
            core.server_low(core.owner)
        return 0

    cdef int _user_exception(self, object exc) except -1:
        report_callback_exception(
            self.core.kernel, "a Client callback (the connection is closed)", exc,
            self.core.owner)
        self.end_now(True)
        return 0

    def abort(self, bint report):
        """Close now; with ``report`` the Client's ``disconnected`` follows."""
        self.end_now(report)

    @property
    def ended(self):
        """The connection has ended (closed; its end reported or dropped)."""
        return (self.state & S_ENDED) != 0

    @property
    def established(self):
        """Connected (after TLS) and not ended: ``disconnected`` follows its end."""
        return (self.state & S_CONNECTED) != 0 and not (self.state & S_ENDED)


cdef class ClientCore(ComponentCore):
    """The Client's state machine: connect (lookup, socket, TCP, pre_connect,
    TLS), connected, the end of its connection, reconnects, its own end."""
    cdef public object server_input, server_error, server_flushed
    cdef public object server_high, server_low
    cdef public object started_cb, connected_cb, connect_error_cb, disconnected_cb
    cdef public object pre_connect
    cdef public object remote_address, remote_port, bind_address, bind_port
    cdef public int domain
    cdef public double connect_timeout
    cdef public object tls_context, server_hostname
    cdef public Py_ssize_t high_mark, low_mark
    cdef public bint shutting_down
    cdef public list timers               # pending delay() timers
    cdef readonly ClientConnection conn   # the current connection (or attempt), or None
    cdef readonly object sock             # its socket object once TCP is connected
    cdef object peer
    cdef unsigned long attempt            # bumped by every connect/reconnect/shutdown

    def __init__(self, Kernel kernel, owner):
        self.kernel = kernel
        self.owner = owner
        self.timers = []

    @property
    def wheel(self):
        """The current connection once it has a socket, or None."""
        if self.conn is None or (self.conn.state & S_RESOLVING):
            return None
        return self.conn

    def connect(self):
        """Connect to remote_address:remote_port (dropping the current
        connection first, without ``disconnected``)."""
        cdef ClientConnection c
        cdef int family
        self.close_conn()
        self.shutting_down = False
        self.attempt += 1
        c = ClientConnection.__new__(ClientConnection)
        c.core = self
        c.kernel = self.kernel
        c.state = S_RESOLVING
        self.conn = c
        # A numeric address (or a UNIX socket's path) is used as it is; a
        # name is looked up off the loop, in the family asked for.
        family = _AF_UNIX if self.domain == _AF_UNIX else _family_of(self.remote_address)
        if family == 0:
            start_lookup(self, c, self.remote_address, self.remote_port, self.domain,
                         self.bind_address, self.bind_port)
            return
        self.open_client(c, family, self.remote_address, self.bind_address, self.bind_port)

    cdef int open_client(self, ClientConnection c, int family, str numeric, object bind_host,
                         object bind_port) except -1:
        if family != _AF_UNIX and bind_host is None and not bind_port:
            bind_port = None
        self.open_connection(c, family, numeric, self.remote_port, bind_host, bind_port)
        if c.state & S_CONNECTING:
            self.conns[c.id] = c
            self.arm(c, self.connect_timeout)
        return 0

    cdef int resolved(self, ComponentConnection conn, int family, str numeric, int errnum,
                      str errstr, object bind_host, object bind_port) except -1:
        if conn is not self.conn or self.ended:
            return 0
        if family == 0:
            return self.connect_failed(conn, "resolve", errnum, errstr)
        return self.open_client(<ClientConnection>conn, family, numeric, bind_host, bind_port)

    cdef int tcp_connected(self, ComponentConnection conn) except -1:
        cdef ClientConnection c = <ClientConnection>conn
        c.state = (c.state & ~S_CONNECTING) | S_OPEN
        c.deadline = 0.0
        c.timeout_ms = 0
        if c is not self.conn:
            return 0
        # The socket object handed to user code owns the fd from now on, and
        # the connection owns the socket object: closing it closes the fd.
        sock = _socket.socket(fileno=c.fd)
        c._sock = sock
        self.sock = sock
        try:
            peer = sock.getpeername()
        except OSError:
            peer = (self.remote_address, self.remote_port)
        if not isinstance(peer, tuple):
            peer = (peer or self.remote_address, None)    # UNIX: the path, no port
        self.peer = peer
        if self.pre_connect is not None:
            result = invoke(self.kernel, "the Client's pre_connect callback (the connection "
                            "is closed)", self.pre_connect, self.owner, (sock,))
            if result is None or result is CALLBACK_FAILED:
                return self.connect_failed(c, "connect", ECONNABORTED,
                                           "connection rejected by pre_connect")
            if type(result).__name__ == "SSLSocket":
                ctx, host = result.context, result.server_hostname
                plain = _socket.socket(result.family, result.type, result.proto,
                                       result.detach())
                c._sock = plain
                self.sock = plain
                c.start_tls(ctx, False, host, 10.0)
                return 0
        if self.tls_context is not None:
            c.start_tls(self.tls_context, False,
                        self.server_hostname if self.server_hostname is not None
                        else self.remote_address, 10.0)
            return 0
        return self.conn_ready(c)

    cdef int conn_ready(self, ComponentConnection conn) except -1:
        if conn is not self.conn:
            return 0
        conn.state |= S_CONNECTED
        if self.high_mark > 0:
            conn.set_marks(self.high_mark, self.low_mark)
        # Like POE's SocketFactory success event, "connected" is queued: a
        # server in this process that accepted in the same iteration has its
        # client_connected delivered first.
        self.kernel.call_soon(self._deliver_connected, (conn,))
        return 0

    def _deliver_connected(self, ClientConnection c):
        if c is not self.conn or (c.state & S_ENDED):
            return
        if self.connected_cb is not None:
            if invoke(self.kernel, "the Client's connected callback (the connection is "
                      "closed)", self.connected_cb, self.owner,
                      (self.sock, self.peer[0], self.peer[1])) is CALLBACK_FAILED:
                c.end_now(True)

    cdef int connect_failed(self, ComponentConnection conn, str op, int errnum,
                            str errstr) except -1:
        if conn is not self.conn:
            return 0
        conn.end_now(False)
        self.conn = None
        return self.report_connect_error(op, errnum, errstr)

    cdef int timed_out(self, ComponentConnection conn) except -1:
        return self.connect_failed(conn, "connect", ETIMEDOUT, "Connection timed out")

    cdef int report_connect_error(self, str op, int errnum, str errstr) except -1:
        cdef unsigned long attempt = self.attempt
        if self.connect_error_cb is not None:
            invoke(self.kernel, "the Client's connect_error callback", self.connect_error_cb,
                   self.owner, (op, errnum, errstr))
        else:
            _log.warning("cypoe: Client %s:%s %s error %d: %s", self.remote_address,
                         self.remote_port, op, errnum, errstr)
        if attempt == self.attempt:
            self.end_if_idle()
        return 0

    cdef int conn_ended(self, ComponentConnection conn) except -1:
        cdef unsigned long attempt
        if conn is not self.conn:
            return 0
        self.conn = None
        attempt = self.attempt
        if self.disconnected_cb is not None:
            invoke(self.kernel, "the Client's disconnected callback", self.disconnected_cb,
                   self.owner, ())
        if attempt == self.attempt:
            self.end_if_idle()
        return 0

    def close_conn(self):
        """Close the current connection (or attempt) without reporting it."""
        cdef ClientConnection c = self.conn
        self.conn = None
        if c is not None:
            c.end_now(False)

    cpdef end_if_idle(self):
        """The Client ends when it has no connection, no lookup and no
        pending delay()."""
        if self.ended or self.conn is not None:
            return
        self.timers = [t for t in self.timers if t.active]
        if self.timers:
            return
        self.ended = True
        self.unregister()

    def shutdown(self):
        """Client.shutdown(): flush pending output, disconnect, end."""
        cdef ClientConnection c
        if self.ended:
            return
        self.shutting_down = True
        self.attempt += 1
        for t in self.timers:
            t.cancel()
        self.timers = []
        c = self.conn
        if c is None:
            self.end_if_idle()
            return
        if not c.connected:
            self.close_conn()
            self.end_if_idle()
            return
        c.c_shutdown()


cdef int _family_of(str address) except -1:
    """AF_INET / AF_INET6 for a numeric address, 0 for a name to resolve."""
    cdef Py_ssize_t n
    cdef const char* text
    cdef unsigned char buf[16]
    if address is None:
        return 0
    text = PyUnicode_AsUTF8AndSize(address, &n)
    if n > 63 or strlen(text) != <size_t>n:     # no address is that long, or has a NUL
        return 0
    if inet_pton(c_AF_INET, text, buf) == 1:
        return c_AF_INET
    if inet_pton(c_AF_INET6, text, buf) == 1:
        return c_AF_INET6
    return 0


def family_of(address):
    return _family_of(address)


def call_soon(Kernel kernel, fn, *args):
    """Queue ``fn(*args)`` on ``kernel``'s event queue (loop thread only;
    unlike call_soon_threadsafe it costs no system call)."""
    kernel.call_soon(fn, args)




# put() on a connection: the same METH_FASTCALL method as ReadWrite.put, in
# each class's own dict so that CPython's call specialisation applies.
install_fast_put(Connection)
install_fast_put(Conn)
install_fast_put(ClientConnection)
