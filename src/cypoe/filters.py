"""Filters: bytes in, records out, and back (POE::Filter and friends).

``Line``, ``Block`` and ``Stream`` are the compiled classes of
``cypoe._filters`` (or, with the environment variable
``CYPOE_NO_EXTENSIONS=1``, the plain-Python reference classes of
``cypoe._filters_ref``).  ``Stackable``, ``Map``, ``Grep`` and ``JSONLines``
are plain Python.  Every filter is an instance of ``Filter``; a user filter
subclasses it.  See docs/filters.rst.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, Type, TypeVar, Union

from . import _filters_ref, _framing_ref
from .errors import FilterError, FrameError

__all__ = [
    "Filter",
    "Line",
    "Block",
    "Stream",
    "Stackable",
    "Map",
    "Grep",
    "JSONLines",
    "RedisReply",
    "HTTPResponse",
    "parse_response",
    "IMPLEMENTATION",
]

IMPLEMENTATION: str
if TYPE_CHECKING:
    from ._filters import Block, Line, Stream
    from ._framing import HTTPResponse, RedisReply
elif os.environ.get("CYPOE_NO_EXTENSIONS") == "1":
    from ._filters_ref import Block, Line, Stream
    from ._framing_ref import HTTPResponse, RedisReply
    IMPLEMENTATION = "reference"
else:
    from ._filters import Block, Line, Stream
    from ._framing import HTTPResponse, RedisReply
    IMPLEMENTATION = "compiled"


_F = TypeVar("_F", bound="Filter")


class Filter(abc.ABC):
    """Base class of every filter (POE::Filter).

    A subclass implements ``get_one_start``, ``get_one``, ``put`` and
    ``get_pending``; ``get`` and ``clone`` have defaults:

    * ``get(chunks)`` is ``get_one_start(chunks)`` then ``get_one()`` until
      it returns ``[]``; a ``FilterError`` raised on the way carries the
      records framed before it in ``.records``;
    * ``clone()`` calls the class again with the arguments the instance was
      constructed with (a new filter with the same settings and an empty
      buffer).  Override it when that is not right for your filter.
    """

    _filter_init_args: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls: type[_F], *args: Any, **kwargs: Any) -> _F:
        self = super().__new__(cls)
        self._filter_init_args = (args, kwargs)
        return self

    @abc.abstractmethod
    def get_one_start(self, chunks: Iterable[Any]) -> None:
        """Take in chunks (a list) without parsing them."""

    @abc.abstractmethod
    def get_one(self) -> list[Any]:
        """Return a list of at most one record (Map may return several that
        came from one input record); ``[]`` when nothing is complete."""

    @abc.abstractmethod
    def put(self, records: Iterable[Any]) -> list[Any]:
        """Serialise a list of records; return a list of chunks."""

    @abc.abstractmethod
    def get_pending(self) -> Any:
        """A copy of the buffered, unparsed input, or None (not cleared)."""

    def get(self, chunks: Iterable[Any]) -> list[Any]:
        """Feed chunks (a list); return every complete record, in order.

        The default runs ``get_one_start(chunks)`` and then ``get_one()``
        until it returns ``[]``; a :class:`~cypoe.errors.FilterError` raised
        on the way carries the records framed before it in ``.records``."""
        self.get_one_start(chunks)
        out: list[Any] = []
        while True:
            try:
                records = self.get_one()
            except FilterError as exc:
                exc.records = out + list(exc.records)
                raise
            if not records:
                return out
            out.extend(records)

    def clone(self) -> Filter:
        """A new filter with the same settings and an empty buffer.

        The default calls the class again with the arguments this instance
        was constructed with; override it when that is not right."""
        args, kwargs = self._filter_init_args
        return type(self)(*args, **kwargs)


#: What a component's ``*filter`` parameter takes: a Filter instance (cloned
#: per connection), a Filter class, or a zero-argument factory.
FilterSpec = Union[Filter, Type[Filter], Callable[[], Filter]]

parse_response = _framing_ref.parse_response

for _cls in (Line, Block, Stream, RedisReply, HTTPResponse,
             _filters_ref.Line, _filters_ref.Block, _filters_ref.Stream,
             _framing_ref.RedisReply, _framing_ref.HTTPResponse):
    Filter.register(_cls)
del _cls


def _check_filter(f: Any) -> Filter:
    if not isinstance(f, Filter):
        raise TypeError(f"filters must be Filter instances, not {type(f).__name__}")
    return f


class Stackable(Filter):
    """A stack of filters: input flows filters[0] -> filters[-1], output the
    other way.  ``get_pending`` reports the first filter's pending input."""

    def __init__(self, *, filters: Iterable[Filter] = ()) -> None:
        filters = list(filters)
        for f in filters:
            _check_filter(f)
        self._filters: list[Filter] = filters
        self._queue: list[Any] = []            # used only while the stack is empty

    def filters(self) -> list[Filter]:
        """The stacked filters, first (closest to the bytes) first."""
        return list(self._filters)

    def filter_types(self) -> list[type]:
        """The classes of the stacked filters, first (closest to the bytes) first."""
        return [type(f) for f in self._filters]

    def push(self, *filters: Filter) -> None:
        """Add filters at the record end of the stack."""
        for f in filters:
            _check_filter(f)
        self._filters.extend(filters)

    def unshift(self, *filters: Filter) -> None:
        """Add filters at the byte end of the stack (in the given order)."""
        for f in filters:
            _check_filter(f)
        self._filters[0:0] = filters

    def pop(self) -> Filter | None:
        """Remove and return the last filter (None when empty)."""
        return self._filters.pop() if self._filters else None

    def shift(self) -> Filter | None:
        """Remove and return the first filter (None when empty)."""
        return self._filters.pop(0) if self._filters else None

    def clone(self) -> Stackable:
        """A new stack of clones of the stacked filters (nothing buffered)."""
        return type(self)(filters=[f.clone() for f in self._filters])

    def get_one_start(self, chunks: Iterable[Any]) -> None:
        if self._filters:
            self._filters[0].get_one_start(chunks)
        else:
            self._queue.extend(chunks)

    def get_one(self) -> list[Any]:
        if not self._filters:
            return [self._queue.pop(0)] if self._queue else []
        # POE's algorithm: pull one record through the stack, refilling the
        # lower filters until the top yields something or all are exhausted.
        while True:
            records: list[Any] = []
            moved = False
            for f in self._filters:
                if records:
                    f.get_one_start(records)
                    moved = True
                records = f.get_one()
            if records or not moved:
                return records

    def get(self, chunks: Iterable[Any]) -> list[Any]:
        """Pass chunks through every filter in turn; return the records the
        last one completes.  A FilterError from any filter is raised once
        the rest of the stack has run, with the records that made it
        through in ``.records``."""
        records = self._queue + list(chunks)
        self._queue = []
        error = None
        for f in self._filters:
            try:
                records = f.get(records)
            except FilterError as exc:
                if error is None:
                    error = exc
                records = list(exc.records)
        if error is not None:
            error.records = records
            raise error
        return list(records)

    def put(self, records: Iterable[Any]) -> list[Any]:
        for f in reversed(self._filters):
            records = f.put(records)
        return list(records)

    def get_pending(self) -> Any:
        return self._filters[0].get_pending() if self._filters else None


