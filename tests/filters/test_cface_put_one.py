"""put_one(), the one-record C face ReadWrite.put(record) uses: its output is
exactly put_into((record,))'s, errors included; and the ByteBuffer block
free list behind the output buffers."""
import pytest

from cypoe import _filters
from cypoe._buffer import ByteBuffer

MAKERS = [
    lambda: _filters.Line(),
    lambda: _filters.Line(literal=b"<>"),
    lambda: _filters.Line(output_literal=b""),
    lambda: _filters.Line(encoding="utf-8"),
    lambda: _filters.Block(),
    lambda: _filters.Block(length_prefix="<H"),
    lambda: _filters.Block(block_size=3),
    lambda: _filters.Block(block_size=1),
    lambda: _filters.Stream(),
]


@pytest.mark.parametrize("make", MAKERS)
def test_put_one_equals_put_into(make):
    f = make()
    records = [b"abc", b"", b"x" * 5000, bytearray(b"ba"), memoryview(b"mv")]
    if isinstance(f, _filters.Line) and f.encoding:
        records.append("é")
    for r in records:
        a, b = ByteBuffer(), ByteBuffer()
        a.write(b"head:")
        b.write(b"head:")
        try:
            f._c_put_into([r], a)
        except Exception as exc:
            with pytest.raises(type(exc)):
                f._c_put_one(r, b)
            continue
        f._c_put_one(r, b)
        assert b.getvalue() == a.getvalue()


@pytest.mark.parametrize("make", MAKERS)
def test_put_one_errors_like_put_into(make):
    f = make()
    for bad in ("str" if not (isinstance(f, _filters.Line) and f.encoding) else 5, None, 3):
        try:
            f._c_put_into([bad], ByteBuffer())
        except Exception as exc:
            with pytest.raises(type(exc)):
                f._c_put_one(bad, ByteBuffer())
        else:
            f._c_put_one(bad, ByteBuffer())


def test_put_one_into_empty_buffer_empty_record():
    out = ByteBuffer()
    _filters.Line(output_literal=b"")._c_put_one(b"", out)
    _filters.Block(block_size=1)._c_put_one(b"", out)
    assert out.getvalue() == b""


def test_buffer_blocks_are_recycled_without_mixing_contents():
    bufs = [ByteBuffer() for _ in range(200)]
    for i, b in enumerate(bufs):
        b.write(bytes([i % 256]) * 100)
    for b in bufs[::2]:
        b.read()                      # drained, memory still held
    del bufs[1::2]                    # freed: their blocks go to the free list
    fresh = [ByteBuffer() for _ in range(150)]
    for i, b in enumerate(fresh):
        b.write(b"%d:" % i)
        assert b.getvalue() == b"%d:" % i
        assert b.capacity >= 4096
    big = ByteBuffer()
    big.write(b"y" * 10000)           # grows past the recycled block size
    assert big.getvalue() == b"y" * 10000
    big.read()
    big.write(b"z")
    assert big.getvalue() == b"z"
