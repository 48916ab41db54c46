"""The debug build's counters, summed over the compiled modules.

``CYPOE_DEBUG=1 pip install -e .`` (or ``CYPOE_DEBUG=1 python setup.py
build_ext --inplace --force``) compiles counters into every module
(cython/cypoe/includes/debug.h): kernels, registered fd watchers, timers,
sessions, ReadWrites, SocketFactories, lingering sockets, TLS drivers,
ByteBuffers and their memory blocks, component cores, scans, RESP
counters, load engines with their connections' state arrays and
histograms, response parsers (RedisReply, HTTPResponse, a load
connection's) and their split-line buffers.  A release build has none of that code, and
:func:`debug_counters` returns None.
"""
import importlib

# The compiled modules that keep counters (each its own table).
_MODULES = ("_buffer", "_kernel", "_lookup", "_linger", "_readwrite", "_tls", "_socketfactory",
            "_components", "_scan", "_resp", "_framing", "_load")

#: Counters that are gauges, not leaks: the buffer pool keeps up to 64 free
#: blocks for reuse, and how many it holds depends on what ran before.
GAUGES = frozenset({"pool_blocks"})


def is_debug_build():
    """True when the compiled modules were built with CYPOE_DEBUG=1."""
    from cypoe import _kernel
    return _kernel.debug_counters() is not None


def debug_counters():
    """The debug counters as ``{name: value}`` summed over every compiled
    module, or None in a release build.  Each counter is the number of
    things of its kind that exist (or are registered) right now; a test
    that cleaned up after itself leaves every one where it found it
    (``pool_blocks`` excepted, see GAUGES)."""
    total = None
    for name in _MODULES:
        try:
            mod = importlib.import_module("cypoe." + name)
        except ImportError:         # a partial build (CYPOE_BUILD_ONLY)
            continue
        fn = getattr(mod, "debug_counters", None) or getattr(mod, "_debug_counters", None)
        counts = fn() if fn is not None else None
        if counts is None:
            continue
        if total is None:
            total = dict(counts)
        else:
            for key, value in counts.items():
                total[key] = total.get(key, 0) + value
    return total
