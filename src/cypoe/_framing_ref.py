"""Plain-Python reference implementations of the response framings
(:class:`RedisReply`, :class:`HTTPResponse`), for testing the compiled ones
in :mod:`cypoe._framing` (``msgpack``-style: same records, same errors for
any input, split any way).

They are written differently on purpose: the compiled parsers are
byte-driven state machines that never look back; these keep the frame in a
buffer and parse it again from its start each time input arrives (simple,
quadratic on a frame split into many pieces, fine for tests).  The rules
(what is malformed, the bounds) are the same.
"""
from cypoe.errors import FrameError, FrameTooLong

__all__ = ["RedisReply", "HTTPResponse", "parse_response"]

DEFAULT_MAX_LENGTH = 64 * 1024 * 1024
RESP_MAX_DEPTH = 32
RESP_MAX_DIGITS = 18
RESP_MAX_LINE = 1 << 20
RESP_MAX_BULK = 512 * 1024 * 1024
RESP_MAX_ARRAY = 1 << 31
HTTP_MAX_LINE = 8192
HTTP_MAX_HEADERS = 128


class _Bad(Exception):
    """Malformed at buffer offset `pos`."""

    def __init__(self, pos, text):
        super().__init__(text)
        self.pos = pos
        self.text = text


class _Skip(Exception):
    """The frame is known to run past `end` bytes (for max_length)."""


class _Framer:
    def __init__(self, max_length):
        if max_length < 1:
            raise ValueError("max_length must be >= 1")
        self.max_length = max_length
        self.buf = bytearray()
        self.discard = 0          # bytes of an over-long frame still to skip
        self.skipping = None      # parser state for skipping, see _skip

    # subclasses: _frame_end(buf) -> end offset | None; raises _Bad

    def get(self, chunks):
        if isinstance(chunks, (bytes, bytearray, memoryview)):
            raise TypeError("get() takes a list of chunks, not a bytes-like object")
        out = []
        chunks = [bytes(c) for c in chunks]
        for i, c in enumerate(chunks):
            try:
                self._feed(c, out, None)
            except FrameError as exc:
                for rest in chunks[i + 1:]:
                    self.buf += rest
                exc.records = out
                raise
        if not chunks:
            self._feed(b"", out, None)
        return out

    def get_one_start(self, chunks):
        self._pending = getattr(self, "_pending", bytearray())
        for c in chunks:
            self._pending += bytes(c)

    def get_one(self):
        out = []
        pending = bytes(getattr(self, "_pending", b""))
        self._pending = bytearray()
        self._feed(pending, out, 1)
        return out

    def get_pending(self):
        data = bytes(self.buf) + bytes(getattr(self, "_pending", b""))
        return data or None

    def put(self, records):
        return [bytes(r) for r in records]

    def _feed(self, data, out, limit):
        self.buf += data
        while self.buf and (limit is None or len(out) < limit):
            if self.skipping is not None:
                end = self._skip_end()
                if end is None:
                    return
                del self.buf[:end]
                self.skipping = None
                continue
            try:
                end = self._frame_end(self.buf)
            except _Bad as bad:
                del self.buf[:bad.pos + 1]
                self._reset()
                raise FrameError(bad.text) from None
            if end is None:
                if len(self.buf) > self.max_length:
                    self._start_skip()
                    raise FrameTooLong(f"a frame exceeds max_length ({self.max_length} bytes)")
                return
            if end > self.max_length:
                del self.buf[:end]
                raise FrameTooLong(f"a frame exceeds max_length ({self.max_length} bytes)")
            out.append(bytes(self.buf[:end]))
            del self.buf[:end]
            self._reset()

    def _reset(self):
        pass

    def _start_skip(self):
        # keep the over-long frame's bytes in `skipping` and drop them from
        # the buffer as its end is found (tests use small frames: simple)
        self.skipping = bytes(self.buf)
        self.buf = bytearray()

    def _skip_end(self):
        data = self.skipping + bytes(self.buf)
        try:
            end = self._frame_end(bytearray(data))
        except _Bad as bad:
            self.skipping = None
            self.buf = bytearray(data[bad.pos + 1:])
            raise FrameError(bad.text) from None
        if end is None:
            return None
        self.buf = bytearray(data)
        return end


