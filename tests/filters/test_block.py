"""Block: SEMANTICS.md "Block" and POE 1.370 t/10_units/05_filters/01_block.t."""
import struct

import pytest

from cypoe.errors import BufferOverflow, FrameError, FrameTooLong

from filter_helpers import get_all_one, run_chunks

MiB = 1024 * 1024


# -- POE 01_block.t -------------------------------------------------------------

def test_poe_fixed_length(impl):
    f = impl.Block(block_size=4)
    raw = f.put([b"12345678"])
    cooked = f.get(raw)
    assert cooked == [b"1234", b"5678"]
    assert f.put(cooked) == [b"12345678"]


def test_poe_fixed_length_get_one(impl):
    f = impl.Block(block_size=4)
    f.get_one_start(f.put([b"12345678"]))
    cooked = f.get_one()
    assert cooked == [b"1234"]
    assert f.put(cooked) == [b"1234"]
    assert f.get_pending() == b"5678"


def test_poe_variable_length_default_codec(impl):
    f = impl.Block()
    raw = f.put([b"a", b"bc", b"def", b"ghij"])
    assert f.get(raw) == [b"a", b"bc", b"def", b"ghij"]
    for partial in (b"1", b"0", b"\0", b"klmno"):
        assert f.get([partial]) == []
    assert f.get([b"pqrst"]) == [b"klmnopqrst"]
    assert f.put([b"a", b"bc", b"def", b"ghij"]) == [b"1\0a", b"2\0bc", b"3\0def", b"4\0ghij"]


def _encode(payload):
    return struct.pack("!I", len(payload)) + payload


def _decode(buffer):
    if len(buffer) < 4:
        return None
    return 4, struct.unpack("!I", buffer[:4])[0]


def test_poe_custom_codec(impl):
    # POE's codec edits the buffer in place; cypoe's encode returns the whole
    # frame and decode returns (header_size, payload_size).
    f = impl.Block(length_codec=(_encode, _decode))
    raw = f.put([b"a", b"bc", b"def", b"ghij"])
    assert f.get(raw) == [b"a", b"bc", b"def", b"ghij"]
    for partial in (b"\x00", b"\x00", b"\x00", b"\x0a", b"klmno"):
        assert f.get([partial]) == []
    assert f.get([b"pqrst"]) == [b"klmnopqrst"]
    assert f.put([b"a", b"bc", b"def", b"ghij"]) == [
        b"\x00\x00\x00\x01a", b"\x00\x00\x00\x02bc",
        b"\x00\x00\x00\x03def", b"\x00\x00\x00\x04ghij"]


def test_poe_param_constraints(impl):
    with pytest.raises(ValueError, match="max_buffer"):
        impl.Block(max_length=10, max_buffer=5)
    with pytest.raises(ValueError, match="max_length"):
        impl.Block(max_length=-1)
    with pytest.raises(TypeError, match="max_length"):
        impl.Block(max_length="something")
    with pytest.raises(ValueError, match="max_buffer"):
        impl.Block(max_buffer=0)
    with pytest.raises(TypeError, match="max_buffer"):
        impl.Block(max_buffer="something")


def test_poe_max_length(impl):
    f = impl.Block(max_length=10)
    with pytest.raises(FrameTooLong, match="max_length"):
        f.get([b"134\0a bunch of data here"])


def test_poe_max_buffer(impl):
    f = impl.Block(max_buffer=10, max_length=5)
    with pytest.raises(BufferOverflow, match="max_buffer"):
        f.get([b"134\0a bunch of data here"])
    assert f.get_pending() is None


# -- SEMANTICS -------------------------------------------------------------------

def test_fixed_put_concatenates(impl):
    f = impl.Block(block_size=3)
    assert f.put([]) == [b""]
    assert f.put([b"ab", b"cde"]) == [b"abcde"]
    assert f.block_size == 3
    assert impl.Block().block_size is None


def test_default_codec_frames(impl):
    f = impl.Block()
    assert f.put([b"abc", b""]) == [b"3\0abc", b"0\0"]
    assert f.get([b"0\0" b"003\0abc" b"0\0"]) == [b"", b"abc", b""]


def test_default_codec_garbage_is_skipped_and_counted(impl):
    f = impl.Block()
    assert f.garbage_bytes == 0
    assert f.get([b"xyz3\0abc", b"\n\r", b"2\0de"]) == [b"abc", b"de"]
    assert f.garbage_bytes == 5
    assert f.clone().garbage_bytes == 0


def test_digits_followed_by_non_nul_is_frame_error(impl):
    f = impl.Block()
    with pytest.raises(FrameError, match="NUL") as info:
        f.get([b"1\0x12a3\0abc"])
    assert info.value.records == [b"x"]
    assert f.get([]) == [b"abc"]
    assert f.garbage_bytes == 1          # the "a"


def test_header_of_more_than_20_digits_is_frame_error(impl):
    f = impl.Block()
    assert f.get([b"1" * 20]) == []       # 20 digits may still become valid
    with pytest.raises(FrameError, match="20"):
        f.get([b"1"])
    assert f.get([b"1111"]) == []          # the rest of the run is dropped
    assert f.get([b"\x003\0abc"]) == [b"abc"]
    assert f.get_pending() is None


