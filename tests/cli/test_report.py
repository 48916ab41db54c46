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


# -- the extended report: uncorrected latency, history, status classes,
#    counts that add up, warnings, limits ------------------------------------

def _open_loop(corrected_ms, raw_ms):
    s = report.LoadStats()
    for c, r in zip(corrected_ms, raw_ms):
        s.record(c / 1000.0, r / 1000.0)
    s.requests = s.responses = len(corrected_ms)
    s.duration = 1.0
    return s


def test_new_fields_round_trip_through_the_pipe_format():
    s = _open_loop([5.0, 6.0], [1.0, 2.0])
    s.in_flight = 3
    s.requests += 3
    s.status(200)
    s.status(503, 2)
    s.status("2xx")
    s.second(1, requests=4, responses=2, bytes_sent=40)
    s.second(2, requests=1, errors=1)
    s.cpu_s, s.cpu_wall_s = 0.5, 1.0
    back = report.LoadStats.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back.hist_raw.get_total_count() == 2
    assert back.hist_raw.get_max_value() == s.hist_raw.get_max_value()
    assert back.status_classes == {"2xx": 2, "5xx": 2}
    assert back.history == [
        {"t": 1, "requests": 4, "responses": 2, "errors": 0, "bytes_sent": 40, "bytes_received": 0},
        {"t": 2, "requests": 1, "responses": 0, "errors": 1, "bytes_sent": 0, "bytes_received": 0}]
    assert back.in_flight == 3 and back.unaccounted() == 0
    assert (back.cpu_s, back.cpu_wall_s) == (0.5, 1.0)


def test_two_workers_merge_like_one_histogram_of_all_values():
    rng = random.Random(11)
    a_vals = [(rng.expovariate(1.0) * 5 + 1, rng.expovariate(1.0) * 2) for _ in range(4000)]
    b_vals = [(rng.expovariate(0.5) * 5 + 1, rng.expovariate(0.5) * 2) for _ in range(3000)]
    a = _open_loop([c for c, _ in a_vals], [r for _, r in a_vals])
    b = _open_loop([c for c, _ in b_vals], [r for _, r in b_vals])
    a.second(1, requests=10, responses=9)
    b.second(1, requests=5, responses=5)
    b.second(2, requests=7, responses=7)
    a.status(200, 9)
    b.status(200, 12)
    b.status(404, 1)
    merged = report.LoadStats()
    for part in (a, b):
        merged.merge(report.LoadStats.from_dict(json.loads(json.dumps(part.to_dict()))))
    one = _open_loop([c for c, _ in a_vals + b_vals], [r for _, r in a_vals + b_vals])
    for name in ("hist", "hist_raw"):
        m, o = getattr(merged, name), getattr(one, name)
        assert m.get_total_count() == o.get_total_count() == 7000
        assert m.encode() == o.encode()     # the same counts in every bucket
    assert merged.history[0]["requests"] == 15 and merged.history[0]["responses"] == 14
    assert merged.history[1]["t"] == 2 and merged.history[1]["requests"] == 7
    assert merged.status_classes == {"2xx": 21, "4xx": 1}


