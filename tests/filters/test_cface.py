"""The C face of the compiled filters (feed / put_into / has_pending), as
ReadWrite uses it, checked against the Python face."""
import pytest

from cypoe import _filters
from cypoe._buffer import ByteBuffer
from cypoe.errors import FrameTooLong, LineTooLong


def test_feed_records_and_tail():
    f = _filters.Line()
    assert f._c_feed(b"a\r\nb\nc") == ([b"a", b"b"], None)
    assert f._c_has_pending() and f.get_pending() == b"c"
    assert f._c_feed(b"d\r") == ([b"cd"], None)
    assert not f._c_has_pending()
    assert f._c_feed(b"\ne\n") == ([b"e"], None)


def test_feed_error_then_resume_with_empty_feeds():
    f = _filters.Line(max_length=3)
    records, err = f._c_feed(b"ab\nabcdef\ncd\nef")
    assert records == [b"ab"] and isinstance(err, LineTooLong)
    assert f._c_feed(b"") == ([b"cd"], None)
    assert f.get_pending() == b"ef"


def test_block_feed_error_then_resume():
    f = _filters.Block(max_length=2)
    records, err = f._c_feed(b"1\0a5\0abcde2\0xy")
    assert records == [b"a"] and isinstance(err, FrameTooLong)
    assert f._c_feed(b"") == ([b"xy"], None)


@pytest.mark.parametrize("make", [
    lambda: _filters.Line(),
    lambda: _filters.Line(literal=b"<>"),
    lambda: _filters.Line(encoding="utf-8"),
    lambda: _filters.Block(),
    lambda: _filters.Block(length_prefix="<H"),
    lambda: _filters.Block(block_size=3),
    lambda: _filters.Stream(),
])
def test_put_into_equals_put(make):
    f = make()
    records = [b"abc", b"", b"x" * 300, bytearray(b"ba")]
    if isinstance(f, _filters.Line) and f.encoding:
        records.append("é")
    out = ByteBuffer()
    assert f._c_put_into(records, out) == len(records)
    assert out.getvalue() == b"".join(f.put(records))


def test_put_into_appends_to_existing_output():
    out = ByteBuffer()
    out.write(b"head:")
    _filters.Line()._c_put_into([b"x"], out)
    assert out.getvalue() == b"head:x\r\n"


def test_put_into_rejects_str():
    with pytest.raises(TypeError):
        _filters.Line()._c_put_into(["x"], ByteBuffer())


def test_feed_does_not_keep_callers_memory():
    f = _filters.Line()
    data = bytearray(b"abc\npartial")
    f._c_feed(data)
    data[:] = b"XXXXXXXXXXXXXXXXXX"
    assert f.get_pending() == b"partial"


def test_subclass_of_filterbase():
    for cls in (_filters.Line, _filters.Block, _filters.Stream):
        assert issubclass(cls, _filters.FilterBase)


def test_put_into_empty_frames_into_empty_buffer():
    out = ByteBuffer()
    assert _filters.Line(output_literal=b"")._c_put_into([b"", b""], out) == 2
    assert _filters.Block(block_size=1)._c_put_into([b""], out) == 1
    assert out.getvalue() == b""
    assert _filters.Block(block_size=1).put([b""]) == [b""]
