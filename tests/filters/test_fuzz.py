"""Fuzz targets (hypothesis, many examples): random calls with random bytes
and settings.  Only FilterError subclasses may escape; every filter makes
progress (no hang); compiled and reference stay identical."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cypoe import _filters, _filters_ref
from cypoe.errors import FilterError
from cypoe.filters import JSONLines, Map, Stackable

FUZZ = settings(max_examples=2000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

atoms = st.sampled_from([b"\r", b"\n", b"\r\n", b"\n\r", b"\0", b"0", b"1", b"9",
                         b"12\0", b"<>", b"a", b"{", b"}", b'"', b"\xff", b"\xc3",
                         b"x" * 40, b"\x00\x00\x00\x05"])
fuzz_bytes = st.binary(max_size=80) | st.lists(atoms, max_size=40).map(b"".join)
calls = st.lists(st.tuples(st.sampled_from(["get", "get", "start", "one", "pending", "clone"]),
                           st.lists(fuzz_bytes, max_size=3)), max_size=15)


def drive(f, ops):
    """Run ops; return the observable trace.  Anything but FilterError fails."""
    trace = []
    for op, chunks in ops:
        for attempt in range(10_000):
            try:
                if op == "get":
                    trace.append(f.get(chunks if attempt == 0 else []))
                elif op == "start":
                    trace.append(f.get_one_start(chunks))
                elif op == "one":
                    trace.append(f.get_one())
                elif op == "pending":
                    trace.append(f.get_pending())
                else:
                    f = f.clone()
                break
            except FilterError as exc:
                trace.append((type(exc).__name__, list(exc.records)))
                if op != "get":
                    break
        else:
            pytest.fail("a filter kept raising without consuming input")
    return trace


line_settings = st.fixed_dictionaries({}, optional={
    "literal": st.sampled_from([b"\n", b"\r\n", b"<>", b"aa", b"\0"]),
    "max_length": st.integers(1, 50),
    "encoding": st.sampled_from(["utf-8", "latin-1", "ascii"]),
}) | st.fixed_dictionaries({"autodetect": st.just(True)}, optional={
    "max_length": st.integers(1, 50), "output_literal": st.just(b"!")}) \
   | st.fixed_dictionaries({"input_regexp": st.sampled_from([b"[\r\n]+", b"x*", b"<>|\0", b"a(?=b)"])},
                           optional={"max_length": st.integers(1, 50)})


@FUZZ
@given(opts=line_settings, ops=calls, max_buffer=st.none() | st.integers(50, 200))
def test_fuzz_line(opts, ops, max_buffer):
    if max_buffer is not None:
        opts = dict(opts, max_buffer=max(max_buffer, opts.get("max_length", 0)))
        opts.setdefault("max_length", 50)
    assert drive(_filters.Line(**opts), ops) == drive(_filters_ref.Line(**opts), ops)


block_settings = st.fixed_dictionaries({}, optional={"max_length": st.integers(1, 40)}) \
    | st.fixed_dictionaries({"length_prefix": st.sampled_from(["!I", "<H", "B", "<Q", "!H"])},
                            optional={"max_length": st.integers(1, 40)}) \
    | st.fixed_dictionaries({"block_size": st.integers(1, 10)})


@FUZZ
@given(opts=block_settings, ops=calls, small_buffer=st.booleans())
def test_fuzz_block(opts, ops, small_buffer):
    if small_buffer:
        if "block_size" not in opts:    # fixed blocks take no max_length
            opts = dict(opts, max_length=opts.get("max_length", 40))
        opts = dict(opts, max_buffer=60)
    c, r = _filters.Block(**opts), _filters_ref.Block(**opts)
    assert drive(c, ops) == drive(r, ops)
    assert c.garbage_bytes == r.garbage_bytes


@settings(max_examples=300, deadline=None)
@given(ops=calls)
def test_fuzz_stream(ops):
    assert drive(_filters.Stream(), ops) == drive(_filters_ref.Stream(), ops)


@settings(max_examples=400, deadline=None)
@given(ops=calls, max_length=st.none() | st.integers(1, 30))
def test_fuzz_jsonlines(ops, max_length):
    drive(JSONLines(max_length=max_length), ops)


@settings(max_examples=300, deadline=None)
@given(ops=calls)
def test_fuzz_stackable(ops):
    stack = Stackable(filters=[_filters.Block(max_length=30), JSONLines(max_length=20),
                               Map(code=lambda v: [v, v] if isinstance(v, int) else [])])
    drive(stack, ops)
