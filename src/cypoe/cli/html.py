"""Self-contained HTML reports: ``cypoe load --html FILE`` and ``cypoe scan --html FILE``.

One file each, readable offline: the charts are inline SVG drawn here, the
styles inline CSS, and a few lines of inline JavaScript only check that the
charts laid out and mark the page ``<body data-rendered="ok">`` (what the
headless-browser test looks for).  Nothing is fetched: no CDN, no font, no
image.  Everything that comes from the run or from the network (banners,
targets, messages, error names) is HTML-escaped.

:func:`load_html` draws the latency percentile curve as HdrHistogram's
plotter does (x: the percentile on a ``1/(1-p)`` log scale labelled 0%,
90%, 99%, 99.9%…; y: latency in ms), the corrected and uncorrected curves
when an open-loop run recorded both, requests/responses and errors per
second over the run, the figures and the configuration.
:func:`scan_html` draws the state and status counts, the open ports by
host and by port, and the results over time.
"""
import datetime
import html
import ipaddress
import json
import math
import re
import time

__all__ = ["load_html", "scan_html", "ScanRecorder", "args_config", "write_report"]

#: Percentiles of the load report's table and of the markers on its curve.
TABLE_PERCENTILES = (50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999)
#: The rows of the scan report's host table (more hosts are counted, not listed).
MAX_HOST_ROWS = 2000
#: Characters of a banner shown in the report.
MAX_BANNER_CHARS = 400

_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


