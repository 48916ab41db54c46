# The compiled half of the components: one small object per connection, a
# ReadWrite subclass whose hooks call the user's callbacks directly, and a
# per-component core that holds what every connection shares (callbacks,
# filters, the deadline sweep).

from cypoe._kernel cimport Kernel, Handler, Timer
from cypoe._readwrite cimport ReadWrite
from cypoe._socketfactory cimport SocketFactory


cdef class _Core:
    cdef Kernel kernel
    cdef readonly dict conns          # id -> _Link, every live connection
    cdef Timer _sweep_timer
    cdef double _sweep_interval       # 0 while no timeout is in use
    cdef object owner                 # the Python component (Server, Client, TCPMulti)
    cdef int arm(self, _Link link, double seconds) except -1
    cdef int attach(self, _Link link, int fd, object in_proto, object out_proto,
                    bint connecting) except -1
    cdef int _schedule_sweep(self) except -1
    cdef int _expired(self, _Link link) except -1
    cdef int link_ended(self, _Link link) except -1


cdef class _Link(ReadWrite):
    cdef _Core core
    cdef double deadline              # 0: no timeout pending
    cdef double timeout_s             # length of the current timeout, 0: none
    cdef dict _heap                   # created on first use
    cdef list _timers                 # delay() timers, created on first use
    cdef unsigned int state           # S_* in _components.pyx
    cdef object _proto_in             # filter to clone at the first input, or None
    cdef int _call_user(self, object fn, tuple args) except -1
    cdef int _end(self, bint notify) except -1
    cdef int _graceful(self) except -1
    cdef int _cancel_timers(self) except -1
    cdef int _own_filter(self) except -1


cdef class Connection(_Link):
    cdef readonly object remote_ip
    """The client's address (a str; ``"LOCAL"`` on a Unix socket)."""
    cdef readonly object remote_port
    """The client's port (an int; None for a Unix socket)."""
    cdef readonly object remote_addr
    """The client's address as the socket module gives it (a tuple, or a path)."""


cdef class Conn(_Link):
    cdef readonly object addr
    """The address connected to (a numeric str once resolved)."""
    cdef int _port
    # Per-connection timeouts in whole milliseconds (rounded up): 4 bytes
    # each keeps the object in a smaller allocation class, and 15,000 of
    # them are the point of TCPMulti.
    cdef unsigned int _connect_ms
    cdef unsigned int _input_ms
    cdef int _success(self) except -1


cdef class ClientLink(_Link):
    cdef object peer_addr
    cdef object peer_port
