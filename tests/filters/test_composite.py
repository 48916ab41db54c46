"""Filter, Stackable, Map, Grep, JSONLines: POE 1.370 02_grep.t, 05_map.t,
50_stackable.t, and the filter-switch parts of 99_filterchange.t."""
import subprocess
import sys
import os

import pytest

from cypoe import filters
from cypoe.errors import FilterError, FrameError, LineTooLong
from cypoe.filters import Block, Filter, Grep, JSONLines, Line, Map, Stackable, Stream

from filter_helpers import standard


# -- Filter and user filters -------------------------------------------------------

class RecordBlock(Filter):
    """Groups records into lists of block_size (like POE::Filter::RecordBlock)."""

    def __init__(self, *, block_size):
        self.block_size = block_size
        self.buf = []

    def get_one_start(self, records):
        self.buf.extend(records)

    def get_one(self):
        if len(self.buf) < self.block_size:
            return []
        block, self.buf = self.buf[:self.block_size], self.buf[self.block_size:]
        return [block]

    def put(self, blocks):
        return [r for block in blocks for r in block]

    def get_pending(self):
        return list(self.buf) if self.buf else None


def test_every_filter_is_a_filter():
    for f in (Line(), Block(), Stream(), Stackable(), Map(code=str), Grep(code=bool),
              JSONLines(), RecordBlock(block_size=2)):
        assert isinstance(f, Filter)
        for name in ("get", "get_one_start", "get_one", "put", "get_pending", "clone"):
            assert callable(getattr(f, name))
    assert filters.IMPLEMENTATION in ("compiled", "reference")


def test_filter_is_abstract():
    class Incomplete(Filter):
        def get_one_start(self, chunks):
            pass

    with pytest.raises(TypeError):
        Incomplete()


def test_user_filter_default_get_and_clone():
    f = RecordBlock(block_size=2)
    assert f.get([1, 2, 3]) == [[1, 2]]
    assert f.get_pending() == [3]
    g = f.clone()
    assert type(g) is RecordBlock and g.block_size == 2 and g.get_pending() is None
    assert g.get([4, 5]) == [[4, 5]]


def test_default_get_attaches_records_to_errors():
    class Picky(RecordBlock):
        def get_one(self):
            if self.buf and self.buf[0] == "bad":
                self.buf.pop(0)
                raise FrameError("bad record")
            return super().get_one()

    f = Picky(block_size=1)
    with pytest.raises(FrameError) as info:
        f.get(["a", "b", "bad", "c"])
    assert info.value.records == [["a"], ["b"]]
    assert f.get([]) == [["c"]]


# -- Map (05_map.t) -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {}, dict(code=[]), dict(get=str.upper), dict(put=str.upper),
    dict(get=[], put=str.upper), dict(get=str.upper, put=[]),
    dict(code=str.upper, get=str.upper),
])
@pytest.mark.parametrize("cls", [Map, Grep])
def test_poe_bad_constructor_args(cls, kwargs):
    with pytest.raises(TypeError):
        cls(**kwargs)


def test_poe_map():
    f = Map(get=str.upper, put=str.lower)
    assert f.put(["A", "B", "C"]) == ["a", "b", "c"]
    assert f.get(["a", "b", "c"]) == ["A", "B", "C"]
    f = Map(code=str.upper)
    assert f.put(["a", "b", "c"]) == ["A", "B", "C"]
    assert f.get(["a", "b", "c"]) == ["A", "B", "C"]


def test_poe_map_modify():
    f = Map(get=lambda r: "GET", put=lambda r: "PUT")
    for kw in (dict(get=[]), dict(put=[]), dict(code=[])):
        with pytest.raises(TypeError):
            f.modify(**kw)
    f.modify(get=lambda r: "NGet")
    assert f.get(["a"]) == ["NGet"]
    f.modify(put=lambda r: "NPut")
    assert f.put(["a"]) == ["NPut"]
    f.modify(code=lambda r: "NCode")
    assert f.put(["a"]) == ["NCode"] and f.get(["a"]) == ["NCode"]


def test_map_lists_give_zero_or_more_records():
    f = Map(code=lambda r: [r] * r)
    assert f.get([2, 0, 1]) == [2, 2, 1]
    f.get_one_start([0, 0, 3, 1])
    assert f.get_pending() == [0, 0, 3, 1]
    assert f.get_one() == [3, 3, 3]       # continues past records mapped to none
    assert f.get_one() == [1]
    assert f.get_one() == []
    assert f.get_pending() is None
    assert Map(code=lambda r: (r, r)).get([1]) == [(1, 1)]   # a tuple is one value