def test_summary_has_the_honest_fields():
    s = _open_loop([i / 10.0 for i in range(1, 1001)], [i / 100.0 for i in range(1, 1001)])
    s.bytes_sent, s.bytes_received = 2_000_000, 4_000_000
    d = s.summary(target="t", rate=1000.0, concurrency=1, workers=1)
    lat = d["latency_ms"]
    for k in ("p50", "p75", "p90", "p99", "p99.9", "p99.99", "max", "mean", "stdev"):
        assert lat[k] is not None, k
    assert lat["p50"] <= lat["p75"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["p99.99"] \
        <= lat["max"]
    assert abs(lat["mean"] - 50.05) < 0.5
    raw = d["latency_uncorrected_ms"]
    assert raw["p50"] < lat["p50"] and raw["count"] == lat["count"] == 1000
    assert d["mb_per_s"] == {"sent": 2.0, "received": 4.0}
    assert d["warnings"] == []          # 1000 sent in 1 s at --rate 1000
    text = report.format_report(d)
    assert "uncorrected" in text and "p99.99" in text and "p75" in text and "stdev" in text
    # closed loop: no uncorrected block
    assert "latency_uncorrected_ms" not in s.summary(target="t")


def test_counts_add_up_with_in_flight_and_request_errors():
    s = report.LoadStats()
    s.requests, s.responses, s.in_flight = 100, 90, 4
    s.error("mismatch", 2)
    s.error("lost-in-flight", 4)
    s.error("connect:ECONNREFUSED", 7)   # not a request
    assert s.request_errors == 6 and s.unaccounted() == 0
    d = s.summary()
    assert d["requests"] == d["responses"] + d["failed"] + d["in_flight"]


def test_rate_shortfall_warning():
    s = _open_loop([1.0] * 900, [1.0] * 900)     # 900 sent in 1 s
    assert s.summary(rate=1000.0)["warnings"]
    w = s.summary(rate=1000.0)["warnings"][0]
    assert "90.0%" in w and "1000" in w
    assert s.summary(rate=940.0)["warnings"] == []
    assert "warning: achieved rate" in report.format_report(s.summary(target="t", rate=1000.0))


def test_cpu_saturation_warning():
    s = _stats([1.0] * 10)
    s.cpu_s, s.cpu_wall_s = 0.99, 1.0
    d = s.summary(target="t")
    assert d["client_cpu"]["per_worker"] == 0.99
    assert any("measures the client, not the server" in w for w in d["warnings"])
    s.cpu_s = 0.3
    assert s.summary()["warnings"] == []
    assert report.LoadStats().summary()["client_cpu"] is None


def test_cpu_clock_measures_this_process():
    s = report.LoadStats()
    clock = report.CpuClock()
    x = 0
    for i in range(200000):
        x += i * i
    clock.stop(s)
    assert s.cpu_wall_s > 0 and s.cpu_s >= 0


def test_limits_in_force(monkeypatch):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert report.limits_in_force(10) is None
    lim = report.limits_in_force(hard + 10)     # more than the hard limit allows
    assert "RLIMIT_NOFILE" in lim["capped_by"]
    assert lim["nofile"]["hard"] == hard and lim["max_connections"] < hard
    monkeypatch.setattr(report, "local_port_range", lambda *a: (40000, 40009))
    lim = report.limits_in_force(50)
    assert lim["capped_by"] == ["ip_local_port_range"] and lim["max_connections"] == 10
    assert report.limits_in_force(50, source_addresses=5) is None
    d = report.LoadStats().summary(concurrency=50, workers=1)
    assert d["limits"]["max_connections"] == 10
    assert any("local ports 40000-40009" in w for w in d["warnings"])


def test_local_port_range_reads_proc_format(tmp_path):
    p = tmp_path / "r"
    p.write_text("32768\t60999\n")
    assert report.local_port_range(str(p)) == (32768, 60999)
    assert report.local_port_range(str(tmp_path / "missing")) is None


def test_history_csv_round_trip():
    import io
    s = report.LoadStats()
    s.second(1, requests=10, responses=9, errors=1, bytes_sent=100, bytes_received=90)
    s.second(2, requests=5, responses=5, bytes_sent=50, bytes_received=50)
    buf = io.StringIO()
    report.write_history_csv(s.history, buf)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "t,requests,responses,errors,bytes_sent,bytes_received"
    assert lines[1] == "1,10,9,1,100,90"
    assert report.read_history_csv(buf.getvalue()) == s.history


def test_interval_line():
    s = _stats([1.0, 2.0, 3.0])
    counts = report.sum_history([{"t": 1, "requests": 10, "responses": 8, "errors": 2},
                                 {"t": 2, "requests": 10, "responses": 10},
                                 {"t": 3, "requests": 99}], 0, 2)
    assert counts["requests"] == 20 and counts["responses"] == 18 and counts["errors"] == 2
    line = report.format_interval(2.0, 2.0, counts, s.hist, conns=4)
    assert "10.0 sent/s" in line and "9.0 resp/s" in line and "errors 2" in line
    assert "p99" in line and "conns 4" in line
    assert "p50 -" in report.format_interval(1.0, 1.0, {}, None)


def test_status_class():
    assert report.status_class(200) == "2xx" and report.status_class("404") == "4xx"
    assert report.status_class(42) == "other"


def test_outputs_beside_the_report(tmp_path):
    from cypoe.cli import hgrm
    s = _open_loop([1.0, 2.0, 30.0], [0.5, 1.0, 1.5])
    s.second(1, requests=3, responses=3)
    h, c = tmp_path / "lat.hgrm", tmp_path / "hist.csv"
    report.write_outputs(s, hgrm_path=str(h), csv_path=str(c))
    parsed = hgrm.parse_hgrm(h.read_text())
    assert parsed["footer"]["total_count"] == 3 and parsed["rows"][-1][1] == 1.0
    assert report.read_history_csv(c.read_text()) == s.history
    text = report.latency_block(s, open_loop=True)
    assert "HdrHistogram - Recorded Latency" in text and "Uncorrected Latency" in text
    assert "Uncorrected" not in report.latency_block(s, open_loop=False)


def test_interval_report_folds_snapshots():
    import io
    out = io.StringIO()
    h = report.new_histogram()
    h.record_value(1500)
    ir = report.IntervalReport(out, 2.0, t0=100.0)
    ir.add({"responses": 10, "requests": 12, "errors": 1, "hist": report.encode_histogram(h),
            "conns": 3})
    assert ir.maybe_emit(now=101.0) is None          # not 2 s yet
    ir.add({"responses": 10, "requests": 8, "hist": "", "conns": 4})
    line = ir.maybe_emit(now=102.0)
    assert "10.0 sent/s" in line and "10.0 resp/s" in line and "errors 1" in line
    assert "p50 1.500 ms" in line and "conns 4" in line
    assert out.getvalue().count("\n") == 1
    assert "p50 -" in ir.maybe_emit(now=104.0)        # an empty interval still reports


def test_cpu_time_passed_in_by_the_caller():
    s = _stats([1.0] * 10)                      # duration 2 s, no CpuClock figures
    d = s.summary(target="t", workers=2, cpu_s=3.9)
    assert d["client_cpu"] == {"cpu_s": 3.9, "wall_s": 4.0, "per_worker": 0.975}
    assert "cpu_s" not in d
    assert any("measures the client" in w for w in d["warnings"])
    assert s.summary(workers=2, cpu_s=1.0)["warnings"] == []


def test_limits_of_another_shape_and_no_cap():
    s = _stats([1.0])
    d = s.summary(limits={"open_files": 1024, "local_ports": "32768-60999", "capped_by": []})
    assert d["warnings"] == []
    d = s.summary(limits={"capped_by": ["open files 100 (ulimit -n) < 500 connections"]})
    assert d["warnings"] == ["the limits in force cap the connections: "
                             "open files 100 (ulimit -n) < 500 connections"]
    assert report.write_csv is report.write_history_csv


def test_failed_counter_wins_and_history_seconds_round():
    s = report.LoadStats()
    s.requests, s.responses, s.failed = 10, 7, 3
    s.error("redis:ERR", 2)
    s.error("some-engine-kind", 1)
    assert s.request_errors == 3 and s.unaccounted() == 0
    a, b = report.LoadStats(), report.LoadStats()
    a.history = [{"t": 1.001, "responses": 5}, {"t": 2.003, "responses": 6}]
    b.history = [{"t": 0.998, "responses": 1}, {"t": 2.4, "responses": 2}]
    a.merge(b)
    assert [(e["t"], e["responses"]) for e in a.history] == [(1, 6), (2, 8)]


def test_cpu_clock_of_reaped_children():
    import subprocess
    import sys
    s = report.LoadStats()
    clock = report.CpuClock(children=True)
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    clock.stop(s, processes=2)
    assert s.cpu_s > 0                      # the child's CPU time, once reaped
    assert s.cpu_wall_s > 0


def test_interval_report_reads_an_engines_row():
    import io
    out = io.StringIO()
    ir = report.IntervalReport(out, 1.0, t0=0.0)
    ir.add({"responses": 5, "errors": 0, "conns": 2, "hist": "",
            "row": {"t": 1.0, "requests": 7, "responses": 5, "bytes_sent": 70}})
    line = ir.maybe_emit(now=1.0)
    assert "7.0 sent/s" in line and "5.0 resp/s" in line
