# The compiled half of the components: one ComponentConnection (a ReadWrite
# subclass whose hooks call the user's callbacks directly) per connection,
# and one ComponentCore per component holding what every connection shares
# (callbacks, filters, the deadline sweep) and the component's state
# machine.  The cores' hooks below are the only way a connection talks to
# its component: no connection path calls a Python method of a component.

from cypoe._kernel cimport Kernel, Handler, Timer, Session
from cypoe._readwrite cimport ReadWrite
from cypoe._socketfactory cimport SocketFactory


cdef class ComponentCore:
    cdef Kernel kernel
    cdef readonly dict conns          # id -> ComponentConnection, every live connection
    cdef Timer _sweep_timer
    cdef double _sweep_interval       # 0 while no timeout is in use
    cdef readonly object owner        # the public face (Server, Client, TCPMulti)
    cdef public object states         # the states= dict of named events, or None
    cdef public object alias          # the component's alias, or None
    cdef public object hook           # registered with the kernel (signal shutdown)
    cdef public bint ended            # the component has ended (reported once)
    cdef public object in_filter      # filter specs of the connections (checked)
    cdef public object out_filter
    cdef int arm(self, ComponentConnection conn, double seconds) except -1
    cdef int attach(self, ComponentConnection conn, int fd, object in_proto, object out_proto,
                    bint connecting) except -1
    cdef int _schedule_sweep(self) except -1
    cdef int unregister(self) except -1
    # Hooks of the connections (typed: no Python method call):
    # a connection's deadline passed,
    cdef int timed_out(self, ComponentConnection conn) except -1
    # its terminal callback is due (it has ended),
    cdef int conn_ended(self, ComponentConnection conn) except -1
    # its TCP connect completed (before TLS),
    cdef int tcp_connected(self, ComponentConnection conn) except -1
    # it is connected (after TLS, if any),
    cdef int conn_ready(self, ComponentConnection conn) except -1
    # its connect (name lookup, socket, TCP or TLS) failed,
    cdef int connect_failed(self, ComponentConnection conn, str op, int errnum,
                            str errstr) except -1
    # the name lookup it waited for is done (family 0: failed).
    cdef int resolved(self, ComponentConnection conn, int family, str numeric, int errnum,
                      str errstr, object bind_host, object bind_port) except -1
    # The one connect path: a socket connecting to a numeric address for
    # ``conn`` (or connect_failed, queued).
    cdef int open_connection(self, ComponentConnection conn, int family, str numeric,
                             object port, object bind_host, object bind_port) except -1


cdef class ComponentConnection(ReadWrite):
    # 15,000 of these are the point of TCPMulti: the fields are ordered so
    # that a Conn fits a 240-byte allocation (224 + the GC header).
    cdef ComponentCore core
    cdef double deadline              # 0: no timeout pending
    cdef dict _heap                   # the user's dict, created on first use
    cdef list _timers                 # delay() timers, created on first use
    cdef object _proto_in             # filter to clone at the first input, or None
    cdef unsigned int timeout_ms      # length of the current timeout (ms, rounded up), 0: none
    cdef unsigned int state           # S_* in includes/consts.pxd
    cdef int _call_user(self, object fn, tuple args) except -1
    cdef int end_now(self, bint report) except -1
    cdef int c_shutdown(self) except -1
    cdef int _cancel_timers(self) except -1
    cdef int _own_filter(self) except -1


cdef class Connection(ComponentConnection):
    cdef readonly object remote_ip
    """The client's address (a str; ``"LOCAL"`` on a Unix socket)."""
    cdef readonly object remote_port
    """The client's port (an int; None for a Unix socket)."""
    cdef readonly object remote_addr
    """The client's address as the socket module gives it (a tuple, or a path)."""


cdef class Conn(ComponentConnection):
    cdef readonly object addr
    """The address given to connect(): a numeric address, or the host name
    that was looked up (it stays the name)."""
    cdef int _port
    # The input timeout in whole milliseconds (rounded up); the connect
    # timeout is the current timeout (timeout_ms) while connecting.
    cdef unsigned int _input_ms


cdef class ClientConnection(ComponentConnection):
    pass
