# cython: language_level=3
"""The TLS driver: a ReadWrite's bytes through ``ssl.SSLObject`` and memory
BIOs, so that TLS runs on the loop's own non-blocking fd.

``TLS`` is the public settings object (``ReadWrite(sock, driver=TLS(...))``,
``Server(tls=...)``); ``TLSDriver`` is one connection's TLS state machine
behind the driver interface of ``_readwrite.pxd``: the handshake and its
deadline, want-read/want-write, decrypting input into the ReadWrite's
filters, encrypting its output, close_notify on shutdown_output, and any
failure before the handshake completes reported as operation ``"tls"``.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport errno, EAGAIN, EINTR, EPROTO, ETIMEDOUT, ECONNRESET
from posix.unistd cimport read as c_read

from cypoe._kernel cimport Kernel, Timer
from cypoe._buffer cimport ByteBuffer
from cypoe._readwrite cimport Driver, ReadWrite, send_buffer
from cypoe._sockets cimport strerror
from cypoe.includes.debug cimport (CP_DBG_INC, CP_DBG_DEC, CP_DBG_TLS_DRIVERS,
                                   cp_debug_counters)
from cypoe.includes.socket cimport EWOULDBLOCK, recv
from cypoe.includes.consts cimport *

import socket as _socket

cdef object _ssl = None


def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()


cdef object _ssl_mod():
    # ssl is imported on first use: `import cypoe` does not need it.
    global _ssl
    if _ssl is None:
        import ssl
        _ssl = ssl
    return _ssl


cdef class TLS:
    """The TLS driver: ``ReadWrite(sock, driver=TLS(context, ...))``.

    ``context`` is an ``ssl.SSLContext``; ``server_side`` selects the role;
    ``server_hostname`` is sent as SNI and checked against the certificate
    (clients); ``handshake_timeout`` is the handshake deadline in seconds.
    """

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


def unwrap_sslsocket(handle, out_handle, driver):
    """ReadWrite(ssl_socket): an ``ssl.SSLSocket`` whose handshake has not
    run yet becomes its plain socket and a ``TLS`` with its settings.
    Returns (handle, driver); anything else is returned as it is."""
    ssl = _ssl_mod()
    if not isinstance(handle, ssl.SSLSocket):
        return handle, driver
    if out_handle is not handle:
        raise ValueError("handle: an SSLSocket cannot be split into two handles")
    if driver is not None:
        raise ValueError("driver: the handle is already an SSLSocket")
    if handle.version() is not None:
        raise ValueError("handle: the SSLSocket's handshake is already done; "
                         "pass the plain socket with driver=cypoe.TLS(...)")
    tls = TLS(handle.context, handle.server_side, handle.server_hostname)
    fam, typ, proto = handle.family, handle.type, handle.proto
    return _socket.socket(fam, typ, proto, handle.detach()), tls


@cython.final
cdef class TLSDriver(Driver):
    """One connection's TLS: ssl.SSLObject over memory BIOs (internal; made
    by ReadWrite.start_tls)."""

    def __cinit__(self):
        self.raw = ByteBuffer()
        CP_DBG_INC(CP_DBG_TLS_DRIVERS)

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_TLS_DRIVERS)

    def __init__(self, context, bint server_side, server_hostname, double timeout):
        ssl = _ssl_mod()
        self.inbio = ssl.MemoryBIO()
        self.outbio = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self.inbio, self.outbio, server_side=server_side,
                                       server_hostname=server_hostname)
        self.timeout = timeout

    def __repr__(self):
        return f"<TLSDriver {'done' if self.done else 'handshaking'}>"

    # -- the driver interface --------------------------------------------

    cdef int attach(self, ReadWrite rw) except -1:
        cdef Kernel k = rw.kernel
        rw._flags |= F_HANDSHAKING | F_DRIVER
        self.timer = k.schedule(k.now() + self.timeout, self._expire, (rw,), None, False)
        if not (rw._flags & F_CONNECTING):
            self._handshake(rw)
        return 0

    cdef int on_readable(self, ReadWrite rw) except -1:
        cdef Kernel k = rw.kernel
        cdef ssize_t n
        cdef int reads = 0, err, fd = rw.fd
        cdef bint eof = False, ended = False
        ssl = _ssl
        while not self.peer_eof:
            if rw._flags & F_NOTSOCK:
                n = c_read(fd, k.rbuf, k.rbuf_size)
            else:
                n = recv(fd, k.rbuf, k.rbuf_size, 0)
            if n > 0:
                if reads == 0:
                    rw._on_bytes()
                self.inbio.write(PyBytes_FromStringAndSize(k.rbuf, n))
                reads += 1
                if n < k.rbuf_size or reads >= MAX_READS:
                    break
                continue
            if n == 0:
                self.inbio.write_eof()
                self.peer_eof = eof = True
                break
            err = errno
            if err == EINTR:
                continue
            if err == EAGAIN or err == EWOULDBLOCK:
                break
            return rw._hard_error("read", err, strerror(err))
        if not self.done:
            self._handshake(rw)
            if not self.done or (rw._flags & (F_CLOSED | F_DEAD)):
                if eof and not (rw._flags & (F_CLOSED | F_DEAD)):
                    rw._hard_error("tls", ECONNRESET, "EOF during the TLS handshake")
                return 0
        # Decrypted input goes to the filters a chunk at a time until input
        # is paused (what is left waits in the BIOs: input_pending).
        while not (rw._flags & (F_CLOSED | F_EOF | F_PAUSED)):
            try:
                pt = self.sslobj.read(TLS_READ)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                ended = True
                break
            except ssl.SSLError as exc:
                self._pump()
                return rw._hard_error("tls", EPROTO, str(exc))
            if not pt:
                ended = True
                break
            rw._feed(PyBytes_AS_STRING(pt), PyBytes_GET_SIZE(pt))
        if rw._flags & F_CLOSED:
            return 0
        self._pump()
        if self.raw.length() > 0:
            rw._write_now()
        if (ended or (eof and not (rw._flags & F_PAUSED))) and not (rw._flags & (F_CLOSED | F_EOF)):
            return rw._eof()
        return 0

    cdef int send(self, ReadWrite rw, ByteBuffer out) except -2:
        # The application's output is encrypted once the handshake is done
        # (and until close_notify); then the ciphertext goes out.
        if self.done and out is not None and out.length() > 0 and not self.closing:
            self.sslobj.write(out.to_bytes())
            out.clear()
            self._pump()
        return send_buffer(rw, self.raw)

    cdef int on_connected(self, ReadWrite rw) except -1:
        return self._handshake(rw)

    cdef int shutdown_output(self, ReadWrite rw) except -1:
        if not self.done or self.closing:
            return 0
        self.closing = True
        try:
            self.sslobj.unwrap()
        except (_ssl.SSLError, ValueError):
            pass   # close_notify is queued; the peer's reply is not awaited
        self._pump()
        return self.raw.length() > 0

    cdef Py_ssize_t pending(self) noexcept:
        return self.raw.length()

    cdef int drop_pending(self) except -1:
        self.raw.clear()
        self.raw.shrink(0)
        return 0

    cdef int input_pending(self) except -1:
        return self.peer_eof or self.inbio.pending > 0 or self.sslobj.pending() > 0

    cdef str failed(self, ReadWrite rw, str op):
        self._cancel_timer(rw)
        if not self.done:
            # A read or write failure before the handshake finished is a
            # failed handshake, whatever the system call was
            # (connect_error(c, "tls", ...): docs/tls.rst).
            return "tls"
        return op

    cdef int close(self, ReadWrite rw) except -1:
        return self._cancel_timer(rw)

    cdef object tls_object(self):
        return self.sslobj

    # -- internals ---------------------------------------------------------

    cdef int _cancel_timer(self, ReadWrite rw) except -1:
        if self.timer is not None:
            rw.kernel.cancel_timer(self.timer)
            self.timer = None
        return 0

    cdef int _pump(self) except -1:
        if self.outbio.pending:
            self.raw.append_object(self.outbio.read())
        return 0

    cdef int _handshake(self, ReadWrite rw) except -1:
        ssl = _ssl
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._pump()
            return rw._write_now()
        except ssl.SSLError as exc:
            self._pump()
            rw._write_now()       # the alert, best effort
            return rw._hard_error("tls", EPROTO, str(exc))
        self.done = True
        rw._flags &= ~F_HANDSHAKING
        self._cancel_timer(rw)
        rw._emit(K_HANDSHAKE, None, 0, None)
        if rw._flags & F_CLOSED:
            return 0
        self._pump()
        return rw._write_now()

    def _expire(self, ReadWrite rw):
        self.timer = None
        if rw._flags & F_CLOSED:
            return
        if not self.done:
            rw._hard_error("tls", ETIMEDOUT, "TLS handshake timed out")
