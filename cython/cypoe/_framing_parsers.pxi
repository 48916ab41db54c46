# Incremental response parsers in C, shared by the load engine (_load.pyx)
# and the library filters (_framing.pyx) through `include`.
#
# Each parser is a byte-driven state machine: it never buffers the frame
# (state is a few integers, plus one line of at most HTTP_MAX_LINE bytes for
# HTTP's header lines), so any split of the input gives the same frames and
# memory stays bounded whatever the peer sends.
#
#   consumed = xxx_feed(&state, data, n, &status)
#
# HTTP's lines are parsed in place in the input; only a line split between
# two inputs is copied (into a buffer allocated for that line and freed once
# it is complete), so an idle connection holds no line buffer.
#
# consumes bytes up to and including the end of the first frame that
# completes in data[0:n] (status = FR_DONE; the frame's facts are in the
# state's last_* fields), or all n bytes (FR_MORE), or stops at the byte
# that is malformed (FR_ERROR; state.err names the fault; the parser must be
# reset before it is used again).
#
# The parsers' state structs, their status codes (FR_*) and bounds are
# declared in _framing.pxd, for the modules that cimport them.

from libc.stdint cimport int64_t
from libc.string cimport memchr, memcpy
from libc.stdlib cimport malloc, free

from cypoe.includes.debug cimport CP_DBG_INC, CP_DBG_DEC, CP_DBG_PARSER_LINES

cdef int64_t RESP_MAX_LINE = 1 << 20          # a simple string or error reply
cdef int64_t RESP_MAX_BULK = 512 * 1024 * 1024  # redis's own proto-max-bulk-len
cdef int64_t RESP_MAX_ARRAY = 1 << 31


# ---------------------------------------------------------------------------
# RESP (redis) replies: + - : $ * with nested arrays, null bulk ($-1) and
# null array (*-1).

cdef enum:
    R_TYPE = 0      # the type byte of an item
    R_LINE = 1      # the text of + or - (until CR)
    R_NUM = 2       # the number of : $ * (until CR)
    R_LF = 3        # LF after the CR that ends a line
    R_BULK = 4      # bulk data
    R_BULK_CR = 5
    R_BULK_LF = 6

cdef enum:
    RERR_NONE = 0
    RERR_TYPE = 1        # a byte that is no reply type
    RERR_CRLF = 2        # a line not ended by CRLF
    RERR_NUMBER = 3      # not a number where one is due
    RERR_BULK_SIZE = 4   # bulk length out of range
    RERR_ARRAY_SIZE = 5  # array length out of range
    RERR_DEPTH = 6       # arrays nested too deep
    RERR_LINE = 7        # simple string too long
    RERR_BULK_END = 8    # bulk data not followed by CRLF


cdef inline void resp_reset(RespParser* p) noexcept nogil:
    p.phase = R_TYPE
    p.depth = 0
    p.top_error = False
    p.last_error = False
    p.err = RERR_NONE
    p.bad_byte = -1


cdef inline bint _resp_item_done(RespParser* p) noexcept nogil:
    # One item ended; True when it ends the whole frame.
    p.phase = R_TYPE
    while p.depth > 0:
        p.left[p.depth - 1] -= 1
        if p.left[p.depth - 1] > 0:
            return False
        p.depth -= 1
    p.last_error = p.top_error
    p.top_error = False
    return True


