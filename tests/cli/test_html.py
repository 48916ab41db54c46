"""The self-contained HTML reports (``cypoe load --html``, ``cypoe scan --html``):
well-formed, the run's numbers in them, user-controlled text escaped, nothing
fetched from the network, and (where Chromium is installed) rendered by a
headless browser without a script error."""
import html.parser
import math
import os
import random
import re
import shutil
import subprocess

import pytest

from cypoe.cli import html as reports
from cypoe.cli import report

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class Tree(html.parser.HTMLParser):
    """Collects tags, attributes, text and checks that every non-void
    element is closed in order."""

    VOID = {"meta", "br", "img", "input", "link", "hr", "line", "circle", "rect", "polyline",
            "path", "col", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.text, self.errors = [], [], [], []
        self.scripts = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def parse(page):
    t = Tree()
    t.feed(page)
    t.close()
    assert not t.errors, t.errors[:5]
    assert t.stack == [], t.stack
    return t


def no_external(tree, page):
    for tag, attrs in tree.tags:
        for name in ("src", "href", "xlink:href", "action", "data"):
            v = attrs.get(name)
            assert not (v and re.match(r"\s*(https?:)?//", v)), (tag, name, v)
    assert "@import" not in page and "url(" not in page


def sample_stats(raw=True, history=True):
    rng = random.Random(7)
    st = report.LoadStats()
    for _ in range(5000):
        st.record(rng.expovariate(1 / 0.0005))
    if raw:
        st.hist_raw = report.new_histogram()
        for _ in range(5000):
            st.hist_raw.record_value(int(rng.expovariate(1 / 300.0)) + 1)
    if history:
        st.history = [{"t": t, "requests": 1000 + t, "responses": 990 + t, "errors": 3 * (t == 2),
                       "bytes_sent": 6000, "bytes_received": 5940} for t in range(5)]
    st.requests, st.responses, st.duration = 5000, 5000, 5.0
    st.connections_opened = 16
    st.error("connect:ECONNREFUSED", 3)
    return st


def test_load_report_parses_and_has_the_percentiles():
    st = sample_stats()
    summary = st.summary(target="127.0.0.1:7000", concurrency=16, pipeline=1, rate=1000.0)
    page = reports.load_html(summary, st, {"connections": 16, "duration": 5.0,
                                           "message": EVIL, "rate": 1000.0})
    tree = parse(page)
    text = " ".join(tree.text)
    for p in (50.0, 90.0, 99.0, 99.9):
        assert f"{st.hist.get_value_at_percentile(p) / 1000.0:,.3f} ms" in text
        assert f"{st.hist_raw.get_value_at_percentile(p) / 1000.0:,.3f} ms" in text
    assert f"{st.hist.get_max_value() / 1000.0:,.3f} ms" in text
    assert "5,000" in text                                # requests and the count
    # two curves (corrected, uncorrected), the x axis as HdrHistogram labels it
    lines = [a for t, a in tree.tags if t == "polyline"]
    assert {a["data-name"].split(" ")[0] for a in lines} >= {"corrected", "uncorrected",
                                                             "requests/s", "responses/s"}
    ticks = set(tree.text)
    assert {"0%", "90%", "99%", "99.9%"} <= ticks
    assert "connect:ECONNREFUSED" in text
    # the per-second history: the errors bar of second 2
    assert any(t == "rect" for t, _ in tree.tags)
    no_external(tree, page)


def test_load_report_escapes_config_and_target():
    st = sample_stats()
    summary = st.summary(target=EVIL, concurrency=16)
    page = reports.load_html(summary, st, {"message": EVIL, EVIL: 1})
    assert "<script>alert" not in page and "<img" not in page
    tree = parse(page)
    assert EVIL in " ".join(tree.text)                    # shown, as text
    assert sum(1 for t, _ in tree.tags if t == "script") == 1   # ours only


def test_load_report_without_raw_histogram_or_history():
    """An empty uncorrected histogram and no per-second history: one curve,
    and the page says what it lacks; and an empty run."""
    st = sample_stats(raw=False, history=False)
    st.history = []
    st.hist_raw = report.new_histogram()
    page = reports.load_html(st.summary(target="t:1", rate=100.0), st, {})
    tree = parse(page)
    names = [a["data-name"] for t, a in tree.tags if t == "polyline"]
    assert names == ["latency"]
    assert "kept no per-second history" in page
    empty = report.LoadStats()
    page = reports.load_html(empty.summary(target="t:1"), empty, {"connections": 1})
    parse(page)
    assert "No response was timed" in page


def test_closed_loop_draws_one_curve_even_with_a_raw_histogram():
    st = sample_stats()                               # hist_raw filled
    page = reports.load_html(st.summary(target="t:1", concurrency=16, rate=None), st,
                             {"rate": None})
    names = [a["data-name"] for t, a in parse(page).tags if t == "polyline"]
    assert names == ["latency", "requests/s", "responses/s"]
    assert "uncorrected" not in page


def test_percentile_curve_is_hdrhistograms():
    st = sample_stats(raw=False)
    pts = reports.percentile_curve(st.hist)
    assert pts[0][0] == 0.0 and pts[-1][0] is None
    assert pts[-1][1] == st.hist.get_max_value() / 1000.0
    xs = [x for x, _ in pts[:-1]]
    assert xs == sorted(xs)
    # 5000 values: the finite part reaches past 99.9% (x = 3), not past 99.99%+1 decade
    assert 3 <= max(xs) < 5
    for x, v in pts[:-1]:
        p = 100 * (1 - 10 ** -x)
        assert v == st.hist.get_value_at_percentile(p) / 1000.0 or x > 0
    assert reports.percentile_curve(report.new_histogram()) == []


def test_percentile_labels():
    assert [reports._percentile_label(d) for d in range(6)] == [
        "0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
    assert math.isclose(math.log10(1 / (1 - 0.999)), 3)


def scan_records():
    return [
        {"ip": "127.0.0.1", "port": 22, "protocol": "tcp", "state": "open", "status": "success",
         "timestamp": "2026-12-06T03:00:00.100Z", "banner": "SSH-2.0-x " + EVIL},
        {"ip": "127.0.0.1", "port": 6379, "protocol": "tcp", "state": "open",
         "status": "io-timeout", "timestamp": "2026-12-06T03:00:00.600Z"},
        {"ip": "10.0.0.2", "port": 22, "protocol": "tcp", "state": "open", "status": "success",
         "timestamp": "2026-12-06T03:00:01.200Z", "banner": "SSH-2.0-y"},
        {"ip": "127.0.0.1", "port": 23, "protocol": "tcp", "state": "closed",
         "status": "connection-refused", "timestamp": "2026-12-06T03:00:01.500Z"},
    ]


def test_scan_report_counts_hosts_and_escaped_banner():
    page = reports.scan_html(scan_records(), {"open": 3, "closed": 1017, "filtered": 4},
                             {"command": "cypoe scan 127.0.0.1 " + EVIL, "seed": 42})
    assert "<script>alert" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    tree = parse(page)
    text = " ".join(tree.text)
    assert "SSH-2.0-x " + EVIL in text
    assert "1,017" in text and "1,024" in text            # closed, total
    assert "3 open ports on 2 host(s)" in text
    # hosts in address order, with their ports
    rows = re.findall(r"<tr><td>([0-9.]+)</td><td class=\"n\">(\d+)</td>", page)
    assert rows == [("10.0.0.2", "1"), ("127.0.0.1", "2")]
    assert "connection-refused" in text and "io-timeout" in text
    assert "seed" in text and "42" in text
    assert any(a.get("id") == "scan-progress" for t, a in tree.tags if t == "svg")
    assert sum(1 for t, _ in tree.tags if t == "script") == 1
    no_external(tree, page)


def test_scan_report_with_progress_and_nothing_open():
    page = reports.scan_html([], {"open": 0, "closed": 10, "filtered": 0},
                             {"progress": [{"t": 0, "done": 0, "open": 0},
                                           {"t": 1, "done": 10, "open": 0}]})
    tree = parse(page)
    assert "No open port." in page
    assert [a["data-name"] for t, a in tree.tags if t == "polyline"] == ["done", "open"]


# ---------------------------------------------------------------- in a browser

def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _render(tmp_path, name, page):
    browser = _browser()
    if browser is None:
        if os.environ.get("CYPOE_REQUIRE_BROWSER"):
            pytest.fail("CYPOE_REQUIRE_BROWSER is set and none of chromium, chromium-browser, "
                        "google-chrome is on PATH")
        pytest.skip("no headless browser: none of chromium, chromium-browser, google-chrome "
                    "is on PATH (apt-get install chromium)")
    path = tmp_path / f"{name}.html"
    path.write_text(page, encoding="utf-8")
    png = tmp_path / f"{name}.png"
    base = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"]
    shot = subprocess.run(base + ["--enable-logging=stderr", "--v=0",
                                  f"--screenshot={png}", path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert png.exists() and png.stat().st_size > 5000, (shot.returncode, shot.stderr[-2000:])
    # the page's console messages, as Chromium logs them ("...:CONSOLE:...")
    console = [line for line in shot.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    dom = subprocess.run(base + ["--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, (dom.returncode, dom.stderr[-2000:])
    return body.group(0)


def test_load_report_renders_in_chromium(tmp_path):
    st = sample_stats()
    page = reports.load_html(st.summary(target="127.0.0.1:7000", concurrency=16, rate=1000.0),
                             st, {"message": EVIL})
    body = _render(tmp_path, "load", page)
    assert 'data-rendered="ok"' in body, body
    assert 'data-charts="' in body and 'data-charts="0"' not in body


def test_scan_report_renders_in_chromium(tmp_path):
    page = reports.scan_html(scan_records(), {"open": 3, "closed": 1017, "filtered": 4},
                             {"command": "cypoe scan"})
    body = _render(tmp_path, "scan", page)
    assert 'data-rendered="ok"' in body, body


def test_a_console_error_is_seen(tmp_path):
    """The console check can fail too: a page that logs an error is refused."""
    page = reports.scan_html([], {"open": 0}, {}).replace(
        "<script>", "<script>console.error('boom');", 1)
    with pytest.raises(AssertionError, match="boom"):
        _render(tmp_path, "console", page)


def test_a_script_error_is_seen_in_the_dom(tmp_path):
    """The check itself can fail: a page whose chart is empty is not 'ok'."""
    page = reports.scan_html([], {"open": 0}, {})
    broken = page.replace("<h2>Counts</h2>", '<svg class="chart" id="nothing"></svg>', 1)
    body = _render(tmp_path, "broken", broken)
    assert 'data-rendered="empty: nothing"' in body, body


def test_scan_recorder_keeps_open_records_counts_and_progress():
    now = [100.0]
    rec = reports.ScanRecorder(max_others=1, clock=lambda: now[0], interval=1.0)
    for r in scan_records():
        rec.result(r)
        now[0] += 0.6
    rec.other("closed", 5)
    rec.result({"ip": "127.0.0.1", "port": 24, "state": "closed", "status": "connection-refused"})
    meta = rec.meta(command="cypoe scan")
    assert [r["port"] for r in rec.records if r["state"] == "open"] == [22, 6379, 22]
    assert rec.others_dropped == 1                    # the second closed record
    assert meta["status_counts"] == {"success": 2, "io-timeout": 1, "connection-refused": 2}
    assert meta["progress"][-1]["done"] == 10 and meta["progress"][-1]["open"] == 3
    ts = [p["t"] for p in meta["progress"]]
    assert ts == sorted(ts) and len(ts) >= 3
    page = reports.scan_html(rec.records, {"open": 3, "closed": 7}, meta)
    tree = parse(page)
    assert "connection-refused" in " ".join(tree.text)
    assert re.search(r"<td>connection-refused</td><td class=\"n\">2</td>", page)


def test_args_config_and_write_report(tmp_path):
    import argparse
    ns = argparse.Namespace(connections=4, message=b"PING\r\n", _parser=object(),
                            _run=print, rate=None, other=object)
    cfg = reports.args_config(ns)
    assert cfg["connections"] == 4 and cfg["message"] == "PING\\r\\n" and cfg["rate"] is None
    assert "_parser" not in cfg and "_run" not in cfg and "other" not in cfg
    assert reports.write_report(tmp_path / "r.html", "<p>x</p>") is None
    assert (tmp_path / "r.html").read_text() == "<p>x</p>"
    err = reports.write_report(tmp_path / "no" / "r.html", "x")
    assert err and "No such file" in err


def test_scan_recorder_progress_stays_bounded():
    now = [0.0]
    rec = reports.ScanRecorder(clock=lambda: now[0], interval=1.0)
    for i in range(5000):
        now[0] += 1.0
        rec.other("closed", 1)
    prog = rec.meta()["progress"]
    assert len(prog) <= reports.ScanRecorder.MAX_SAMPLES + 1
    assert prog[0]["done"] == 0 and prog[-1]["done"] == 5000
    assert [p["t"] for p in prog] == sorted(p["t"] for p in prog)
    assert rec.interval > 1.0


def test_scan_recorder_wrap_and_write(tmp_path):
    seen = []
    rec = reports.ScanRecorder()
    on_result, on_other = rec.wrap(lambda r: seen.append(r["port"]),
                                   lambda state, n: seen.append((state, n)))
    for r in scan_records()[:3]:
        on_result(r)
    on_other("closed", 7)
    assert seen == [22, 6379, 22, ("closed", 7)]
    assert rec.done == 10 and rec.open == 3
    path = tmp_path / "scan.html"
    assert rec.write(path, {"open": 3, "closed": 7}, command="cypoe scan x", seed=1) is None
    tree = parse(path.read_text(encoding="utf-8"))
    assert "cypoe scan x: 10 probes, 3 open ports on 2 host(s)" in " ".join(tree.text)
    assert rec.write(tmp_path / "missing" / "scan.html", {}) is not None


def test_scan_report_shows_control_characters_as_escapes():
    recs = [{"ip": "127.0.0.1", "port": 7, "state": "open", "status": "success",
             "banner": "a\x00b\x1b[31mred\r\nnext\rx\x7f"}]
    page = reports.scan_html(recs, {"open": 1}, {})
    assert "\x00" not in page and "\x1b" not in page and "\x7f" not in page
    text = " ".join(parse(page).text)
    assert "a\\x00b\\x1b[31mred\nnext\\rx\\x7f" in text


def test_control_characters_never_reach_the_page():
    st = sample_stats()
    page = reports.load_html(st.summary(target="t\x1b[2J:1"), st, {"message": "P\x00\x1b"})
    assert "\x00" not in page and "\x1b" not in page
    assert "P\\x00\\x1b" in " ".join(parse(page).text)
