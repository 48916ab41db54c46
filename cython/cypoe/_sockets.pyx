# cython: language_level=3
"""Socket helpers of the connection layer: a numeric non-blocking connect
(``nb_connect``), sockaddr conversion, handle checks and the process-wide
connection ids.  No name lookup happens here, ever."""
from libc.errno cimport errno, EINTR, EINPROGRESS
from libc.string cimport memset, strlen
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from posix.unistd cimport close as fd_close

from cypoe.includes.socket cimport (
    socklen_t, sockaddr, sockaddr_storage, socket, connect, bind, setsockopt,
    getsockname, getpeername, SOL_SOCKET, SO_REUSEADDR, SO_REUSEPORT, c_SOCK_NONBLOCK, c_SOCK_CLOEXEC, c_SOCK_STREAM,
    c_AF_INET, c_AF_INET6, c_AF_UNIX, sockaddr_in, sockaddr_in6, htons, ntohs, ntohl,
    c_IPPROTO_TCP, c_TCP_NODELAY, inet_pton, inet_ntop, sockaddr_un, CP_SUN_PATH_OFFSET)

import os
import socket as _socket
import stat as _stat

cdef unsigned long long _last_id = 0


cdef unsigned long long new_id() noexcept:
    global _last_id
    _last_id += 1
    return _last_id


cdef str strerror(int err):
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
    # The str's own UTF-8 (cached by CPython): no bytes object per connect.
    # A non-numeric host (non-ASCII, an embedded NUL) fails inet_pton.
    cdef Py_ssize_t hlen = 0
    cdef const char* h = PyUnicode_AsUTF8AndSize(host, &hlen)
    cdef sockaddr_in* sin
    cdef sockaddr_in6* sin6
    memset(ss, 0, sizeof(sockaddr_storage))
    if family == c_AF_INET:
        sin = <sockaddr_in*>ss
        sin.sin_family = c_AF_INET
        sin.sin_port = htons(<unsigned short>port)
        if <Py_ssize_t>strlen(h) != hlen or inet_pton(c_AF_INET, h, &sin.sin_addr) != 1:
            raise ValueError(f"host: {host!r} is not a numeric IPv4 address")
        slen[0] = sizeof(sockaddr_in)
    elif family == c_AF_INET6:
        sin6 = <sockaddr_in6*>ss
        sin6.sin6_family = c_AF_INET6
        sin6.sin6_port = htons(<unsigned short>port)
        if <Py_ssize_t>strlen(h) != hlen or inet_pton(c_AF_INET6, h, &sin6.sin6_addr) != 1:
            raise ValueError(f"host: {host!r} is not a numeric IPv6 address")
        slen[0] = sizeof(sockaddr_in6)
    else:
        raise ValueError(f"family: {family} is not AF_INET or AF_INET6")
    return 0


cdef int nb_connect(int family, str host, int port, str bind_host, int bind_port,
                    int* err, const char** op) except -2:
    return nb_connect_ex(family, host, port, bind_host, bind_port, 0, 0, err, op)


cdef int nb_connect_ex(int family, str host, int port, str bind_host, int bind_port,
                       int proto, int flags, int* err, const char** op) except -2:
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
    fd = socket(family, c_SOCK_STREAM | c_SOCK_NONBLOCK | c_SOCK_CLOEXEC, proto)
    if fd < 0:
        err[0] = errno
        op[0] = "socket"
        return -1
    if ((flags & NB_REUSEADDR and
         setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(int)) < 0) or
            (flags & NB_REUSEPORT and
             setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(int)) < 0)):
        err[0] = errno
        op[0] = "setsockopt"
        fd_close(fd)
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
        raise OSError(err, f"{op.decode()}: {strerror(err)}")
    return fd


cdef bint fd_is_socket(int fd):
    try:
        return _stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


cdef object fileno_of(object handle, str name):
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


cdef object fd_sockname(int fd, bint peer):
    cdef sockaddr_storage ss
    cdef socklen_t sl = sizeof(sockaddr_storage)
    cdef int rc
    if fd < 0:
        return None
    memset(&ss, 0, sizeof(ss))
    if peer:
        rc = getpeername(fd, <sockaddr*>&ss, &sl)
    else:
        rc = getsockname(fd, <sockaddr*>&ss, &sl)
    if rc < 0:
        return None
    return sockaddr_to_py(&ss, sl)
