"""cypoe: POE's networking components for Python, with a Cython core.

The public names are listed in ``__all__``; the API reference of the
documentation describes each one.
"""

from __future__ import annotations

__version__ = "0.1.0"

try:
    from cypoe import _kernel
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "cypoe's compiled modules are missing or were built for another "
        "Python ({}). Build them with `pip install .` (or, in a checkout, "
        "`pip install -e .` / `python setup.py build_ext --inplace`); a C "
        "compiler and the Python headers are needed.".format(exc)
    ) from exc

from cypoe.errors import (
    BufferOverflow,
    CypoeError,
    FilterError,
    FrameError,
    FrameTooLong,
    LineTooLong,
)
from cypoe._kernel import Kernel, Session, Timer, default_kernel
from cypoe.filters import (
    Block,
    Filter,
    Grep,
    JSONLines,
    Line,
    Map,
    Stackable,
    Stream,
    RedisReply,
    HTTPResponse,
)
from cypoe._io import SocketFactory, ReadWrite, TLS
from cypoe.server import Server, Connection
from cypoe.client import Client
from cypoe.tcpmulti import TCPMulti, Conn
from cypoe._debug import debug_counters

#: The process's default Kernel.
kernel: Kernel = default_kernel()


def run() -> None:
    """Run the default kernel (``cypoe.kernel.run()``)."""
    return kernel.run()


def stop() -> None:
    """Stop the default kernel (``cypoe.kernel.stop()``)."""
    return kernel.stop()


__all__ = [
    "Kernel",
    "Session",
    "Timer",
    "kernel",
    "run",
    "stop",
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
    "SocketFactory",
    "ReadWrite",
    "TLS",
    "Server",
    "Connection",
    "Client",
    "TCPMulti",
    "Conn",
    "CypoeError",
    "FilterError",
    "LineTooLong",
    "FrameTooLong",
    "FrameError",
    "BufferOverflow",
]
