"""Input buffers give back what they grew for a big record (issue 11 item
12): an idle connection's memory does not depend on the longest record it
once received."""
import json
import subprocess
import sys
import textwrap

import pytest

from cypoe import _buffer, _filters

SMALL = 4096        # the capacity a drained input buffer may keep
MiB = 1024 * 1024
READ = 65536        # ReadWrite's read size


def _feed_in_reads(f, data):
    out = []
    for i in range(0, len(data), READ):
        out += f.get([data[i:i + READ]])
    return out


@pytest.mark.parametrize("make, data, tail", [
    (lambda: _filters.Line(), b"x" * MiB + b"\n", b""),
    (lambda: _filters.Line(), b"x" * MiB + b"\nPI", b"PI"),     # a small tail stays
    (lambda: _filters.Line(literal=b"<>"), b"x" * MiB + b"<>PI<", b"PI<"),
    (lambda: _filters.Line(autodetect=True), b"x" * MiB + b"\r", b""),
    (lambda: _filters.Line(input_regexp=b"\n+"), b"x" * MiB + b"\nPI", b"PI"),
    (lambda: _filters.Block(), b"%d\0" % MiB + b"x" * MiB + b"3\0a", b"3\0a"),
    (lambda: _filters.Block(block_size=MiB), b"x" * MiB + b"ab", b"ab"),
    (lambda: _filters.Block(length_prefix="!I"), MiB.to_bytes(4, "big") + b"x" * MiB, b""),
])
def test_capacity_is_given_back_after_a_big_record(make, data, tail):
    f = make()
    records = _feed_in_reads(f, data)
    assert len(records) == 1 and len(records[0]) == MiB
    assert (f.get_pending() or b"") == tail
    assert f._input_capacity <= SMALL


def test_capacity_is_given_back_after_get_one_start():
    f = _filters.Line()
    f.get_one_start([b"x" * MiB + b"\n"])
    assert f._input_capacity >= MiB
    assert len(f.get_one()[0]) == MiB
    assert f._input_capacity <= SMALL
    assert f.get([b"a\n"]) == [b"a"]


def test_stream_gives_back_capacity():
    f = _filters.Stream()
    f.get_one_start([b"x" * MiB])
    assert len(f.get_one()[0]) == MiB
    assert f._input_capacity <= SMALL


def test_byte_buffer_gives_back_a_big_block_and_keeps_the_live_bytes():
    b = _buffer.ByteBuffer()
    b.write(b"x" * MiB + b"tail")
    assert b.capacity >= MiB
    assert b.read(MiB) == b"x" * MiB
    assert b.capacity == SMALL and b.getvalue() == b"tail"
    b.write(b"y" * 10)
    assert b.read() == b"tail" + b"y" * 10
    assert b.capacity == SMALL          # small blocks are kept for reuse
    b.write(b"z" * (3 * SMALL))
    assert b.read(SMALL) == b"z" * SMALL
    assert b.capacity > SMALL           # much still live: kept
    b.read()
    assert b.capacity == 0


RSS_SCRIPT = textwrap.dedent("""
    import json, sys
    from cypoe import _filters

    def rss_kib():
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    MiB = 1024 * 1024
    READ = 65536
    big = b"x" * MiB + b"\\n"
    filters = [_filters.Line() for _ in range(200)] + \\
              [_filters.Block(block_size=MiB) for _ in range(50)]
    for f in filters:
        f.get([b"warm\\n"])
    before = rss_kib()
    for f in filters:
        data = big if isinstance(f, _filters.Line) else big[:MiB]
        for i in range(0, len(data), READ):
            f.get([data[i:i + READ]])
    print(json.dumps({"before": before, "after": rss_kib()}))
""")


def test_rss_of_idle_filters_that_each_took_a_1mb_record():
    # 250 filters that each buffered a 1 MiB record: without giving the
    # capacity back they pin about 250 MiB; with it, one record's worth.
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    rss = json.loads(out)
    assert rss["after"] - rss["before"] < 64 * 1024, rss
