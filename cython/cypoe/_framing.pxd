# The response framings' C face: the incremental RESP and HTTP parsers'
# state (their code is in _framing_parsers.pxi, included by _framing.pyx and
# _load.pyx) and the framing filters built on them.

from libc.stdint cimport int64_t

from cypoe._buffer cimport ByteBuffer
from cypoe._filters cimport FilterBase

# A parser's status after a feed.
cdef enum:
    FR_MORE = 0         # every byte consumed, no frame completed
    FR_DONE = 1         # consumed up to the end of a frame
    FR_ERROR = -1       # stopped at a malformed byte (reset before reuse)

# Bounds (malformed or hostile input gives an error, never unbounded work).
cdef enum:
    RESP_MAX_DEPTH = 32            # nested arrays
    RESP_MAX_DIGITS = 18           # a number's digits (< 10**18)
    HTTP_MAX_LINE = 8192           # status line, header line, chunk-size line
    HTTP_MAX_HEADERS = 128         # header fields (and trailer fields) per response

cdef struct RespParser:
    int phase
    int depth
    int64_t left[RESP_MAX_DEPTH]
    char kind
    bint neg
    int ndigits
    int64_t num
    int64_t line_len
    int64_t bulk_left
    bint top_error        # the frame being parsed is an error reply (-...)
    bint last_error       # the last complete frame was an error reply
    int err
    int bad_byte

cdef struct HttpParser:
    int phase
    char* line            # a line split between inputs, or NULL
    int line_len
    bint in_frame         # some byte of a response has been seen
    int status
    bint http10
    int nheaders
    int64_t content_length
    bint chunked
    bint te               # a Transfer-Encoding field was seen
    bint close
    bint keep_alive
    int64_t left
    bint no_body          # responses to HEAD
    int last_status
    bint last_close
    int err


cdef class _Framer(FilterBase):
    cdef ByteBuffer frame         # bytes of the frame under way
    cdef ByteBuffer rest          # unparsed input (after an error)
    cdef readonly Py_ssize_t max_length
    cdef bint discarding          # skipping a frame over max_length
    cdef bint pending_one         # get_one_start() input not parsed yet

    # the parser a subclass wraps
    cdef Py_ssize_t _step(self, const char* p, Py_ssize_t n, int* status) except -2
    cdef int _reset_parser(self) except -1
    cdef str _error_text(self)

    cdef int _parse(self, const char* p, Py_ssize_t n, list out, Py_ssize_t limit) except -1
    cdef int _feed_limit(self, const char* data, Py_ssize_t n, list out,
                         Py_ssize_t limit) except -1


cdef class RedisReply(_Framer):
    cdef RespParser p


cdef class HTTPResponse(_Framer):
    cdef HttpParser* p
