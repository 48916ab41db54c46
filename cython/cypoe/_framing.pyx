# cython: language_level=3
"""Response framings as filters: ``RedisReply`` and ``HTTPResponse``.

The parsers are the load engine's (``_framing_parsers.pxi``): byte-driven
state machines in C.  As filters, each complete frame is delivered as its
raw bytes (a RESP reply, nested arrays and all; an HTTP response, status
line to the end of its body or trailer), so a client can count, forward or
parse further what it needs.  Requests go out as given (``put`` passes
bytes through, as ``Stream`` does).

Malformed input raises :class:`cypoe.errors.FrameError` naming the fault;
the frame in progress is dropped with the offending byte, and the bytes
after it stay buffered for the next call (the filter contract).  A frame
longer than ``max_length`` raises :class:`cypoe.errors.FrameTooLong` once
and is skipped to its end without being buffered.
"""
from libc.stdint cimport int64_t
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Malloc, PyMem_Free

from cypoe._buffer cimport ByteBuffer
from cypoe._filters cimport FilterBase, put_records_as_is, put_record_as_is
from cypoe.includes.debug cimport (CP_DBG_INC, CP_DBG_DEC, CP_DBG_RESPONSE_PARSERS,
                                   cp_debug_counters)

from cypoe.errors import FrameError, FrameTooLong

include "_framing_parsers.pxi"


def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()

cdef Py_ssize_t DEFAULT_MAX_LENGTH = 64 * 1024 * 1024


cdef list _chunks(object chunks):
    if isinstance(chunks, (bytes, bytearray, memoryview)):
        raise TypeError("get() takes a list of chunks, not a bytes-like object")
    return [bytes(c) for c in chunks]


cdef class _Framer(FilterBase):
    """Shared by the framing filters: the current frame's bytes, the input
    left after an error, and POE's filter interface (internal)."""
    def __cinit__(self, *args, **kwargs):
        self.frame = ByteBuffer()
        self.rest = ByteBuffer()
        CP_DBG_INC(CP_DBG_RESPONSE_PARSERS)

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_RESPONSE_PARSERS)

    cdef Py_ssize_t _step(self, const char* p, Py_ssize_t n, int* status) except -2:
        raise NotImplementedError

    cdef int _reset_parser(self) except -1:
        raise NotImplementedError

    cdef str _error_text(self):
        raise NotImplementedError

    cdef bint has_pending(self) noexcept:
        return self.frame.length() > 0 or self.rest.length() > 0

    cdef int _parse(self, const char* p, Py_ssize_t n, list out, Py_ssize_t limit) except -1:
        # Frames from p[0:n]; at most `limit` records (-1: all); what is not
        # parsed goes to self.rest.
        cdef Py_ssize_t i = 0, c, bad
        cdef int st = FR_MORE
        cdef str text
        while i < n:
            if limit >= 0 and len(out) >= limit:
                self.rest.append(p + i, n - i)
                return 0
            c = self._step(p + i, n - i, &st)
            if st == FR_ERROR:
                text = self._error_text()
                self._reset_parser()
                self.frame.clear()
                self.discarding = False
                bad = i + c + 1
                if bad < n:
                    self.rest.append(p + bad, n - bad)
                raise FrameError(text)
            if not self.discarding and self.frame.length() + c > self.max_length:
                # too long: reported once, then skipped to its end unbuffered
                self.frame.clear()
                self.frame.shrink(4096)
                i += c
                self.discarding = st != FR_DONE
                if i < n:
                    self.rest.append(p + i, n - i)
                raise FrameTooLong(f"a frame exceeds max_length ({self.max_length} bytes)")
            if st == FR_DONE:
                if self.discarding:
                    self.discarding = False
                elif self.frame.length() == 0:
                    out.append(PyBytes_FromStringAndSize(p + i, c))
                else:
                    self.frame.append(p + i, c)
                    out.append(self.frame.to_bytes())
                    self.frame.clear()
                    self.frame.shrink(4096)
            elif not self.discarding:
                self.frame.append(p + i, c)
            i += c
        return 0

    cdef int _feed_limit(self, const char* data, Py_ssize_t n, list out,
                         Py_ssize_t limit) except -1:
        cdef bytes tmp
        if self.rest.length():
            if n > 0:
                self.rest.append(data, n)
            tmp = self.rest.to_bytes()
            self.rest.clear()
            self.rest.shrink(4096)
            return self._parse(PyBytes_AS_STRING(tmp), PyBytes_GET_SIZE(tmp), out, limit)
        if n > 0:
            return self._parse(data, n, out, limit)
        return 0

    cdef int feed(self, const char* data, Py_ssize_t n, list out) except -1:
        return self._feed_limit(data, n, out, -1)

    cdef Py_ssize_t put_into(self, tuple records, ByteBuffer out) except -1:
        return put_records_as_is(records, out)

    cdef int put_one(self, object record, ByteBuffer out) except -1:
        return put_record_as_is(record, out)

    # -- POE's filter interface -------------------------------------------------

    def get(self, chunks):
        """Feed chunks (a list of bytes); return every complete frame."""
        cdef list out = []
        cdef list cl = _chunks(chunks)
        cdef Py_ssize_t i, j
        if not cl:
            cl = [b""]
        for i in range(len(cl)):
            try:
                self._feed_limit(PyBytes_AS_STRING(cl[i]), PyBytes_GET_SIZE(cl[i]), out, -1)
            except FrameError as exc:
                for j in range(i + 1, len(cl)):
                    self.rest.append_object(cl[j])
                exc.records = out
                raise
        return out

    def get_one_start(self, chunks):
        """Buffer chunks without parsing them."""
        for c in _chunks(chunks):
            self.rest.append_object(c)

    def get_one(self):
        """A list with at most one frame."""
        cdef list out = []
        cdef bytes tmp
        if self.rest.length():
            tmp = self.rest.to_bytes()
            self.rest.clear()
            self._parse(PyBytes_AS_STRING(tmp), PyBytes_GET_SIZE(tmp), out, 1)
        return out

    def get_pending(self):
        """The bytes of the frame under way and the unparsed input, or None."""
        return self.pending_bytes()

    cdef object pending_bytes(self):
        if not self.has_pending():
            return None
        return self.frame.to_bytes() + self.rest.to_bytes()

    def put(self, records):
        """Requests pass through unchanged."""
        return [bytes(r) for r in records]

    # _c_feed (the tests' C-face helper) is FilterBase's: FrameError is a
    # FilterError.