cdef inline Py_ssize_t resp_feed(RespParser* p, const char* data, Py_ssize_t n,
                                 int* status) noexcept nogil:
    cdef Py_ssize_t i = 0, take
    cdef unsigned char c
    cdef const char* q
    while i < n:
        if p.phase == R_BULK:
            take = n - i
            if take > p.bulk_left:
                take = <Py_ssize_t>p.bulk_left
            i += take
            p.bulk_left -= take
            if p.bulk_left == 0:
                p.phase = R_BULK_CR
            continue
        if p.phase == R_LINE:
            q = <const char*>memchr(data + i, 13, n - i)
            take = (q - (data + i)) if q != NULL else (n - i)
            if memchr(data + i, 10, take) != NULL:
                p.err = RERR_CRLF
                status[0] = FR_ERROR
                return i
            p.line_len += take
            if p.line_len > RESP_MAX_LINE:
                p.err = RERR_LINE
                status[0] = FR_ERROR
                return i
            i += take
            if q != NULL:
                i += 1
                p.phase = R_LF
            continue
        c = <unsigned char>data[i]
        if p.phase == R_TYPE:
            if c == 43 or c == 45:          # + -
                if p.depth == 0 and c == 45:
                    p.top_error = True
                p.kind = <char>c
                p.line_len = 0
                p.phase = R_LINE
            elif c == 58 or c == 36 or c == 42:   # : $ *
                p.kind = <char>c
                p.num = 0
                p.neg = False
                p.ndigits = 0
                p.phase = R_NUM
            else:
                p.err = RERR_TYPE
                p.bad_byte = c
                status[0] = FR_ERROR
                return i
            i += 1
        elif p.phase == R_NUM:
            if 48 <= c <= 57:
                if p.ndigits >= RESP_MAX_DIGITS:
                    p.err = RERR_NUMBER
                    status[0] = FR_ERROR
                    return i
                p.num = p.num * 10 + (c - 48)
                p.ndigits += 1
            elif c == 45 and p.ndigits == 0 and not p.neg:
                p.neg = True
            elif c == 13 and p.ndigits > 0:
                p.phase = R_LF
            else:
                p.err = RERR_NUMBER
                p.bad_byte = c
                status[0] = FR_ERROR
                return i
            i += 1
        elif p.phase == R_LF:
            if c != 10:
                p.err = RERR_CRLF
                p.bad_byte = c
                status[0] = FR_ERROR
                return i
            i += 1
            if p.kind == 36:                  # $: bulk length
                if p.neg:
                    if p.num != 1:
                        p.err = RERR_BULK_SIZE
                        status[0] = FR_ERROR
                        return i
                    if _resp_item_done(p):    # null bulk
                        status[0] = FR_DONE
                        return i
                elif p.num > RESP_MAX_BULK:
                    p.err = RERR_BULK_SIZE
                    status[0] = FR_ERROR
                    return i
                else:
                    p.bulk_left = p.num
                    p.phase = R_BULK if p.num > 0 else R_BULK_CR
            elif p.kind == 42:                # *: array length
                if p.neg:
                    if p.num != 1:
                        p.err = RERR_ARRAY_SIZE
                        status[0] = FR_ERROR
                        return i
                    if _resp_item_done(p):    # null array
                        status[0] = FR_DONE
                        return i
                elif p.num == 0:
                    if _resp_item_done(p):    # empty array
                        status[0] = FR_DONE
                        return i
                elif p.num > RESP_MAX_ARRAY:
                    p.err = RERR_ARRAY_SIZE
                    status[0] = FR_ERROR
                    return i
                elif p.depth >= RESP_MAX_DEPTH:
                    p.err = RERR_DEPTH
                    status[0] = FR_ERROR
                    return i
                else:
                    p.left[p.depth] = p.num
                    p.depth += 1
                    p.phase = R_TYPE
            else:                             # + - :
                if p.kind == 58 and p.neg and p.ndigits == 0:
                    p.err = RERR_NUMBER
                    status[0] = FR_ERROR
                    return i
                if _resp_item_done(p):
                    status[0] = FR_DONE
                    return i
        elif p.phase == R_BULK_CR:
            if c != 13:
                p.err = RERR_BULK_END
                p.bad_byte = c
                status[0] = FR_ERROR
                return i
            i += 1
            p.phase = R_BULK_LF
        elif p.phase == R_BULK_LF:
            if c != 10:
                p.err = RERR_BULK_END
                p.bad_byte = c
                status[0] = FR_ERROR
                return i
            i += 1
            if _resp_item_done(p):
                status[0] = FR_DONE
                return i
    status[0] = FR_MORE
    return n


cdef inline bint resp_in_frame(RespParser* p) noexcept nogil:
    return p.phase != R_TYPE or p.depth > 0


cdef str resp_error_text(RespParser* p):
    cdef str b = f" (byte 0x{p.bad_byte:02x})" if p.bad_byte >= 0 else ""
    if p.err == RERR_TYPE:
        return f"redis: a reply starts with {chr(p.bad_byte)!r}, not one of + - : $ *{b}"
    if p.err == RERR_CRLF:
        return "redis: a line is not ended by CRLF" + b
    if p.err == RERR_NUMBER:
        return "redis: not a valid length or integer" + b
    if p.err == RERR_BULK_SIZE:
        return f"redis: bulk length out of range (-1 or 0..{RESP_MAX_BULK})"
    if p.err == RERR_ARRAY_SIZE:
        return f"redis: array length out of range (-1 or 0..{RESP_MAX_ARRAY})"
    if p.err == RERR_DEPTH:
        return f"redis: arrays nested deeper than {RESP_MAX_DEPTH}"
    if p.err == RERR_LINE:
        return f"redis: a simple string or error longer than {RESP_MAX_LINE} bytes"
    if p.err == RERR_BULK_END:
        return "redis: bulk data not followed by CRLF" + b
    return "redis: malformed reply"


