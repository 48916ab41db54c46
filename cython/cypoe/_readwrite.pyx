# cython: language_level=3
"""ReadWrite: buffered, filtered I/O on one connection, and its drivers.

ReadWrite joins an fd, a driver and the input/output filters.  The driver
moves the bytes: ``PlainDriver`` (one stateless object that every plain
connection shares) recv()s into the kernel's shared receive buffer and
send()s from the connection's output buffer; the TLS driver (``_tls.pyx``)
runs ``ssl.SSLObject`` over memory BIOs.  Received bytes go straight into a
built-in filter's C face; ``put`` serialises into a per-connection output
buffer that the kernel flushes once at the end of the loop iteration.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport errno, EAGAIN, EINTR, EINPROGRESS, EMSGSIZE, EALREADY
from posix.unistd cimport close as fd_close, read as c_read, write as c_write

from cypoe._kernel cimport Kernel, Handler, Timer, EV_READ, EV_WRITE
from cypoe._buffer cimport ByteBuffer
from cypoe._filters cimport FilterBase
from cypoe._sockets cimport new_id, strerror, fd_sockname, fileno_of, fd_is_socket
from cypoe._linger cimport linger
from cypoe._checks cimport check_filter, filter_instance, mark_value, check_marks
from cypoe.includes.debug cimport (CP_DBG_INC, CP_DBG_DEC, CP_DBG_READWRITES,
                                   cp_debug_counters)
from cypoe.includes.socket cimport (
    EWOULDBLOCK, socklen_t, recv, send, shutdown, getsockopt, SOL_SOCKET, SO_ERROR,
    MSG_NOSIGNAL, SHUT_RD, SHUT_WR, fcntl, F_DUPFD_CLOEXEC, cp_discard_input,
    cp_input_waiting)
from cypoe.includes.fastput cimport cp_rw_put1_impl, cp_rw_putn_impl, cp_install_put
from cypoe.includes.lists cimport cp_list_clear_keep

# ReadWrite's state bits (F_*), queued event kinds (K_*) and read limits:
# includes/consts.pxd.
from cypoe.includes.consts cimport *

import os
import socket as _socket

from cypoe.errors import BufferOverflow, CypoeError, FilterError
from cypoe._kernel import default_kernel as _default_kernel


def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()


cdef object _Line = None
cdef object _tls_mod = None

cdef object _default_line():
    global _Line
    if _Line is None:
        from cypoe.filters import Line
        _Line = Line
    return _Line()

cdef object _tls():
    # The TLS driver's module, imported on first use: it cimports this one.
    global _tls_mod
    if _tls_mod is None:
        from cypoe import _tls as m
        _tls_mod = m
    return _tls_mod


# ----------------------------------------------------------------------
# Drivers

cdef class Driver:
    """How a ReadWrite moves bytes on its fd (the interface: _readwrite.pxd).
    The base class is abstract; PlainDriver and the TLS driver implement it."""

    cdef int attach(self, ReadWrite rw) except -1:
        return 0

    cdef int on_readable(self, ReadWrite rw) except -1:
        raise NotImplementedError

    cdef int send(self, ReadWrite rw, ByteBuffer out) except -2:
        raise NotImplementedError

    cdef int on_connected(self, ReadWrite rw) except -1:
        return 0

    cdef int shutdown_output(self, ReadWrite rw) except -1:
        return 0

    cdef Py_ssize_t pending(self) noexcept:
        return 0

    cdef int drop_pending(self) except -1:
        return 0

    cdef int input_pending(self) except -1:
        return 0

    cdef str failed(self, ReadWrite rw, str op):
        return op

    cdef int close(self, ReadWrite rw) except -1:
        return 0

    cdef object tls_object(self):
        return None


@cython.final
cdef class PlainDriver(Driver):
    """recv/send (read/write on pipes and files) straight on the fd.  It has
    no state: one object serves every plain connection."""

    cdef int on_readable(self, ReadWrite rw) except -1:
        cdef Kernel k = rw.kernel
        cdef ssize_t n
        cdef int reads = 0, err
        cdef int fd = rw.fd
        cdef bint notsock = (rw._flags & F_NOTSOCK) != 0
        while True:
            if notsock:
                n = c_read(fd, k.rbuf, k.rbuf_size)
            else:
                n = recv(fd, k.rbuf, k.rbuf_size, 0)
            if n > 0:
                if reads == 0:
                    rw._on_bytes()
                rw._feed(k.rbuf, n)
                if rw._flags & (F_CLOSED | F_EOF | F_PAUSED):
                    return 0
                reads += 1
                # A short read drained the socket: skip the EAGAIN round trip.
                if n < k.rbuf_size or reads >= MAX_READS:
                    return 0
                continue
            if n == 0:
                return rw._eof()
            err = errno
            if err == EINTR:
                continue
            if err == EAGAIN or err == EWOULDBLOCK:
                return 0
            return rw._hard_error("read", err, strerror(err))

    cdef int send(self, ReadWrite rw, ByteBuffer out) except -2:
        return send_buffer(rw, out)

    cdef int on_connected(self, ReadWrite rw) except -1:
        if rw.pending_out() > 0 or (rw._flags & F_SHUT_OUT):
            rw._write_now()
        return 0

    def __repr__(self):
        return "<PlainDriver>"


cdef Driver _PLAIN = PlainDriver()


def plain_driver():
    """The plain driver that every plain connection shares (for tests)."""
    return _PLAIN


cdef int send_buffer(ReadWrite rw, ByteBuffer buf) except -2:
    cdef ssize_t n
    cdef Py_ssize_t length
    cdef int fd, err
    cdef bint wrote = False
    cdef bint notsock = (rw._flags & F_WNOTSOCK) != 0
    if buf is None:
        return 0
    fd = rw._wfd()
    while buf.length() > 0:
        length = buf.length()
        if notsock:
            n = c_write(fd, buf.head(), length)
        else:
            n = send(fd, buf.head(), length, MSG_NOSIGNAL)
        if n >= 0:
            buf.consume(n)
            wrote = True
            if n < length:
                break
            continue
        err = errno
        if err == EINTR:
            continue
        if err == EAGAIN or err == EWOULDBLOCK:
            break
        rw._hard_error("write", err, strerror(err))
        return -1
    return wrote


# ----------------------------------------------------------------------
# ReadWrite

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


# no_gc_clear: __dealloc__ needs _sock to tell whether the fd is its own.
@cython.no_gc_clear
cdef class ReadWrite(Handler):
    """Buffered, filtered I/O on a non-blocking handle (POE::Wheel::ReadWrite).

    See the ReadWrite page of the documentation (docs/readwrite.rst).
    Callbacks receive the ReadWrite first.  An exception raised by a
    callback is reported through the kernel's exception handler (logger
    ``cypoe`` by default) and closes this ReadWrite; the loop and every
    other connection go on.  A ReadWrite owns its handle: ``close()``
    closes it.
    """

    def __cinit__(self):
        self.id = new_id()
        self._drv = _PLAIN
        self._flags = 0
        self._high = 0
        self._low = 0
        self._out_msgs = 0
        CP_DBG_INC(CP_DBG_READWRITES)

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_READWRITES)
        # Collected while it still has its fd (its kernel was dropped, not
        # shut down, and collected with it): close the fd it owns.  A
        # socket object holding the fd closes it itself.
        if self.fd >= 0 and self._sock is None and not (self._flags & F_CLOSED):
            fd_close(self.fd)

    def __init__(self, handle=None, *, input_handle=None, output_handle=None,
                 driver=None, filter=None, input_filter=None, output_filter=None,
                 on_input, on_error=None, on_flushed=None,
                 high_mark=None, low_mark=None, on_high=None, on_low=None,
                 kernel=None, on_handshake=None):
        cdef Kernel k
        cdef _OutSide ws
        cdef Py_ssize_t hi = 0, lo = 0
        if self.kernel is not None:
            raise CypoeError("ReadWrite is already initialised")
        if not callable(on_input):
            raise TypeError(f"on_input: expected a callable, not {type(on_input).__name__}")
        for name, cb in (("on_error", on_error), ("on_flushed", on_flushed),
                         ("on_high", on_high), ("on_low", on_low),
                         ("on_handshake", on_handshake)):
            if cb is not None and not callable(cb):
                raise TypeError(f"{name}: expected a callable or None, not {type(cb).__name__}")
        # The watermark check the components use too (_checks.pyx).
        hi, lo = check_marks(("high_mark", "low_mark", "on_high", "on_low"),
                             (high_mark, low_mark, on_high, on_low))
        if kernel is None:
            kernel = _default_kernel()
        elif not isinstance(kernel, Kernel):
            raise TypeError(f"kernel: expected a Kernel, not {type(kernel).__name__}")
        k = <Kernel>kernel
        if driver is not None and not isinstance(driver, _tls().TLS):
            raise TypeError(f"driver: expected None or cypoe.TLS, not {type(driver).__name__}")
        if handle is not None:
            if input_handle is not None or output_handle is not None:
                raise ValueError("handle: give either handle or input_handle and output_handle")
            in_h = out_h = handle
        elif input_handle is None or output_handle is None:
            raise TypeError("handle: required (or both input_handle and output_handle)")
        else:
            in_h, out_h = input_handle, output_handle
        if type(in_h).__name__ == "SSLSocket":
            # An ssl.SSLSocket before its handshake: its plain socket and a
            # TLS driver with its settings.
            in_h, driver = _tls().unwrap_sslsocket(in_h, out_h, driver)
            out_h = in_h
        in_fd = fileno_of(in_h, "input_handle" if handle is None else "handle")
        out_fd = fileno_of(out_h, "output_handle" if handle is None else "handle")
        # Filters are given as the components take them (an instance, a
        # Filter class or a factory) and checked by the same code (_checks).
        if filter is not None:
            filter = filter_instance(filter, "filter", input_filter is None,
                                     output_filter is None)
        if input_filter is not None:
            input_filter = filter_instance(input_filter, "input_filter", True, False)
        if output_filter is not None:
            output_filter = filter_instance(output_filter, "output_filter", False, True)
        inf = input_filter if input_filter is not None else filter
        if inf is None:
            inf = _default_line()
        outf = output_filter if output_filter is not None else filter
        if outf is None:
            outf = inf if input_filter is None else _default_line()

        os.set_blocking(in_fd, False)
        if not fd_is_socket(in_fd):
            self._flags |= F_NOTSOCK
        if isinstance(in_h, _socket.socket):
            self._sock = in_h
        cbs = _Callbacks()
        cbs.input = on_input
        cbs.error = on_error
        cbs.flushed = on_flushed
        cbs.high = on_high
        cbs.low = on_low
        self._cbs = cbs
        if on_handshake is not None:
            self._x = _RWExtra()
            self._x.on_handshake = on_handshake
        self.setup(k, in_fd, inf, outf, False)
        if out_fd != in_fd:
            os.set_blocking(out_fd, False)
            if not fd_is_socket(out_fd):
                self._flags |= F_WNOTSOCK
            if self._x is None:
                self._x = _RWExtra()
            ws = _OutSide()
            ws.rw = self
            try:
                k.register(ws, out_fd, 0, False)
            except BaseException:
                k.unregister(self)
                raise
            self._x.wside = ws
            self._x.wsock = out_h if isinstance(out_h, _socket.socket) else None
        elif self._flags & F_NOTSOCK:
            self._flags |= F_WNOTSOCK
        if hi:
            self.set_marks(hi, lo)
        if driver is not None:
            self.start_tls(driver.context, driver.server_side, driver.server_hostname,
                           driver.handshake_timeout)

    # ------------------------------------------------------------------
    # C face

    cdef int setup(self, Kernel k, int fd, object in_filter, object out_filter,
                   bint connecting) except -1:
        if in_filter is None:
            in_filter = _default_line()
        if out_filter is None:
            out_filter = in_filter
        self._in_f = in_filter
        self._cin = <FilterBase>in_filter if isinstance(in_filter, FilterBase) else None
        self._out_f = out_filter
        self._cout = <FilterBase>out_filter if isinstance(out_filter, FilterBase) else None
        if connecting:
            self._flags |= F_CONNECTING
            k.register(self, fd, EV_WRITE)
        else:
            k.register(self, fd, EV_READ)
        return 0

    cdef int set_marks(self, Py_ssize_t high, Py_ssize_t low) except -1:
        if high == 0 and low == 0:
            self._flags &= ~(F_MARKS | F_ABOVE | F_HIGH_TOLD)
            return 0
        if high <= 0 or low <= 0 or low >= high:
            raise ValueError(f"low_mark/high_mark: need 0 < low_mark < high_mark "
                             f"(got {low}, {high})")
        self._high = high
        self._low = low
        self._flags |= F_MARKS
        return 0

    cdef int start_tls(self, object context, bint server_side, object server_hostname,
                       double timeout) except -1:
        if self._drv is not _PLAIN:
            raise CypoeError("TLS is already active on this ReadWrite")
        return self.set_driver(<Driver?>_tls().TLSDriver(context, server_side,
                                                          server_hostname, timeout))

    cdef int set_driver(self, Driver d) except -1:
        if self._drv is not _PLAIN:
            raise CypoeError("this ReadWrite has a driver already")
        if self._flags & F_CLOSED:
            raise CypoeError("this ReadWrite is closed")
        self._drv = d
        return d.attach(self)

    cdef bint is_closed(self) noexcept:
        return (self._flags & F_CLOSED) != 0

    cdef Py_ssize_t pending_out(self) noexcept:
        cdef Py_ssize_t n = 0
        if self._obuf is not None:
            n = self._obuf.length()
        if self._flags & F_DRIVER:
            n += self._drv.pending()
        return n

    cdef int _wfd(self) noexcept:
        if self._x is not None and self._x.wside is not None:
            return self._x.wside.fd
        return self.fd

    cdef int _update_interest(self) except -1:
        cdef unsigned int f = self._flags
        cdef int want = 0, wwant = 0
        if (f & F_CLOSED) or self.fd < 0:
            return 0
        if f & F_CONNECTING:
            want = EV_WRITE
        else:
            if not (f & F_EOF) and (not (f & F_PAUSED) or (f & F_HANDSHAKING)):
                want = EV_READ          # a handshake needs reading even when paused
            if not (f & F_WDONE):
                if (f & F_DRIVER) and self._drv.pending() > 0:
                    wwant = EV_WRITE
                elif (not (f & F_HANDSHAKING) and self._obuf is not None
                        and self._obuf.length() > 0):
                    # (during a handshake the application's output waits for it)
                    wwant = EV_WRITE
        if self._x is not None and self._x.wside is not None:
            self.kernel.set_interest(self._x.wside, wwant)
            self.kernel.set_interest(self, want)
        else:
            self.kernel.set_interest(self, want | wwant)
        return 0

    # -- events ---------------------------------------------------------

    cdef int _on_input(self, object record) except -1:
        self._cbs.input(self, record)
        return 0

    cdef int _on_error(self, str op, int errnum, str errstr) except -1:
        if self._cbs is not None and self._cbs.error is not None:
            self._cbs.error(self, op, errnum, errstr)
        return 0

    cdef bint _wants_flushed(self) except -1:
        return self._cbs is not None and self._cbs.flushed is not None

    cdef int _on_flushed(self) except -1:
        # The TLS handshake's own records are not the application's output:
        # on_flushed is about what put() queued.
        if self._flags & F_HANDSHAKING:
            return 0
        if self._cbs is not None and self._cbs.flushed is not None:
            self._cbs.flushed(self)
        return 0

    cdef int _on_high(self) except -1:
        if self._cbs is not None and self._cbs.high is not None:
            self._cbs.high(self)
        return 0

    cdef int _on_low(self) except -1:
        if self._cbs is not None and self._cbs.low is not None:
            self._cbs.low(self)
        return 0

    cdef int _on_connected(self) except -1:
        return 0

    cdef int _on_bytes(self) except -1:
        return 0

    cdef int _on_handshake(self) except -1:
        if self._x is not None and self._x.on_handshake is not None:
            self._x.on_handshake(self)
        return 0

    cdef int _user_exception(self, object exc) except -1:
        self.kernel.report_exception(
            "Exception in a ReadWrite callback (the connection is closed)", exc, self)
        self.c_close()
        return 0

    cdef int _dispatch_input(self, object record) except -1:
        cdef unsigned int busy = self._flags & F_BUSY
        cdef object err = None
        self._flags |= F_BUSY
        try:
            self._on_input(record)
        except Exception as exc:
            err = exc
        finally:
            self._flags = (self._flags & ~F_BUSY) | busy
        if err is not None:
            self._user_exception(err)
        return 0

    cdef int _emit(self, int kind, str op, int errnum, str errstr) except -1:
        cdef object err = None
        cdef unsigned int f = self._flags
        if f & F_CLOSED:
            return 0
        if f & F_BUSY:
            # Never re-entrant for one connection: queue it behind the
            # callback that caused it.  A queued event is checked again
            # when it is delivered (below); one queued flushed is enough.
            if kind == K_FLUSHED:
                if f & F_FLUSH_QUEUED:
                    return 0
                self._flags |= F_FLUSH_QUEUED
            self.kernel.call_soon(self._deferred, (kind, op, errnum, errstr))
            return 0
        # The watermark events describe the buffer as it is now, not as it
        # was when they arose (a queued event may be stale by the time it is
        # delivered): high and low alternate, low is told before flushed,
        # and flushed is told only while the buffer is empty -- a handler
        # that closes on flushed must never truncate output.
        if kind == K_HIGH:
            if not (f & F_ABOVE) or (f & F_HIGH_TOLD):
                return 0
            self._flags |= F_HIGH_TOLD
        elif kind == K_LOW:
            if (f & F_ABOVE) or not (f & F_HIGH_TOLD):
                return 0
            self._flags &= ~F_HIGH_TOLD
        elif kind == K_FLUSHED:
            self._flags &= ~F_FLUSH_QUEUED
            if self.pending_out() > 0:
                return 0
            if f & F_HIGH_TOLD:
                # The low that goes with this flush is still queued.
                self._emit(K_LOW, None, 0, None)
                if self._flags & (F_CLOSED | F_BUSY) or self.pending_out() > 0:
                    return 0
        self._flags |= F_BUSY
        try:
            if kind == K_ERROR:
                self._on_error(op, errnum, errstr)
            elif kind == K_FLUSHED:
                self._on_flushed()
            elif kind == K_HIGH:
                self._on_high()
            elif kind == K_LOW:
                self._on_low()
            elif kind == K_CONNECTED:
                self._on_connected()
            elif kind == K_HANDSHAKE:
                self._on_handshake()
        except Exception as exc:
            err = exc
        finally:
            self._flags &= ~F_BUSY
        if err is not None:
            self._user_exception(err)
        return 0

    def _deferred(self, int kind, op, int errnum, errstr):
        self._emit(kind, op, errnum, errstr)

    # -- reading --------------------------------------------------------

    cdef int on_readable(self) except -1:
        cdef unsigned int f = self._flags
        if f & (F_CLOSED | F_EOF | F_PAUSED | F_CONNECTING):
            if f & F_CLOSED:
                return 0
            if f & F_CONNECTING:
                return self._finish_connect()
            if (f & F_EOF) or not (f & F_HANDSHAKING):
                return 0
        return self._drv.on_readable(self)

    cdef int _feed(self, const char* data, Py_ssize_t n) except -1:
        if self._cin is not None:
            return self._feed_c(self._cin, data, n)
        return self._feed_py(self._in_f, [PyBytes_FromStringAndSize(data, n)])

    cdef int _feed_c(self, FilterBase f, const char* data, Py_ssize_t n) except -1:
        global _spare_out
        cdef list out = _spare_out
        cdef object p0 = None
        cdef object err
        cdef Py_ssize_t i, m, done = 0
        cdef bint first = True
        cdef unsigned int inbatch = self._flags & F_INBATCH
        if out is None:
            out = []
        else:
            _spare_out = None
        if f.has_pending():
            # Kept only so that a filter switch in the middle of this batch
            # can find the bytes after the record it happened on.
            p0 = f.pending_bytes()
        self._flags |= F_INBATCH
        try:
            while True:
                err = None
                try:
                    if first:
                        f.feed(data, n, out)
                    else:
                        f.feed(NULL, 0, out)
                except FilterError as exc:
                    err = exc
                m = len(out)
                for i in range(m):
                    self._dispatch_input(out[i])
                    done += 1
                    if self._flags & (F_CLOSED | F_EOF):
                        return 0
                    if self._flags & F_SWITCHED:
                        self._flags &= ~F_SWITCHED
                        if self._in_f is not f:
                            if i == m - 1 and err is None:
                                return self._feed_any(f.pending_bytes())
                            return self._switched(f, p0, data, n, done)
                if m:
                    cp_list_clear_keep(out)
                if err is None:
                    return 0
                self._emit(K_ERROR, "filter", EMSGSIZE, str(err))
                if self._flags & (F_CLOSED | F_EOF):
                    return 0
                if self._flags & F_SWITCHED:
                    self._flags &= ~F_SWITCHED
                    if self._in_f is not f:
                        if isinstance(err, BufferOverflow) and first:
                            return self._feed_any(f.pending_bytes())
                        return self._switched(f, p0, data, n, done)
                if first and isinstance(err, BufferOverflow):
                    return 0
                first = False
        finally:
            self._flags = (self._flags & ~F_INBATCH) | inbatch
            if cp_list_clear_keep(out) <= 1024 and _spare_out is None:
                _spare_out = out

    cdef int _switched(self, object old, object p0, const char* data, Py_ssize_t n,
                       Py_ssize_t done) except -1:
        # The old filter framed the whole read at once; replay the same
        # input through a fresh copy of it, one record at a time, to find
        # the bytes that follow the last record delivered.
        cdef Py_ssize_t got = 0, errors = 0
        chunk = PyBytes_FromStringAndSize(data, n) if data != NULL else b""
        if p0:
            chunk = bytes(p0) + chunk
        try:
            clone = old.clone()
            clone.get_one_start([chunk])
            while got < done:
                try:
                    recs = clone.get_one()
                except FilterError:
                    errors += 1
                    if errors > 1000000:
                        break
                    continue
                if not recs:
                    break
                got += len(recs)
            rest = clone.get_pending()
        except FilterError:
            rest = old.get_pending()
        return self._feed_any(rest)

    cdef int _feed_any(self, object pending) except -1:
        cdef bytes b
        if pending is None:
            return 0
        if isinstance(pending, list):
            if not pending:
                return 0
            if self._cin is not None:
                b = b"".join([bytes(x) for x in pending
                              if isinstance(x, (bytes, bytearray, memoryview))])
                if b:
                    return self._feed_c(self._cin, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
                return 0
            return self._feed_py(self._in_f, pending)
        if not len(pending):
            return 0
        if self._cin is not None:
            b = bytes(pending)
            return self._feed_c(self._cin, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
        return self._feed_py(self._in_f, [pending])

    cdef int _feed_py(self, object f, object chunks) except -1:
        cdef Py_ssize_t errors = 0
        cdef unsigned int inbatch = self._flags & F_INBATCH
        self._flags |= F_INBATCH
        try:
            try:
                f.get_one_start(chunks)
            except FilterError as exc:
                self._emit(K_ERROR, "filter", EMSGSIZE, str(exc))
                return 0
            while True:
                try:
                    recs = f.get_one()
                except FilterError as exc:
                    for rec in exc.records:
                        self._dispatch_input(rec)
                        if self._flags & (F_CLOSED | F_EOF):
                            return 0
                    self._emit(K_ERROR, "filter", EMSGSIZE, str(exc))
                    if self._flags & (F_CLOSED | F_EOF):
                        return 0
                    if self._flags & F_SWITCHED:
                        self._flags &= ~F_SWITCHED
                        if self._in_f is not f:
                            return self._feed_any(f.get_pending())
                    errors += 1
                    if errors > 1000000:       # a filter that makes no progress
                        return 0
                    continue
                if not recs:
                    return 0
                for rec in recs:
                    self._dispatch_input(rec)
                    if self._flags & (F_CLOSED | F_EOF):
                        return 0
                    if self._flags & F_SWITCHED:
                        self._flags &= ~F_SWITCHED
                        if self._in_f is not f:
                            return self._feed_any(f.get_pending())
        finally:
            self._flags = (self._flags & ~F_INBATCH) | inbatch

    cdef int _eof(self) except -1:
        self._flags |= F_EOF
        self._update_interest()
        return self._emit(K_ERROR, "read", 0, "")

    cdef int _hard_error(self, str op, int err, str text) except -1:
        if self._flags & (F_DEAD | F_CLOSED):
            return 0
        self._flags |= F_DEAD | F_EOF | F_WDONE
        _drop_output(self)
        if self._flags & F_DRIVER:
            # e.g. the TLS driver reports any failure before its handshake
            # finished as operation "tls" (docs/tls.rst).
            op = self._drv.failed(self, op)
        self._update_interest()
        return self._emit(K_ERROR, op, err, text)

    cdef int _finish_connect(self) except -1:
        cdef int err = 0
        cdef socklen_t sl = sizeof(int)
        if getsockopt(self.fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0:
            err = errno
        if err == EINPROGRESS or err == EALREADY or err == EINTR:
            return 0
        self._flags &= ~F_CONNECTING
        if err:
            self._flags |= F_DEAD | F_EOF | F_WDONE
            _drop_output(self)
            self._update_interest()
            return self._emit(K_ERROR, "connect", err, strerror(err))
        self._update_interest()
        self._emit(K_CONNECTED, None, 0, None)
        if self._flags & F_CLOSED:
            return 0
        return self._drv.on_connected(self)

    # -- writing --------------------------------------------------------

    cdef int c_put(self, tuple records) except -1:
        cdef ByteBuffer buf
        cdef unsigned int f = self._flags
        if f & (F_CLOSED | F_WDONE | F_SHUT_OUT):
            return 0
        buf = self._obuf
        if buf is None:
            buf = self._obuf = ByteBuffer()
        if self._cout is not None:
            self._cout.put_into(records, buf)
        else:
            for chunk in self._out_f.put(list(records)):
                buf.append_object(chunk)
        self._out_msgs += len(records)
        return self._after_put(f)

    cdef int c_put1(self, object record) except -1:
        # put() of one record: c_put((record,)) without the tuple.
        cdef ByteBuffer buf
        cdef unsigned int f = self._flags
        if f & (F_CLOSED | F_WDONE | F_SHUT_OUT):
            return 0
        buf = self._obuf
        if buf is None:
            buf = self._obuf = ByteBuffer()
        if self._cout is not None:
            self._cout.put_one(record, buf)
        else:
            for chunk in self._out_f.put([record]):
                buf.append_object(chunk)
        self._out_msgs += 1
        return self._after_put(f)

    cdef int _after_put(self, unsigned int f) except -1:
        # Watermarks and the dirty mark after a put; `f`: the flags before it.
        cdef Py_ssize_t pend
        if f & F_MARKS:
            pend = self.pending_out()
            if not (f & F_ABOVE) and pend >= self._high:
                # One write first: what the kernel takes at once never counts.
                self._write_now()
                if self._flags & (F_CLOSED | F_WDONE):
                    return 0
                pend = self.pending_out()
                if pend >= self._high and not (self._flags & F_ABOVE):
                    self._flags |= F_ABOVE
                    self._emit(K_HIGH, None, 0, None)
                    pend = self.pending_out()       # on_high may have put or closed
            if pend >= self._high:
                if not (self.interest & EV_WRITE) and not self.dirty:
                    self.kernel.mark_dirty(self)
                return 1
        if not self.dirty and not (self.interest & EV_WRITE) and not (f & F_CONNECTING) \
                and self.fd >= 0:
            self.kernel.mark_dirty(self)
        return 0

    cdef int c_flush(self) except -1:
        if not (self._flags & (F_CLOSED | F_WDONE | F_CONNECTING)):
            self._write_now()
        return 0

    cdef int on_flush(self) except -1:
        if self._flags & (F_CLOSED | F_WDONE | F_CONNECTING):
            return 0
        return self._write_now()

    cdef int on_writable(self) except -1:
        if self._flags & F_CONNECTING:
            return self._finish_connect()
        return self._write_now()

    cdef int _write_now(self) except -1:
        cdef int wrote
        if self._flags & (F_CLOSED | F_WDONE | F_CONNECTING):
            return 0
        wrote = self._drv.send(self, self._obuf)
        if wrote < 0:
            return 0            # a write error, reported
        return self._after_write(wrote)

    cdef int _after_write(self, bint wrote) except -1:
        cdef Py_ssize_t pend = self.pending_out()
        if self._flags & F_CLOSED:
            return 0
        if pend == 0:
            self._out_msgs = 0
            if self._obuf is not None:
                self._obuf.shrink(0)
            if (self._flags & F_SHUT_OUT) and not (self._flags & F_WDONE):
                if self._drv.shutdown_output(self):
                    return self._write_now()    # the driver's last words (close_notify)
                self._flags |= F_WDONE
                if not (self._flags & F_WNOTSOCK):
                    shutdown(self._wfd(), SHUT_WR)
            self._update_interest()
            if wrote:
                if self._flags & F_ABOVE:
                    self._flags &= ~F_ABOVE
                    self._emit(K_LOW, None, 0, None)
                # The flushed event only when something receives it: an
                # event that would be queued (behind a callback, or with a
                # low still queued) is, as before; one delivered now goes
                # only to a connection whose _wants_flushed says so.
                if (self._flags & (F_BUSY | F_HIGH_TOLD | F_FLUSH_QUEUED)) \
                        or self._wants_flushed():
                    self._emit(K_FLUSHED, None, 0, None)
            return 0
        if (self._flags & F_ABOVE) and pend <= self._low:
            self._flags &= ~F_ABOVE
            self._emit(K_LOW, None, 0, None)
        return self._update_interest()

    # -- control ----------------------------------------------------------

    cdef int c_pause_input(self) except -1:
        self._flags |= F_PAUSED
        return self._update_interest()

    cdef int c_resume_input(self) except -1:
        cdef bint was_paused = (self._flags & F_PAUSED) != 0
        self._flags &= ~F_PAUSED
        self._update_interest()
        if was_paused and (self._flags & F_DRIVER) and self._drv.input_pending():
            # Input the driver read before the pause (TLS: records already
            # decrypted or received) does not make the fd readable again.
            self.kernel.call_soon(self._driver_readable, ())
        return 0

    def _driver_readable(self):
        if not (self._flags & (F_CLOSED | F_EOF | F_PAUSED | F_CONNECTING)):
            self._drv.on_readable(self)

    cdef int c_shutdown_input(self) except -1:
        if self._flags & F_CLOSED:
            return 0
        self._flags |= F_EOF
        self._update_interest()
        if self.fd >= 0 and not (self._flags & F_NOTSOCK):
            shutdown(self.fd, SHUT_RD)
        return 0

    cdef int c_shutdown_output(self) except -1:
        if self._flags & (F_CLOSED | F_WDONE | F_SHUT_OUT):
            return 0
        self._flags |= F_SHUT_OUT
        if not (self._flags & F_CONNECTING):
            self._write_now()
        return 0

    cdef int c_set_input_filter(self, object f) except -1:
        old = self._in_f
        check_filter(f, "filter", True, False)
        self._in_f = f
        self._cin = <FilterBase>f if isinstance(f, FilterBase) else None
        if old is f:
            return 0
        if self._flags & F_INBATCH:
            # The delivery loop moves the rest of the input after this record.
            self._flags |= F_SWITCHED
            return 0
        if old is None or (self._flags & (F_CLOSED | F_EOF)):
            return 0
        return self._feed_any(old.get_pending())

    cdef int c_set_output_filter(self, object f) except -1:
        check_filter(f, "filter", False, True)
        self._out_f = f
        self._cout = <FilterBase>f if isinstance(f, FilterBase) else None
        return 0

    cdef int c_close_lingering(self, double seconds) except -1:
        # A graceful close.  close() on a socket with unread input, or one
        # that input reaches afterwards, resets the connection, and the
        # reset throws away the output the peer has not received yet (a
        # peer still sending while it reads an answer loses the answer).
        # So the socket outlives the connection (_linger.pyx): write side
        # shut (the FIN follows the output), input read and dropped until
        # the peer's EOF or `seconds`, then closed.  A driver with state of
        # its own (TLS) closes plainly.
        # Without unread input (the usual case: the peer waits for the
        # answer) close() sends a FIN and nothing lingers.
        cdef int lfd
        cdef Kernel k = self.kernel
        if (self._flags & (F_CLOSED | F_NOTSOCK | F_DRIVER) or self.fd < 0 or k is None
                or self.pending_out() > 0
                or (self._x is not None and self._x.wside is not None)
                or not cp_input_waiting(self.fd)):
            return ReadWrite.c_close(self)
        lfd = fcntl(self.fd, F_DUPFD_CLOEXEC, 0)
        ReadWrite.c_close(self)
        if lfd < 0:
            return 0
        if shutdown(lfd, SHUT_WR) < 0 or cp_discard_input(lfd, LINGER_READ):
            fd_close(lfd)        # not connected any more, or the peer is done
            return 0
        try:
            linger(k, lfd, seconds)
        except Exception as exc:    # lfd is closed: the close goes on as a plain one
            k.report_exception("Exception while keeping a closed socket open", exc, self)
        return 0

    cdef int c_close(self) except -1:
        cdef int fd, wfd = -1
        cdef Kernel k = self.kernel
        cdef _OutSide ws
        if self._flags & F_CLOSED:
            return 0
        if self.pending_out() > 0:
            _drop_output(self)
        self._flags |= F_CLOSED
        fd = self.fd
        if self._flags & F_DRIVER:
            self._drv.close(self)
        if self._x is not None and self._x.wside is not None:
            ws = <_OutSide>self._x.wside
            wfd = ws.fd
            k.unregister(ws)
            ws.rw = None
        if fd >= 0 and k is not None:
            k.unregister(self)     # before close(): the fd number may be reused at once
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        elif fd >= 0:
            fd_close(fd)
        if wfd >= 0:
            if self._x.wsock is not None:
                try:
                    self._x.wsock.close()
                except OSError:
                    pass
                self._x.wsock = None
            else:
                fd_close(wfd)
        self._obuf = None
        # Callbacks usually close over the ReadWrite: drop them to break the cycle.
        self._cbs = None
        if self._x is not None:
            self._x.on_handshake = None
        return 0

    # ------------------------------------------------------------------
    # Python face

    def put(self, *records):
        """Serialise ``records`` through the output filter and queue them;
        returns True while buffered output is at or above ``high_mark``."""
        # Replaced after the class by a METH_FASTCALL method (_rw_put below,
        # includes/fastput.h).
        return self.c_put(records) == 1

    def flush(self):
        """Write as much pending output as the kernel takes now."""
        self.c_flush()

    def close(self):
        """Stop watching and close the handle; pending output is dropped.
        Closing twice is fine; no event is delivered after close()."""
        self.c_close()

    def pause_input(self):
        """Stop reading: input waits in the socket (and the peer is held
        back by TCP flow control) until ``resume_input()``."""
        self.c_pause_input()

    def resume_input(self):
        """Read again after ``pause_input()``."""
        self.c_resume_input()

    def shutdown_input(self):
        """Stop reading for good and shut the socket's read side down
        (``shutdown(SHUT_RD)``); output goes on."""
        self.c_shutdown_input()

    def shutdown_output(self):
        """Write everything pending, then shut the write side down."""
        self.c_shutdown_output()

    def set_filter(self, f):
        """Use ``f`` (a filter, a Filter class or a factory) for input and
        output; buffered unparsed input moves to it."""
        f = filter_instance(f, "filter", True, True)
        self.c_set_output_filter(f)
        self.c_set_input_filter(f)

    def set_input_filter(self, f):
        """Use ``f`` for input from now on; input buffered and not yet
        parsed by the old filter moves to it (within a batch, the records
        after the current one go to ``f``).  ``f`` may be a Filter class or
        a factory, as for the constructor."""
        self.c_set_input_filter(filter_instance(f, "filter", True, False))

    def set_output_filter(self, f):
        """Use ``f`` (a filter, a Filter class or a factory) for what ``put``
        sends from now on."""
        self.c_set_output_filter(filter_instance(f, "filter", False, True))

    def get_input_filter(self):
        """The input filter."""
        return self._in_f

    def get_output_filter(self):
        """The output filter."""
        return self._out_f

    def set_high_mark(self, n):
        """Set the high watermark (bytes buffered for output): must be above
        the low mark; ValueError when watermarks were not configured."""
        hi = mark_value(n, "high_mark")
        if not (self._flags & F_MARKS):
            raise ValueError("high_mark: watermarks were not configured")
        if hi <= self._low:
            raise ValueError(f"high_mark: must be > low_mark ({hi} <= {self._low})")
        self._high = hi

    def set_low_mark(self, n):
        """Set the low watermark (bytes buffered for output): must be below
        the high mark; ValueError when watermarks were not configured."""
        lo = mark_value(n, "low_mark")
        if not (self._flags & F_MARKS):
            raise ValueError("low_mark: watermarks were not configured")
        if lo >= self._high:
            raise ValueError(f"low_mark: must be < high_mark ({lo} >= {self._high})")
        self._low = lo

    def get_driver_out_octets(self):
        """Octets of output buffered and not yet written."""
        return self.pending_out()

    def get_driver_out_messages(self):
        """Records put since the output buffer was last empty (0 when empty)."""
        return self._out_msgs if self.pending_out() > 0 else 0

    @property
    def dropped_octets(self):
        """Octets of output dropped by a write error or close()."""
        return self._x.dropped if self._x is not None else 0

    @property
    def closed(self):
        """True once close() ran (or an error closed the ReadWrite)."""
        return (self._flags & F_CLOSED) != 0

    @property
    def paused(self):
        """True while input is paused (pause_input())."""
        return (self._flags & F_PAUSED) != 0

    @property
    def high_mark(self):
        """The high watermark in bytes, or None when watermarks are off."""
        return self._high if self._flags & F_MARKS else None

    @property
    def low_mark(self):
        """The low watermark in bytes, or None when watermarks are off."""
        return self._low if self._flags & F_MARKS else None

    def fileno(self):
        """The connection's file descriptor."""
        return self.fd

    @property
    def socket(self):
        """The input handle as a socket.socket (created on first use), or None."""
        if self._sock is None and self.fd >= 0 and not (self._flags & F_NOTSOCK):
            s = _socket.socket(fileno=self.fd)
            s.setblocking(False)
            self._sock = s
        return self._sock

    @property
    def local_addr(self):
        """The socket's own address (getsockname), or None when closed or not a socket."""
        return fd_sockname(self.fd, False)

    @property
    def peer_addr(self):
        """The peer's address (getpeername), or None when closed, not a socket or not connected."""
        return fd_sockname(self.fd, True)

    @property
    def tls_object(self):
        """The ssl.SSLObject (certificate, cipher, version), or None."""
        return self._drv.tls_object()

    @property
    def driver(self):
        """The driver moving this connection's bytes: the shared plain
        driver, or its own TLS driver."""
        return self._drv

    def __repr__(self):
        return f"<ReadWrite id={self.id} fd={self.fd}{' closed' if self.closed else ''}>"


