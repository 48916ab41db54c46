"""Fuzz Line (every terminator mode, limits, encodings) against its
plain-Python reference.  Run: python bench/fuzz/fuzz_line.py -max_total_time=600"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atheris  # noqa: E402

with atheris.instrument_imports():
    from cypoe import _filters, _filters_ref
    import _harness

REGEXPS = [b"[\r\n]+", b"x*", b"<>|\0", b"a(?=b)", b"\r\n|\n", b"[\r\n]{2,}", b"\0\0?"]
LITERALS = [b"\n", b"\r\n", b"<>", b"aa", b"\0", b"\r\n\r\n", b"ab"]
ENCODINGS = [None, None, "utf-8", "latin-1", "ascii"]


def settings(inp):
    mode = inp.int(0, 4)
    opts = {}
    if mode == 1:
        opts["literal"] = inp.pick(LITERALS) if inp.bool() else (inp.blob(4) or b"\n")
    elif mode == 2:
        opts["autodetect"] = True
    elif mode == 3:
        opts["input_regexp"] = inp.pick(REGEXPS)
    elif mode == 4:
        opts["input_literal"] = inp.blob(3) or b"\r"
        opts["output_literal"] = inp.blob(3)
    max_length = inp.maybe(1, 64)
    if max_length is not None:
        opts["max_length"] = max_length
        if inp.bool():
            opts["max_buffer"] = max_length + inp.int(0, 200)
    encoding = inp.pick(ENCODINGS)
    if encoding is not None:
        opts["encoding"] = encoding
    return opts


def records(inp):
    return [inp.blob(16) for _ in range(inp.int(0, 4))]


def test_one_input(data):
    inp = _harness.Input(data)
    opts = settings(inp)
    # bytes records only: a str record needs an encoding (TypeError is right)
    ops = _harness.plan(inp, put_records=records)
    _harness.compare(lambda: _filters.Line(**opts), lambda: _filters_ref.Line(**opts), ops)
    if "input_regexp" not in opts and "max_buffer" not in opts:
        for mod in (_filters, _filters_ref):
            _harness.split_invariance(lambda: mod.Line(**opts), inp)


if __name__ == "__main__":
    _harness.main(test_one_input)