def test_poe_stackable_map_get_one():
    f = Map(code=lambda r: f"((({r})))")
    f.get_one_start([1, 1, 2, 3, 5])
    assert "".join(map(str, f.get_pending())) == "11235"
    for r in (1, 1, 2, 3, 5):
        assert f.get_one() == [f"((({r})))"]
    assert f.get_one() == []


# -- Grep (02_grep.t) --------------------------------------------------------------

def test_poe_grep_get_put():
    f = Grep(get=str.isdigit, put=str.isalpha)
    assert f.put(list("ABC123")) == list("ABC")
    assert f.get(list("abc123")) == list("123")
    standard(f, list("abc123"), list("123"), [])


def test_poe_grep_code():
    f = Grep(code=lambda r: r.isalnum())
    assert f.put(list("abc123!@")) == list("abc123")
    assert f.get(list("abc123!@")) == list("abc123")
    standard(f, list("abc123!@"), list("abc123"), list("abc123"))


def test_poe_grep_modify():
    f = Grep(get=lambda r: "1" in r, put=lambda r: "1" in r)
    for kw in (dict(get=[]), dict(put=[]), dict(code=[]), dict(elephant=len)):
        with pytest.raises(TypeError):
            f.modify(**kw)
    f.modify(get=str.isdigit)
    assert f.get(list("abc123")) == list("123")
    f.modify(put=str.isalpha)
    assert f.put(list("ABC123")) == list("ABC")
    f.modify(code=str.isalnum)
    assert f.put(list("abc123!@")) == list("abc123")
    assert f.get(list("abc123!@")) == list("abc123")


def test_poe_grep_get_pending():
    f = Grep(code=lambda r: r & 1)
    f.get_one_start([1, 1, 2, 3, 5])
    assert f.get_pending() == [1, 1, 2, 3, 5]
    for r in (1, 1, 3, 5):
        assert f.get_one() == [r]
    assert f.get_one() == []


# -- Stackable (50_stackable.t) ---------------------------------------------------------

def _stack():
    return Stackable(filters=[
        Line(literal=b"!"),
        Map(put=lambda r: r, get=lambda r: b"(((%s)))" % r),
        Grep(put=lambda r: True, get=lambda r: b"1" in r),
        RecordBlock(block_size=2),
    ])


def test_poe_stackable_flow():
    stack = _stack()
    assert stack.get([b"test one (1)!test two (2)!"]) == []
    # cypoe: get_pending is the first filter's raw bytes (POE pushed the
    # later filters' pending records back through put instead).
    assert stack.get_pending() is None
    assert stack.filters()[3].get_pending() == [b"(((test one (1))))"]
    block = stack.get([b"test three (3)!test four (100)!"])
    assert block == [[b"(((test one (1))))", b"(((test four (100))))"]]
    assert stack.put([block[0], block[0]]) == [
        b"(((test one (1))))!", b"(((test four (100))))!",
        b"(((test one (1))))!", b"(((test four (100))))!"]


def test_stackable_get_one_matches_get():
    data = [b"a1!b!c1!d1!e1!f"]
    one = _stack()
    one.get_one_start(data)
    got = []
    while True:
        r = one.get_one()
        if not r:
            break
        got += r
    assert got == _stack().get(data) == [[b"(((a1)))", b"(((c1)))"], [b"(((d1)))", b"(((e1)))"]]
    assert one.get_pending() == b"f"


def test_poe_stackable_types_push_pop_shift_unshift():
    stack = _stack()
    assert stack.filter_types() == [type(Line()), Map, Grep, RecordBlock]
    before = stack.filters()
    popped = stack.pop()
    shifted = stack.shift()
    assert isinstance(popped, RecordBlock) and isinstance(shifted, type(Line()))
    stack.push(popped)
    stack.unshift(shifted)
    assert stack.filters() == before


@pytest.mark.parametrize("bad", [None, ["i am not a filter"], object(), 123, Line])
def test_poe_stackable_rejects_non_filters(bad):
    stack = _stack()
    before = stack.filters()
    with pytest.raises(TypeError):
        stack.push(bad)
    with pytest.raises(TypeError):
        stack.push(Stream(), bad)            # nothing is added
    with pytest.raises(TypeError):
        stack.unshift(bad)
    with pytest.raises(TypeError):
        Stackable(filters=[Line(), bad])
    assert stack.filters() == before


def test_poe_stackable_clone():
    stack = _stack()
    stack.get([b"x1!partial"])
    new = stack.clone()
    assert new is not stack
    assert all(a is not b for a, b in zip(new.filters(), stack.filters()))
    assert new.filter_types() == stack.filter_types()
    assert new.get_pending() is None and stack.get_pending() == b"partial"


def test_stackable_error_carries_records():
    stack = Stackable(filters=[Line(literal=b"\n", max_length=3), Map(code=bytes.upper)])
    with pytest.raises(LineTooLong) as info:
        stack.get([b"ab\ntoolong\ncd\n"])
    assert info.value.records == [b"AB"]
    assert stack.get([]) == [b"CD"]