# ReadWrite.put as a METH_FASTCALL method: ``def put(self, *records)``
# compiles to a METH_VARARGS function that the interpreter calls through a
# freshly built argument tuple (two, with binding=True: one with self and a
# slice without it).  put() of one record -- the echo / request-response
# case -- goes straight to c_put1 with no tuple at all (includes/fastput.h).
cdef object _rw_put1(object rw, object record):
    return (<ReadWrite>rw).c_put1(record) == 1


cdef object _rw_putn(object rw, object records):
    return (<ReadWrite>rw).c_put(<tuple>records) == 1


cp_rw_put1_impl = _rw_put1
cp_rw_putn_impl = _rw_putn
cp_install_put(ReadWrite)


cdef int install_fast_put(type t) except -1:
    if not issubclass(t, ReadWrite):
        raise TypeError(f"install_fast_put: {t.__name__} is not a ReadWrite")
    return cp_install_put(t)

# The record list of _feed_c, kept between reads (None while in use: a
# nested _feed_c makes its own).
cdef list _spare_out = None


cdef int _drop_output(ReadWrite rw) except -1:
    cdef Py_ssize_t n = rw.pending_out()
    if n <= 0:
        return 0
    if rw._x is None:
        rw._x = _RWExtra()
    rw._x.dropped += n
    if rw._obuf is not None:
        rw._obuf.clear()
        rw._obuf.shrink(0)
    if rw._flags & F_DRIVER:
        rw._drv.drop_pending()
    rw._out_msgs = 0
    return 0