_COLORS = ("#1f6feb", "#d9480f", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599")


def _e(value):
    """HTML-escape anything (quotes too, so it is safe in attributes), with
    control characters shown as ``\\xNN``."""
    return html.escape(_CONTROLS.sub(_hex, str(value)), quote=True)


def _hex(m):
    return "\\x%02x" % ord(m.group())


def _visible(text):
    """A banner as text to show: CRLF as a line break, other control
    characters (NUL, ESC, C1…) as ``\\xNN`` so nothing invisible or
    terminal-like reaches the page."""
    text = str(text).replace("\r\n", "\n")
    return _CONTROLS.sub(_hex, text.replace("\r", "\\r"))


def _num(v):
    """A number for a table cell: integers with thousands separators, floats
    with at most three decimals."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return str(v)
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v):,}" if abs(v) >= 1000 else f"{v:g}"
        return f"{v:,.3f}"
    return str(v)


def _ms(v):
    return "-" if v is None else f"{v:,.3f} ms"


# ---------------------------------------------------------------- SVG charts

def _nice_step(span, n):
    raw = span / max(1, n)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _y_ticks(ymax, n=5):
    """Round ticks from 0 to at least ymax; returns (top, ticks)."""
    if not ymax or ymax <= 0:
        ymax = 1.0
    step = _nice_step(ymax, n)
    top = step * math.ceil(ymax / step - 1e-9)
    ticks, k = [], 0
    while k * step <= top + step * 1e-9:
        ticks.append(k * step)
        k += 1
    return top, ticks


def _tick_label(v):
    if v == 0:
        return "0"
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:g}" if abs(v) >= 1 else f"{v:.3g}"


class _Plot:
    """One chart's SVG: a plot area with axes; x and y map data to pixels."""

    W, H = 820, 340
    LEFT, RIGHT, TOP, BOTTOM = 72, 40, 34, 52

    def __init__(self, title, x_label, y_label, x_range, y_top, chart_id):
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self.x0, self.x1 = x_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1
        self.y_top = y_top if y_top > 0 else 1.0
        self.chart_id = chart_id
        self.parts = []

    def px(self, x):
        w = self.W - self.LEFT - self.RIGHT
        return self.LEFT + w * (x - self.x0) / (self.x1 - self.x0)

    def py(self, y):
        h = self.H - self.TOP - self.BOTTOM
        return self.TOP + h * (1 - min(y, self.y_top) / self.y_top)

    def grid(self, x_ticks, y_ticks):
        p = self.parts
        bottom, top = self.H - self.BOTTOM, self.TOP
        for x, label in x_ticks:
            X = self.px(x)
            p.append(f'<line class="grid" x1="{X:.1f}" y1="{top}" x2="{X:.1f}" y2="{bottom}"/>')
            p.append(f'<text class="tick" x="{X:.1f}" y="{bottom + 16}" '
                     f'text-anchor="middle">{_e(label)}</text>')
        for y in y_ticks:
            Y = self.py(y)
            p.append(f'<line class="grid" x1="{self.LEFT}" y1="{Y:.1f}" '
                     f'x2="{self.W - self.RIGHT}" y2="{Y:.1f}"/>')
            p.append(f'<text class="tick" x="{self.LEFT - 6}" y="{Y + 4:.1f}" '
                     f'text-anchor="end">{_e(_tick_label(y))}</text>')
        p.append(f'<line class="axis" x1="{self.LEFT}" y1="{bottom}" '
                 f'x2="{self.W - self.RIGHT}" y2="{bottom}"/>')
        p.append(f'<line class="axis" x1="{self.LEFT}" y1="{top}" x2="{self.LEFT}" y2="{bottom}"/>')
        p.append(f'<text class="label" x="{(self.LEFT + self.W - self.RIGHT) / 2:.1f}" '
                 f'y="{self.H - 10}" text-anchor="middle">{_e(self.x_label)}</text>')
        cy = (self.TOP + self.H - self.BOTTOM) / 2
        p.append(f'<text class="label" x="16" y="{cy:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 16 {cy:.1f})">{_e(self.y_label)}</text>')

    def line(self, points, color, name, dashed=False, step=False):
        if not points:
            return
        coords = []
        prev = None
        for x, y in points:
            X, Y = self.px(x), self.py(y)
            if step and prev is not None:
                coords.append(f"{X:.1f},{prev:.1f}")
            coords.append(f"{X:.1f},{Y:.1f}")
            prev = Y
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        self.parts.append(f'<polyline class="series" data-name="{_e(name)}" fill="none" '
                          f'stroke="{color}" stroke-width="2"{dash} points="{" ".join(coords)}"/>')

    def marker(self, x, y, color, tip):
        self.parts.append(f'<circle cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="3.5" '
                          f'fill="{color}"><title>{_e(tip)}</title></circle>')

    def bars(self, values, color, name):
        """Vertical bars, one per (x, y), one x unit wide."""
        if not values:
            return
        w = max(1.0, (self.px(1) - self.px(0)) * 0.8)
        for x, y in values:
            if y <= 0:
                continue
            X, Y = self.px(x) - w / 2, self.py(y)
            h = self.py(0) - Y
            self.parts.append(f'<rect x="{X:.1f}" y="{Y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                              f'fill="{color}"><title>{_e(name)} at {_e(_num(x))} s: '
                              f'{_e(_num(y))}</title></rect>')

    def legend(self, entries):
        x = self.LEFT + 8
        for name, color, dashed in entries:
            dash = ' stroke-dasharray="6 4"' if dashed else ""
            self.parts.append(f'<line x1="{x}" y1="{self.TOP - 14}" x2="{x + 22}" '
                              f'y2="{self.TOP - 14}" stroke="{color}" stroke-width="3"{dash}/>')
            self.parts.append(f'<text class="tick" x="{x + 28}" y="{self.TOP - 10}">{_e(name)}</text>')
            x += 40 + 7 * len(name)

    def svg(self):
        return (f'<figure><figcaption>{_e(self.title)}</figcaption>'
                f'<svg class="chart" id="{_e(self.chart_id)}" role="img" '
                f'aria-label="{_e(self.title)}" viewBox="0 0 {self.W} {self.H}" '
                f'width="{self.W}" height="{self.H}">' + "".join(self.parts) + "</svg></figure>")


def _hbars(title, items, chart_id, color=_COLORS[0], unit=""):
    """A horizontal bar chart of (label, value) items, in the given order."""
    items = [(str(k), v) for k, v in items]
    if not items:
        return f'<p class="note">{_e(title)}: nothing to show.</p>'
    row, left, right, top = 24, 190, 90, 10
    width = 820
    height = top * 2 + row * len(items)
    vmax = max(v for _, v in items) or 1
    parts = []
    for i, (label, v) in enumerate(items):
        y = top + i * row
        w = (width - left - right) * (v / vmax)
        shown = label if len(label) <= 28 else label[:27] + "…"
        parts.append(f'<text class="tick" x="{left - 8}" y="{y + 16}" text-anchor="end">'
                     f'{_e(shown)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 4}" width="{max(w, 1 if v else 0):.1f}" '
                     f'height="{row - 8}" fill="{color}"><title>{_e(label)}: {_e(_num(v))}{_e(unit)}'
                     f'</title></rect>')
        parts.append(f'<text class="tick" x="{left + w + 6:.1f}" y="{y + 16}">{_e(_num(v))}</text>')
    return (f'<figure><figcaption>{_e(title)}</figcaption>'
            f'<svg class="chart" id="{_e(chart_id)}" role="img" aria-label="{_e(title)}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
            + "".join(parts) + "</svg></figure>")


# ---------------------------------------------------------------- page frame

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:900px;color:#1b1f24;background:#fff;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;
padding-bottom:4px}.sub{color:#57606a;margin:0 0 16px;word-break:break-all}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d0d7de;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.n{text-align:right;
font-variant-numeric:tabular-nums}figure{margin:12px 0}figcaption{font-weight:600;margin-bottom:4px}
svg.chart{max-width:100%;height:auto;background:#fff}
svg .grid{stroke:#eaeef2;stroke-width:1}svg .axis{stroke:#57606a;stroke-width:1}
svg .tick{font-size:11px;fill:#57606a}svg .label{font-size:12px;fill:#1b1f24}
.note{color:#57606a}.warn{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{white-space:pre-wrap;word-break:break-all;margin:0}.port{display:inline-block;
background:#ddf4ff;border-radius:4px;padding:0 5px;margin:1px 2px}.kv td:first-child{color:#57606a}
"""

# Checks that every chart laid out (a non-empty box), then marks the body;
# an error anywhere marks it too, so a test reading the DOM sees either.
_JS = """
(function () {
  var body = document.body;
  window.addEventListener("error", function (ev) {
    body.setAttribute("data-rendered", "error: " + ev.message);
  });
  try {
    var charts = document.querySelectorAll("svg.chart"), empty = [];
    for (var i = 0; i < charts.length; i++) {
      var box = charts[i].getBBox();
      if (!(box.width > 0 && box.height > 0)) { empty.push(charts[i].id); }
    }
    body.setAttribute("data-charts", String(charts.length));
    body.setAttribute("data-rendered", empty.length ? "empty: " + empty.join(",") : "ok");
  } catch (err) {
    body.setAttribute("data-rendered", "error: " + err);
  }
})();
"""


def _page(title, subtitle, sections):
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head>\n<body data-rendered=\"pending\">"
            f"<h1>{_e(title)}</h1><p class=\"sub\">{_e(subtitle)}</p>\n"
            + "\n".join(sections)
            + f"\n<script>{_JS}</script></body></html>\n")


def _kv_table(pairs):
    rows = []
    for k, v in pairs:
        if isinstance(v, (dict, list, tuple)):
            cell = f"<code>{_e(json.dumps(v, sort_keys=True, default=str))}</code>"
        else:
            cell = _e(_num(v))
        rows.append(f"<tr><td>{_e(k)}</td><td>{cell}</td></tr>")
    return '<table class="kv">' + "".join(rows) + "</table>"


# ---------------------------------------------------------------- load report

def _percentile_label(decade):
    """0 -> '0%', 1 -> '90%', 2 -> '99%', 3 -> '99.9%'…"""
    if decade == 0:
        return "0%"
    if decade == 1:
        return "90%"
    if decade == 2:
        return "99%"
    return "99." + "9" * (decade - 2) + "%"


def percentile_curve(hist, ticks_per_half_distance=5):
    """The points of HdrHistogram's percentile plot of `hist`: a list of
    ``(x, latency_ms)`` with ``x = log10(1/(1-p))`` (0 at 0%, 1 at 90%, 2 at
    99%…), and the last point (100%, the maximum) at ``None``."""
    if hist is None or not hist.get_total_count():
        return []
    out = []
    for it in hist.get_percentile_iterator(ticks_per_half_distance):
        p = it.percentile_level_iterated_to
        value = it.value_iterated_to / 1000.0
        if p >= 100.0:
            out.append((None, value))
        else:
            out.append((math.log10(1.0 / (1.0 - p / 100.0)), value))
    return out


def _hist_count(hist):
    try:
        return hist.get_total_count() if hist is not None else 0
    except AttributeError:
        return 0


def _percentile_rows(hist):
    rows = [(p, hist.get_value_at_percentile(p) / 1000.0) for p in TABLE_PERCENTILES]
    rows.append((100.0, hist.get_max_value() / 1000.0))
    return rows


def _latency_section(stats, open_loop):
    hist = getattr(stats, "hist", None)
    # the uncorrected curve means something in an open loop only (in a closed
    # loop a request is sent when it is due, and engines may fill both)
    raw = getattr(stats, "hist_raw", None) if open_loop else None
    count = _hist_count(hist)
    if not count:
        return ['<h2>Latency</h2><p class="note">No response was timed: no latency to plot.</p>']
    curves = [("corrected (from the intended send time)" if _hist_count(raw) else "latency",
               hist, _COLORS[0], False)]
    if _hist_count(raw):
        curves.append(("uncorrected (from the actual send time)", raw, _COLORS[1], True))
    points = [(name, percentile_curve(h), color, dashed) for name, h, color, dashed in curves]
    # x axis: up to the decade past the highest finite percentile, so the tail
    # is in view, and at least to 99.9%.
    xmax_data = max((x for _, pts, _, _ in points for x, _ in pts if x is not None), default=0)
    decades = min(8, max(3, math.ceil(xmax_data + 1e-9)))
    ymax = max(v for _, pts, _, _ in points for _, v in pts)
    top, yt = _y_ticks(ymax)
    plot = _Plot("Latency by percentile", "percentile", "latency (ms)", (0, decades), top,
                 "latency-percentiles")
    plot.grid([(d, _percentile_label(d)) for d in range(decades + 1)], yt)
    for name, pts, color, dashed in points:
        plot.line([(decades if x is None else min(x, decades), v) for x, v in pts],
                  color, name, dashed)
    for (name, h, color, _), _pts in zip(curves, points):
        for p, v in _percentile_rows(h):
            x = decades if p >= 100 else min(decades, math.log10(1 / (1 - p / 100)))
            label = "max" if p >= 100 else f"p{p:g}"
            plot.marker(x, v, color, f"{name}: {label} = {v:,.3f} ms")
    if len(points) > 1:
        plot.legend([(n.split(" ")[0], c, d) for n, _, c, d in points])
    # the table: one column per curve
    head = "".join(f"<th>{_e(n)}</th>" for n, _, _, _ in curves)
    rows_by = [_percentile_rows(h) for _, h, _, _ in curves]
    body = []
    for i, (p, _) in enumerate(rows_by[0]):
        label = "max" if p >= 100 else f"p{p:g}"
        cells = "".join(f'<td class="n">{_e(_ms(r[i][1]))}</td>' for r in rows_by)
        body.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    means = "".join(f'<td class="n">{_e(_ms(round(h.get_mean_value() / 1000.0, 3)))}</td>'
                    for _, h, _, _ in curves)
    counts = "".join(f'<td class="n">{_e(_num(h.get_total_count()))}</td>' for _, h, _, _ in curves)
    body.append(f"<tr><th>mean</th>{means}</tr><tr><th>count</th>{counts}</tr>")
    table = f'<table id="latency-table"><tr><th></th>{head}</tr>{"".join(body)}</table>'
    return ["<h2>Latency</h2>", plot.svg(), table]


def _history_section(history):
    if not history:
        return ['<h2>Over the run</h2><p class="note">This run kept no per-second history.</p>']
    hist = sorted(history, key=lambda e: e.get("t", 0))
    ts = [float(e.get("t", i)) for i, e in enumerate(hist)]
    x0, x1 = min(ts) - 0.5, max(ts) + 0.5
    xt_step = _nice_step(x1 - x0, 8)
    first = math.ceil(x0 / xt_step) * xt_step
    xticks = []
    t = first
    while t <= x1:
        xticks.append((t, _tick_label(t)))
        t += xt_step
    out = ["<h2>Over the run</h2>"]
    series = [("requests/s", "requests", _COLORS[0], True), ("responses/s", "responses", _COLORS[2], False)]
    ymax = max(max(e.get(k, 0) for e in hist) for _, k, _, _ in series)
    top, yt = _y_ticks(ymax)
    plot = _Plot("Throughput per second", "time (s)", "per second", (x0, x1), top, "throughput")
    plot.grid(xticks, yt)
    for name, key, color, dashed in series:
        plot.line([(t, e.get(key, 0)) for t, e in zip(ts, hist)], color, name, dashed)
    plot.legend([(n, c, d) for n, _, c, d in series])
    out.append(plot.svg())
    emax = max(e.get("errors", 0) for e in hist)
    if emax:
        top, yt = _y_ticks(emax)
        plot = _Plot("Errors per second", "time (s)", "errors per second", (x0, x1), top, "errors")
        plot.grid(xticks, yt)
        plot.bars([(t, e.get("errors", 0)) for t, e in zip(ts, hist)], _COLORS[1], "errors")
        out.append(plot.svg())
    else:
        out.append('<p class="note" id="no-errors">No errors in any second.</p>')
    rows = "".join(
        f'<tr><td class="n">{_e(_num(e.get("t")))}</td>'
        + "".join(f'<td class="n">{_e(_num(e.get(k, 0)))}</td>'
                  for k in ("requests", "responses", "errors", "bytes_sent", "bytes_received"))
        + "</tr>" for e in hist)
    out.append('<details><summary>Per-second figures</summary><table id="history-table">'
               "<tr><th>t (s)</th><th>requests</th><th>responses</th><th>errors</th>"
               "<th>bytes sent</th><th>bytes received</th></tr>" + rows + "</table></details>")
    return out


def load_html(summary, stats, config):
    """The ``cypoe load --html`` report as one self-contained HTML page.

    `summary` is ``LoadStats.summary()``'s dict (what ``--json`` writes),
    `stats` the :class:`cypoe.cli.report.LoadStats` (its ``hist``, and
    where present ``hist_raw`` and ``history``), `config` the run's
    settings (shown as given).  The uncorrected curve (``hist_raw``) is
    drawn for an open-loop run only: ``rate`` set in `summary` or
    `config`, or ``latency_uncorrected_ms`` in `summary`."""
    summary = summary or {}
    config = config or {}
    target = summary.get("target") or config.get("target") or "?"
    sub = (f"{target}: {_num(summary.get('concurrency', config.get('connections', '?')))} "
           f"connections, {_num(summary.get('duration_s'))} s")
    figures = [
        ("duration (s)", summary.get("duration_s")),
        ("requests", summary.get("requests")),
        ("responses", summary.get("responses")),
        ("responses per second", summary.get("req_per_s")),
        ("connections opened", (summary.get("connections") or {}).get("opened")),
        ("connections failed", (summary.get("connections") or {}).get("failed")),
        ("bytes sent", summary.get("bytes_sent")),
        ("bytes received", summary.get("bytes_received")),
        ("errors", summary.get("error_total")),
    ]
    for key in ("in_flight", "request_errors", "sent_per_s"):
        if key in summary:
            figures.append((key.replace("_", " "), summary[key]))
    sections = []
    warnings = summary.get("warnings") or []
    if summary.get("interrupted"):
        warnings = ["the run was interrupted"] + list(warnings)
    for w in warnings:
        sections.append(f'<p class="warn">{_e(w)}</p>')
    sections.append("<h2>Figures</h2>" + _kv_table([(k, v) for k, v in figures if v is not None]))
    open_loop = bool(summary.get("rate") or config.get("rate")
                     or "latency_uncorrected_ms" in summary)
    sections.extend(_latency_section(stats, open_loop))
    sections.extend(_history_section(getattr(stats, "history", None) or summary.get("history")))
    errors = summary.get("errors") or getattr(stats, "errors", None) or {}
    if errors:
        items = sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))
        sections.append("<h2>Errors by kind</h2>" + _hbars("Errors by kind", items, "error-kinds",
                                                           _COLORS[1]))
    classes = summary.get("status_classes") or {}
    if classes:
        sections.append("<h2>Responses by status class</h2>"
                        + _hbars("Responses by status class", sorted(classes.items()),
                                 "status-classes"))
    skip = {"history", "latency_ms", "latency_uncorrected_ms", "errors", "warnings"}
    sections.append("<h2>Configuration</h2>" + _kv_table(
        sorted((k, v) for k, v in config.items() if k not in skip)))
    return _page("cypoe load report", sub, sections)


# ---------------------------------------------------------------- scan report

def _ip_key(ip):
    try:
        a = ipaddress.ip_address(ip)
        return (0, a.version, int(a), "")
    except ValueError:
        return (1, 0, 0, str(ip))


def _parse_ts(text):
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _progress_section(records, meta):
    progress = meta.get("progress") if isinstance(meta.get("progress"), list) else None
    if progress:
        pts = sorted(progress, key=lambda e: e.get("t", 0))
        keys = [k for k in ("done", "open") if any(k in e for e in pts)]
        title = "Progress over time"
        series = [(k, [(float(e.get("t", 0)), e.get(k, 0)) for e in pts]) for k in keys]
    else:
        stamped = [(t, r.get("state", "?")) for r in records
                   for t in [_parse_ts(r.get("timestamp"))] if t is not None]
        if len(stamped) < 2:
            return []
        stamped.sort()
        t0 = stamped[0][0]
        title = "Results over time (cumulative, by state)"
        by_state = {}
        for t, state in stamped:
            by_state.setdefault(state, []).append(t - t0)
        series = []
        for state in sorted(by_state):
            times = by_state[state]
            series.append((state, [(0.0, 0)] + [(t, i + 1) for i, t in enumerate(times)]))
    if not series:
        return []
    x1 = max(x for _, pts in series for x, _ in pts) or 1.0
    ymax = max(y for _, pts in series for _, y in pts)
    top, yt = _y_ticks(ymax)
    step = _nice_step(x1, 8)
    xticks = [(k * step, _tick_label(round(k * step, 6))) for k in range(int(x1 / step) + 1)]
    plot = _Plot(title, "time (s)", "count", (0, x1), top, "scan-progress")
    plot.grid(xticks, yt)
    entries = []
    for i, (name, pts) in enumerate(series):
        color = _COLORS[i % len(_COLORS)]
        plot.line(pts, color, name, step=not progress)
        entries.append((name, color, False))
    plot.legend(entries)
    return ["<h2>Over time</h2>", plot.svg()]


def scan_html(records, counts, meta):
    """The ``cypoe scan --html`` report as one self-contained HTML page.

    `records` are the scan's result records (as its JSON Lines: ``ip``,
    ``port``, ``state``, ``status``, ``banner``…; the open ports only, or
    every probe with ``--all``), `counts` the probes by state (``open``,
    ``closed``, ``filtered``), `meta` what to show about the run (command,
    seed, elapsed…; a ``progress`` list of ``{"t", "done", "open"}`` is
    drawn when present, else the records' timestamps are)."""
    records = list(records or [])
    counts = dict(counts or {})
    meta = dict(meta or {})
    total = sum(v for v in counts.values() if isinstance(v, (int, float)))
    open_recs = [r for r in records if r.get("state") == "open"]
    by_host = {}
    for r in open_recs:
        by_host.setdefault(str(r.get("ip", "?")), []).append(r)
    hosts = sorted(by_host, key=_ip_key)
    sub = (f"{meta.get('command', 'cypoe scan')}: {_num(total)} probes, "
           f"{_num(counts.get('open', len(open_recs)))} open ports on {_num(len(hosts))} host(s)")
    sections = []
    if meta.get("interrupted"):
        sections.append('<p class="warn">The scan was interrupted: these results are partial.</p>')
    sections.append("<h2>Counts</h2>")
    state_items = [(k, counts[k]) for k in ("open", "closed", "filtered") if k in counts]
    state_items += sorted((k, v) for k, v in counts.items() if k not in ("open", "closed", "filtered"))
    sections.append(_hbars("Probes by state", state_items, "states"))
    statuses = meta.pop("status_counts", None)
    if not isinstance(statuses, dict):
        statuses = {}
        for r in records:
            s = r.get("status", "?")
            statuses[s] = statuses.get(s, 0) + 1
    if statuses:
        sections.append(_hbars("Results by status",
                               sorted(statuses.items(), key=lambda kv: (-kv[1], kv[0])),
                               "statuses", _COLORS[2]))
    sections.append('<table id="counts-table"><tr><th>state</th><th>probes</th></tr>'
                    + "".join(f'<tr><td>{_e(k)}</td><td class="n">{_e(_num(v))}</td></tr>'
                              for k, v in state_items)
                    + (f'<tr><th>total</th><td class="n">{_e(_num(total))}</td></tr>')
                    + "</table>")
    if statuses:
        sections.append('<table id="status-table"><tr><th>status</th><th>results</th></tr>'
                        + "".join(f'<tr><td>{_e(k)}</td><td class="n">{_e(_num(v))}</td></tr>'
                                  for k, v in sorted(statuses.items()))
                        + "</table>")
    sections.append("<h2>Open ports</h2>")
    if not hosts:
        sections.append('<p class="note">No open port.</p>')
    else:
        per_host = sorted(((h, len(by_host[h])) for h in hosts), key=lambda kv: -kv[1])[:40]
        sections.append(_hbars("Open ports per host" + (" (the 40 with most)" if len(hosts) > 40 else ""),
                               per_host, "ports-per-host"))
        port_hosts = {}
        for r in open_recs:
            port_hosts.setdefault(r.get("port"), set()).add(str(r.get("ip")))
        per_port = sorted(((p, len(s)) for p, s in port_hosts.items()),
                          key=lambda kv: (-kv[1], kv[0] if isinstance(kv[0], int) else 0))[:30]
        sections.append(_hbars("Hosts per open port" + (" (the 30 most common)" if len(port_hosts) > 30 else ""),
                               [(f"{p}/tcp", n) for p, n in per_port], "hosts-per-port", _COLORS[3]))
        rows = []
        for h in hosts[:MAX_HOST_ROWS]:
            recs = sorted(by_host[h], key=lambda r: (r.get("port") or 0))
            chips = " ".join(f'<span class="port">{_e(r.get("port"))}</span>' for r in recs)
            details = []
            for r in recs:
                banner = r.get("banner")
                extra = r.get("error")
                if banner is None and not extra and r.get("tls") is None:
                    continue
                text = "" if banner is None else _visible(banner)
                if len(text) > MAX_BANNER_CHARS:
                    text = text[:MAX_BANNER_CHARS] + "…"
                tls = r.get("tls")
                tls_text = "" if tls is None else json.dumps(tls, sort_keys=True, default=str)
                details.append(
                    f'<tr><td class="n">{_e(r.get("port"))}</td><td>{_e(r.get("status", ""))}</td>'
                    f"<td><pre>{_e(text)}</pre>"
                    + (f"<div><code>{_e(tls_text[:MAX_BANNER_CHARS])}</code></div>" if tls_text else "")
                    + (f'<div class="note">{_e(extra)}</div>' if extra else "")
                    + "</td></tr>")
            cell = chips
            if details:
                cell += (f"<details{' open' if len(hosts) <= 20 else ''}><summary>banners</summary><table><tr><th>port</th><th>status</th>"
                         "<th>banner</th></tr>" + "".join(details) + "</table></details>")
            rows.append(f"<tr><td>{_e(h)}</td><td class=\"n\">{len(recs)}</td><td>{cell}</td></tr>")
        sections.append('<table id="hosts-table"><tr><th>host</th><th>open</th><th>ports</th></tr>'
                        + "".join(rows) + "</table>")
        if len(hosts) > MAX_HOST_ROWS:
            sections.append(f'<p class="note">{_num(len(hosts) - MAX_HOST_ROWS)} more host(s) '
                            "with open ports are not listed here (see the scan's output).</p>")
    sections.extend(_progress_section(records, meta))
    shown = sorted((k, v) for k, v in meta.items() if k != "progress")
    if shown:
        sections.append("<h2>Run</h2>" + _kv_table(shown))
    return _page("cypoe scan report", sub, sections)


# ---------------------------------------------------------------- wiring helpers

class ScanRecorder:
    """What ``scan --html`` keeps while the scan runs: every open port's
    record, the other results up to `max_others` (a scan with ``--all`` can
    have millions), the count of every status, and once a second the probes
    done and the open ports found (the progress curve).

    ``result(rec)`` takes a result record, ``other(state, n)`` the results
    the output does not show (counted only); ``meta(**more)`` is the `meta`
    for :func:`scan_html`."""

    #: Progress samples kept at most: past it every other one is dropped and
    #: the interval doubles, so a long scan keeps an even, bounded curve.
    MAX_SAMPLES = 600

    def __init__(self, max_others=100000, clock=time.monotonic, interval=0.25):
        self.records = []
        self.max_others = max_others
        self.others_kept = 0
        self.others_dropped = 0
        self.status_counts = {}
        self.clock = clock
        self.t0 = clock()
        self.done = 0
        self.open = 0
        self.progress = [{"t": 0.0, "done": 0, "open": 0}]
        self.interval = interval
        self._next = self.t0 + interval

    def result(self, rec):
        status = rec.get("status", "?")
        self.status_counts[status] = self.status_counts.get(status, 0) + 1
        is_open = rec.get("state") == "open"
        if is_open:
            self.records.append(rec)
        elif self.others_kept < self.max_others:
            self.others_kept += 1
            self.records.append({k: rec.get(k) for k in ("ip", "port", "state", "status",
                                                          "timestamp")})
        else:
            self.others_dropped += 1
        self._count(1, 1 if is_open else 0)

    def other(self, state, n=1):
        self._count(n, 0)

    def _count(self, n, opened):
        self.done += n
        self.open += opened
        now = self.clock()
        if now >= self._next:
            self._sample(now)
            self._next = now + self.interval

    def _sample(self, now):
        self.progress.append({"t": round(now - self.t0, 3), "done": self.done, "open": self.open})
        if len(self.progress) > self.MAX_SAMPLES:
            self.progress = self.progress[::2] + ([self.progress[-1]] if len(self.progress) % 2 == 0 else [])
            self.interval *= 2

    def meta(self, **more):
        """`meta` for :func:`scan_html`: the progress (with a last sample
        now) and the status counts, and what the caller adds."""
        self._sample(self.clock())
        out = dict(more)
        out["progress"] = self.progress
        if self.others_dropped:
            out.setdefault("status_counts", dict(self.status_counts))
            out["results_not_kept"] = self.others_dropped
        return out

    def wrap(self, on_result, on_other):
        """The scan's two callbacks, each also telling this recorder."""
        def result(rec):
            on_result(rec)
            self.result(rec)

        def other(state, n):
            on_other(state, n)
            self.other(state, n)
        return result, other

    def write(self, path, counts, **meta):
        """Write the report to `path`; None, or the error text."""
        return write_report(path, scan_html(self.records, counts, self.meta(**meta)))


def args_config(args):
    """A command's parsed arguments as a JSON-safe dict for the report's
    configuration table (private entries and callables left out)."""
    out = {}
    for k, v in sorted(vars(args).items()):
        if k.startswith("_") or callable(v):
            continue
        if isinstance(v, bytes):
            v = v.decode("latin-1").encode("unicode_escape").decode("ascii")  # C escapes
        elif not isinstance(v, (str, int, float, bool, type(None), list, tuple, dict)):
            v = str(v)
        out[k] = v
    return out


def write_report(path, page):
    """Write `page` to `path`; returns None, or the error text (``FILE: reason``)."""
    try:
        # errors=: a lone surrogate in some text must not lose the report
        with open(path, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(page)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None
