"""Fuzz Stackable, Map and Grep (plain Python, over compiled or reference
Line/Block) against the same stack over the plain-Python reference filters.
Run: python bench/fuzz/fuzz_stackable.py -max_total_time=600"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atheris  # noqa: E402

with atheris.instrument_imports():
    from cypoe import _filters, _filters_ref
    from cypoe.filters import Grep, Map, Stackable
    import _harness



def _split(r):                  # Map: zero, one or several records
    if r[:1] == b"a":
        return [r, r]
    if r[:1] == b"0":
        return []
    return r.upper()


MAPS = [lambda: Map(code=_split),
        lambda: Map(get=lambda r: r[::-1], put=lambda r: r + b"."),
        lambda: Grep(code=lambda r: b"x" not in r),
        lambda: Grep(get=lambda r: len(r) % 2 == 0, put=lambda r: True)]
BYTE_FILTERS = [lambda m: m.Line(), lambda m: m.Line(literal=b"<>", max_length=8),
                lambda m: m.Line(autodetect=True), lambda m: m.Block(),
                lambda m: m.Block(length_prefix="B", max_length=8),
                lambda m: m.Block(block_size=3), lambda m: m.Stream()]


def test_one_input(data):
    inp = _harness.Input(data)
    first = inp.pick(BYTE_FILTERS)
    second = inp.pick(BYTE_FILTERS) if inp.bool() else None   # Line over Block etc.
    rest = [inp.pick(MAPS) for _ in range(inp.int(0, 3))]

    def make(mod):
        stack = [first(mod)] + ([second(mod)] if second else []) + [m() for m in rest]
        return Stackable(filters=stack)

    ops = _harness.plan(inp, c_face=False,
                        put_records=lambda i: [i.blob(12) for _ in range(i.int(0, 3))])
    _harness.compare(lambda: make(_filters), lambda: make(_filters_ref), ops, c_face=False)


if __name__ == "__main__":
    _harness.main(test_one_input)
