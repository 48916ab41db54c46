"""Plain-Python reference of the framing filters Line, Block and Stream.

This module states, in readable Python, exactly what the compiled filters in
``cypoe._filters`` do; the test-suite runs both and requires identical
records, errors and pending bytes.  It is always importable under its own
name, and ``CYPOE_NO_EXTENSIONS=1`` makes ``cypoe.filters`` use it.

The constructor validation helpers (``line_options``, ``block_options``) are
shared with the compiled module, so both reject the same arguments with the
same messages.

Vocabulary used below:

* the *buffer* holds input that has not become a record yet;
* a *partial line* is the tail of the buffer after the last terminator;
* *discarding* is the state after ``LineTooLong`` was raised for a partial
  line: bytes are dropped up to and including the next terminator.
"""

import codecs
import re
import struct

from .errors import BufferOverflow, FilterError, FrameError, FrameTooLong, LineTooLong

__all__ = ["Line", "Block", "Stream", "line_options", "block_options"]

MiB = 1024 * 1024
LINE_MAX_LENGTH = 1 * MiB
LINE_MAX_BUFFER = 16 * MiB
BLOCK_MAX_LENGTH = 16 * MiB
BLOCK_MAX_BUFFER = 64 * MiB

CR = 0x0D
LF = 0x0A
_NEWLINE = re.compile(b"[\r\n]")
_DIGITS = re.compile(b"[0-9]*")
_NON_DIGITS = re.compile(b"[^0-9]*")
# A length header of the default Block codec has at most this many digits.
MAX_HEADER_DIGITS = 20

MODE_DEFAULT = 0     # CR, LF, CRLF or LFCR
MODE_LITERAL = 1     # one fixed byte string
MODE_AUTODETECT = 2  # the first CR/LF/CRLF/LFCR becomes the literal
MODE_REGEXP = 3      # leftmost non-empty match of a bytes pattern


# --------------------------------------------------------------------------
# argument validation (shared with the compiled module)

def _positive_int(name, value, default):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _limits(max_length, max_buffer, default_length, default_buffer):
    max_length = _positive_int("max_length", max_length, default_length)
    if max_buffer is None:
        max_buffer = max(default_buffer, max_length)
    else:
        max_buffer = _positive_int("max_buffer", max_buffer, None)
        if max_buffer < max_length:
            raise ValueError(
                f"max_buffer ({max_buffer}) must not be smaller than "
                f"max_length ({max_length})")
    return max_length, max_buffer