def _callable(name: str, fn: Any) -> Callable[[Any], Any]:
    if not callable(fn):
        raise TypeError(f"{name} must be callable, not {type(fn).__name__}")
    return fn


def _functions(kind: str, code: Any, get: Any,
               put: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    if code is not None:
        if get is not None or put is not None:
            raise TypeError(f"{kind}: code cannot be combined with get or put")
        _callable("code", code)
        return code, code
    if get is None or put is None:
        raise TypeError(f"{kind} needs code=, or both get= and put=")
    return _callable("get", get), _callable("put", put)


class _RecordFilter(Filter):
    """Shared by Map and Grep: buffers records, not bytes."""

    _kind = ""

    def __init__(self, *, code: Callable[[Any], Any] | None = None,
                 get: Callable[[Any], Any] | None = None,
                 put: Callable[[Any], Any] | None = None) -> None:
        self._get, self._put = _functions(self._kind, code, get, put)
        self._queue: list[Any] = []

    @staticmethod
    def _apply(fn: Callable[[Any], Any], records: Iterable[Any]) -> list[Any]:
        raise NotImplementedError

    def modify(self, *, code: Callable[[Any], Any] | None = None,
               get: Callable[[Any], Any] | None = None,
               put: Callable[[Any], Any] | None = None) -> None:
        """Replace the functions (POE's modify)."""
        if code is not None:
            if get is not None or put is not None:
                raise TypeError(f"{self._kind}: code cannot be combined with get or put")
            self._get = self._put = _callable("code", code)
            return
        if get is not None:
            self._get = _callable("get", get)
        if put is not None:
            self._put = _callable("put", put)

    def clone(self) -> _RecordFilter:
        new: _RecordFilter = type(self).__new__(type(self))
        new._get, new._put, new._queue = self._get, self._put, []
        return new

    def get_one_start(self, records: Iterable[Any]) -> None:
        self._queue.extend(records)

    def get_pending(self) -> list[Any] | None:
        return list(self._queue) if self._queue else None

    def get_one(self) -> list[Any]:
        while self._queue:
            out = self._apply(self._get, [self._queue.pop(0)])
            if out:
                return out
        return []

    def get(self, records: Iterable[Any]) -> list[Any]:
        out = self._apply(self._get, self._queue + list(records))
        self._queue = []
        return out

    def put(self, records: Iterable[Any]) -> list[Any]:
        return self._apply(self._put, records)


class Map(_RecordFilter):
    """Map(code=f) or Map(get=f, put=g): each record becomes f(record); a
    function that returns a list gives zero or more records."""

    _kind = "Map"

    @staticmethod
    def _apply(fn: Callable[[Any], Any], records: Iterable[Any]) -> list[Any]:
        out: list[Any] = []
        for r in records:
            v = fn(r)
            if type(v) is list:
                out.extend(v)
            else:
                out.append(v)
        return out


class Grep(_RecordFilter):
    """Grep(code=p) or Grep(get=p, put=q): keep the records whose predicate
    is true."""

    _kind = "Grep"

    @staticmethod
    def _apply(fn: Callable[[Any], Any], records: Iterable[Any]) -> list[Any]:
        return [r for r in records if fn(r)]


def _json_decode(line: bytes) -> Any:
    try:
        return json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError) as exc:   # JSON, UTF-8, int-size errors
        raise FrameError(f"line is not valid JSON: {exc}") from None


class JSONLines(Filter):
    """One JSON value per line (UTF-8, ``\\n``).  Nothing is ever unpickled."""

    def __init__(self, *, max_length: int | None = None) -> None:
        self._line = Line(literal=b"\n", max_length=max_length)
        self._line._set_record_decoder(_json_decode)
        self._max_length = self._line.max_length

    @property
    def max_length(self) -> int:
        """The longest line accepted, in bytes (read-only)."""
        return self._max_length

    def clone(self) -> JSONLines:
        """A new JSONLines with the same ``max_length``, nothing buffered."""
        return type(self)(max_length=self._max_length)

    def get(self, chunks: Iterable[Any]) -> list[Any]:
        """Feed chunks of bytes; return the decoded JSON value of every
        complete line.  A line that is no JSON raises
        :class:`~cypoe.errors.FrameError`."""
        return self._line.get(chunks)

    def get_one_start(self, chunks: Iterable[Any]) -> None:
        self._line.get_one_start(chunks)

    def get_one(self) -> list[Any]:
        return self._line.get_one()

    def get_pending(self) -> bytes | None:
        return self._line.get_pending()

    def put(self, records: Iterable[Any]) -> list[bytes]:
        return [json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                + b"\n" for r in records]
