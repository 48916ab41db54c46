"""Line: SEMANTICS.md "Line" examples and POE 1.370 t/10_units/05_filters/04_line.t."""
import re

import pytest

from cypoe.errors import BufferOverflow, FilterError, FrameError, LineTooLong

from filter_helpers import get_all_one, run_chunks, standard

MiB = 1024 * 1024


# -- default terminator ------------------------------------------------------

def test_default_terminators_greedy(impl):
    assert impl.Line().get([b"a\rb\nc\r\nd\n\r"]) == [b"a", b"b", b"c", b"d"]
    assert impl.Line().get([b"a\n\r\n"]) == [b"a", b""]
    assert impl.Line().get([b"a\n\nb\n"]) == [b"a", b"", b"b"]
    assert impl.Line().get([b"a\r\rb\r"]) == [b"a", b"", b"b"]


def test_lone_cr_at_chunk_end_is_emitted_and_lf_swallowed(impl):
    f = impl.Line()
    assert f.get([b"a\r"]) == [b"a"]
    assert f.get_pending() is None
    assert f.get([b"\nb\n"]) == [b"b"]
    # the same bytes at once give the same records (POE adds a "" here)
    assert impl.Line().get([b"a\r\nb\n"]) == [b"a", b"b"]


def test_complement_swallowed_only_once(impl):
    f = impl.Line()
    assert f.get([b"a\n"]) == [b"a"]
    assert f.get([b"\r"]) == []          # the CR of an LFCR
    assert f.get([b"\r"]) == [b""]       # a second CR is an empty line
    assert f.get([b"b\n"]) == [b"b"]


def test_split_point_invariance_examples(impl):
    data = b"a\rb\nc\r\nd\n\r\r\ne\n\n\rf"
    whole = impl.Line().get([data])
    assert whole == [b"a", b"b", b"c", b"d", b"", b"e", b""]
    for i in range(len(data) + 1):
        f = impl.Line()
        assert f.get([data[:i]]) + f.get([data[i:]]) == whole, i
        assert f.get_pending() == b"f"
    f = impl.Line()
    assert [r for b in data for r in f.get([bytes([b])])] == whole


def test_output_terminator_and_no_translation(impl):
    f = impl.Line()
    assert f.put([b"a", b"", b"x\ny"]) == [b"a\r\n", b"\r\n", b"x\ny\r\n"]
    assert f.put([]) == []
    assert f.put([bytearray(b"ba"), memoryview(b"mv")]) == [b"ba\r\n", b"mv\r\n"]


def test_put_rejects_str_without_encoding(impl):
    with pytest.raises(TypeError, match="bytes"):
        impl.Line().put(["text"])
    with pytest.raises(TypeError):
        impl.Line().put([5])


# -- literal, input/output literal, regexp --------------------------------------

def test_literal_matches_literally(impl):
    f = impl.Line(literal=b"\n")
    assert f.get([b"a\r\nb\n"]) == [b"a\r", b"b"]
    assert f.put([b"x"]) == [b"x\n"]


def test_literal_multibyte_split_everywhere(impl):
    data = b"one<>two<<>>three<><>"
    expected = [b"one", b"two<", b">three", b""]
    assert impl.Line(literal=b"<>").get([data]) == expected
    for i in range(len(data) + 1):
        f = impl.Line(literal=b"<>")
        assert f.get([data[:i]]) + f.get([data[i:]]) == expected, i


def test_overlapping_literal(impl):
    data = b"xaaab"
    for i in range(len(data) + 1):
        f = impl.Line(literal=b"aa")
        assert f.get([data[:i]]) + f.get([data[i:]]) == [b"x"], i
        assert f.get_pending() == b"ab"


def test_literal_str_is_encoded(impl):
    assert impl.Line(literal="x").get([b"axb"]) == [b"a"]


# -- POE 04_line.t ------------------------------------------------------------

