# cython: language_level=3
"""Command framing of the redis protocol (RESP), counted in C.

``cypoe serve pong`` answers ``+PONG`` once per *command*, not once per
line: a client may send inline commands (``PING\\r\\n``, what
redis-benchmark's ``ping_inline`` sends) or multibulk arrays
(``*1\\r\\n$4\\r\\nPING\\r\\n``, ``ping_mbulk`` and every redis client
library).  :class:`RespCounter` walks the bytes as they come, split
anywhere, and says how many commands they completed; its state between
calls is a handful of integers, so the server's per-chunk work is one call
into C.
"""
cimport cython

from cypoe.includes.debug cimport CP_DBG_INC, CP_DBG_DEC, CP_DBG_RESP_COUNTERS, cp_debug_counters

# where the parser is between two bytes
cdef enum:
    S_START = 0        # at the start of a command
    S_INLINE = 1       # inside an inline command, up to its '\n'
    S_COUNT = 2        # the digits of '*N'
    S_BULK = 3         # expecting the '$' of the next argument
    S_LEN = 4          # the digits of '$LEN'
    S_DATA = 5         # skipping an argument's bytes and its CRLF
    S_ERROR = 6        # a protocol error: nothing more is parsed

# redis's own limits (proto-max-bulk-len and the multibulk count bound)
cdef enum:
    MAX_ARGS = 1024 * 1024
    MAX_INLINE = 64 * 1024
cdef long long MAX_BULK = 512 * 1024 * 1024


def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()


@cython.final
cdef class RespCounter:
    """Counts complete redis commands in a byte stream.

    ``feed(data) -> int``: how many commands ``data`` completed (with what
    came before).  An inline command is a line (``\\n``-terminated, ``\\r``
    optional); a blank line is no command, as in redis.  A multibulk
    command is ``*N`` followed by N ``$LEN`` bulk strings; ``*0`` and
    ``*-1`` are no command.  Malformed input (a bad count or length, a
    missing ``$``, an inline line over 64 KiB) sets ``error`` to redis's
    message and stops the parse: the server answers with it and closes, as
    redis does."""
    # Attributes: _resp.pxd.

    def __cinit__(self):
        self.state = S_START
        self.error = None
        CP_DBG_INC(CP_DBG_RESP_COUNTERS)

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_RESP_COUNTERS)

    def feed(self, const unsigned char[:] data):
        cdef Py_ssize_t i = 0, n = data.shape[0], take
        cdef long long count = 0
        cdef unsigned char c
        cdef int state = self.state
        while i < n:
            if state == S_DATA:
                take = n - i
                if take > self.skip:
                    take = <Py_ssize_t>self.skip
                self.skip -= take
                i += take
                if self.skip == 0:
                    self.args_left -= 1
                    if self.args_left == 0:
                        count += 1
                        state = S_START
                    else:
                        state = S_BULK
                continue
            c = data[i]
            i += 1
            if state == S_START:
                if c == c'*':
                    state = S_COUNT
                    self.num = 0
                    self.neg = False
                    self.digits = False
                else:
                    state = S_INLINE
                    self.content = False
                    self.line_len = 0
                    i -= 1          # the byte is the line's first
            elif state == S_INLINE:
                if c == c'\n':
                    if self.content:
                        count += 1
                    state = S_START
                else:
                    self.line_len += 1
                    if self.line_len > MAX_INLINE:
                        self.state = S_ERROR
                        self.error = "Protocol error: too big inline request"
                        return count
                    if c != c' ' and c != c'\t' and c != c'\r':
                        self.content = True
            elif state == S_COUNT or state == S_LEN:
                if c >= c'0' and c <= c'9':
                    self.num = self.num * 10 + (c - c'0')
                    self.digits = True
                    if self.num > MAX_BULK:
                        self.state = S_ERROR
                        self.error = ("Protocol error: invalid multibulk length"
                                      if state == S_COUNT else "Protocol error: invalid bulk length")
                        return count
                elif c == c'-' and not self.digits and not self.neg:
                    self.neg = True
                elif c == c'\r':
                    pass
                elif c == c'\n' and self.digits:
                    if state == S_COUNT:
                        if self.neg or self.num == 0:
                            state = S_START       # *0, *-1: an empty command
                        elif self.num > MAX_ARGS:
                            self.state = S_ERROR
                            self.error = "Protocol error: invalid multibulk length"
                            return count
                        else:
                            self.args_left = self.num
                            state = S_BULK
                    else:
                        if self.neg:
                            self.state = S_ERROR
                            self.error = "Protocol error: invalid bulk length"
                            return count
                        self.skip = self.num + 2      # the bytes and their CRLF
                        state = S_DATA
                else:
                    self.state = S_ERROR
                    self.error = ("Protocol error: invalid multibulk length"
                                  if state == S_COUNT else "Protocol error: invalid bulk length")
                    return count
            elif state == S_BULK:
                if c != c'$':
                    self.state = S_ERROR
                    self.error = f"Protocol error: expected '$', got '{chr(c)}'"
                    return count
                state = S_LEN
                self.num = 0
                self.neg = False
                self.digits = False
            else:   # S_ERROR
                return count
        self.state = state
        return count