# ---------------------------------------------------------------------------

class RedisReply(_Framer):
    """RESP replies as raw bytes (reference; see cypoe._framing.RedisReply)."""

    def __init__(self, *, max_length=DEFAULT_MAX_LENGTH):
        super().__init__(max_length)

    def clone(self):
        return type(self)(max_length=self.max_length)

    @staticmethod
    def is_error(record):
        return bool(record) and record[:1] == b"-"

    def _frame_end(self, buf):
        return self._item(buf, 0, 0)

    def _line_end(self, buf, i):
        # i: first byte after the type; returns offset after CRLF or None
        cr = buf.find(b"\r", i)
        seg = cr if cr >= 0 else len(buf)
        lf = buf.find(b"\n", i, seg)
        if lf >= 0:
            raise _Bad(lf, "redis: a line is not ended by CRLF")
        if seg - i > RESP_MAX_LINE:
            raise _Bad(i, f"redis: a simple string or error longer than {RESP_MAX_LINE} bytes")
        if cr < 0 or cr + 1 >= len(buf):
            return None
        if buf[cr + 1] != 10:
            raise _Bad(cr + 1, "redis: a line is not ended by CRLF")
        return cr + 2

    def _number(self, buf, i):
        # -> (value, negative, offset after CRLF) or None
        j = i
        neg = False
        if j < len(buf) and buf[j] == 45:
            neg = True
            j += 1
        start = j
        while j < len(buf) and 48 <= buf[j] <= 57:
            if j - start >= RESP_MAX_DIGITS:
                raise _Bad(j, "redis: not a valid length or integer")
            j += 1
        if j >= len(buf):
            return None
        if buf[j] != 13 or j == start:
            raise _Bad(j, "redis: not a valid length or integer")
        if j + 1 >= len(buf):
            return None
        if buf[j + 1] != 10:
            raise _Bad(j + 1, "redis: a line is not ended by CRLF")
        return int(buf[start:j]), neg, j + 2

    def _item(self, buf, i, depth):
        if i >= len(buf):
            return None
        t = buf[i]
        if t in (43, 45):
            return self._line_end(buf, i + 1)
        if t not in (58, 36, 42):
            raise _Bad(i, f"redis: a reply starts with {chr(t)!r}, not one of + - : $ *"
                          f" (byte 0x{t:02x})")
        num = self._number(buf, i + 1)
        if num is None:
            return None
        value, neg, j = num
        if t == 58:
            return j
        if t == 36:
            if neg:
                if value != 1:
                    raise _Bad(j - 1, f"redis: bulk length out of range (-1 or 0..{RESP_MAX_BULK})")
                return j
            if value > RESP_MAX_BULK:
                raise _Bad(j - 1, f"redis: bulk length out of range (-1 or 0..{RESP_MAX_BULK})")
            end = j + value
            if end >= len(buf):
                return None
            if buf[end] != 13:
                raise _Bad(end, "redis: bulk data not followed by CRLF")
            if end + 1 >= len(buf):
                return None
            if buf[end + 1] != 10:
                raise _Bad(end + 1, "redis: bulk data not followed by CRLF")
            return end + 2
        if neg:
            if value != 1:
                raise _Bad(j - 1, f"redis: array length out of range (-1 or 0..{RESP_MAX_ARRAY})")
            return j
        if value == 0:
            return j
        if value > RESP_MAX_ARRAY:
            raise _Bad(j - 1, f"redis: array length out of range (-1 or 0..{RESP_MAX_ARRAY})")
        if depth >= RESP_MAX_DEPTH:
            raise _Bad(j - 1, f"redis: arrays nested deeper than {RESP_MAX_DEPTH}")
        for _ in range(value):
            j = self._item(buf, j, depth + 1)
            if j is None:
                return None
        return j


