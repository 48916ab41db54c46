# cython: language_level=3
"""SocketFactory: listening, connecting and UDP sockets (POE::Wheel::SocketFactory).

Sockets are created without ever blocking the loop: host names are resolved
by the one name-resolution service (``NameLookup``, _lookup.pyx), numeric
addresses at once; a stream connect is ``nb_connect`` (_sockets.pyx), the
connect path of the components too.
"""
cimport cython
from libc.errno cimport (errno, EAGAIN, EINTR, EINPROGRESS, EMFILE, ENFILE, ECONNABORTED,
                         EPROTO, ENOBUFS, ENOMEM, EALREADY, ENETDOWN, EHOSTUNREACH, EINVAL)
from libc.string cimport memset

from cypoe._kernel cimport Kernel, Handler, Timer, EV_READ, EV_WRITE
from cypoe._sockets cimport (new_id, strerror, sockaddr_to_py, fd_sockname, nb_connect_ex,
                             NB_REUSEADDR, NB_REUSEPORT)
from cypoe._lookup cimport NameLookup
from cypoe.includes.debug cimport (CP_DBG_INC, CP_DBG_DEC, CP_DBG_SOCKETFACTORIES,
                                   cp_debug_counters)
from cypoe.includes.socket cimport (
    EWOULDBLOCK, socklen_t, sockaddr, sockaddr_storage, accept4, getsockopt, setsockopt,
    c_SOCK_NONBLOCK, c_SOCK_CLOEXEC, c_SOCK_STREAM, c_AF_UNIX, SOL_SOCKET, SO_ERROR,
    c_IPPROTO_TCP, c_TCP_NODELAY)
from posix.unistd cimport close as fd_close

# SocketFactory modes (SF_*), the accept batch: includes/consts.pxd.
from cypoe.includes.consts cimport *

import os
import socket as _socket

from cypoe.errors import CypoeError
from cypoe._kernel import default_kernel as _default_kernel


def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()


cdef dict _DOMAIN_NAMES = {
    "AF_INET": _socket.AF_INET, "PF_INET": _socket.AF_INET,
    "AF_INET6": _socket.AF_INET6, "PF_INET6": _socket.AF_INET6,
    "AF_UNIX": _socket.AF_UNIX, "PF_UNIX": _socket.AF_UNIX,
}
cdef dict _TYPE_NAMES = {"SOCK_STREAM": _socket.SOCK_STREAM,
                         "SOCK_DGRAM": _socket.SOCK_DGRAM}

# The accept back-off after EMFILE/ENFILE grows from the first to the last
# value while the condition lasts: never a busy loop, and recovery within a
# second once descriptors are free again.
cdef double BACKOFF_FIRST = 0.1
cdef double BACKOFF_MAX = 1.0


cdef bint _truthy(object v):
    # POE's Reuse: "yes", "on" or a true number.
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("yes", "on", "true"):
            return True
        try:
            return float(s) != 0
        except ValueError:
            return False
    return bool(v)


cdef int _port_value(object port, str name, str proto) except -1:
    if isinstance(port, str):
        if port.isdigit():
            port = int(port)
        else:
            try:
                return _socket.getservbyname(port, proto)
            except OSError:
                raise ValueError(f"{name}: unknown service {port!r}") from None
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{name}: expected an int or a service name, not {type(port).__name__}")
    if port < 0 or port > 65535:
        raise ValueError(f"{name}: {port} is out of range 0..65535")
    return port


@cython.final
cdef class _FactoryLookup(NameLookup):
    """The lookup of a SocketFactory's remote address."""

    cdef int resolved(self, int family, str numeric, object sockaddr, int errnum,
                      str errstr) except -1:
        cdef SocketFactory sf = self.sf
        self.sf = None
        sf._lookup = None
        return sf._resolved(family, numeric, sockaddr, errstr)


