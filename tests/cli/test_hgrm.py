"""HdrHistogram's .hgrm text: written as Java's outputPercentileDistribution
prints it, read back; wrk2's --latency block (no network)."""
import io
import random

import pytest

from cypoe.cli import hgrm, report


def _hist(values_us):
    h = report.new_histogram()
    for v in values_us:
        h.record_value(v)
    return h


def _exp_hist(n=20000, seed=3):
    rng = random.Random(seed)
    return _hist(int(rng.expovariate(1 / 800.0)) + 1 for _ in range(n))


def test_write_then_parse_back():
    h = _exp_hist()
    buf = io.StringIO()
    hgrm.write_hgrm(h, buf)
    text = buf.getvalue()
    assert text.startswith("       Value     Percentile TotalCount 1/(1-Percentile)\n\n")
    parsed = hgrm.parse_hgrm(text)
    rows, footer = parsed["rows"], parsed["footer"]
    assert footer["total_count"] == h.get_total_count() == 20000
    assert rows[-1][1] == 1.0 and rows[-1][2] == 20000
    assert rows[0][1] == 0.0
    values = [r[0] for r in rows]
    pcts = [r[1] for r in rows]
    counts = [r[2] for r in rows]
    assert values == sorted(values) and pcts == sorted(pcts) and counts == sorted(counts)
    assert footer["max"] == round(h.get_max_value() / 1000.0, 3) == values[-1]
    assert abs(footer["mean"] - h.get_mean_value() / 1000.0) < 0.001
    assert abs(footer["stdev"] - h.get_stddev() / 1000.0) < 0.001   # scaled like the values
    assert footer["buckets"] == h.bucket_count and footer["sub_buckets"] == 2048


def test_rows_follow_javas_percentile_ticks():
    # 5 ticks per half distance: 0, 10 … 50 (steps of 10), 55 … 75 (5),
    # 77.5 … 87.5 (2.5), … as in HdrHistogram's PercentileIterator (the
    # half distance rounded down to a power of two).
    h = _hist(range(1, 100001))
    rows = hgrm.percentile_rows(h)
    levels = [round(r[1], 6) for r in rows]
    assert levels[:14] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0,
                           77.5, 80.0, 82.5]
    assert levels[-1] == 100.0
    # each row's value is the value at its percentile, the count all values up to it
    for value, level, count in rows[1:-1]:
        assert h.get_value_at_percentile(level) <= value
        assert count >= level / 100.0 * 100000


def test_last_row_has_no_inverse_column_and_rows_match_the_java_layout():
    h = _hist([1000, 2000, 3000])
    buf = io.StringIO()
    hgrm.write_hgrm(h, buf)
    lines = buf.getvalue().splitlines()
    rows = [ln for ln in lines[2:] if not ln.startswith("#")]
    assert rows[0] == "       1.000 0.000000000000          1           1.00"
    assert rows[-1] == "       3.001 1.000000000000          3"
    assert lines[-3] == "#[Mean    =        2.000, StdDeviation   =        0.817]"
    assert lines[-2] == "#[Max     =        3.001, Total count    =            3]"
    assert lines[-1].startswith("#[Buckets = ")


def test_empty_histogram():
    buf = io.StringIO()
    hgrm.write_hgrm(report.new_histogram(), buf)
    parsed = hgrm.parse_hgrm(buf.getvalue())
    assert parsed["rows"] == [] and parsed["footer"]["total_count"] == 0
    assert "no values" in hgrm.format_latency_distribution(report.new_histogram())


def test_wrk2_latency_block():
    h = _exp_hist()
    text = hgrm.format_latency_distribution(h)
    lines = text.splitlines()
    assert lines[0] == "  Latency Distribution (HdrHistogram - Recorded Latency)"
    assert [ln[:8] for ln in lines[1:9]] == [" 50.000%", " 75.000%", " 90.000%", " 99.000%",
                                             " 99.900%", " 99.990%", " 99.999%", "100.000%"]
    assert all(len(ln) == 18 for ln in lines[1:9])
    assert "  Detailed Percentile spectrum:" in lines
    assert "       Value   Percentile   TotalCount 1/(1-Percentile)" in lines
    parsed = hgrm.parse_hgrm(text)       # the spectrum parses as .hgrm too
    assert parsed["rows"][-1][1] == 1.0 and parsed["footer"]["total_count"] == 20000
    assert parsed["rows"][-1][2] == 20000


def test_wrk_time_units():
    assert hgrm.format_time_us(950) == "950.00us"
    assert hgrm.format_time_us(1370) == "1.37ms"
    assert hgrm.format_time_us(6_540_000) == "6.54s"
    assert hgrm._print_units("1.37ms", 10) == "    1.37ms"
    assert hgrm._print_units("6.54s", 10) == "    6.54s "


# Printed by HdrHistogram's Java library itself (org.HdrHistogram 2.1.11,
# Debian's libhdrhistogram-java): new Histogram(1, 3600000000L, 3), the
# values below recorded, outputPercentileDistribution(System.out, 5, 1000.0).
JAVA_CASES = {
    "spread": [(i * 7919) % 100000 + 1 for i in range(20000)],
    "tail": [50 + (i % 97) * 3 for i in range(30000)] + [250000 + i * 1000 for i in range(40)]
    + [3000000],
    "three": [1000, 2000, 3000],
}


@pytest.mark.parametrize("name", sorted(JAVA_CASES))
def test_identical_to_javas_output(name):
    import os
    with open(os.path.join(os.path.dirname(__file__), "data", f"java_hgrm_{name}.txt")) as fh:
        java = fh.read()
    buf = io.StringIO()
    hgrm.write_hgrm(_hist(JAVA_CASES[name]), buf)
    assert buf.getvalue() == java


def test_java_rounds_half_up_on_the_shortest_digits():
    # 0.9997802734375 is exact in binary: C and Python print ...437, Java ...438
    assert hgrm._jf(0.9997802734375, 12, 2) == "0.999780273438"
    assert "%.12f" % 0.9997802734375 == "0.999780273437"
    assert hgrm._jf(2.5, 0, 3) == "  3" and hgrm._jf(1.005, 2) == "1.01"