def test_empty_stackable_passes_through():
    stack = Stackable()
    assert stack.get([b"a", b"b"]) == [b"a", b"b"]
    assert stack.put([b"x"]) == [b"x"]
    assert stack.pop() is None and stack.shift() is None


# -- JSONLines -----------------------------------------------------------------------

def test_jsonlines_round_trip():
    f = JSONLines()
    values = [{"a": [1, 2.5, None, True]}, "text é", 3, [], {}]
    raw = f.put(values)
    assert all(r.endswith(b"\n") and r.count(b"\n") == 1 for r in raw)
    assert f.get(raw) == values
    assert f.get([b'{"split": ', b'1}\n']) == [{"split": 1}]


@pytest.mark.parametrize("line", [
    b"{bad json", b"", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000,
    b"1" * 5000, b'"\xed\xa0\x80"',
])
def test_jsonlines_bad_line_is_frame_error_and_skipped(line):
    f = JSONLines()
    with pytest.raises(FrameError) as info:
        f.get([b"1\n" + line + b"\n2\n"])
    assert info.value.records == [1]
    assert f.get([]) == [2]


def test_jsonlines_max_length():
    f = JSONLines(max_length=10)
    assert f.max_length == 10
    with pytest.raises(LineTooLong):
        f.get([b'"' + b"x" * 20])
    assert f.get([b'"\n"ok"\n']) == ["ok"]
    g = f.clone()
    assert g.max_length == 10 and g.get_pending() is None
    with pytest.raises(ValueError, match="max_length"):
        JSONLines(max_length=0)


def test_jsonlines_get_one():
    f = JSONLines()
    f.get_one_start([b"1\n2\n3"])
    assert f.get_one() == [1]
    assert f.get_pending() == b"2\n3"
    assert f.get([b"\n"]) == [2, 3]


# -- 99_filterchange.t: partial buffers and filter switches ---------------------------

def test_poe_partial_buffers():
    f = Line()
    assert f.get([b"whole line\x0D\x0A", b"partial line"]) == [b"whole line"]
    assert f.get_pending() == b"partial line"
    f = Block(block_size=64)
    whole = b"whole block".ljust(64)
    assert f.get([whole, b"partial block"]) == [whole]
    assert f.get_pending() == b"partial block"
    f = JSONLines()
    serialized = f.put(["whole_reference"])
    assert f.get([serialized[0], b'"partial reference']) == ["whole_reference"]
    assert f.get_pending() == b'"partial reference'


def _make(mode):
    return {"line": Line, "block": Block, "json": JSONLines, "stream": Stream}[mode]()


def _unwrap(mode, record):
    return record.decode() if isinstance(record, bytes) else record


def test_poe_streamed_filter_changes():
    """The writer switches its output filter after each "do X" record, the
    reader switches its input filter when it reads one; everything is sent
    at once, so the bytes after a "do" are already buffered in the old
    filter and must move to the new one (get_pending) without loss."""
    script = ["do line", "kyriel", "do json", "coral", "do json", "drforr",
              "do block", "fimmtiu", "do block", "sungo", "do json", "dynweb",
              "do line", "sky", "do block", "braderuna", "do line", "fletch", "done"]
    writer = Line()
    stream = b""
    for step in script:
        payload = step if isinstance(writer, JSONLines) else step.encode()
        stream += b"".join(writer.put([payload]))
        if step.startswith("do "):
            writer = _make(step[3:])
    received = []
    reader = Line()
    for cut in range(0, len(stream), 7):       # arrives in 7-byte reads
        chunks = [stream[cut:cut + 7]]
        while True:
            reader.get_one_start(chunks)
            chunks = []
            switched = False
            while True:
                records = reader.get_one()
                if not records:
                    break
                text = _unwrap(None, records[0])
                received.append(text)
                if text.startswith("do "):
                    pending = reader.get_pending()
                    reader = _make(text[3:])
                    chunks = [pending] if pending else []
                    switched = True
                    break
            if not switched:
                break
    assert received == script


@pytest.mark.parametrize("value", ["1", "0", ""])
def test_no_extensions_selects_reference(value):
    env = dict(os.environ, CYPOE_NO_EXTENSIONS=value)
    out = subprocess.run(
        [sys.executable, "-c",
         "from cypoe import filters; print(filters.IMPLEMENTATION, filters.Line.__module__,"
         " isinstance(filters.Line(), filters.Filter))"],
        env=env, capture_output=True, text=True, check=True).stdout.split()
    if value == "1":
        assert out == ["reference", "cypoe._filters_ref", "True"]
    else:
        assert out == ["compiled", "cypoe._filters", "True"]
