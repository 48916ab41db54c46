# SocketFactory's C face, for the components (_components): a Cython
# subclass overrides _on_accept to keep each accepted fd.

from cypoe._kernel cimport Kernel, Handler, Timer
from cypoe._lookup cimport NameLookup


cdef class SocketFactory(Handler):
    cdef readonly unsigned long long id
    """A number unique within the process (connection ids of the components too)."""
    cdef Kernel _k
    cdef object _on_success, _on_failure
    cdef object _sock                 # listening / connecting / UDP socket object
    cdef int _domain, _type, _proto
    cdef int _mode                    # SF_LISTEN | SF_CONNECT | SF_UDP
    cdef bint _closed, _paused, _backoff, _reported
    cdef double _backoff_delay
    cdef Timer _timer                 # accept back-off or resolution keep-alive
    cdef object _sockname             # cached getsockname() once the socket is handed out
    cdef object _bind                 # (address, port) for connects, or None
    cdef object _remote_port
    cdef str _bind_host               # a stream connect's numeric local address, or None
    cdef int _bind_port
    cdef int _connect_flags           # NB_* (_sockets.pxd) for a stream connect
    cdef NameLookup _lookup           # the name lookup in flight (a _FactoryLookup), or None
    # Called for each accepted fd (non-blocking, close-on-exec, TCP_NODELAY);
    # the default wraps it in a socket.socket and calls on_success.  A
    # Cython subclass may keep the raw fd (it then owns it).
    cdef int _on_accept(self, int fd, object addr) except -1
    cdef int _fail(self, str op, int err, str text) except -1
    cdef int _accept_backoff(self, int err) except -1
    cdef int _start_connect(self, object sockaddr) except -1
    cdef object _make_socket(self, object reuse, object reuse_port, object bind_address,
                             int bind_port, bint connecting)
    cdef int _drop_socket(self) except -1
    cdef int _connect_to(self, object address, object port) except -1
    cdef bint _bind_numeric(self, object bind_address, int bind_port) except -1
    cdef bint _tcp_connect(self, int family, str numeric) except -1
    cdef int _resolved(self, int family, str numeric, object sockaddr, str errstr) except -1


cdef class _FactoryLookup(NameLookup):
    cdef SocketFactory sf