def _terminator(name, value, encoding, allow_empty=False):
    if isinstance(value, str):
        value = value.encode(encoding or "utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
    else:
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return value


def line_options(literal=None, input_literal=None, output_literal=None,
                 input_regexp=None, autodetect=False, max_length=None,
                 max_buffer=None, encoding=None):
    """Validate Line's arguments; return them normalised as a dict."""
    if encoding is not None:
        if not isinstance(encoding, str):
            raise TypeError(
                f"encoding must be a str, not {type(encoding).__name__}")
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise ValueError(f"encoding: unknown encoding {encoding!r}") from None
    if not isinstance(autodetect, bool):
        raise TypeError(
            f"autodetect must be a bool, not {type(autodetect).__name__}")
    if literal is not None:
        others = [n for n, v in (("input_literal", input_literal),
                                 ("output_literal", output_literal),
                                 ("input_regexp", input_regexp))
                  if v is not None]
        if autodetect:
            others.append("autodetect")
        if others:
            raise ValueError(
                "literal cannot be combined with " + ", ".join(others))
        input_literal = output_literal = _terminator("literal", literal, encoding)
    else:
        if input_literal is not None and input_regexp is not None:
            raise ValueError("input_literal cannot be combined with input_regexp")
        if autodetect and (input_literal is not None or input_regexp is not None):
            raise ValueError(
                "autodetect cannot be combined with input_literal or input_regexp")
        if input_literal is not None:
            input_literal = _terminator("input_literal", input_literal, encoding)
        if output_literal is not None:
            output_literal = _terminator(
                "output_literal", output_literal, encoding, allow_empty=True)
    regexp = None
    if input_regexp is not None:
        if isinstance(input_regexp, (bytes, bytearray)):
            if not input_regexp:
                raise ValueError("input_regexp must not be empty")
            try:
                regexp = re.compile(bytes(input_regexp))
            except re.error as exc:
                raise ValueError(f"input_regexp: {exc}") from None
        elif isinstance(input_regexp, re.Pattern):
            if not isinstance(input_regexp.pattern, bytes):
                raise TypeError("input_regexp must be a bytes pattern, not a str pattern")
            regexp = input_regexp
        else:
            raise TypeError(
                "input_regexp must be bytes or a compiled bytes pattern, "
                f"not {type(input_regexp).__name__}")
    max_length, max_buffer = _limits(
        max_length, max_buffer, LINE_MAX_LENGTH, LINE_MAX_BUFFER)
    if regexp is not None:
        mode = MODE_REGEXP
    elif input_literal is not None:
        mode = MODE_LITERAL
    elif autodetect:
        mode = MODE_AUTODETECT
    else:
        mode = MODE_DEFAULT
    return {
        "mode": mode,
        "input_literal": input_literal,
        "output_literal": b"\r\n" if output_literal is None else output_literal,
        "regexp": regexp,
        "max_length": max_length,
        "max_buffer": max_buffer,
        "encoding": encoding,
    }


_PREFIX_FORMAT = re.compile(r"([@=<>!]?)([BHILQN])")


def _length_prefix(fmt):
    if isinstance(fmt, bytes):
        fmt = fmt.decode("ascii", "replace")
    if not isinstance(fmt, str):
        raise TypeError(
            f"length_prefix must be a struct format str, not {type(fmt).__name__}")
    m = _PREFIX_FORMAT.fullmatch(fmt)
    if m is None:
        raise ValueError(
            "length_prefix must be a struct format of one unsigned integer "
            f"(such as '!I', '!H', '<Q'), got {fmt!r}")
    if m.group(2) == "N" and m.group(1) not in ("", "@"):
        raise ValueError(f"length_prefix {fmt!r}: 'N' is only valid in native mode")
    return struct.Struct(fmt)


def block_options(block_size=None, length_codec=None, length_prefix=None,
                  max_length=None, max_buffer=None):
    """Validate Block's arguments; return them normalised as a dict.

    max_length bounds a length-prefixed frame; fixed-size blocks have no
    such limit (a block is block_size bytes), so, as in POE, block_size
    rejects max_length, and its max_length is block_size itself."""
    codec = None
    prefix = None
    if block_size is not None:
        block_size = _positive_int("block_size", block_size, None)
        if length_codec is not None or length_prefix is not None:
            raise ValueError(
                "block_size cannot be combined with length_codec or length_prefix")
        if max_length is not None:
            raise ValueError(
                "block_size cannot be combined with max_length "
                "(a fixed block is block_size bytes)")
        max_length = block_size
        max_buffer = _positive_int("max_buffer", max_buffer, BLOCK_MAX_BUFFER)
        if block_size > max_buffer:
            raise ValueError(
                f"block_size ({block_size}) must not exceed max_buffer ({max_buffer})")
        return {"block_size": block_size, "codec": None, "prefix": None,
                "max_length": max_length, "max_buffer": max_buffer}
    max_length, max_buffer = _limits(
        max_length, max_buffer, BLOCK_MAX_LENGTH, BLOCK_MAX_BUFFER)
    if length_codec is not None:
        if length_prefix is not None:
            raise ValueError("length_codec cannot be combined with length_prefix")
        try:
            encode, decode = length_codec
        except (TypeError, ValueError):
            raise TypeError(
                "length_codec must be a pair (encode, decode) of callables") from None
        if not callable(encode) or not callable(decode):
            raise TypeError("length_codec must be a pair (encode, decode) of callables")
        codec = (encode, decode)
    elif length_prefix is not None:
        prefix = _length_prefix(length_prefix)
    return {
        "block_size": block_size,
        "codec": codec,
        "prefix": prefix,
        "max_length": max_length,
        "max_buffer": max_buffer,
    }


# --------------------------------------------------------------------------
# helpers shared by the reference filters

def chunk_list(chunks):
    """The chunks of a get()/get_one_start() call as a list of bytes."""
    if isinstance(chunks, (bytes, bytearray, str, memoryview)):
        raise TypeError("chunks must be a list of bytes, not a single "
                        + type(chunks).__name__)
    out = []
    for chunk in chunks:
        if isinstance(chunk, bytes):
            out.append(chunk)
        elif isinstance(chunk, str):
            raise TypeError("chunks must be bytes-like, not str")
        else:
            try:
                out.append(memoryview(chunk).tobytes())
            except TypeError:
                raise TypeError(
                    f"chunks must be bytes-like, not {type(chunk).__name__}") from None
    return out


def record_bytes(record, encoding):
    """A record given to put() as bytes (str is encoded when allowed)."""
    if isinstance(record, bytes):
        return record
    if isinstance(record, str):
        if encoding is None:
            raise TypeError("records must be bytes-like (this filter has no encoding), not str")
        return record.encode(encoding)
    try:
        return memoryview(record).tobytes()
    except TypeError:
        raise TypeError(
            f"records must be bytes-like, not {type(record).__name__}") from None


def overflow(max_buffer):
    return BufferOverflow(f"buffer exceeds max_buffer ({max_buffer} bytes)")


def _suffix_prefix(data, term):
    """Length of the longest suffix of data that is a proper prefix of term."""
    for k in range(min(len(term) - 1, len(data)), 0, -1):
        if data.endswith(term[:k]):
            return k
    return 0


# --------------------------------------------------------------------------

class Line:
    """Lines ended by a terminator (see docs/filters.rst)."""

    def __init__(self, *, literal=None, input_literal=None, output_literal=None,
                 input_regexp=None, autodetect=False, max_length=None,
                 max_buffer=None, encoding=None):
        self._kwargs = dict(literal=literal, input_literal=input_literal,
                            output_literal=output_literal,
                            input_regexp=input_regexp, autodetect=autodetect,
                            max_length=max_length, max_buffer=max_buffer,
                            encoding=encoding)
        opts = line_options(**self._kwargs)
        self._mode = opts["mode"]
        self._term = opts["input_literal"]
        self._out_term = opts["output_literal"]
        self._regexp = opts["regexp"]
        self._max_length = opts["max_length"]
        self._max_buffer = opts["max_buffer"]
        self._encoding = opts["encoding"]
        self._record_decoder = None
        self._buf = bytearray()
        self._skip = None           # complement byte to drop if it comes next
        # autodetect: the record before a lone CR/LF at the end of the data
        # was emitted; the terminator is that byte, or that byte and _skip
        # if _skip comes next (the choice waits, the record does not).
        self._choosing = False
        self._discarding = False    # after LineTooLong for a partial line

    max_length = property(lambda self: self._max_length)
    max_buffer = property(lambda self: self._max_buffer)
    encoding = property(lambda self: self._encoding)

    def _set_record_decoder(self, decoder):
        """Internal (JSONLines): decoder(bytes) -> record, may raise FilterError."""
        self._record_decoder = decoder

    def clone(self):
        new = type(self)(**self._kwargs)
        new._record_decoder = self._record_decoder
        if self._kwargs["autodetect"] and self._mode == MODE_LITERAL \
                and not self._choosing:
            new._mode, new._term = MODE_LITERAL, self._term   # detected
        return new

    # -- input --------------------------------------------------------------

    def get_one_start(self, chunks):
        chunks = chunk_list(chunks)
        if len(self._buf) + sum(map(len, chunks)) > self._max_buffer:
            raise overflow(self._max_buffer)
        for chunk in chunks:
            self._buf += chunk

    def get_one(self):
        out = []
        self._parse(out, limit=1)
        return out

    def get(self, chunks):
        chunks = chunk_list(chunks)
        if len(self._buf) + sum(map(len, chunks)) > self._max_buffer:
            raise overflow(self._max_buffer)
        out = []
        for i, chunk in enumerate(chunks or [b""]):
            self._buf += chunk
            try:
                self._parse(out)
            except FilterError as exc:
                for rest in chunks[i + 1:]:     # keep the unparsed input
                    self._buf += rest
                exc.records = out
                raise
        return out

    def get_pending(self):
        return bytes(self._buf) if self._buf else None

    def _find(self, buf, pos):
        """(line_end, next_pos) of the first whole terminator at or after
        pos, or None when the bytes so far do not settle one."""
        if self._mode == MODE_LITERAL:
            i = buf.find(self._term, pos)
            return None if i < 0 else (i, i + len(self._term))
        if self._mode == MODE_REGEXP:
            for m in self._regexp.finditer(buf, pos):
                if m.end() > m.start():          # empty matches never split
                    return m.start(), m.end()
            return None
        m = _NEWLINE.search(buf, pos)
        if m is None:
            return None
        i = m.start()
        other = LF if buf[i] == CR else CR
        if self._mode == MODE_DEFAULT:
            if i + 1 == len(buf):
                self._skip = other      # a following `other` belongs to it
                return i, i + 1
            return i, i + 2 if buf[i + 1] == other else i + 1
        # MODE_AUTODETECT: the first CR/LF fixes the terminator.  A lone one
        # at the very end of the data ends the line at once; only the choice
        # between it and the pair (CR or CRLF, LF or LFCR) waits for the next
        # byte (see _parse).
        if i + 1 == len(buf):
            self._term = bytes(buf[i:i + 1])
            self._mode = MODE_LITERAL
            self._skip = other
            self._choosing = True
            return i, i + 1
        self._term = bytes(buf[i:i + 2] if buf[i + 1] == other else buf[i:i + 1])
        self._mode = MODE_LITERAL
        return i, i + len(self._term)

    def _keep(self, buf, pos):
        """Trailing bytes of an unterminated tail that may start a terminator."""
        if self._mode == MODE_LITERAL:
            return _suffix_prefix(buf[pos:], self._term)
        return 0

    def _parse(self, out, limit=None):
        buf = self._buf
        pos = 0
        count = 0
        try:
            while limit is None or count < limit:
                if self._skip is not None and pos < len(buf):
                    if buf[pos] == self._skip:
                        pos += 1
                        if self._choosing:      # autodetect: the pair it is
                            self._term += bytes((self._skip,))
                    self._skip = None
                    self._choosing = False
                found = self._find(buf, pos)
                if found is None:
                    keep = self._keep(buf, pos)
                    length = len(buf) - pos - keep
                    if self._discarding:
                        pos = len(buf) - keep
                    elif length > self._max_length:
                        self._discarding = True
                        pos = len(buf) - keep
                        raise LineTooLong(
                            f"line exceeds max_length ({self._max_length} bytes)")
                    return
                end, nxt = found
                line = bytes(buf[pos:end])
                pos = nxt
                if self._discarding:        # the end of an over-long line
                    self._discarding = False
                    continue
                if len(line) > self._max_length:
                    raise LineTooLong(
                        f"line exceeds max_length ({self._max_length} bytes)")
                out.append(self._record(line))
                count += 1
        finally:
            del buf[:pos]

    def _record(self, line):
        if self._encoding is not None:
            try:
                line = line.decode(self._encoding)
            except UnicodeDecodeError as exc:
                raise FrameError(f"line is not valid {self._encoding}: {exc}") from None
        if self._record_decoder is not None:
            line = self._record_decoder(line)
        return line

    # -- output -------------------------------------------------------------

    def put(self, records):
        term = self._out_term
        return [record_bytes(r, self._encoding) + term for r in records]


# --------------------------------------------------------------------------

class Block:
    """Fixed-size blocks or length-prefixed frames (see docs/filters.rst)."""

    def __init__(self, *, block_size=None, length_codec=None, length_prefix=None,
                 max_length=None, max_buffer=None):
        self._kwargs = dict(block_size=block_size, length_codec=length_codec,
                            length_prefix=length_prefix, max_length=max_length,
                            max_buffer=max_buffer)
        opts = block_options(**self._kwargs)
        self._block_size = opts["block_size"]
        self._codec = opts["codec"]
        self._prefix = opts["prefix"]
        self._max_length = opts["max_length"]
        self._max_buffer = opts["max_buffer"]
        self._buf = bytearray()
        self._frame = None          # (header_size, payload_size) of the next frame
        self._skip_payload = 0      # bytes of an over-long payload still to drop
        self._bad_run = False       # dropping the digits of an impossible header
        self.garbage_bytes = 0

    max_length = property(lambda self: self._max_length)
    max_buffer = property(lambda self: self._max_buffer)
    block_size = property(lambda self: self._block_size)

    def clone(self):
        return type(self)(**self._kwargs)

    def get_one_start(self, chunks):
        chunks = chunk_list(chunks)
        if len(self._buf) + sum(map(len, chunks)) > self._max_buffer:
            raise overflow(self._max_buffer)
        for chunk in chunks:
            self._buf += chunk

    def get_one(self):
        out = []
        self._parse(out, limit=1)
        return out

    get = Line.get

    def get_pending(self):
        return bytes(self._buf) if self._buf else None

    def _parse(self, out, limit=None):
        buf = self._buf
        self._pos = 0
        count = 0
        try:
            while limit is None or count < limit:
                if self._skip_payload:
                    n = min(self._skip_payload, len(buf) - self._pos)
                    self._pos += n
                    self._skip_payload -= n
                    if self._skip_payload:
                        return
                if self._frame is None:
                    self._frame = self._header()
                    if self._frame is None:
                        return
                hs, ps = self._frame
                if len(buf) - self._pos < hs + ps:
                    return
                out.append(bytes(buf[self._pos + hs:self._pos + hs + ps]))
                self._pos += hs + ps
                self._frame = None
                count += 1
        finally:
            del buf[:self._pos]

    def _header(self):
        """Decode the header at self._pos: (header_size, payload_size), or
        None when more bytes are needed.  Raises FrameError/FrameTooLong."""
        buf, pos = self._buf, self._pos
        if self._block_size is not None:
            return 0, self._block_size
        if self._prefix is not None:
            hs = self._prefix.size
            if len(buf) - pos < hs:
                return None
            return self._check(hs, self._prefix.unpack_from(buf, pos)[0])
        if self._codec is not None:
            result = self._codec[1](bytes(buf[pos:]))
            if result is None:
                return None
            try:
                hs, ps = result
            except (TypeError, ValueError):
                raise TypeError("length_codec decode must return "
                                "(header_size, payload_size) or None") from None
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (hs, ps)) \
                    or hs < 1 or ps < 0 or hs > len(buf) - pos:
                raise ValueError(
                    f"length_codec decode returned an impossible header ({hs!r}, {ps!r})")
            return self._check(hs, ps)
        # default codec: garbage, then ASCII digits, then NUL
        if self._bad_run:
            pos = self._pos = _DIGITS.match(buf, pos).end()
            if pos == len(buf):
                return None
            self._bad_run = False
        end = _NON_DIGITS.match(buf, pos).end()
        self.garbage_bytes += end - pos
        pos = self._pos = end
        if pos == len(buf):
            return None
        run = _DIGITS.match(buf, pos, pos + MAX_HEADER_DIGITS + 1).end() - pos
        if run > MAX_HEADER_DIGITS:
            self._pos = pos + run
            self._bad_run = True
            raise FrameError(
                f"length header longer than {MAX_HEADER_DIGITS} digits")
        if pos + run == len(buf):
            return None
        if buf[pos + run] != 0:
            self._pos = pos + run
            raise FrameError(
                f"length header digits followed by byte {buf[pos + run]:#04x}, not NUL")
        return self._check(run + 1, int(buf[pos:pos + run]))

    def _check(self, hs, ps):
        if ps > self._max_length:
            self._pos += hs
            self._skip_payload = ps
            raise FrameTooLong(
                f"frame of {ps} bytes exceeds max_length ({self._max_length} bytes)")
        return hs, ps

    def put(self, records):
        if self._block_size is not None:
            return [b"".join(record_bytes(r, None) for r in records)]
        out = []
        for r in records:
            r = record_bytes(r, None)
            if self._codec is not None:
                frame = self._codec[0](r)
                if not isinstance(frame, (bytes, bytearray, memoryview)):
                    raise TypeError("length_codec encode must return bytes, not "
                                    + type(frame).__name__)
                out.append(bytes(frame))
            elif self._prefix is not None:
                try:
                    out.append(self._prefix.pack(len(r)) + r)
                except struct.error:
                    raise FrameTooLong(
                        f"record of {len(r)} bytes does not fit length_prefix "
                        f"{self._prefix.format!r}") from None
            else:
                out.append(b"%d\0" % len(r) + r)
        return out


# --------------------------------------------------------------------------

class Stream:
    """Bytes pass through: get returns what arrived as one record."""

    def __init__(self):
        self._buf = bytearray()

    def clone(self):
        return type(self)()

    def get_one_start(self, chunks):
        for chunk in chunk_list(chunks):
            self._buf += chunk

    def get_one(self):
        if not self._buf:
            return []
        record = bytes(self._buf)
        self._buf.clear()
        return [record]

    def get(self, chunks):
        self.get_one_start(chunks)
        return self.get_one()

    def get_pending(self):
        return bytes(self._buf) if self._buf else None

    def put(self, records):
        return list(records)