# ---------------------------------------------------------------------------
# HTTP/1.x responses: status line, header fields, a body framed by
# Content-Length, chunked transfer coding (with trailer fields) or the end of
# the connection; 1xx interim responses are skipped; `no_body` (a HEAD
# request) and 204/304 have none.

cdef enum:
    H_STATUS = 0
    H_HEADER = 1
    H_BODY = 2
    H_CHUNK_SIZE = 3
    H_CHUNK_DATA = 4
    H_CHUNK_END = 5       # CRLF after chunk data
    H_TRAILER = 6
    H_UNTIL_CLOSE = 7

cdef enum:
    HERR_NONE = 0
    HERR_LINE = 1         # a line longer than HTTP_MAX_LINE
    HERR_STATUS = 2       # not an HTTP/1.x status line
    HERR_HEADER = 3       # a header line without a colon, or folded
    HERR_TOO_MANY = 4     # more than HTTP_MAX_HEADERS fields
    HERR_LENGTH = 5       # bad or conflicting Content-Length
    HERR_CHUNK = 6        # bad chunk-size line
    HERR_CHUNK_END = 7    # chunk data not followed by CRLF
    HERR_EOF = 8          # the connection ended inside a response
    HERR_NOMEM = 9


cdef inline void _http_drop_line(HttpParser* p) noexcept nogil:
    if p.line != NULL:
        free(p.line)
        p.line = NULL
        CP_DBG_DEC(CP_DBG_PARSER_LINES)
    p.line_len = 0


cdef inline void http_init(HttpParser* p) noexcept nogil:
    # first use of a parser (its memory uninitialised)
    p.line = NULL
    p.no_body = False
    http_reset(p)


cdef inline void http_reset(HttpParser* p) noexcept nogil:
    _http_drop_line(p)
    p.phase = H_STATUS
    p.in_frame = False
    p.status = 0
    p.http10 = False
    p.nheaders = 0
    p.content_length = -1
    p.chunked = False
    p.te = False
    p.close = False
    p.keep_alive = False
    p.left = 0
    p.err = HERR_NONE