def test_header_over_max_length_skips_exactly_that_payload(impl):
    f = impl.Block(max_length=8)
    payload = b"5\0hello" * 3                 # looks like frames, is payload
    with pytest.raises(FrameTooLong):
        f.get([b"21\0" + payload[:4]])
    assert f.get([payload[4:10]]) == []
    assert f.get([payload[10:] + b"3\0abc"]) == [b"abc"]


@pytest.mark.parametrize("fmt, size, big", [
    ("!I", 4, True), (">H", 2, True), ("<Q", 8, False), ("!B", 1, True),
    ("<L", 4, False), ("=H", 2, None), ("H", None, None), (b"!I", 4, True),
])
def test_length_prefix_formats(impl, fmt, size, big):
    f = impl.Block(length_prefix=fmt)
    frames = f.put([b"abc", b""])
    fmt_s = fmt.decode() if isinstance(fmt, bytes) else fmt
    assert frames == [struct.pack(fmt_s, 3) + b"abc", struct.pack(fmt_s, 0)]
    data = b"".join(frames)
    for i in range(len(data) + 1):
        g = impl.Block(length_prefix=fmt)
        assert g.get([data[:i]]) + g.get([data[i:]]) == [b"abc", b""]


def test_length_prefix_put_overflow_and_max_length(impl):
    f = impl.Block(length_prefix="!B")
    assert f.put([b"x" * 255])[0][:1] == b"\xff"
    with pytest.raises(FrameTooLong, match="length_prefix"):
        f.put([b"x" * 256])
    f = impl.Block(length_prefix="!H", max_length=4)
    with pytest.raises(FrameTooLong):
        f.get([b"\x00\x05abc"])
    assert f.get([b"de\x00\x01z"]) == [b"z"]


@pytest.mark.parametrize("fmt", ["!i", "!2I", "II", "!f", "", "x", "!I!", "<N", "!s", "?"])
def test_length_prefix_validation(impl, fmt):
    with pytest.raises(ValueError, match="length_prefix"):
        impl.Block(length_prefix=fmt)


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(length_prefix=4), TypeError, "length_prefix"),
    (dict(block_size=0), ValueError, "block_size"),
    (dict(block_size=-3), ValueError, "block_size"),
    (dict(block_size=2.0), TypeError, "block_size"),
    (dict(block_size=4, length_prefix="!I"), ValueError, "block_size"),
    (dict(block_size=4, length_codec=(_encode, _decode)), ValueError, "block_size"),
    (dict(length_codec=(_encode, _decode), length_prefix="!I"), ValueError, "length_codec"),
    (dict(length_codec=_encode), TypeError, "length_codec"),
    (dict(length_codec=(_encode, 5)), TypeError, "length_codec"),
    (dict(block_size=100, max_buffer=10), ValueError, "block_size"),
    # issue 11 item 9: max_length bounds length-prefixed frames only (POE
    # rejects BlockSize with MaxLength)
    (dict(block_size=4, max_length=10), ValueError, "max_length"),
    (dict(block_size=4, max_length=4, max_buffer=8), ValueError, "max_length"),
])
def test_constructor_validation(impl, kwargs, exc, name):
    with pytest.raises(exc, match=name):
        impl.Block(**kwargs)


def test_defaults(impl):
    f = impl.Block()
    assert (f.max_length, f.max_buffer) == (16 * MiB, 64 * MiB)


def test_fixed_blocks_take_a_small_max_buffer(impl):
    # issue 11 item 9: the frame max_length default (16 MiB) does not apply
    # to fixed-size blocks, so it cannot make a small max_buffer "too small".
    f = impl.Block(block_size=4, max_buffer=5)
    assert (f.block_size, f.max_length, f.max_buffer) == (4, 4, 5)
    assert f.get([b"abcde"]) == [b"abcd"]
    with pytest.raises(BufferOverflow):
        f.get([b"fghij"])               # 1 buffered + 5 > 5
    assert f.get([b"fgh"]) == [b"efgh"]
    assert impl.Block(block_size=4).max_buffer == 64 * MiB


def test_custom_codec_bad_decode_result(impl):
    f = impl.Block(length_codec=(_encode, lambda b: (0, 1)))
    with pytest.raises(ValueError, match="length_codec"):
        f.get([b"abc"])
    f = impl.Block(length_codec=(_encode, lambda b: 7))
    with pytest.raises(TypeError, match="length_codec"):
        f.get([b"abc"])
    f = impl.Block(length_codec=(lambda p: "str", _decode))
    with pytest.raises(TypeError, match="length_codec"):
        f.put([b"abc"])


def test_custom_codec_frame_too_long(impl):
    f = impl.Block(length_codec=(_encode, _decode), max_length=3)
    records, errors = run_chunks(f, [_encode(b"toolong") + _encode(b"ok")])
    assert records == [b"ok"] and errors == [FrameTooLong]


def test_get_one_and_pending(impl):
    f = impl.Block()
    data = [b"1\0a2\0b", b"c3\0d"]
    assert get_all_one(f, data) == [b"a", b"bc"]
    assert f.get_pending() == b"3\0d"      # the header of the waiting frame too
    assert f.get([b"ef"]) == [b"def"]


def test_records_must_be_bytes(impl):
    with pytest.raises(TypeError):
        impl.Block().put(["text"])
    assert impl.Block().put([bytearray(b"ab")]) == [b"2\0ab"]
