"""The protocols of ``cypoe serve``, as plain functions (no sockets).

Each protocol is a :class:`Protocol`: ``connected(now)`` returns the records
to send when a client connects, ``input(record)`` the records to send for
one input record, ``close_after_connect`` / ``more()`` say whether the
connection ends at once (daytime) or streams (chargen).  Records are in the
framing of the server's filter: with ``line`` and ``block`` the filter adds
the terminator or the length prefix; with ``stream`` they are raw bytes.
"""
import time

PROTOCOLS = ("echo", "discard", "chargen", "daytime", "pong", "upper")
FILTERS = ("line", "stream", "block")

CHARGEN_WIDTH = 72
_CHARGEN_CHARS = bytes(range(32, 127))  # the 95 printable ASCII characters


def chargen_line(n):
    """RFC 864's line ``n`` (from 0): 72 printable characters starting at
    character ``n mod 95``, without the line end."""
    start = n % len(_CHARGEN_CHARS)
    doubled = _CHARGEN_CHARS + _CHARGEN_CHARS
    return doubled[start:start + CHARGEN_WIDTH]


def daytime_text(now=None):
    """RFC 867 suggests ``Weekday, Month Day, Year HH:MM:SS-ZONE``."""
    t = time.localtime(now if now is not None else time.time())
    return time.strftime("%A, %B %d, %Y %H:%M:%S-%Z", t).encode("ascii", "replace")


class Protocol:
    name = "?"
    close_after_connect = False
    streams = False
    answers = False      # writes in answer to input (needs backpressure)

    def __init__(self, filter_kind="line"):
        if filter_kind not in FILTERS:
            raise ValueError(f"filter must be one of {', '.join(FILTERS)}, not {filter_kind!r}")
        self.filter_kind = filter_kind

    def _line(self, data):
        """One line of output in this filter's framing."""
        return data + b"\r\n" if self.filter_kind == "stream" else data

    def connected(self, now=None):
        return []

    def input(self, record):
        return []

    def more(self, state):
        """For streaming protocols: the next batch of records; ``state`` is
        a per-connection dict the protocol keeps its position in."""
        return []


class Echo(Protocol):
    name = "echo"
    answers = True

    def input(self, record):
        return [record]


class Discard(Protocol):
    name = "discard"


class Upper(Protocol):
    name = "upper"
    answers = True

    def input(self, record):
        return [record.upper()]


PONG = b"+PONG\r\n"


class Pong(Protocol):
    """``+PONG\\r\\n`` for every redis command: inline (``PING\\r\\n``,
    redis-benchmark's ``ping_inline``) or a multibulk array
    (``*1\\r\\n$4\\r\\nPING\\r\\n``, ``ping_mbulk``).  With the line
    and stream filters the server counts commands with the compiled
    :class:`cypoe._resp.RespCounter` (what :meth:`input` does here too,
    for a stream of bytes); with the block filter each block is one
    command."""
    name = "pong"
    answers = True

    def __init__(self, filter_kind="line"):
        super().__init__(filter_kind)
        self._counter = None

    def input(self, record):
        if self.filter_kind == "block":
            return [b"+PONG"]
        if self._counter is None:
            from cypoe._resp import RespCounter
            self._counter = RespCounter()
        if self.filter_kind == "line":
            record = record + b"\n"
        n = self._counter.feed(record)
        return [PONG * n] if n else []


class Daytime(Protocol):
    name = "daytime"
    close_after_connect = True

    def connected(self, now=None):
        return [self._line(daytime_text(now))]


class Chargen(Protocol):
    """Lines of 72 rotating characters, for as long as the client reads."""
    name = "chargen"
    streams = True
    BATCH = 64

    def more(self, state):
        n = state.get("line", 0)
        state["line"] = n + self.BATCH
        return [self._line(chargen_line(i)) for i in range(n, n + self.BATCH)]


_CLASSES = {c.name: c for c in (Echo, Discard, Upper, Pong, Daytime, Chargen)}


def make_protocol(name, filter_kind="line"):
    try:
        cls = _CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; one of {', '.join(PROTOCOLS)}") from None
    return cls(filter_kind)