cdef class SocketFactory(Handler):
    """Non-blocking socket creation (POE::Wheel::SocketFactory).

    Streams without ``remote_address`` listen and accept; with it they
    connect; ``SOCK_DGRAM`` sockets are bound (and connected when a remote
    address is given).  ``on_success(sf, sock, remote_addr, remote_port)``
    receives each accepted / connected / bound socket; every runtime failure
    is ``on_failure(sf, operation, errnum, errstr)``, never an exception.
    """

    def __cinit__(self):
        self.id = new_id()
        self._backoff_delay = BACKOFF_FIRST
        CP_DBG_INC(CP_DBG_SOCKETFACTORIES)

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_SOCKETFACTORIES)

    def __init__(self, *, socket_domain=_socket.AF_INET, socket_type=_socket.SOCK_STREAM,
                 socket_protocol=None, reuse=False, reuse_port=False,
                 bind_address=None, bind_port=0, remote_address=None, remote_port=None,
                 listen_queue=None, on_success, on_failure, kernel=None):
        if self._k is not None:
            raise CypoeError("SocketFactory is already initialised")
        if isinstance(socket_domain, str):
            if socket_domain.upper() not in _DOMAIN_NAMES:
                raise ValueError(f"socket_domain: unsupported domain {socket_domain!r}")
            socket_domain = _DOMAIN_NAMES[socket_domain.upper()]
        if socket_domain not in (_socket.AF_INET, _socket.AF_INET6, _socket.AF_UNIX):
            raise ValueError(f"socket_domain: expected AF_INET, AF_INET6 or AF_UNIX, "
                             f"not {socket_domain!r}")
        if isinstance(socket_type, str):
            if socket_type.upper() not in _TYPE_NAMES:
                raise ValueError(f"socket_type: unsupported type {socket_type!r}")
            socket_type = _TYPE_NAMES[socket_type.upper()]
        if socket_type not in (_socket.SOCK_STREAM, _socket.SOCK_DGRAM):
            raise ValueError(f"socket_type: expected SOCK_STREAM or SOCK_DGRAM, "
                             f"not {socket_type!r}")
        if not callable(on_success):
            raise TypeError(f"on_success: expected a callable, not {type(on_success).__name__}")
        if not callable(on_failure):
            raise TypeError(f"on_failure: expected a callable, not {type(on_failure).__name__}")
        if kernel is None:
            kernel = _default_kernel()
        elif not isinstance(kernel, Kernel):
            raise TypeError(f"kernel: expected a Kernel, not {type(kernel).__name__}")
        proto_name = "udp" if socket_type == _socket.SOCK_DGRAM else "tcp"
        proto = 0
        if socket_domain != _socket.AF_UNIX and socket_protocol is not None:
            if isinstance(socket_protocol, str):
                try:
                    proto = _socket.getprotobyname(socket_protocol)
                except OSError:
                    raise ValueError(f"socket_protocol: unknown protocol "
                                     f"{socket_protocol!r}") from None
            elif isinstance(socket_protocol, int) and not isinstance(socket_protocol, bool):
                proto = socket_protocol
            else:
                raise TypeError("socket_protocol: expected an int or a protocol name")
        unix = socket_domain == _socket.AF_UNIX
        if unix:
            if bind_address is not None and not isinstance(bind_address, (str, bytes, os.PathLike)):
                raise TypeError("bind_address: expected a path for AF_UNIX")
            if remote_address is not None and not isinstance(remote_address, (str, bytes, os.PathLike)):
                raise TypeError("remote_address: expected a path for AF_UNIX")
        else:
            if bind_address is not None and not isinstance(bind_address, str):
                raise TypeError(f"bind_address: expected a str, not {type(bind_address).__name__}")
            if remote_address is not None and not isinstance(remote_address, str):
                raise TypeError(f"remote_address: expected a str, not "
                                f"{type(remote_address).__name__}")
            bind_port = _port_value(bind_port if bind_port is not None else 0, "bind_port",
                                    proto_name)
        if listen_queue is None:
            listen_queue = _socket.SOMAXCONN
        elif isinstance(listen_queue, bool) or not isinstance(listen_queue, int):
            raise TypeError("listen_queue: expected an int")
        elif listen_queue <= 0:
            raise ValueError(f"listen_queue: must be > 0, not {listen_queue}")
        listen_queue = min(listen_queue, _socket.SOMAXCONN)

        self._k = <Kernel>kernel
        self._on_success = on_success
        self._on_failure = on_failure
        self._domain = socket_domain
        self._type = socket_type
        self._proto = proto
        if socket_type == _socket.SOCK_DGRAM:
            self._mode = SF_UDP
        elif remote_address is not None:
            self._mode = SF_CONNECT
        else:
            self._mode = SF_LISTEN

        if not unix and remote_address is not None:
            if remote_port is None:
                raise ValueError("remote_port: required with remote_address for "
                                 "AF_INET/AF_INET6")
            remote_port = _port_value(remote_port, "remote_port", proto_name)
        self._remote_port = remote_port
        if self._mode == SF_LISTEN and unix and bind_address is None:
            raise ValueError("bind_address: a path is required to listen on AF_UNIX")

        # Everything below is runtime: failures go to on_failure.
        if self._mode == SF_CONNECT and not unix and socket_type == _socket.SOCK_STREAM:
            # The socket is nb_connect's (the components' connect path too),
            # made once the remote address is numeric.
            self._connect_flags = ((NB_REUSEADDR if _truthy(reuse) else 0) |
                                   (NB_REUSEPORT if _truthy(reuse_port) else 0))
            if not self._bind_numeric(bind_address, bind_port):
                return
            self._connect_to(remote_address, remote_port)
            return
        s = self._make_socket(reuse, reuse_port, bind_address, bind_port,
                              self._mode == SF_CONNECT)
        if s is None:
            return
        self._sock = s
        if self._mode == SF_LISTEN:
            try:
                s.listen(listen_queue)
            except OSError as exc:
                self._drop_socket()
                self._fail("listen", exc.errno or 0, exc.strerror or str(exc))
                return
            self._k.register(self, s.fileno(), EV_READ)
        elif self._mode == SF_CONNECT or remote_address is not None:
            self._connect_to(remote_address, remote_port)
        else:
            self._k.call_soon(self._hand_over, (None, None))

    cdef object _make_socket(self, reuse, reuse_port, bind_address, int bind_port,
                             bint connecting):
        cdef int fam = self._domain
        try:
            s = _socket.socket(fam, self._type | c_SOCK_NONBLOCK, self._proto)
        except OSError as exc:
            self._fail("socket", exc.errno or 0, exc.strerror or str(exc))
            return None
        try:
            if _truthy(reuse) and fam != _socket.AF_UNIX:
                s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            if _truthy(reuse_port):
                s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEPORT, 1)
            if fam != _socket.AF_UNIX and self._type == _socket.SOCK_STREAM:
                s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        except OSError as exc:
            s.close()
            self._fail("setsockopt", exc.errno or 0, exc.strerror or str(exc))
            return None
        if fam == _socket.AF_UNIX:
            if bind_address is None:
                return s
            addr = bind_address
        else:
            if connecting and bind_address is None and not bind_port:
                return s
            host = bind_address
            if host is None:
                host = "0.0.0.0" if fam == _socket.AF_INET else "::"
            try:
                # Bind addresses are resolved here (POE does the same): a
                # listener's port must be known when the constructor returns.
                addr = _socket.getaddrinfo(host, bind_port, fam, self._type, 0,
                                           _socket.AI_PASSIVE)[0][4]
            except _socket.gaierror as exc:
                s.close()
                self._fail("resolve", EHOSTUNREACH, str(exc))
                return None
        try:
            s.bind(addr)
        except OSError as exc:
            s.close()
            self._fail("bind", exc.errno or 0, exc.strerror or str(exc))
            return None
        return s

    cdef int _drop_socket(self) except -1:
        if self.fd >= 0:
            self._k.unregister(self)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        return 0

    cdef int _fail(self, str op, int err, str text) except -1:
        # Queued: the constructor may not have returned yet, and a callback
        # must never run inside the call that caused it.
        self._k.call_soon(self._deliver_failure, (op, err, text))
        return 0

    def _deliver_failure(self, op, err, text):
        if self._closed or self._on_failure is None:
            return
        try:
            self._on_failure(self, op, err, text)
        except Exception as exc:
            self._k.report_exception("Exception in a SocketFactory on_failure callback",
                                     exc, self)

    # -- listening --------------------------------------------------------

    cdef int on_readable(self) except -1:
        cdef sockaddr_storage ss
        cdef socklen_t sl
        cdef int i, cfd, err, one = 1
        cdef int lfd = self.fd
        cdef bint inet = self._domain != c_AF_UNIX
        if self._mode != SF_LISTEN or self._closed or self._paused or self._backoff:
            return 0
        for i in range(ACCEPT_BATCH):
            sl = sizeof(sockaddr_storage)
            cfd = accept4(lfd, <sockaddr*>&ss, &sl, c_SOCK_NONBLOCK | c_SOCK_CLOEXEC)
            if cfd < 0:
                err = errno
                if err == EINTR or err == ECONNABORTED or err == EPROTO:
                    continue
                if err == EAGAIN or err == EWOULDBLOCK:
                    return 0
                return self._accept_backoff(err)
            self._reported = False
            self._backoff_delay = BACKOFF_FIRST
            if inet:
                setsockopt(cfd, c_IPPROTO_TCP, c_TCP_NODELAY, &one, sizeof(int))
            self._on_accept(cfd, sockaddr_to_py(&ss, sl))
            if self._closed or self._paused or self.fd != lfd:
                return 0
        return 0

    cdef int _on_accept(self, int fd, object addr) except -1:
        try:
            sock = _socket.socket(self._domain, c_SOCK_STREAM | c_SOCK_NONBLOCK,
                                  self._proto, fd)
        except OSError:
            fd_close(fd)
            return 0
        port = addr[1] if isinstance(addr, tuple) else None
        try:
            self._on_success(self, sock, addr, port)
        except Exception as exc:
            self._k.report_exception("Exception in a SocketFactory on_success callback",
                                     exc, self)
        return 0

    cdef int _accept_backoff(self, int err) except -1:
        # EMFILE/ENFILE (or anything unexpected): report once per episode,
        # stop watching, and look again after a pause that grows to a second.
        if not self._reported:
            self._reported = True
            self._fail("accept", err, strerror(err))
        self._backoff = True
        self._k.set_interest(self, 0)
        self._timer = self._k.schedule(self._k.now() + self._backoff_delay,
                                       self._backoff_done, (), None, False)
        self._backoff_delay = min(self._backoff_delay * 2, BACKOFF_MAX)
        return 0

    def _backoff_done(self):
        self._timer = None
        self._backoff = False
        if not self._closed and not self._paused and self.fd >= 0:
            self._k.set_interest(self, EV_READ)

    def pause_accept(self):
        """Stop accepting; connections wait in the listen queue."""
        self._paused = True
        if self._mode == SF_LISTEN and self.fd >= 0:
            self._k.set_interest(self, 0)

    def resume_accept(self):
        """Accept again after ``pause_accept()``."""
        self._paused = False
        if self._mode == SF_LISTEN and self.fd >= 0 and not self._backoff \
                and not self._closed:
            self._k.set_interest(self, EV_READ)

    # -- connecting ------------------------------------------------------------

    cdef bint _bind_numeric(self, object bind_address, int bind_port) except -1:
        # A stream connect's local address, numeric: bind addresses are
        # resolved here (POE does the same; the listener's must be known
        # when the constructor returns).
        self._bind_port = bind_port
        if bind_address is None:
            return True
        try:
            self._bind_host = _socket.getaddrinfo(
                bind_address, bind_port, self._domain, self._type, 0,
                _socket.AI_PASSIVE)[0][4][0]
        except (_socket.gaierror, UnicodeError) as exc:
            self._fail("resolve", EHOSTUNREACH, str(exc))
            return False
        return True

    cdef int _connect_to(self, object address, object port) except -1:
        cdef int fam = self._domain
        cdef _FactoryLookup q
        if fam == c_AF_UNIX:
            return self._start_connect(address)
        if self._type == _socket.SOCK_STREAM:
            if self._tcp_connect(fam, address):
                return 0
        else:
            try:
                res = _socket.getaddrinfo(address, port, fam, self._type, 0,
                                          _socket.AI_NUMERICHOST | _socket.AI_NUMERICSERV)
            except (_socket.gaierror, UnicodeError):
                res = None
            if res:
                return self._start_connect(res[0][4])
        # A host name: the shared name-resolution service looks it up off
        # the loop (and keeps run() alive meanwhile).
        q = _FactoryLookup.__new__(_FactoryLookup)
        q.sf = self
        self._lookup = q
        q.start(self._k, address, port, fam, self._type, True)
        return 0

    cdef bint _tcp_connect(self, int family, str numeric) except -1:
        """nb_connect to a numeric address: True when started (or its
        failure reported), False when ``numeric`` is a name."""
        cdef int err = 0, fd
        cdef const char* op = NULL
        try:
            fd = nb_connect_ex(family, numeric, self._remote_port, self._bind_host,
                               self._bind_port, self._proto, self._connect_flags, &err, &op)
        except ValueError:
            return False
        if fd < 0:
            self._fail((<bytes>op).decode(), err, strerror(err))
            return True
        try:
            self._sock = _socket.socket(family, c_SOCK_STREAM | c_SOCK_NONBLOCK,
                                        self._proto, fd)
        except OSError as exc:
            fd_close(fd)
            self._fail("socket", exc.errno or 0, exc.strerror or str(exc))
            return True
        # Connected or in progress: write readiness says which (on_writable).
        self._bind = None
        self._k.register(self, fd, EV_WRITE)
        return True

    cdef int _resolved(self, int family, str numeric, object sockaddr, str errstr) except -1:
        if self._closed:
            return 0
        if family == 0:
            self._drop_socket()
            self._fail("resolve", EHOSTUNREACH, errstr or "no address")
            return 0
        if self._type == _socket.SOCK_STREAM:
            if not self._tcp_connect(family, numeric):
                self._fail("connect", EINVAL, f"{numeric!r} is not a numeric address")
            return 0
        return self._start_connect(sockaddr)

    cdef int _start_connect(self, object sockaddr) except -1:
        # UDP and AF_UNIX: connect the socket made by _make_socket.
        cdef int err
        s = self._sock
        try:
            err = s.connect_ex(sockaddr)
        except (OSError, TypeError, ValueError) as exc:
            self._drop_socket()
            self._fail("connect", getattr(exc, "errno", None) or 0, str(exc))
            return 0
        self._bind = sockaddr
        if self._type == _socket.SOCK_DGRAM:
            if err:
                self._drop_socket()
                self._fail("connect", err, strerror(err))
            else:
                self._k.call_soon(self._hand_over, (sockaddr, self._remote_port))
            return 0
        if err == 0:
            self._k.call_soon(self._hand_over, (sockaddr, self._remote_port))
        elif err == EINPROGRESS or err == EINTR or err == EALREADY:
            self._k.register(self, s.fileno(), EV_WRITE)
        else:
            self._drop_socket()
            self._fail("connect", err, strerror(err))
        return 0

    cdef int on_writable(self) except -1:
        cdef int err
        if self._mode != SF_CONNECT or self._closed or self._sock is None:
            return 0
        err = self._sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
        if err == EINPROGRESS or err == EALREADY:
            return 0
        self._k.unregister(self)
        if err:
            self._drop_socket()
            self._fail("connect", err, strerror(err))
            return 0
        if self._bind is None:
            # nb_connect's socket: the peer's sockaddr as the socket module
            # gives it (what getaddrinfo gave before).
            self._bind = fd_sockname(self._sock.fileno(), True)
        self._hand_over(self._bind, self._remote_port)
        return 0

    def _hand_over(self, addr, port):
        # The socket now belongs to on_success's receiver.
        if self._closed or self._sock is None:
            return
        s = self._sock
        self._sock = None
        if self.fd >= 0:
            self._k.unregister(self)
        try:
            self._sockname = s.getsockname()
        except OSError:
            self._sockname = None
        if self._domain == c_AF_UNIX:
            port = None
        elif isinstance(addr, tuple):
            port = addr[1]
        try:
            self._on_success(self, s, addr, port)
        except Exception as exc:
            self._k.report_exception("Exception in a SocketFactory on_success callback",
                                     exc, self)

    # -- common ----------------------------------------------------------------

    def getsockname(self):
        """The local sockaddr of the factory's socket (None after a failure)."""
        if self._sock is not None:
            try:
                return self._sock.getsockname()
            except OSError:
                return None
        return self._sockname

    @property
    def socket(self):
        """The listening socket (None for connects once handed out)."""
        return self._sock

    @property
    def paused(self):
        """True while accepting is paused (pause_accept())."""
        return self._paused

    @property
    def closed(self):
        """True once the SocketFactory is closed."""
        return self._closed

    def close(self):
        """Stop listening / connecting and close the factory's own socket
        (sockets already handed to on_success are not touched)."""
        if self._closed:
            return
        self._closed = True
        if self._lookup is not None:
            self._lookup.cancel()
            (<_FactoryLookup>self._lookup).sf = None
            self._lookup = None
        if self._timer is not None:
            self._k.cancel_timer(self._timer)
            self._timer = None
        self._drop_socket()
        self._on_success = self._on_failure = None

    def __repr__(self):
        return f"<SocketFactory id={self.id} fd={self.fd}{' closed' if self._closed else ''}>"
