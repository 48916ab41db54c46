"""Fuzz Block (default codec, length_prefix, block_size, a custom
length_codec; limits) against its plain-Python reference.
Run: python bench/fuzz/fuzz_block.py -max_total_time=600"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atheris  # noqa: E402

with atheris.instrument_imports():
    from cypoe import _filters, _filters_ref
    import _harness

PREFIXES = ["!I", "<H", "B", "<Q", "!H", ">L", "=I", "@N", "!Q"]


def _encode(payload):           # a custom codec: 2-byte big-endian length
    return len(payload).to_bytes(2, "big") + payload


def _decode(buffer):
    return None if len(buffer) < 2 else (2, int.from_bytes(buffer[:2], "big"))


def settings(inp):
    kind = inp.int(0, 3)
    opts = {}
    if kind == 1:
        opts["length_prefix"] = inp.pick(PREFIXES)
    elif kind == 2:
        opts["block_size"] = inp.int(1, 16)
    elif kind == 3:
        opts["length_codec"] = (_encode, _decode)
    floor = opts.get("block_size", 1)
    if kind != 2:
        max_length = inp.maybe(1, 64)
        if max_length is not None:
            opts["max_length"] = floor = max_length
    if inp.bool():
        if kind != 2 and "max_length" not in opts:
            opts["max_length"] = floor = 64     # the default would exceed it
        opts["max_buffer"] = floor + inp.int(0, 200)
    return opts


def records(inp):
    return [inp.blob(24) for _ in range(inp.int(0, 4))]


def test_one_input(data):
    inp = _harness.Input(data)
    opts = settings(inp)
    ops = _harness.plan(inp, put_records=records)
    _harness.compare(lambda: _filters.Block(**opts), lambda: _filters_ref.Block(**opts), ops)
    if "max_buffer" not in opts:
        for mod in (_filters, _filters_ref):
            _harness.split_invariance(lambda: mod.Block(**opts), inp)


if __name__ == "__main__":
    _harness.main(test_one_input)