# ---------------------------------------------------------------------------

def _tokens(value):
    return [t.strip(" \t").lower() for t in value.split(",")]


class HTTPResponse(_Framer):
    """HTTP/1.x responses as raw bytes (reference; see
    cypoe._framing.HTTPResponse)."""

    def __init__(self, *, max_length=DEFAULT_MAX_LENGTH, head=False):
        super().__init__(max_length)
        self.head = bool(head)
        self.until_close = False

    def clone(self):
        return type(self)(max_length=self.max_length, head=self.head)

    def get_eof(self):
        out = self.get([])
        if self.until_close_at is not None and self.buf:
            out.append(bytes(self.buf))
            self.buf = bytearray()
            self.until_close_at = None
            return out
        if self.buf and self._started(self.buf):
            self.buf = bytearray()
            raise FrameError("http: the connection ended inside a response", out)
        self.buf = bytearray()
        return out

    until_close_at = None

    @staticmethod
    def _started(buf):
        # anything beyond the complete empty lines tolerated before a status line
        data = bytes(buf)
        while True:
            if data.startswith(b"\r\n"):
                data = data[2:]
            elif data.startswith(b"\n"):
                data = data[1:]
            else:
                return bool(data)

    def _line(self, buf, i):
        # -> (line without CR?LF, offset after LF) or None; raises on over-long
        lf = buf.find(b"\n", i)
        if lf < 0:
            if len(buf) - i > HTTP_MAX_LINE:
                raise _Bad(i + HTTP_MAX_LINE, f"http: a line longer than {HTTP_MAX_LINE} bytes")
            return None
        if lf - i > HTTP_MAX_LINE:
            raise _Bad(i + HTTP_MAX_LINE, f"http: a line longer than {HTTP_MAX_LINE} bytes")
        line = bytes(buf[i:lf])
        if line.endswith(b"\r"):
            line = line[:-1]
        return line, lf + 1

    def _frame_end(self, buf):
        self.until_close_at = None
        i = 0
        while True:                      # interim responses, then the final one
            while True:                  # empty lines before the status line
                r = self._line(buf, i)
                if r is None:
                    return None
                line, nxt = r
                if line:
                    break
                i = nxt
            if not self._status_ok(line):
                raise _Bad(nxt - 1, "http: not an HTTP/1.x status line")
            status = int(line[9:12])
            http10 = line[7:8] == b"0"
            i = nxt
            fields = []
            while True:
                r = self._line(buf, i)
                if r is None:
                    return None
                line, nxt = r
                i = nxt
                if not line:
                    break
                fields.append((line, nxt))
                if len(fields) > HTTP_MAX_HEADERS:
                    raise _Bad(nxt - 1, f"http: more than {HTTP_MAX_HEADERS} header fields")
                self._field_ok(line, nxt)
                self._framing(fields)   # a bad Content-Length is an error at its line
            cl, chunked, te = self._framing(fields)
            if 100 <= status < 200 and status != 101:
                continue
            break
        if self.head or status in (204, 304, 101):
            return i
        if te and chunked:
            return self._chunked(buf, i)
        if not te and cl is not None:
            if cl == 0:
                return i
            return i + cl if len(buf) >= i + cl else None
        self.until_close_at = i
        return None

    @staticmethod
    def _status_ok(line):
        if len(line) < 12 or not line.startswith(b"HTTP/1.") or not 48 <= line[7] <= 57:
            return False
        if line[8] != 32 or not all(48 <= c <= 57 for c in line[9:12]):
            return False
        if len(line) > 12 and line[12] != 32:
            return False
        return int(line[9:12]) >= 100

    @staticmethod
    def _field_ok(line, nxt):
        if line[:1] in (b" ", b"\t"):
            raise _Bad(nxt - 1, "http: a malformed header line")
        name, sep, _ = line.partition(b":")
        if not sep or not name or name[-1:] in (b" ", b"\t"):
            raise _Bad(nxt - 1, "http: a malformed header line")

    @staticmethod
    def _framing(fields):
        # -> (Content-Length or None, chunked, Transfer-Encoding seen)
        cl = None
        chunked = te = False
        for line, nxt in fields:
            name, _, value = line.partition(b":")
            value = value.strip(b" \t")
            lname = name.decode("latin-1").lower()
            if lname == "content-length":
                if not value or len(value) > 18 or not all(48 <= c <= 57 for c in value):
                    raise _Bad(nxt - 1, "http: a bad or conflicting Content-Length")
                v = int(value)
                if cl is not None and cl != v:
                    raise _Bad(nxt - 1, "http: a bad or conflicting Content-Length")
                cl = v
            elif lname == "transfer-encoding":
                te = True
                toks = [t for t in _tokens(value.decode("latin-1")) if t]
                chunked = bool(toks) and toks[-1] == "chunked"
        return cl, chunked, te

    def _chunked(self, buf, i):
        while True:
            r = self._line(buf, i)
            if r is None:
                return None
            line, nxt = r
            size = self._chunk_size(line, nxt)
            i = nxt
            if size == 0:
                break
            end = i + size
            if len(buf) < end:
                return None
            r = self._line(buf, end)
            if r is None:
                return None
            line, nxt = r
            if line:
                raise _Bad(nxt - 1, "http: chunk data not followed by CRLF")
            i = nxt
        nfields = 0
        while True:                      # trailer fields
            r = self._line(buf, i)
            if r is None:
                return None
            line, nxt = r
            i = nxt
            if not line:
                return i
            nfields += 1
            if nfields > HTTP_MAX_HEADERS:
                raise _Bad(nxt - 1, f"http: more than {HTTP_MAX_HEADERS} header fields")
            self._field_ok(line, nxt)

    @staticmethod
    def _chunk_size(line, nxt):
        j = 0
        size = 0
        while j < len(line) and chr(line[j]) in "0123456789abcdefABCDEF":
            if j >= 15:
                raise _Bad(nxt - 1, "http: a bad chunk-size line")
            size = size * 16 + int(chr(line[j]), 16)
            j += 1
        if j == 0:
            raise _Bad(nxt - 1, "http: a bad chunk-size line")
        while j < len(line) and line[j] in (32, 9):
            j += 1
        if j < len(line) and line[j] != 59:
            raise _Bad(nxt - 1, "http: a bad chunk-size line")
        return size


def parse_response(record):
    """An ``HTTPResponse`` record -> ``(status, headers, body)``: status an
    int (of the final response; interim 1xx ones are skipped), headers a
    list of (name, value) str pairs in order, body the payload bytes
    (chunked coding removed)."""
    rest = record
    while True:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        while lines and not lines[0]:
            lines.pop(0)
        status = int(lines[0].split(" ", 2)[1])
        if not (100 <= status < 200 and status != 101) or not rest:
            break
    headers = []
    for ln in lines[1:]:
        name, _, value = ln.partition(":")
        headers.append((name, value.strip(" \t")))
    chunked = any(n.lower() == "transfer-encoding"
                  and v.lower().split(",")[-1].strip() == "chunked" for n, v in headers)
    if not chunked:
        return status, headers, rest
    payload = bytearray()
    while True:
        line, _, rest = rest.partition(b"\n")
        size = int(line.strip().split(b";")[0], 16)
        if size == 0:
            break
        payload += rest[:size]
        rest = rest[size:]
        rest = rest[2:] if rest.startswith(b"\r\n") else rest[1:]
    return status, headers, bytes(payload)