def test_poe_default_mode(impl):
    standard(impl.Line(), [b"a\x0D", b"b\x0A", b"c\x0D\x0A", b"d\x0A\x0D"],
             [b"a", b"b", b"c", b"d"],
             [b"a\x0D\x0A", b"b\x0D\x0A", b"c\x0D\x0A", b"d\x0D\x0A"])


def test_poe_literal_mode(impl):
    standard(impl.Line(literal=b"x"), [b"axa", b"bxb", b"cxc", b"dxd"],
             [b"a", b"ab", b"bc", b"cd"], [b"ax", b"abx", b"bcx", b"cdx"])


def test_poe_input_and_output_literals(impl):
    f = impl.Line(input_literal=b"x", output_literal=b"y")
    received = f.get([b"axa", b"bxb", b"cxc", b"dxd"])
    assert received == [b"a", b"ab", b"bc", b"cd"]
    assert f.put(received) == [b"ay", b"aby", b"bcy", b"cdy"]


@pytest.mark.parametrize("regexp", [b"[xy]", re.compile(b"[xy]")])
def test_poe_input_regexp(impl, regexp):
    f = impl.Line(input_regexp=regexp, output_literal=b"!")
    received = f.get([b"axa", b"byb", b"cxc", b"dyd"])
    assert received == [b"a", b"ab", b"bc", b"cd"]
    assert f.put(received) == [b"a!", b"ab!", b"bc!", b"cd!"]


def test_regexp_never_splits_on_empty_match(impl):
    f = impl.Line(input_regexp=b"x*")
    assert f.get([b"abxxc"]) == [b"ab"]
    assert f.get_pending() == b"c"


def _collect(f, chunks):
    out = []
    for c in chunks:
        out += f.get([c])
    return out


def test_poe_autodetect_crlf_split(impl):
    f = impl.Line(autodetect=True, output_literal=b"!")
    got = _collect(f, [b"a\x0d", b"\x0Ab\x0D\x0A", b"c\x0A\x0D", b"\x0A"])
    assert f.put(got) == [b"a!", b"b!", b"c\x0A!"]


def test_poe_autodetect_lfcr(impl):
    f = impl.Line(autodetect=True, output_literal=b"!")
    got = _collect(f, [b"a\x0A\x0D", b"\x0Db\x0A\x0D", b"c\x0D", b"\x0A\x0D"])
    assert f.put(got) == [b"a!", b"\x0Db!", b"c\x0D!"]


def test_poe_autodetect_lf(impl):
    f = impl.Line(autodetect=True, output_literal=b"!")
    got = _collect(f, [b"a\x0A", b"b\x0D\x0A", b"c\x0D", b"\x0A"])
    assert f.put(got) == [b"a!", b"b\x0D!", b"c\x0D!"]


def test_autodetect_emits_at_once_and_clone_keeps_it(impl):
    # issue 11 item 8: the line is determined by the lone CR; only the
    # choice between CR and CRLF waits for the next byte.
    f = impl.Line(autodetect=True)
    assert f.get([b"a\r"]) == [b"a"]
    assert f.get_pending() is None
    assert f.get([b"b\r"]) == [b"b"]           # CR alone: fixed for good
    assert f.get([b"c\nd\r"]) == [b"c\nd"]
    g = f.clone()
    assert g.get_pending() is None
    assert g.get([b"x\ny\r"]) == [b"x\ny"]
    assert impl.Line(autodetect=True).clone().get([b"x\ny\r"]) == [b"x"]


