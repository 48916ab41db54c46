"""Load-test figures: HDR latency histograms, counters, the report.

Latencies are recorded in microseconds in an HdrHistogram (the
``hdrhistogram`` package: 1 µs to 1 hour, 3 significant digits), so
percentiles are exact to 0.1% whatever the run's length, and histograms
from several worker processes merge losslessly (``encode()`` /
``LoadStats.from_dict``).
"""
import errno as _errno

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3600 * 1000 * 1000
SIG_FIGS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def clamp_us(latency_s):
    """Seconds -> whole microseconds within the histograms' range."""
    us = int(latency_s * 1e6)
    return LOWEST_US if us < LOWEST_US else (HIGHEST_US if us > HIGHEST_US else us)


def new_histogram():
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIG_FIGS)


def encode_histogram(h):
    return h.encode().decode("ascii") if h.get_total_count() else ""


def decode_histogram(text):
    h = new_histogram()
    if text:
        h.add(HdrHistogram.decode(text.encode("ascii") if isinstance(text, str) else text))
    return h


def error_kind(operation, errnum):
    """A short name for an error: ``connect:ECONNREFUSED``, ``read:EOF``…"""
    if operation == "read" and errnum == 0:
        return "read:EOF"
    name = _errno.errorcode.get(errnum, str(errnum)) if errnum else "0"
    return f"{operation}:{name}"


class LoadStats:
    """Counters and histograms of one load run (or of several, merged)."""

    COUNTERS = ("requests", "responses", "bytes_sent", "bytes_received",
                "connections_opened", "connections_failed", "mismatches")

    def __init__(self):
        self.hist = new_histogram()
        self.errors = {}
        for name in self.COUNTERS:
            setattr(self, name, 0)
        self.duration = 0.0

    def record(self, latency_s):
        self.hist.record_value(clamp_us(latency_s))

    def error(self, kind, n=1):
        self.errors[kind] = self.errors.get(kind, 0) + n

    @property
    def error_total(self):
        return sum(self.errors.values())

    def merge(self, other):
        self.hist.add(other.hist)
        for name in self.COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.errors.items():
            self.error(k, v)
        self.duration = max(self.duration, other.duration)
        return self

    def to_dict(self):
        """A plain dict, JSON-safe, for the pipe between processes."""
        d = {name: getattr(self, name) for name in self.COUNTERS}
        d["errors"] = dict(self.errors)
        d["duration"] = self.duration
        d["hist"] = encode_histogram(self.hist)
        return d

    @classmethod
    def from_dict(cls, d):
        s = cls()
        for name in cls.COUNTERS:
            setattr(s, name, d.get(name, 0))
        s.errors = dict(d.get("errors", {}))
        s.duration = d.get("duration", 0.0)
        s.hist = decode_histogram(d.get("hist", ""))
        return s

    def latency_ms(self):
        h = self.hist
        if h.get_total_count() == 0:
            return {"p50": None, "p90": None, "p99": None, "p99.9": None,
                    "max": None, "min": None, "mean": None, "stdev": None, "count": 0}
        out = {}
        for p in PERCENTILES:
            key = "p" + (f"{p:g}")
            out[key] = h.get_value_at_percentile(p) / 1000.0
        out["max"] = h.get_max_value() / 1000.0
        out["min"] = h.get_min_value() / 1000.0
        out["mean"] = round(h.get_mean_value() / 1000.0, 3)
        out["stdev"] = round(h.get_stddev() / 1000.0, 3)
        out["count"] = h.get_total_count()      # one per response
        return out

    def summary(self, **extra):
        """The report as a dict (what ``--json`` writes)."""
        dur = self.duration or 0.0
        rate = (self.responses / dur) if dur > 0 else 0.0
        d = dict(extra)
        d.update({
            "duration_s": round(dur, 3),
            "connections": {"opened": self.connections_opened,
                            "failed": self.connections_failed},
            "requests": self.requests,
            "responses": self.responses,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "req_per_s": round(rate, 1),
            "mb_per_s": {
                "sent": round(self.bytes_sent / dur / 1e6, 3) if dur > 0 else 0.0,
                "received": round(self.bytes_received / dur / 1e6, 3) if dur > 0 else 0.0,
            },
            "latency_ms": self.latency_ms(),
            "errors": dict(sorted(self.errors.items())),
            "error_total": self.error_total,
        })
        return d


def _ms(v):
    return "-" if v is None else (f"{v:.3f} ms" if v < 1000 else f"{v / 1000:.3f} s")


def format_report(summary):
    """The human report (stdout) for a ``summary()`` dict."""
    lat = summary["latency_ms"]
    conns = summary["connections"]
    lines = [
        f"cypoe load: {summary.get('target', '?')}: {summary.get('concurrency', '?')} connections, "
        f"pipeline {summary.get('pipeline', 1)}, {summary['duration_s']:.2f} s, "
        f"{summary.get('workers', 1)} worker(s)"
        + (f", rate {summary['rate']:g}/s" if summary.get("rate") else ""),
        f"  connections  {conns['opened']} opened, {conns['failed']} failed",
        f"  requests     {summary['requests']}  responses {summary['responses']}",
        f"  throughput   {summary['req_per_s']:.1f} req/s   "
        f"{summary['mb_per_s']['sent']:.2f} MB/s sent   {summary['mb_per_s']['received']:.2f} MB/s received",
        "  latency      " + "  ".join(
            f"{k} {_ms(lat[k])}" for k in ("p50", "p90", "p99", "p99.9", "max")),
    ]
    if summary["errors"]:
        lines.append("  errors       " + ", ".join(f"{k} {v}" for k, v in summary["errors"].items()))
    else:
        lines.append("  errors       none")
    return "\n".join(lines)


def format_live(elapsed, interval_s, responses, hist, errors, conns):
    """The one-second line on stderr."""
    rate = responses / interval_s if interval_s > 0 else 0.0
    if hist.get_total_count():
        p50 = hist.get_value_at_percentile(50.0) / 1000.0
        p99 = hist.get_value_at_percentile(99.0) / 1000.0
        lat = f"p50 {p50:.3f} ms  p99 {p99:.3f} ms"
    else:
        lat = "p50 -  p99 -"
    return f"[{elapsed:5.1f}s] {rate:10.1f} req/s  {lat}  errors {errors}  conns {conns}"
