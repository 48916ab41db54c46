"""Fuzz Stream against its plain-Python reference.
Run: python bench/fuzz/fuzz_stream.py -max_total_time=600"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atheris  # noqa: E402

with atheris.instrument_imports():
    from cypoe import _filters, _filters_ref
    import _harness


def records(inp):
    return [inp.blob(24) for _ in range(inp.int(0, 4))]


def test_one_input(data):
    inp = _harness.Input(data)
    ops = _harness.plan(inp, put_records=records)
    # Stream yields what arrived: no split-point invariance to check.
    _harness.compare(_filters.Stream, _filters_ref.Stream, ops)


if __name__ == "__main__":
    _harness.main(test_one_input)