def test_poe_param_constraints(impl):
    with pytest.raises(ValueError, match="max_buffer"):
        impl.Line(max_length=10, max_buffer=5)
    with pytest.raises(ValueError, match="max_length"):
        impl.Line(max_length=-1)
    with pytest.raises(ValueError, match="max_length"):
        impl.Line(max_length=0)
    with pytest.raises(TypeError, match="max_length"):
        impl.Line(max_length="something")
    with pytest.raises(TypeError, match="max_length"):
        impl.Line(max_length=True)
    with pytest.raises(ValueError, match="max_buffer"):
        impl.Line(max_buffer=0)
    with pytest.raises(TypeError, match="max_buffer"):
        impl.Line(max_buffer="something")


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(literal=b""), ValueError, "literal"),
    (dict(literal=b"\n", input_literal=b"\r"), ValueError, "literal"),
    (dict(literal=b"\n", output_literal=b"\r"), ValueError, "literal"),
    (dict(literal=b"\n", input_regexp=b"\r"), ValueError, "literal"),
    (dict(literal=b"\n", autodetect=True), ValueError, "literal"),
    (dict(input_literal=b"\n", input_regexp=b"\r"), ValueError, "input_literal"),
    (dict(input_literal=b""), ValueError, "input_literal"),
    (dict(autodetect=True, input_literal=b"x"), ValueError, "autodetect"),
    (dict(autodetect=True, input_regexp=b"x"), ValueError, "autodetect"),
    (dict(autodetect=1), TypeError, "autodetect"),
    (dict(literal=5), TypeError, "literal"),
    (dict(input_regexp="[xy]"), TypeError, "input_regexp"),
    (dict(input_regexp=re.compile("[xy]")), TypeError, "input_regexp"),
    (dict(input_regexp=b"("), ValueError, "input_regexp"),
    (dict(input_regexp=b""), ValueError, "input_regexp"),
    (dict(encoding="no-such-codec"), ValueError, "encoding"),
    (dict(encoding=b"utf-8"), TypeError, "encoding"),
])
def test_constructor_validation(impl, kwargs, exc, name):
    with pytest.raises(exc, match=name):
        impl.Line(**kwargs)


def test_positional_arguments_rejected(impl):
    with pytest.raises(TypeError):
        impl.Line(b"\n")


def test_defaults(impl):
    f = impl.Line()
    assert (f.max_length, f.max_buffer) == (MiB, 16 * MiB)
    f = impl.Line(max_length=32 * MiB)
    assert f.max_buffer == 32 * MiB
    f = impl.Line(max_length=10, max_buffer=10)
    assert (f.max_length, f.max_buffer) == (10, 10)


# -- limits -----------------------------------------------------------------

def test_poe_max_length(impl):
    f = impl.Line(max_length=10)
    with pytest.raises(LineTooLong, match="max_length"):
        f.get([b"This line is going to be to long for our filter\n"])
    assert f.get([b"next\n"]) == [b"next"]


def test_poe_max_buffer(impl):
    f = impl.Line(max_buffer=10, max_length=5)
    with pytest.raises(BufferOverflow, match="max_buffer"):
        f.get([b"This line is going to be to long for our filter\n"])
    assert f.get_pending() is None      # not taken in
    with pytest.raises(BufferOverflow):
        f.get_one_start([b"123456", b"78901"])
    assert f.get_pending() is None
    assert f.get([b"ab\ncd"]) == [b"ab"]


def test_line_too_long_fails_fast_then_recovers(impl):
    f = impl.Line(max_length=10)
    assert f.get([b"x" * 10]) == []                 # exactly max_length: fine
    with pytest.raises(LineTooLong):
        f.get([b"x"])                               # 11 bytes, no terminator yet
    assert f.get_pending() is None
    assert f.get([b"more of the same"]) == []       # discarded silently
    assert f.get([b"tail\r"]) == []                 # the end of the long line
    assert f.get([b"\nok\r\n"]) == [b"ok"]


def test_line_of_exactly_max_length(impl):
    f = impl.Line(max_length=3)
    assert f.get([b"abc\nabcd\n"[:4]]) == [b"abc"]
    f = impl.Line(literal=b"\r\n", max_length=3)
    assert f.get([b"abc\r"]) == []                  # the CR may start the terminator
    assert f.get([b"\n"]) == [b"abc"]
    f = impl.Line(literal=b"\r\n", max_length=3)
    with pytest.raises(LineTooLong):
        f.get([b"abcd\r"])
    assert f.get([b"\nnxt\r\n"]) == [b"nxt"]        # terminator split by the error


