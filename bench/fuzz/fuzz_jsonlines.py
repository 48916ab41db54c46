"""Fuzz JSONLines (over the compiled Line) against JSONLines over the
plain-Python reference Line.  Run: python bench/fuzz/fuzz_jsonlines.py -max_total_time=600"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atheris  # noqa: E402

with atheris.instrument_imports():
    from cypoe import _filters, _filters_ref
    from cypoe import filters
    import _harness


def make(mod, max_length):
    """JSONLines whose Line is `mod`'s (the public class uses the compiled
    one unless CYPOE_NO_EXTENSIONS=1)."""
    f = filters.JSONLines(max_length=max_length)
    line = mod.Line(literal=b"\n", max_length=max_length)
    line._set_record_decoder(filters._json_decode)
    f._line = line
    return f


def records(inp):
    pool = [None, True, 0, -1, 1.5, "é", "a\nb", [1, [2]], {"k": "v"}, "", 2 ** 70]
    return [inp.pick(pool) for _ in range(inp.int(0, 4))]


def test_one_input(data):
    inp = _harness.Input(data)
    max_length = inp.maybe(1, 64)
    ops = [op for op in _harness.plan(inp, c_face=False, put_records=records)
           if op[0] != "clone"]     # JSONLines.clone() rebuilds a compiled Line
    _harness.compare(lambda: make(_filters, max_length),
                     lambda: make(_filters_ref, max_length), ops, c_face=False)
    for mod in (_filters, _filters_ref):
        _harness.split_invariance(lambda: make(mod, max_length), inp)


if __name__ == "__main__":
    _harness.main(test_one_input)
