"""cypoe's exception hierarchy.

Every error cypoe raises on purpose is a ``CypoeError``.  The framing filters
raise ``FilterError`` subclasses when a bound is exceeded or a frame is
malformed; inside a ReadWrite they become error events (operation
``"filter"``, ``errno.EMSGSIZE``) instead of exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "CypoeError",
    "FilterError",
    "LineTooLong",
    "FrameTooLong",
    "FrameError",
    "BufferOverflow",
]


class CypoeError(Exception):
    """Base class of every error cypoe raises deliberately."""


class FilterError(CypoeError, ValueError):
    """A framing filter met input it cannot turn into records.

    ``records`` holds the records the same ``get`` call had already framed
    before the error, in order, so that an error never loses the records
    that came before it.
    """

    records: list[Any]

    def __init__(self, message: str = "", records: Iterable[Any] | None = None) -> None:
        super().__init__(message)
        self.records = list(records) if records else []


class LineTooLong(FilterError):
    """A line grew past the filter's ``max_length``."""


class FrameTooLong(FilterError):
    """A frame header announced a payload larger than ``max_length``."""


class FrameError(FilterError):
    """A frame or record is malformed (bad header, undecodable text, bad JSON)."""


class BufferOverflow(FilterError):
    """Buffered, unparsed input would exceed the filter's ``max_buffer``."""
