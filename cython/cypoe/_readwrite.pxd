# ReadWrite's C face, and the driver interface, for the modules above it
# (_tls, _components).
#
# ReadWrite is a kernel Handler that joins an fd, a driver and the
# input/output filters.  The driver moves the bytes: the plain driver
# recv()s and send()s on the fd (one stateless object that every plain
# connection shares); the TLS driver (_tls.pyx) runs ssl.SSLObject over
# memory BIOs.  ReadWrite itself knows nothing of TLS.
#
# A component may subclass ReadWrite in Cython and override the _on_*
# hooks to receive events without Python callbacks:
#
#   cdef class Conn(ReadWrite):
#       cdef int _on_input(self, object record) except -1: ...
#
#   conn = Conn.__new__(Conn)            # no __init__: no Python socket, no dict
#   fd = nb_connect(AF_INET, "10.0.0.1", 80, None, 0, &err, &op)   # _sockets.pxd
#   conn.setup(kernel, fd, Line(), None, True)   # True: connect in progress
#
# Hook contract: every _on_* hook is called from the loop, never re-entrantly
# for the same object (events caused inside a hook are queued), and an
# exception escaping a hook is reported (kernel.report_exception) and closes
# the connection.  After close() no hook is called again.

from cypoe._kernel cimport Kernel, Handler, Timer
from cypoe._buffer cimport ByteBuffer
from cypoe._filters cimport FilterBase


cdef class Driver:
    # How a ReadWrite moves bytes on its fd.  ReadWrite calls these; a
    # driver calls back into ReadWrite's C face (_feed, _on_bytes, _eof,
    # _hard_error, _emit, _write_now, _update_interest) and sets two flags
    # on it: F_HANDSHAKING while a handshake runs and F_DRIVER when the
    # driver has state of its own (only then are pending, drop_pending,
    # failed and close called).
    #
    # The driver takes charge of `rw` (called once, from ReadWrite.set_driver).
    cdef int attach(self, ReadWrite rw) except -1
    # The fd is readable (or a handshake wants input while input is paused):
    # read, and hand the application's bytes to rw._feed.
    cdef int on_readable(self, ReadWrite rw) except -1
    # Write what the fd takes of the application's output `out` (may be
    # None) and of the driver's own bytes: 1 if anything was written, 0 if
    # not, -1 after a hard error (already reported).
    cdef int send(self, ReadWrite rw, ByteBuffer out) except -2
    # The non-blocking connect completed (after rw's connected event).
    cdef int on_connected(self, ReadWrite rw) except -1
    # The application's output is written and shutdown_output() was asked:
    # 1 when the driver queued bytes of its own to send before the write
    # side is shut (TLS close_notify), else 0.
    cdef int shutdown_output(self, ReadWrite rw) except -1
    # Octets the driver holds for the fd (F_DRIVER).
    cdef Py_ssize_t pending(self) noexcept
    # Drop them (a write error or close drops output) (F_DRIVER).
    cdef int drop_pending(self) except -1
    # 1 when the driver holds input it has read from the fd but not yet
    # handed to rw._feed (input was paused): resume_input() then calls
    # on_readable without waiting for the fd (F_DRIVER).
    cdef int input_pending(self) except -1
    # A hard error on rw (F_DRIVER): returns the operation to report it as.
    cdef str failed(self, ReadWrite rw, str op)
    # rw closes (F_DRIVER).
    cdef int close(self, ReadWrite rw) except -1
    # The ssl.SSLObject of a TLS driver, else None (ReadWrite.tls_object).
    cdef object tls_object(self)


cdef class _RWExtra:
    # State that most connections never need, kept out of ReadWrite itself.
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
    cdef Driver _drv                  # never None: the shared plain driver, or a TLS driver
    cdef Py_ssize_t _high, _low       # watermarks (valid when F_MARKS)
    # Records put since the buffer was last empty; 32 bits beside _flags
    # keep a component's connection within its allocation class.
    cdef unsigned int _out_msgs
    cdef unsigned int _flags          # F_* in includes/consts.pxd

    # C construction: take ownership of `fd` (non-blocking), register with
    # `k`.  Filters: any Filter objects (None -> Line() for input, the input
    # filter for output).  connecting=True: a non-blocking connect is in
    # progress; completion calls _on_connected(), failure
    # _on_error("connect", errno, text).
    cdef int setup(self, Kernel k, int fd, object in_filter, object out_filter,
                   bint connecting) except -1
    # TLS on top of the fd (handshake starts at once; deadline in seconds):
    # set_driver with a TLS driver (_tls.pyx).
    cdef int start_tls(self, object context, bint server_side, object server_hostname,
                       double timeout) except -1
    # Replace the plain driver (once, after setup).
    cdef int set_driver(self, Driver d) except -1
    # Watermarks (0, 0 disables); ValueError unless 0 < low < high.
    cdef int set_marks(self, Py_ssize_t high, Py_ssize_t low) except -1

    # Event hooks: defaults call the Python callbacks given to __init__.
    cdef int _on_input(self, object record) except -1
    cdef int _on_error(self, str op, int errnum, str errstr) except -1
    cdef int _on_flushed(self) except -1
    # True when _on_flushed would do something now (a flushed callback, a
    # shutdown waiting for the flush): the flushed event is skipped
    # otherwise.  A subclass overriding _on_flushed overrides this too.
    cdef bint _wants_flushed(self) except -1
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

    # Internals (the drivers call the first group).
    cdef int _feed(self, const char* data, Py_ssize_t n) except -1
    cdef int _eof(self) except -1
    cdef int _hard_error(self, str op, int err, str text) except -1
    cdef int _emit(self, int kind, str op, int errnum, str errstr) except -1
    cdef int _write_now(self) except -1
    cdef int _update_interest(self) except -1
    cdef int _wfd(self) noexcept

    cdef int _after_put(self, unsigned int f) except -1
    cdef int _feed_c(self, FilterBase f, const char* data, Py_ssize_t n) except -1
    cdef int _feed_py(self, object f, object chunks) except -1
    cdef int _feed_any(self, object pending) except -1
    cdef int _switched(self, object old, object p0, const char* data, Py_ssize_t n,
                       Py_ssize_t done) except -1
    cdef int _dispatch_input(self, object record) except -1
    cdef int _user_exception(self, object exc) except -1
    cdef int _after_write(self, bint wrote) except -1
    cdef int _finish_connect(self) except -1


# Give a Cython subclass of ReadWrite its own copy of the METH_FASTCALL put
# (same behaviour): CPython specialises a method-descriptor call only when
# the instance's type is exactly the descriptor's, so an inherited put
# takes the generic call path (about 90 instructions more per call).
cdef int install_fast_put(type t) except -1

# Write what the output side takes now from `buf` (send, or write() when
# it is not a socket), consuming it.  1 if anything was written, 0 if not,
# -1 after a write error (reported: rw._hard_error).  The plain driver's
# send, and the TLS driver's once it has encrypted.
cdef int send_buffer(ReadWrite rw, ByteBuffer buf) except -2