cdef inline int _lower(int c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c


cdef inline bint _ieq(const char* a, Py_ssize_t n, const char* lit) noexcept nogil:
    # a[0:n] equals the lower-case literal `lit`, case-insensitively
    cdef Py_ssize_t i = 0
    while i < n:
        if lit[i] == 0 or _lower(<unsigned char>a[i]) != lit[i]:
            return False
        i += 1
    return lit[n] == 0


cdef inline bint _has_token(const char* v, Py_ssize_t n, const char* tok) noexcept nogil:
    # comma-separated list `v` contains `tok` (case-insensitive)
    cdef Py_ssize_t i = 0, s, e
    while i < n:
        while i < n and (v[i] == 32 or v[i] == 9 or v[i] == 44):
            i += 1
        s = i
        while i < n and v[i] != 44:
            i += 1
        e = i
        while e > s and (v[e - 1] == 32 or v[e - 1] == 9):
            e -= 1
        if e > s and _ieq(v + s, e - s, tok):
            return True
    return False


cdef inline bint _last_token_is(const char* v, Py_ssize_t n, const char* tok) noexcept nogil:
    cdef Py_ssize_t e = n, s
    while e > 0 and (v[e - 1] == 32 or v[e - 1] == 9 or v[e - 1] == 44):
        e -= 1
    s = e
    while s > 0 and v[s - 1] != 44:
        s -= 1
    while s < e and (v[s] == 32 or v[s] == 9):
        s += 1
    return e > s and _ieq(v + s, e - s, tok)


cdef inline int _http_end_of_frame(HttpParser* p) noexcept nogil:
    p.last_status = p.status
    p.last_close = p.close
    http_reset(p)
    return FR_DONE


cdef inline int _http_status_line(HttpParser* p, const char* s, Py_ssize_t n) noexcept nogil:
    # HTTP/1.x SP 3DIGIT [SP reason]
    if n < 12 or not (s[0] == 72 and s[1] == 84 and s[2] == 84 and s[3] == 80 and s[4] == 47
                      and s[5] == 49 and s[6] == 46 and 48 <= s[7] <= 57 and s[8] == 32):
        return -1
    if not (48 <= s[9] <= 57 and 48 <= s[10] <= 57 and 48 <= s[11] <= 57):
        return -1
    if n > 12 and s[12] != 32:
        return -1
    p.status = (s[9] - 48) * 100 + (s[10] - 48) * 10 + (s[11] - 48)
    if p.status < 100:
        return -1
    p.http10 = s[7] == 48
    return 0


cdef inline int _http_header(HttpParser* p, const char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t colon = 0, vs, ve, i
    cdef int64_t cl
    if s[0] == 32 or s[0] == 9:
        return HERR_HEADER            # obsolete line folding
    while colon < n and s[colon] != 58:
        colon += 1
    if colon == 0 or colon == n:
        return HERR_HEADER
    if s[colon - 1] == 32 or s[colon - 1] == 9:
        return HERR_HEADER            # no whitespace before the colon (RFC 9112 5.1)
    p.nheaders += 1
    if p.nheaders > HTTP_MAX_HEADERS:
        return HERR_TOO_MANY
    vs = colon + 1
    while vs < n and (s[vs] == 32 or s[vs] == 9):
        vs += 1
    ve = n
    while ve > vs and (s[ve - 1] == 32 or s[ve - 1] == 9):
        ve -= 1
    if p.phase == H_TRAILER:
        return 0
    if _ieq(s, colon, b"content-length"):
        if ve == vs or ve - vs > 18:
            return HERR_LENGTH
        cl = 0
        for i in range(vs, ve):
            if not 48 <= s[i] <= 57:
                return HERR_LENGTH
            cl = cl * 10 + (s[i] - 48)
        if p.content_length >= 0 and p.content_length != cl:
            return HERR_LENGTH
        p.content_length = cl
    elif _ieq(s, colon, b"transfer-encoding"):
        # RFC 9112 6.3: chunked when it is the final coding (Content-Length
        # is then ignored), otherwise the body runs to the close
        p.te = True
        p.chunked = _last_token_is(s + vs, ve - vs, b"chunked")
    elif _ieq(s, colon, b"connection"):
        if _has_token(s + vs, ve - vs, b"close"):
            p.close = True
        if _has_token(s + vs, ve - vs, b"keep-alive"):
            p.keep_alive = True
    return 0


cdef inline int _http_headers_done(HttpParser* p) noexcept nogil:
    # After the empty line: FR_DONE when the response has no body.
    if p.http10 and not p.keep_alive:
        p.close = True
    if 100 <= p.status < 200 and p.status != 101:
        http_reset(p)                 # interim response: the real one follows
        p.in_frame = True
        return FR_MORE
    if p.no_body or p.status == 204 or p.status == 304 or p.status == 101:
        if p.status == 101:
            p.close = True
        return _http_end_of_frame(p)
    if p.te and p.chunked:
        p.phase = H_CHUNK_SIZE
        return FR_MORE
    if not p.te and p.content_length >= 0:
        if p.content_length == 0:
            return _http_end_of_frame(p)
        p.left = p.content_length
        p.phase = H_BODY
        return FR_MORE
    p.close = True
    p.phase = H_UNTIL_CLOSE
    return FR_MORE


cdef inline int _http_chunk_size(HttpParser* p, const char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0
    cdef int64_t size = 0
    cdef int c, d = 0
    while i < n:
        c = <unsigned char>s[i]
        if 48 <= c <= 57:
            c -= 48
        elif 97 <= c <= 102:
            c -= 87
        elif 65 <= c <= 70:
            c -= 55
        else:
            break
        if d >= 15:
            return HERR_CHUNK
        size = size * 16 + c
        d += 1
        i += 1
    if d == 0:
        return HERR_CHUNK
    while i < n and (s[i] == 32 or s[i] == 9):
        i += 1
    if i < n and s[i] != 59:          # only ;extensions may follow
        return HERR_CHUNK
    if size == 0:
        p.phase = H_TRAILER
        p.nheaders = 0
    else:
        p.left = size
        p.phase = H_CHUNK_DATA
    return 0


cdef inline Py_ssize_t http_feed(HttpParser* p, const char* data, Py_ssize_t n,
                                 int* status) noexcept nogil:
    cdef Py_ssize_t i = 0, take, ln
    cdef const char* q
    cdef const char* s
    cdef int rc
    while i < n:
        if p.phase == H_BODY or p.phase == H_CHUNK_DATA:
            take = n - i
            if take > p.left:
                take = <Py_ssize_t>p.left
            i += take
            p.left -= take
            if p.left == 0:
                if p.phase == H_BODY:
                    status[0] = _http_end_of_frame(p)
                    return i
                p.phase = H_CHUNK_END
            continue
        if p.phase == H_UNTIL_CLOSE:
            status[0] = FR_MORE
            return n
        # a line: in place, or completed in p.line when it began earlier
        q = <const char*>memchr(data + i, 10, n - i)
        take = (q - (data + i)) if q != NULL else (n - i)
        if p.line_len + take > HTTP_MAX_LINE:
            p.err = HERR_LINE
            status[0] = FR_ERROR
            return i
        if q == NULL or p.line_len > 0:
            if p.line == NULL:
                p.line = <char*>malloc(HTTP_MAX_LINE)
                if p.line == NULL:
                    p.err = HERR_NOMEM
                    status[0] = FR_ERROR
                    return i
                CP_DBG_INC(CP_DBG_PARSER_LINES)
            memcpy(p.line + p.line_len, data + i, take)
            p.line_len += take
            i += take
            if q == NULL:
                break
            s = p.line
            ln = p.line_len
        else:
            s = data + i
            ln = take
            i += take
        i += 1                         # the LF
        if ln > 0 and s[ln - 1] == 13:
            ln -= 1
        p.line_len = 0
        rc = 0
        if p.phase == H_STATUS:
            if ln == 0:
                continue               # tolerated empty lines before a response
            if _http_status_line(p, s, ln) < 0:
                rc = HERR_STATUS
            else:
                p.phase = H_HEADER
                p.in_frame = True
        elif p.phase == H_HEADER:
            if ln == 0:
                if _http_headers_done(p) == FR_DONE:
                    status[0] = FR_DONE
                    return i
            else:
                rc = _http_header(p, s, ln)
        elif p.phase == H_CHUNK_SIZE:
            rc = _http_chunk_size(p, s, ln)
        elif p.phase == H_CHUNK_END:
            if ln != 0:
                rc = HERR_CHUNK_END
            else:
                p.phase = H_CHUNK_SIZE
        elif p.phase == H_TRAILER:
            if ln == 0:
                status[0] = _http_end_of_frame(p)
                return i
            rc = _http_header(p, s, ln)
        if p.line != NULL:
            _http_drop_line(p)         # the line is done with
        if rc:
            p.err = rc
            status[0] = FR_ERROR
            return i
    status[0] = FR_MORE
    return n


cdef inline int http_eof(HttpParser* p) noexcept nogil:
    # The connection ended: FR_DONE when that ends a response (a body
    # framed by the close), FR_MORE when no response was under way,
    # FR_ERROR when one was cut short.
    if p.phase == H_UNTIL_CLOSE:
        return _http_end_of_frame(p)
    if not p.in_frame and p.line_len == 0:
        return FR_MORE
    p.err = HERR_EOF
    return FR_ERROR


cdef str http_error_text(HttpParser* p):
    if p.err == HERR_LINE:
        return f"http: a line longer than {HTTP_MAX_LINE} bytes"
    if p.err == HERR_STATUS:
        return "http: not an HTTP/1.x status line"
    if p.err == HERR_HEADER:
        return "http: a malformed header line"
    if p.err == HERR_TOO_MANY:
        return f"http: more than {HTTP_MAX_HEADERS} header fields"
    if p.err == HERR_LENGTH:
        return "http: a bad or conflicting Content-Length"
    if p.err == HERR_CHUNK:
        return "http: a bad chunk-size line"
    if p.err == HERR_CHUNK_END:
        return "http: chunk data not followed by CRLF"
    if p.err == HERR_EOF:
        return "http: the connection ended inside a response"
    if p.err == HERR_NOMEM:
        return "http: out of memory"
    return "http: malformed response"
