"""Load report: HDR histograms, merging across workers (no network)."""
import json
import random

from cypoe.cli import report


def _stats(latencies_ms, requests=None, errors=()):
    s = report.LoadStats()
    for ms in latencies_ms:
        s.record(ms / 1000.0)
    s.requests = requests if requests is not None else len(latencies_ms)
    s.responses = len(latencies_ms)
    s.bytes_sent = s.requests * 6
    s.bytes_received = s.responses * 6
    s.connections_opened = 4
    for e in errors:
        s.error(e)
    s.duration = 2.0
    return s


def test_percentiles():
    s = _stats([i / 10.0 for i in range(1, 1001)])  # 0.1 .. 100 ms
    lat = s.summary()["latency_ms"]
    assert abs(lat["p50"] - 50.0) / 50.0 < 0.01
    assert abs(lat["p90"] - 90.0) / 90.0 < 0.01
    assert abs(lat["p99"] - 99.0) / 99.0 < 0.01
    assert abs(lat["p99.9"] - 99.9) / 99.9 < 0.01
    assert abs(lat["max"] - 100.0) / 100.0 < 0.01
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]


def test_summary_figures_add_up():
    s = _stats([1.0] * 500, requests=510, errors=["read:EOF"] * 3)
    d = s.summary(target="x")
    assert d["requests"] == 510 and d["responses"] == 500
    assert d["req_per_s"] == 250.0
    assert d["mb_per_s"]["sent"] == round(510 * 6 / 2.0 / 1e6, 3)
    assert d["errors"] == {"read:EOF": 3} and d["error_total"] == 3
    json.dumps(d)  # JSON-safe


def test_merge_through_the_pipe_format_is_lossless():
    rng = random.Random(5)
    parts = [[rng.expovariate(1.0) * 10 for _ in range(3000)] for _ in range(4)]
    merged = report.LoadStats()
    for p in parts:
        wire = json.loads(json.dumps(_stats(p, errors=["mismatch"]).to_dict()))
        merged.merge(report.LoadStats.from_dict(wire))
    single = _stats([x for p in parts for x in p])
    assert merged.hist.get_total_count() == 12000
    assert merged.responses == 12000 and merged.requests == 12000
    assert merged.errors == {"mismatch": 4}
    for pct in (50, 90, 99, 99.9, 100):
        assert merged.hist.get_value_at_percentile(pct) == single.hist.get_value_at_percentile(pct)


def test_empty_histogram_round_trip():
    s = report.LoadStats.from_dict(report.LoadStats().to_dict())
    assert s.hist.get_total_count() == 0
    assert s.summary()["latency_ms"]["p99"] is None
    assert "errors       none" in report.format_report(s.summary(target="t"))


def test_error_kinds():
    import errno
    assert report.error_kind("connect", errno.ECONNREFUSED) == "connect:ECONNREFUSED"
    assert report.error_kind("read", 0) == "read:EOF"


def test_text_report_and_live_line():
    s = _stats([1.0, 2.0, 3.0], errors=["connect:ECONNREFUSED"])
    text = report.format_report(s.summary(target="127.0.0.1:9", concurrency=4, pipeline=2))
    assert "127.0.0.1:9" in text and "p99.9" in text and "connect:ECONNREFUSED 1" in text
    line = report.format_live(3.0, 1.0, 1500, s.hist, 2, 4)
    assert "1500.0 req/s" in line and "errors 2" in line and "conns 4" in line
