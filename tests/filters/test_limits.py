"""Limits: fail fast, recover, and keep memory bounded."""
import os
import subprocess
import sys
import textwrap

import pytest

from cypoe import _filters
from cypoe.errors import FrameTooLong, LineTooLong

from filter_helpers import run_chunks

MiB = 1024 * 1024
CHUNK = 64 * 1024


def test_10mib_without_terminator(impl):
    f = impl.Line()                                  # max_length 1 MiB
    errors = 0
    for i in range(10 * MiB // CHUNK):
        try:
            assert f.get([b"x" * CHUNK]) == []
        except LineTooLong as exc:
            errors += 1
            assert exc.records == []
        assert len(f.get_pending() or b"") <= f.max_length + CHUNK
        if errors:
            assert f.get_pending() is None           # discarding, not buffering
    assert errors == 1
    assert f.get([b"end of the long line\r\nrecord 1\r\nrecord 2\r\npart"]) == [
        b"record 1", b"record 2"]
    assert f.get_pending() == b"part"


def test_10mib_in_one_get_call(impl):
    f = impl.Line()
    with pytest.raises(LineTooLong):
        f.get([b"y" * CHUNK] * (10 * MiB // CHUNK) + [b"\nafter\n"])
    assert f.get([]) == [b"after"]


def test_long_line_of_short_reads():
    # 2000 reads of 500 bytes each (the compiled filter scans each byte
    # once; the reference rescans its buffer and is left out for speed).
    f = _filters.Line(max_length=2 * MiB)
    for _ in range(2000):
        assert f.get([b"z" * 500]) == []
    assert f.get([b"\n"]) == [b"z" * 1_000_000]


_MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys
    from cypoe import {module} as m
    chunk = {chunk!r} * (1024 * 1024 // len({chunk!r}))
    f = m.{filter}
    # warm up: buffers reach their working size
    for _ in range(4):
        try:
            f.get([chunk])
        except Exception as exc:
            assert type(exc).__name__ in ("LineTooLong", "FrameTooLong", "FrameError"), exc
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = 0
    for _ in range(100):
        arg = [chunk]
        while True:         # after an error, drain with get([]) as ReadWrite does
            try:
                f.get(arg)
                break
            except Exception as exc:
                assert type(exc).__name__ in ("LineTooLong", "FrameTooLong", "FrameError"), exc
                errors += 1
                arg = []
        assert len(f.get_pending() or b"") <= 2 * 1024 * 1024
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) // 1024, errors, getattr(f, "garbage_bytes", 0))
""")


@pytest.mark.parametrize("filter_expr, chunk", [
    ("Line()", b"x"),
    ("Line(literal=b'<end>')", b"<en"),
    ("Line(autodetect=True)", b"y"),
    ("Block()", b"garbage!"),
    ("Block(max_length=10)", b"999999\0"),
])
def test_100mib_garbage_keeps_memory_bounded(impl, filter_expr, chunk):
    script = _MEMORY_SCRIPT.format(module=impl.__name__.split(".")[-1],
                                   filter=filter_expr, chunk=chunk)
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    grown_mib, errors, garbage = map(int, out)
    assert grown_mib < 16, f"max RSS grew by {grown_mib} MiB over 100 MiB of garbage"
    if filter_expr == "Block()":
        assert garbage == 104 * MiB
    if filter_expr == "Block(max_length=10)":
        assert errors > 100                 # every header is over-long


@pytest.mark.parametrize("step", [1, 7, 1000, 10**6])
def test_block_skips_an_over_long_frame_exactly(impl, step):
    payload = (b"3\0abc" * 400)[:1999] + b"9"      # digits and NULs inside
    data = b"0\0" + b"2000\0" + payload + b"3\0end"
    records, errors = run_chunks(impl.Block(max_length=100),
                                 [data[i:i + step] for i in range(0, len(data), step)])
    assert records == [b"", b"end"]
    assert errors == [FrameTooLong]


def test_block_prefix_skips_exactly(impl):
    data = b"\x00\x00\x01\x00" + b"\x00\x00\x00\x02" * 64 + b"\x00\x00\x00\x02ok"
    records, errors = run_chunks(impl.Block(length_prefix="!I", max_length=255),
                                 [data[i:i + 5] for i in range(0, len(data), 5)])
    assert records == [b"ok"] and errors == [FrameTooLong]