def test_error_carries_records_framed_before_it(impl):
    f = impl.Line(max_length=3)
    with pytest.raises(LineTooLong) as info:
        f.get([b"ab\nabcdef\ncd\n", b"ef\n"])
    assert info.value.records == [b"ab"]
    assert isinstance(info.value, FilterError)
    assert f.get([]) == [b"cd", b"ef"]


def test_complete_over_long_line_in_one_chunk(impl):
    records, errors = run_chunks(impl.Line(max_length=4), [b"1234\n12345\n123\n"])
    assert records == [b"1234", b"123"]
    assert errors == [LineTooLong]


def test_autodetect_waiting_line_too_long(impl):
    f = impl.Line(autodetect=True, max_length=2)
    with pytest.raises(LineTooLong):
        f.get([b"abc\r"])
    assert f.get([b"\nxy\r\n"]) == [b"xy"]


def test_regexp_max_length(impl):
    f = impl.Line(input_regexp=b"[xy]", max_length=3)
    with pytest.raises(LineTooLong):
        f.get([b"abcd"])
    assert f.get([b"ex12y"]) == [b"12"]


# -- encoding -------------------------------------------------------------------

def test_encoding_decodes_after_framing(impl):
    f = impl.Line(encoding="utf-8")
    assert f.encoding == "utf-8"
    assert f.get([b"caf\xc3", b"\xa9\n"]) == ["café"]
    assert f.put(["é", b"raw"]) == [b"\xc3\xa9\r\n", b"raw\r\n"]


def test_put_encodes_str_with_the_filter_encoding(impl):
    f = impl.Line(encoding="latin-1")
    assert f.put(["caf\u00e9", "x"]) == [b"caf\xe9\r\n", b"x\r\n"]
    with pytest.raises(UnicodeEncodeError):
        f.put(["\u20ac"])                      # not in latin-1: strict, as str.encode
    with pytest.raises(TypeError, match="bytes-like"):
        f.put([5])
    with pytest.raises(TypeError, match="no encoding"):
        impl.Line().put(["text"])


def test_encoding_error_skips_the_line(impl):
    f = impl.Line(encoding="utf-8")
    with pytest.raises(FrameError, match="utf-8") as info:
        f.get([b"ok1\n\xff\xfe\nok2\n"])
    assert info.value.records == ["ok1"]
    assert f.get([]) == ["ok2"]


def test_encoding_limits_stay_in_bytes(impl):
    f = impl.Line(encoding="utf-8", max_length=4)
    assert f.get(["éé\n".encode()]) == ["éé"]       # 4 bytes
    with pytest.raises(LineTooLong):
        f.get(["ééé\n".encode()])                     # 6 bytes, 3 characters


# -- interface ------------------------------------------------------------------

def test_get_pending_is_a_copy_and_does_not_clear(impl):
    f = impl.Line()
    f.get([b"partial"])
    assert f.get_pending() == b"partial"
    assert f.get_pending() == b"partial"
    assert f.get([b" line\n"]) == [b"partial line"]
    assert f.get_pending() is None


def test_get_one(impl):
    f = impl.Line()
    f.get_one_start([b"a\nb", b"\nc\n", b"d"])
    assert f.get_pending() == b"a\nb\nc\nd"
    assert f.get_one() == [b"a"]
    assert f.get_one() == [b"b"]
    assert f.get([b"\n"]) == [b"c", b"d"]
    assert f.get_one() == []


def test_get_one_and_get_agree(impl):
    data = [b"x\r\ny\n\rz\r", b"\nw"]
    assert get_all_one(impl.Line(), data) == impl.Line().get(data) == [b"x", b"y", b"z"]