cdef class RedisReply(_Framer):
    """RedisReply(*, max_length=64 MiB): RESP replies (``+ - : $ *``,
    nested arrays, null bulk ``$-1``, null array ``*-1``), each delivered
    as its raw bytes.  ``is_error(record)`` tells an error reply (``-``)."""
    def __init__(self, *, max_length=DEFAULT_MAX_LENGTH):
        if max_length < 1:
            raise ValueError("max_length must be >= 1")
        self.max_length = max_length
        resp_reset(&self.p)
        self.frame.clear()
        self.rest.clear()

    def clone(self):
        """A new RedisReply with the same ``max_length``, nothing buffered."""
        return type(self)(max_length=self.max_length)

    @staticmethod
    def is_error(record):
        """True when ``record`` is an error reply (it starts with ``-``)."""
        return bool(record) and record[:1] == b"-"

    cdef Py_ssize_t _step(self, const char* p, Py_ssize_t n, int* status) except -2:
        return resp_feed(&self.p, p, n, status)

    cdef int _reset_parser(self) except -1:
        resp_reset(&self.p)
        return 0

    cdef str _error_text(self):
        return resp_error_text(&self.p)


cdef class HTTPResponse(_Framer):
    """HTTPResponse(*, max_length=64 MiB, head=False): HTTP/1.x responses
    (status line, header fields, a body by Content-Length, chunked coding
    with trailer fields, or up to the end of the connection), each
    delivered as its raw bytes; 1xx interim responses are part of the final
    response's record.  ``head=True``: responses to HEAD, which have no
    body.  A response framed by the end of the connection is returned by
    :meth:`get_eof`.  ``cypoe.filters.parse_response`` splits a record into
    (status, headers, body)."""
    def __cinit__(self, *args, **kwargs):
        self.p = <HttpParser*>PyMem_Malloc(sizeof(HttpParser))
        if self.p == NULL:
            raise MemoryError()
        http_init(self.p)

    def __dealloc__(self):
        if self.p != NULL:
            http_reset(self.p)
        PyMem_Free(self.p)

    def __init__(self, *, max_length=DEFAULT_MAX_LENGTH, head=False):
        if max_length < 1:
            raise ValueError("max_length must be >= 1")
        self.max_length = max_length
        http_reset(self.p)
        self.p.no_body = bool(head)
        self.frame.clear()
        self.rest.clear()

    def clone(self):
        """A new HTTPResponse with the same settings, nothing buffered."""
        return type(self)(max_length=self.max_length, head=self.p.no_body)

    def get_eof(self):
        """The input ended: a list with the response the end completes
        (one whose body runs to the close), or []; FrameError if a response
        was cut short."""
        cdef int st
        out = self.get([])
        st = http_eof(self.p)
        if st == FR_DONE:
            out.append(self.frame.to_bytes())
            self.frame.clear()
        elif st == FR_ERROR:
            text = http_error_text(self.p)
            nobody = self.p.no_body
            http_reset(self.p)
            self.p.no_body = nobody
            self.frame.clear()
            raise FrameError(text, out)
        return out

    cdef Py_ssize_t _step(self, const char* p, Py_ssize_t n, int* status) except -2:
        return http_feed(self.p, p, n, status)

    cdef int _reset_parser(self) except -1:
        cdef bint nobody = self.p.no_body
        http_reset(self.p)
        self.p.no_body = nobody
        return 0

    cdef str _error_text(self):
        return http_error_text(self.p)
