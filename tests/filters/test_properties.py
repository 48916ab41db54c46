"""Property tests (hypothesis): round trips, split-point invariance, and the
compiled filters agreeing with the reference on every input."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cypoe import _filters, _filters_ref
from cypoe.errors import FilterError

from filter_helpers import run_chunks

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def cut(data, points):
    points = sorted({p % (len(data) + 1) for p in points})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


def chunkings(data):
    """Whole, 1-byte chunks, and (for short data) every split in two."""
    yield [data]
    yield [data[i:i + 1] for i in range(len(data))]
    if len(data) <= 48:
        for i in range(len(data) + 1):
            yield [data[:i], data[i:]]


LINE_OPTIONS = [
    {}, dict(literal=b"\n"), dict(literal=b"\r\n"), dict(literal=b"<>"),
    dict(literal=b"aa"), dict(autodetect=True), dict(max_length=4),
    dict(literal=b"<>", max_length=3), dict(autodetect=True, max_length=3),
    dict(encoding="utf-8"), dict(encoding="utf-8", max_length=5),
]
line_options = st.sampled_from(LINE_OPTIONS)
line_bytes = st.binary(max_size=60) | st.lists(
    st.sampled_from([b"a", b"b", b"\r", b"\n", b"<", b">", b"\xc3\xa9", b"\xff", b"x" * 6]),
    max_size=30).map(b"".join)
points = st.lists(st.integers(min_value=0, max_value=10_000), max_size=8)


# -- round trips ---------------------------------------------------------------------

@SETTINGS
@given(opts=st.sampled_from([{}, dict(literal=b"\n"), dict(literal=b"\r\n"),
                             dict(literal=b"<>"), dict(autodetect=True)]),
       records=st.lists(st.binary().map(lambda b: b.translate(None, b"\r\n<>")), max_size=20),
       pts=points, name=st.sampled_from(["compiled", "reference"]))
def test_line_round_trip(opts, records, pts, name):
    mod = _filters if name == "compiled" else _filters_ref
    data = b"".join(mod.Line(**opts).put(records))
    for chunks in (cut(data, pts), [data[i:i + 1] for i in range(len(data))]):
        f = mod.Line(**opts)
        got = [r for c in chunks for r in f.get([c])]
        assert got == records
        assert f.get_pending() is None


@SETTINGS
@given(opts=st.sampled_from([{}, dict(length_prefix="!I"), dict(length_prefix="<H"),
                             dict(length_prefix="!B")]),
       records=st.lists(st.binary(max_size=255), max_size=20),
       pts=points, name=st.sampled_from(["compiled", "reference"]))
def test_block_round_trip(opts, records, pts, name):
    mod = _filters if name == "compiled" else _filters_ref
    data = b"".join(mod.Block(**opts).put(records))
    for chunks in (cut(data, pts), [data[i:i + 1] for i in range(len(data))]):
        f = mod.Block(**opts)
        assert [r for c in chunks for r in f.get([c])] == records
        assert f.get_pending() is None and f.garbage_bytes == 0


@SETTINGS
@given(size=st.integers(1, 9), records=st.lists(st.binary(max_size=30), max_size=10),
       pts=points, name=st.sampled_from(["compiled", "reference"]))
def test_fixed_block_round_trip(size, records, pts, name):
    mod = _filters if name == "compiled" else _filters_ref
    data = b"".join(mod.Block(block_size=size).put(records))
    f = mod.Block(block_size=size)
    got = [r for c in cut(data, pts) for r in f.get([c])]
    assert b"".join(got) + (f.get_pending() or b"") == data
    assert all(len(r) == size for r in got) and len(f.get_pending() or b"") < size


# -- split-point invariance ---------------------------------------------------------------

@SETTINGS
@given(opts=line_options, data=line_bytes, name=st.sampled_from(["compiled", "reference"]))
def test_line_split_point_invariance(opts, data, name):
    mod = _filters if name == "compiled" else _filters_ref
    expected = run_chunks(mod.Line(**opts), [data])
    for chunks in chunkings(data):
        assert run_chunks(mod.Line(**opts), chunks) == expected, chunks


block_bytes = st.binary(max_size=60) | st.lists(
    st.sampled_from([b"1", b"2", b"0", b"9", b"\0", b"x", b"12\0", b"3\0abc", b"0" * 19]),
    max_size=20).map(b"".join)
BLOCK_OPTIONS = [{}, dict(max_length=3), dict(length_prefix="!H", max_length=5),
                 dict(block_size=3), dict(length_prefix="<I", max_length=10)]


@SETTINGS
@given(opts=st.sampled_from(BLOCK_OPTIONS), data=block_bytes,
       name=st.sampled_from(["compiled", "reference"]))
def test_block_split_point_invariance(opts, data, name):
    mod = _filters if name == "compiled" else _filters_ref
    f = mod.Block(**opts)
    expected = run_chunks(f, [data]) + (f.garbage_bytes,)
    for chunks in chunkings(data):
        g = mod.Block(**opts)
        assert run_chunks(g, chunks) + (g.garbage_bytes,) == expected, chunks


@SETTINGS
@given(values=st.lists(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=6), max_size=8), pts=points)
def test_jsonlines_round_trip_and_invariance(values, pts):
    from cypoe.filters import JSONLines
    data = b"".join(JSONLines().put(values))
    for chunks in (cut(data, pts), [data[i:i + 1] for i in range(len(data))]):
        f = JSONLines()
        assert [r for c in chunks for r in f.get([c])] == values


# -- compiled == reference -----------------------------------------------------------------

def _observe(f, ops):
    """Apply ops; record everything observable."""
    seen = []
    for op, arg in ops:
        try:
            if op == "get":
                seen.append(("get", f.get(arg)))
            elif op == "start":
                seen.append(("start", f.get_one_start(arg)))
            elif op == "one":
                seen.append(("one", f.get_one()))
            elif op == "clone":
                f = f.clone()
                seen.append(("clone", None))
        except FilterError as exc:
            seen.append((type(exc).__name__, exc.records))
        seen.append(("pending", f.get_pending()))
        if hasattr(f, "garbage_bytes"):
            seen.append(("garbage", f.garbage_bytes))
    return seen


def ops_strategy(chunk):
    return st.lists(st.one_of(
        st.tuples(st.just("get"), st.lists(chunk, max_size=3)),
        st.tuples(st.just("start"), st.lists(chunk, max_size=3)),
        st.tuples(st.just("one"), st.none()),
        st.tuples(st.just("clone"), st.none()),
    ), max_size=12)


@SETTINGS
@given(opts=st.sampled_from(LINE_OPTIONS + [dict(input_regexp=b"[xy]+", max_length=6),
                                            dict(max_length=8, max_buffer=12)]),
       ops=ops_strategy(line_bytes))
def test_line_compiled_matches_reference(opts, ops):
    assert _observe(_filters.Line(**opts), ops) == _observe(_filters_ref.Line(**opts), ops)


@SETTINGS
@given(opts=st.sampled_from(BLOCK_OPTIONS + [dict(max_length=4, max_buffer=16)]),
       ops=ops_strategy(block_bytes))
def test_block_compiled_matches_reference(opts, ops):
    assert _observe(_filters.Block(**opts), ops) == _observe(_filters_ref.Block(**opts), ops)


@SETTINGS
@given(ops=ops_strategy(st.binary(max_size=10)))
def test_stream_compiled_matches_reference(ops):
    assert _observe(_filters.Stream(), ops) == _observe(_filters_ref.Stream(), ops)


@SETTINGS
@given(opts=line_options, records=st.lists(st.binary(max_size=20) | st.text(max_size=5), max_size=8))
def test_put_compiled_matches_reference(opts, records):
    def put(f):
        try:
            return f.put(records)
        except (TypeError, UnicodeError) as exc:
            return type(exc)
    assert put(_filters.Line(**opts)) == put(_filters_ref.Line(**opts))
    blocks = [r for r in records if isinstance(r, bytes)]
    for bo in BLOCK_OPTIONS:
        assert _filters.Block(**bo).put(blocks) == _filters_ref.Block(**bo).put(blocks)
