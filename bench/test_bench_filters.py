"""Framing filter benchmarks (issue "Framing filters in Cython").

Run:  PYTHONPATH=src python -m pytest bench/test_bench_filters.py --benchmark-only -q

Each group is one workload; ``impl`` names who ran it.  bench/conftest.py
prints ``peer median / cypoe median`` per group at the end (> 1: cypoe is
faster).  Peers: the plain-Python reference (cypoe._filters_ref), the
``bytes.split`` floor (splitting only: no partial-line handling, no limits),
``asyncio.StreamReader.readline`` and Twisted's ``LineReceiver`` over the
same chunks.  Twisted is optional: its benchmark skips when it is missing.
"""
import asyncio

import pytest

from cypoe import _filters, _filters_ref
from cypoe._buffer import ByteBuffer

MiB = 1024 * 1024
CHUNK = 64 * 1024
LINE = b"x" * 63 + b"\n"                      # 64-byte lines
LINE_CHUNKS = [LINE * (CHUNK // len(LINE))] * (64 * MiB // CHUNK)
LINES_PER_CHUNK = CHUNK // len(LINE)
N_LINES = len(LINE_CHUNKS) * LINES_PER_CHUNK
RECORDS = [b"r" * 62] * 1_000_000
GROUP_GET = "Line.get 64 MiB of 64-byte lines, 64 KiB chunks"
GROUP_PUT = "Line.put 1M records"


def _tag(benchmark, group, impl, nbytes=None):
    benchmark.group = group
    benchmark.extra_info["impl"] = impl
    if nbytes:
        benchmark.extra_info["bytes"] = nbytes


def _mbps(benchmark, nbytes):
    median = benchmark.stats.stats.median
    benchmark.extra_info["MB/s"] = round(nbytes / median / 1e6, 1)


def _line_get(make):
    def run():
        f = make()
        n = 0
        for chunk in LINE_CHUNKS:
            n += len(f.get([chunk]))
        assert n == N_LINES
        return n
    return run


# -- Line.get --------------------------------------------------------------------

@pytest.mark.parametrize("impl, make, rounds", [
    ("cypoe", lambda: _filters.Line(literal=b"\n"), 5),
    ("cypoe (default CR/LF terminator)", lambda: _filters.Line(), 5),
    ("reference", lambda: _filters_ref.Line(literal=b"\n"), 2),
    ("reference (default terminator)", lambda: _filters_ref.Line(), 2),
])
def test_line_get(benchmark, impl, make, rounds):
    _tag(benchmark, GROUP_GET, impl, 64 * MiB)
    benchmark.pedantic(_line_get(make), rounds=rounds, iterations=1, warmup_rounds=0)
    _mbps(benchmark, 64 * MiB)


def test_line_feed_c_face(benchmark):
    """What ReadWrite does: feed() per read, no Python get() call."""
    _tag(benchmark, GROUP_GET, "cypoe C face (feed)", 64 * MiB)

    def run():
        f = _filters.Line(literal=b"\n")
        n = 0
        for chunk in LINE_CHUNKS:
            n += len(f._c_feed(chunk)[0])
        assert n == N_LINES
    benchmark.pedantic(run, rounds=5, iterations=1)
    _mbps(benchmark, 64 * MiB)


def test_bytes_split_floor(benchmark):
    _tag(benchmark, GROUP_GET, "bytes.split (floor)", 64 * MiB)

    def run():
        n = 0
        for chunk in LINE_CHUNKS:
            n += len(chunk.split(b"\n")) - 1
        assert n == N_LINES
    benchmark.pedantic(run, rounds=5, iterations=1)
    _mbps(benchmark, 64 * MiB)


def test_asyncio_readline(benchmark):
    _tag(benchmark, GROUP_GET, "asyncio.StreamReader.readline", 64 * MiB)

    async def read_all():
        reader = asyncio.StreamReader(limit=MiB)
        n = 0
        for chunk in LINE_CHUNKS:
            reader.feed_data(chunk)
            for _ in range(LINES_PER_CHUNK):       # every line is complete
                await reader.readline()
                n += 1
        assert n == N_LINES

    benchmark.pedantic(lambda: asyncio.run(read_all()), rounds=2, iterations=1)
    _mbps(benchmark, 64 * MiB)


def test_twisted_line_receiver(benchmark):
    basic = pytest.importorskip("twisted.protocols.basic")

    class Receiver(basic.LineReceiver):
        delimiter = b"\n"
        MAX_LENGTH = MiB

        def __init__(self):
            self.n = 0

        def lineReceived(self, line):
            self.n += 1

    _tag(benchmark, GROUP_GET, "twisted LineReceiver.dataReceived", 64 * MiB)

    def run():
        r = Receiver()
        for chunk in LINE_CHUNKS:
            r.dataReceived(chunk)
        assert r.n == N_LINES
    benchmark.pedantic(run, rounds=2, iterations=1)
    _mbps(benchmark, 64 * MiB)


# -- Line.put ------------------------------------------------------------------------

@pytest.mark.parametrize("impl, make, rounds", [
    ("cypoe", _filters.Line, 5),
    ("reference", _filters_ref.Line, 3),
])
def test_line_put(benchmark, impl, make, rounds):
    _tag(benchmark, GROUP_PUT, impl)
    f = make()
    out = benchmark.pedantic(f.put, args=(RECORDS,), rounds=rounds, iterations=1)
    assert len(out) == len(RECORDS) and out[0] == RECORDS[0] + b"\r\n"


def test_line_put_into_c_face(benchmark):
    """What ReadWrite does: serialise into its (reused) output buffer."""
    _tag(benchmark, GROUP_PUT, "cypoe C face (put_into a warm buffer)")
    f = _filters.Line()
    records = tuple(RECORDS)
    buf = ByteBuffer()

    def drain():                     # untimed: empty the buffer, keep its memory
        buf.read()

    def run():
        f._c_put_into(records, buf)
        assert len(buf) == 64 * len(records)
    benchmark.pedantic(run, setup=drain, rounds=5, iterations=1, warmup_rounds=1)


GROUP_PUT_BATCH = "Line.put 1M records in calls of 100 (results dropped per call)"
BATCHES = [RECORDS[i:i + 100] for i in range(0, len(RECORDS), 100)]


@pytest.mark.parametrize("impl, make, rounds", [
    ("cypoe", _filters.Line, 5),
    ("reference", _filters_ref.Line, 3),
])
def test_line_put_batches(benchmark, impl, make, rounds):
    """A put of 1M records in one call is dominated by allocating and
    page-faulting 1M live result objects (the same cost for every
    implementation); this group measures serialisation with the results
    freed after each call, as happens when ReadWrite puts and flushes."""
    _tag(benchmark, GROUP_PUT_BATCH, impl)
    f = make()

    def run():
        for batch in BATCHES:
            f.put(batch)
    benchmark.pedantic(run, rounds=rounds, iterations=1)


def test_put_batches_listcomp_floor(benchmark):
    _tag(benchmark, GROUP_PUT_BATCH, "[r + b'\\r\\n' for r in batch] (floor)")

    def run():
        for batch in BATCHES:
            [r + b"\r\n" for r in batch]
    benchmark.pedantic(run, rounds=5, iterations=1)


def test_put_listcomp_floor(benchmark):
    _tag(benchmark, GROUP_PUT, "[r + b'\\r\\n' for r in records] (floor)")
    benchmark.pedantic(lambda: [r + b"\r\n" for r in RECORDS], rounds=5, iterations=1)


# -- Block ------------------------------------------------------------------------

def _block_chunks(codec):
    frames = b"".join(_filters.Block(**codec).put([b"p" * 60] * (16 * MiB // 64)))
    return [frames[i:i + CHUNK] for i in range(0, len(frames), CHUNK)]


BLOCK_CODECS = {"default codec": {}, "length_prefix '!I'": {"length_prefix": "!I"}}


@pytest.mark.parametrize("codec", sorted(BLOCK_CODECS))
@pytest.mark.parametrize("impl", ["cypoe", "reference"])
def test_block_get(benchmark, codec, impl):
    opts = BLOCK_CODECS[codec]
    chunks = _block_chunks(opts)
    nbytes = sum(map(len, chunks))
    _tag(benchmark, f"Block.get {codec}, 16 MiB of 60-byte payloads, 64 KiB chunks", impl, nbytes)
    mod = _filters if impl == "cypoe" else _filters_ref

    def run():
        f = mod.Block(**opts)
        n = 0
        for chunk in chunks:
            n += len(f.get([chunk]))
        assert n == 16 * MiB // 64
    benchmark.pedantic(run, rounds=5 if impl == "cypoe" else 2, iterations=1)
    _mbps(benchmark, nbytes)


@pytest.mark.parametrize("codec", sorted(BLOCK_CODECS))
@pytest.mark.parametrize("impl", ["cypoe", "reference"])
def test_block_put(benchmark, codec, impl):
    opts = BLOCK_CODECS[codec]
    _tag(benchmark, f"Block.put {codec}, 1M records", impl)
    mod = _filters if impl == "cypoe" else _filters_ref
    f = mod.Block(**opts)
    out = benchmark.pedantic(f.put, args=(RECORDS,), rounds=5 if impl == "cypoe" else 2,
                             iterations=1)
    assert len(out) == len(RECORDS)
