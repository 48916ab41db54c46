# cython: language_level=3
"""The connection layer: SocketFactory, ReadWrite and the TLS driver.

ReadWrite joins an fd, a driver (plain C recv/send, or TLS through
``ssl.SSLObject`` and memory BIOs) and the input/output filters.  Reading goes
into the kernel's shared receive buffer and from there straight into a
built-in filter's C face; ``put`` serialises into a per-connection output
buffer that the kernel flushes once at the end of the loop iteration.

SocketFactory creates listening, connecting and UDP sockets without ever
blocking the loop (host names are resolved in a worker thread).
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport (errno, EAGAIN, EINTR, EINPROGRESS, EMFILE,
                         ENFILE, ECONNABORTED, EPROTO, ENOBUFS, ENOMEM, EMSGSIZE,
                         ETIMEDOUT, EALREADY, ECONNRESET, ENETDOWN, EHOSTUNREACH)
from libc.string cimport memset, memcpy, strlen
from posix.unistd cimport close as fd_close, read as c_read, write as c_write

from cypoe._kernel cimport Kernel, Handler, Timer, EV_READ, EV_WRITE
from cypoe._buffer cimport ByteBuffer
from cypoe._filters cimport FilterBase
from cypoe.includes.debug cimport (CP_DBG_INC, CP_DBG_DEC, CP_DBG_READWRITES,
                                   CP_DBG_SOCKETFACTORIES, CP_DBG_LINGERING,
                                   CP_DBG_TLS_STATES, cp_debug_counters)

import errno as _errno
import os
import socket as _socket
import stat as _stat
import threading

from cypoe.errors import BufferOverflow, CypoeError, FilterError
from cypoe._kernel import default_kernel as _default_kernel

from cypoe.includes.socket cimport (
    EWOULDBLOCK, socklen_t, sa_family_t, sockaddr, sockaddr_storage, recv, send, socket,
    connect, bind, accept4, shutdown, getsockopt, setsockopt, getsockname, getpeername,
    c_SOCK_NONBLOCK, c_SOCK_CLOEXEC, c_SOCK_STREAM, c_AF_INET, c_AF_INET6, c_AF_UNIX,
    SOL_SOCKET, SO_ERROR, MSG_NOSIGNAL, SHUT_RD, SHUT_WR, fcntl, F_DUPFD_CLOEXEC,
    in_addr, in6_addr, sockaddr_in, sockaddr_in6, htons, ntohs, ntohl, c_IPPROTO_TCP,
    c_TCP_NODELAY, inet_pton, inet_ntop, sockaddr_un, CP_SUN_PATH_OFFSET,
    cp_discard_input, cp_input_waiting)


# ReadWrite's state bits (F_*), queued event kinds (K_*), read/accept
# limits and SocketFactory modes (SF_*): includes/consts.pxd.
from cypoe.includes.consts cimport *

cdef unsigned long long _next_id = 0


def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()


cdef inline unsigned long long _new_id():
    global _next_id
    _next_id += 1
    return _next_id

cdef object _Line = None
cdef object _ssl = None

cdef object _default_line():
    global _Line
    if _Line is None:
        from cypoe.filters import Line
        _Line = Line
    return _Line()

cdef object _ssl_mod():
    global _ssl
    if _ssl is None:
        import ssl
        _ssl = ssl
    return _ssl


cdef inline str _strerror(int err):
    return os.strerror(err)


cdef object sockaddr_to_py(void* sa, unsigned int salen):
    cdef char buf[64]
    cdef sockaddr_in* sin
    cdef sockaddr_in6* sin6
    cdef sockaddr_un* sun
    cdef Py_ssize_t plen
    cdef int fam = (<sockaddr*>sa).sa_family
    if fam == c_AF_INET:
        sin = <sockaddr_in*>sa
        inet_ntop(c_AF_INET, &sin.sin_addr, buf, 64)
        return (buf.decode("ascii"), ntohs(sin.sin_port))
    if fam == c_AF_INET6:
        sin6 = <sockaddr_in6*>sa
        inet_ntop(c_AF_INET6, &sin6.sin6_addr, buf, 64)
        return (buf.decode("ascii"), ntohs(sin6.sin6_port), ntohl(sin6.sin6_flowinfo),
                sin6.sin6_scope_id)
    if fam == c_AF_UNIX:
        sun = <sockaddr_un*>sa
        if salen <= CP_SUN_PATH_OFFSET:
            return ""
        plen = salen - CP_SUN_PATH_OFFSET
        if sun.sun_path[0] == 0:
            # Linux abstract namespace: bytes, as Python's socket module does.
            return PyBytes_FromStringAndSize(sun.sun_path, plen)
        plen = strlen(sun.sun_path) if strlen(sun.sun_path) < <size_t>plen else plen
        return os.fsdecode(PyBytes_FromStringAndSize(sun.sun_path, plen))
    return None


cdef int _fill_sockaddr(int family, str host, int port, sockaddr_storage* ss,
                        socklen_t* slen) except -1:
    cdef bytes h = host.encode("ascii", "replace")
    cdef sockaddr_in* sin
    cdef sockaddr_in6* sin6
    memset(ss, 0, sizeof(sockaddr_storage))
    if family == c_AF_INET:
        sin = <sockaddr_in*>ss
        sin.sin_family = c_AF_INET
        sin.sin_port = htons(<unsigned short>port)
        if inet_pton(c_AF_INET, h, &sin.sin_addr) != 1:
            raise ValueError(f"host: {host!r} is not a numeric IPv4 address")
        slen[0] = sizeof(sockaddr_in)
    elif family == c_AF_INET6:
        sin6 = <sockaddr_in6*>ss
        sin6.sin6_family = c_AF_INET6
        sin6.sin6_port = htons(<unsigned short>port)
        if inet_pton(c_AF_INET6, h, &sin6.sin6_addr) != 1:
            raise ValueError(f"host: {host!r} is not a numeric IPv6 address")
        slen[0] = sizeof(sockaddr_in6)
    else:
        raise ValueError(f"family: {family} is not AF_INET or AF_INET6")
    return 0


cdef int nb_connect(int family, str host, int port, str bind_host, int bind_port,
                    int* err, const char** op) except -2:
    cdef sockaddr_storage ss, bs
    cdef socklen_t slen = 0, blen = 0
    cdef int fd, one = 1, rc
    if port < 0 or port > 65535:
        raise ValueError(f"port: {port} is out of range")
    _fill_sockaddr(family, host, port, &ss, &slen)
    if bind_host is not None or bind_port:
        _fill_sockaddr(family, bind_host if bind_host is not None
                       else ("0.0.0.0" if family == c_AF_INET else "::"),
                       bind_port, &bs, &blen)
    fd = socket(family, c_SOCK_STREAM | c_SOCK_NONBLOCK | c_SOCK_CLOEXEC, 0)
    if fd < 0:
        err[0] = errno
        op[0] = "socket"
        return -1
    setsockopt(fd, c_IPPROTO_TCP, c_TCP_NODELAY, &one, sizeof(int))
    if blen:
        if bind(fd, <sockaddr*>&bs, blen) < 0:
            err[0] = errno
            op[0] = "bind"
            fd_close(fd)
            return -1
    while True:
        rc = connect(fd, <sockaddr*>&ss, slen)
        if rc == 0 or errno == EINPROGRESS:
            return fd
        if errno != EINTR:
            break
    err[0] = errno
    op[0] = "connect"
    fd_close(fd)
    return -1


def connect_fd(host, port, *, family=_socket.AF_INET, bind_address=None, bind_port=0):
    """Python face of nb_connect (internal, for tests and tools): returns the
    fd of a non-blocking connect in progress, or raises OSError."""
    cdef int err = 0
    cdef const char* op = NULL
    fd = nb_connect(family, host, port, bind_address, bind_port, &err, &op)
    if fd < 0:
        raise OSError(err, f"{op.decode()}: {_strerror(err)}")
    return fd


cdef bint _fd_is_socket(int fd):
    try:
        return _stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


cdef object _fileno_of(object handle, str name):
    if handle is None:
        return None
    if isinstance(handle, int) and not isinstance(handle, bool):
        if handle < 0:
            raise ValueError(f"{name}: fd must be >= 0, not {handle}")
        return handle
    try:
        fd = handle.fileno()
    except AttributeError:
        raise TypeError(f"{name}: expected a socket, a file object or an fd, "
                        f"not {type(handle).__name__}") from None
    if fd < 0:
        raise ValueError(f"{name}: the handle is closed")
    return fd


@cython.final
cdef class _OutSide(Handler):
    """Write-readiness watcher of a separate output handle."""
    cdef ReadWrite rw

    cdef int on_writable(self) except -1:
        if self.rw is not None:
            self.rw._write_now()
        return 0


cdef class _RWExtra:
    pass


@cython.final
cdef class _Callbacks:
    pass


@cython.final
cdef class _TLSState:
    cdef object sslobj
    cdef object inbio
    cdef object outbio
    cdef ByteBuffer raw         # ciphertext waiting for the socket
    cdef Timer timer            # handshake deadline
    cdef bint done              # handshake finished
    cdef bint closing           # close_notify queued

    def __cinit__(self):
        self.raw = ByteBuffer()
        CP_DBG_INC(CP_DBG_TLS_STATES)

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_TLS_STATES)


cdef class TLS:
    """The TLS driver: ``ReadWrite(sock, driver=TLS(context, ...))``.

    ``context`` is an ``ssl.SSLContext``; ``server_side`` selects the role;
    ``server_hostname`` is sent as SNI and checked against the certificate
    (clients); ``handshake_timeout`` is the handshake deadline in seconds.
    """
    cdef readonly object context
    """The ssl.SSLContext."""
    cdef readonly bint server_side
    """True on the accepting side of the connection."""
    cdef readonly object server_hostname
    """The name checked against the certificate and sent for SNI, or None."""
    cdef readonly double handshake_timeout
    """Seconds the handshake may take before it fails with ETIMEDOUT."""

    def __init__(self, context, server_side=False, server_hostname=None, *,
                 handshake_timeout=10.0):
        ssl = _ssl_mod()
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"context: expected an ssl.SSLContext, not "
                            f"{type(context).__name__}")
        if server_hostname is not None and not isinstance(server_hostname, str):
            raise TypeError("server_hostname: expected a str or None")
        try:
            t = float(handshake_timeout)
        except (TypeError, ValueError):
            raise TypeError("handshake_timeout: expected a number") from None
        if not t > 0:
            raise ValueError("handshake_timeout: must be > 0")
        self.context = context
        self.server_side = bool(server_side)
        self.server_hostname = server_hostname
        self.handshake_timeout = t

    def __repr__(self):
        return (f"TLS(server_side={self.server_side}, "
                f"server_hostname={self.server_hostname!r})")


include "_readwrite.pxi"
include "_socketfactory.pxi"
