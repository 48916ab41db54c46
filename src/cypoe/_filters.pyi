# Type stubs for the compiled module cypoe._filters (cython/cypoe/_filters.pyx).
#
# At run time the compiled filters are registered as virtual subclasses of
# cypoe.filters.Filter (Filter.register); the stub states it as a base so
# that a Line is accepted wherever a Filter is.
import re
from collections.abc import Callable, Iterable
from typing import Any

from cypoe.errors import BufferOverflow as BufferOverflow
from cypoe.errors import FilterError as FilterError
from cypoe.errors import FrameError as FrameError
from cypoe.errors import FrameTooLong as FrameTooLong
from cypoe.errors import LineTooLong as LineTooLong
from cypoe.filters import Filter

class FilterBase(Filter):
    def get(self, chunks: Iterable[Any]) -> list[Any]: ...
    def get_one_start(self, chunks: Iterable[Any]) -> None: ...
    def get_one(self) -> list[Any]: ...
    def get_pending(self) -> bytes | None: ...
    def put(self, records: Iterable[Any]) -> list[bytes]: ...

class Line(FilterBase):
    @property
    def max_length(self) -> int: ...
    @property
    def max_buffer(self) -> int: ...
    @property
    def encoding(self) -> str | None: ...
    def __init__(
        self,
        *,
        literal: bytes | str | None = None,
        input_literal: bytes | str | None = None,
        output_literal: bytes | str | None = None,
        input_regexp: bytes | str | re.Pattern[bytes] | re.Pattern[str] | None = None,
        autodetect: bool = False,
        max_length: int | None = None,
        max_buffer: int | None = None,
        encoding: str | None = None,
    ) -> None: ...
    def clone(self) -> Line: ...
    def _set_record_decoder(self, decoder: Callable[[bytes], Any] | None) -> None: ...

class Block(FilterBase):
    @property
    def max_length(self) -> int: ...
    @property
    def max_buffer(self) -> int: ...
    @property
    def block_size(self) -> int | None: ...
    @property
    def garbage_bytes(self) -> int: ...
    def __init__(
        self,
        *,
        block_size: int | None = None,
        length_codec: tuple[Callable[..., Any], Callable[..., Any]] | None = None,
        length_prefix: str | None = None,
        max_length: int | None = None,
        max_buffer: int | None = None,
    ) -> None: ...
    def clone(self) -> Block: ...

class Stream(FilterBase):
    def __init__(self) -> None: ...
    def clone(self) -> Stream: ...
