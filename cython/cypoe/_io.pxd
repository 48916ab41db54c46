# The connection layer's C face, for the components (Server, Client, TCPMulti).
#
# ReadWrite is a kernel Handler that joins an fd, a driver (plain or TLS) and
# the input/output filters.  A component may subclass it in Cython and
# override the _on_* hooks to receive events without Python callbacks:
#
#   cdef class Conn(ReadWrite):
#       cdef int _on_input(self, object record) except -1: ...
#
#   conn = Conn.__new__(Conn)            # no __init__: no Python socket, no dict
#   fd = nb_connect(AF_INET, "10.0.0.1", 80, None, 0, &err, &op)
#   conn.setup(kernel, fd, Line(), None, True)   # True: connect in progress
#
# Hook contract: every _on_* hook is called from the loop, never re-entrantly
# for the same object (events caused inside a hook are queued), and an
# exception escaping a hook is reported (kernel.report_exception) and closes
# the connection.  After close() no hook is called again.

from cypoe._kernel cimport Kernel, Handler, Timer
from cypoe._buffer cimport ByteBuffer
from cypoe._filters cimport FilterBase


# Non-blocking TCP connect to a numeric address (no name lookup, ever):
# socket(SOCK_NONBLOCK|SOCK_CLOEXEC) + TCP_NODELAY + optional bind + connect.
# Returns the fd (connect in progress or done: hand it to
# ReadWrite.setup(..., connecting=True)), or -1 with err[0] = errno and
# op[0] = "socket" | "bind" | "connect".  A host that is not a numeric
# address of `family` raises ValueError.
cdef int nb_connect(int family, str host, int port, str bind_host, int bind_port,
                    int* err, const char** op) except -2

# sockaddr (as accept()/getsockname() fill it) -> Python's sockaddr value.
cdef object sockaddr_to_py(void* sa, unsigned int salen)

# Give a Cython subclass of ReadWrite its own copy of the METH_FASTCALL put
# (same behaviour): CPython specialises a method-descriptor call only when
# the instance's type is exactly the descriptor's, so an inherited put
# takes the generic call path (about 90 instructions more per call).
cdef int install_fast_put(type t) except -1


cdef class _RWExtra:
    # State that most connections never need, kept out of ReadWrite itself.
    cdef object tls                   # _TLSState or None
    cdef Handler wside                # separate output handle's watcher, or None
    cdef object wsock                 # its socket object, or None
    cdef unsigned long long dropped   # octets of output dropped (write error, close)
    cdef object on_handshake          # Python callback(rw) after the TLS handshake


cdef class _Callbacks:
    # The Python callbacks of a ReadWrite made by its constructor.  The
    # components' connections dispatch through their hooks and have none:
    # one pointer per connection instead of five.
    cdef object input, error, flushed, high, low


cdef class ReadWrite(Handler):
    cdef readonly unsigned long long id
    """A number unique within the process (connection ids of the components too)."""
    cdef object _in_f                 # input filter (any Filter)
    cdef object _out_f                # output filter
    cdef FilterBase _cin              # _in_f when it is a built-in filter, else None
    cdef FilterBase _cout             # _out_f when it is a built-in filter, else None
    cdef ByteBuffer _obuf             # pending output; allocated lazily, memory released when drained
    cdef object _sock                 # socket object owning the fd, or None (we own the fd)
    cdef _Callbacks _cbs              # None for the components' connections
    cdef _RWExtra _x                  # rarely used state, or None
    cdef Py_ssize_t _high, _low       # watermarks (valid when F_MARKS)
    cdef Py_ssize_t _out_msgs         # records put since the buffer was last empty
    cdef unsigned int _flags          # F_* in _io.pyx

    # C construction: take ownership of `fd` (non-blocking), register with
    # `k`.  Filters: any Filter objects (None -> Line() for input, the input
    # filter for output).  connecting=True: a non-blocking connect is in
    # progress; completion calls _on_connected(), failure
    # _on_error("connect", errno, text).
    cdef int setup(self, Kernel k, int fd, object in_filter, object out_filter,
                   bint connecting) except -1
    # TLS on top of the fd (handshake starts at once; deadline in seconds).
    cdef int start_tls(self, object context, bint server_side, object server_hostname,
                       double timeout) except -1
    # Watermarks (0, 0 disables); ValueError unless 0 < low < high.
    cdef int set_marks(self, Py_ssize_t high, Py_ssize_t low) except -1

    # Event hooks: defaults call the Python callbacks given to __init__.
    cdef int _on_input(self, object record) except -1
    cdef int _on_error(self, str op, int errnum, str errstr) except -1
    cdef int _on_flushed(self) except -1
    cdef int _on_high(self) except -1
    cdef int _on_low(self) except -1
    cdef int _on_connected(self) except -1
    cdef int _on_handshake(self) except -1
    # Bytes arrived from the peer (once per wakeup that read any, before
    # they are filtered; TLS records count before decryption).
    cdef int _on_bytes(self) except -1

    # Operations (the Python methods are thin wrappers over these).
    cdef int c_put(self, tuple records) except -1      # 1 while pending >= high_mark
    cdef int c_put1(self, object record) except -1
    cdef int c_flush(self) except -1
    cdef int c_close(self) except -1
    cdef int c_pause_input(self) except -1
    cdef int c_close_lingering(self, double seconds) except -1
    cdef int c_resume_input(self) except -1
    cdef int c_shutdown_input(self) except -1
    cdef int c_shutdown_output(self) except -1
    cdef int c_set_input_filter(self, object f) except -1
    cdef int c_set_output_filter(self, object f) except -1
    cdef Py_ssize_t pending_out(self) noexcept
    cdef bint is_closed(self) noexcept

    # Internals.
    cdef int _update_interest(self) except -1
    cdef int _after_put(self, unsigned int f) except -1
    cdef int _feed(self, const char* data, Py_ssize_t n) except -1
    cdef int _feed_c(self, FilterBase f, const char* data, Py_ssize_t n) except -1
    cdef int _feed_py(self, object f, object chunks) except -1
    cdef int _feed_any(self, object pending) except -1
    cdef int _switched(self, object old, object p0, const char* data, Py_ssize_t n,
                       Py_ssize_t done) except -1
    cdef int _dispatch_input(self, object record) except -1
    cdef int _emit(self, int kind, str op, int errnum, str errstr) except -1
    cdef int _user_exception(self, object exc) except -1
    cdef int _eof(self) except -1
    cdef int _hard_error(self, str op, int err, str text) except -1
    cdef int _write_now(self) except -1
    cdef int _after_write(self, bint wrote) except -1
    cdef int _finish_connect(self) except -1
    cdef int _tls_readable(self) except -1
    cdef int _tls_handshake(self) except -1
    cdef int _tls_pump(self) except -1
    cdef ByteBuffer _out_buffer(self)
    cdef int _wfd(self) noexcept


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