def test_chunk_types(impl):
    f = impl.Line()
    assert f.get([bytearray(b"a\n"), memoryview(b"b\n")]) == [b"a", b"b"]
    with pytest.raises(TypeError):
        f.get(["text\n"])
    with pytest.raises(TypeError):
        f.get(b"a\n")
    with pytest.raises(TypeError):
        f.get([5])
    assert f.get([]) == []


def test_clone_has_settings_and_empty_buffer(impl):
    f = impl.Line(literal=b"|", max_length=5)
    f.get([b"abc"])
    g = f.clone()
    assert g.get_pending() is None and f.get_pending() == b"abc"
    assert g.get([b"x|y"]) == [b"x"]
    with pytest.raises(LineTooLong):
        g.get([b"123456"])


def test_error_at_a_terminator_split_across_chunks(impl):
    # found by the compiled-vs-reference property: the LF ends one chunk's
    # line, the CR in the next chunk belongs to the same terminator even
    # when the line raised.
    f = impl.Line(encoding="utf-8")
    with pytest.raises(FrameError):
        f.get([b"\x80", b"\n\r"])
    assert f.get_pending() is None
    assert f.get([b"ok\n"]) == ["ok"]


def test_autodetect_error_at_the_detecting_terminator(impl):
    # found by the compiled-vs-reference property
    f = impl.Line(autodetect=True, max_length=3)
    with pytest.raises(LineTooLong):
        f.get([b"\0\0", b"aa\ra"])
    assert f.get_pending() == b"a"
    assert f.get([b"b\r"]) == [b"ab"]


@pytest.mark.parametrize("first, rest, records", [
    (b"PING\n", b"", [b"PING"]),
    (b"PING\n", b"\rx\n\ry\n\r", [b"PING", b"x", b"y"]),      # LFCR chosen
    (b"PING\n", b"x\ry\n", [b"PING", b"x\ry"]),              # LF chosen
    (b"a\r", b"\nb\r\nc\n\r\n", [b"a", b"b", b"c\n"]),           # CRLF chosen
    (b"a\r", b"b\nc\r", [b"a", b"b\nc"]),                    # CR chosen
    (b"\r", b"\n\r\n", [b"", b""]),
])
def test_autodetect_answers_a_lone_terminator_at_once(impl, first, rest, records):
    f = impl.Line(autodetect=True)
    got = f.get([first])
    assert got == records[:1]
    assert f.get_pending() is None
    got += f.get([rest])
    assert got == records
    assert impl.Line(autodetect=True).get([first + rest]) == records


def test_autodetect_clone_while_choosing_detects_anew(impl):
    f = impl.Line(autodetect=True)
    assert f.get([b"a\r"]) == [b"a"]
    g = f.clone()           # CR or CRLF is not decided yet
    assert g.get([b"x\ny\n"]) == [b"x", b"y"]
    assert f.get([b"\nx\ny\r\n"]) == [b"x\ny"]
    h = f.clone()           # CRLF now fixed
    assert h.get([b"p\nq\r\n"]) == [b"p\nq"]


def test_autodetect_choice_survives_get_one(impl):
    f = impl.Line(autodetect=True)
    f.get_one_start([b"a\n", b"\rb\n"])
    assert f.get_one() == [b"a"]
    assert f.get_one() == []                    # LFCR is b's terminator
    assert f.get([b"\r"]) == [b"b"]


def test_autodetect_c_face_answers_ping_at_once():
    # ReadWrite's path (feed): `PING\n` then silence must yield PING, and
    # `QUIT\n` before a close must be delivered.
    from cypoe import _filters
    f = _filters.Line(autodetect=True)
    assert f._c_feed(b"PING\n") == ([b"PING"], None)
    assert f._c_has_pending() is False
    assert f._c_feed(b"QUIT\n") == ([b"QUIT"], None)     # LF fixed: Q is data
    g = _filters.Line(autodetect=True)
    assert g._c_feed(b"a\r") == ([b"a"], None)
    assert g._c_feed(b"\n") == ([], None)                 # completes CRLF
    assert g._c_feed(b"b\nc\r\n") == ([b"b\nc"], None)
