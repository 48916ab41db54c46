"""Load-test figures: HDR latency histograms, counters, the report.

Latencies are recorded in microseconds in an HdrHistogram (the
``hdrhistogram`` package: 1 µs to 1 hour, 3 significant digits), so
percentiles are exact to 0.1% whatever the run's length, and histograms
from several worker processes merge losslessly (``encode()`` /
``LoadStats.from_dict``).  Percentiles are only ever read from a merged
histogram, never averaged.

Two histograms per run: ``hist`` holds the latency the report leads with
(in open loop, from each request's *intended* send time: coordinated
omission corrected, as wrk2 does), ``hist_raw`` the uncorrected latency
(from the time the request was actually written).  In closed loop the two
are the same and engines may leave ``hist_raw`` empty.

Counts add up: every request sent is answered (``responses``), failed
(an error of a kind in :data:`REQUEST_ERROR_KINDS`), or was still in flight
when the run stopped (``in_flight``).
"""
import errno as _errno
import os
import time

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3600 * 1000 * 1000
SIG_FIGS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
#: The percentiles of the report (and of ``latency_ms`` in the JSON).
REPORT_PERCENTILES = (50.0, 75.0, 90.0, 99.0, 99.9, 99.99)

#: Error kinds that a request ended in (each one is a request sent and not
#: answered correctly); the others (``connect:…``, ``read:EOF``,
#: ``timeout``, ``unexpected-response``) are about connections or stray
#: bytes and are not counted against requests.  An engine that counts the
#: requests ended in error itself sets ``LoadStats.failed``, which then wins.
REQUEST_ERROR_KINDS = ("mismatch", "lost-in-flight", "timeout:unanswered", "redis:ERR")

#: The fields of one second of ``LoadStats.history``.
HISTORY_FIELDS = ("requests", "responses", "errors", "bytes_sent", "bytes_received")

#: An open-loop run that sends less than this share of ``--rate`` is flagged.
RATE_SHORTFALL = 0.95
#: A worker busy this share of one CPU or more measured itself.
CPU_SATURATED = 0.95
#: File descriptors a worker needs beside its connections (listening
#: sockets, pipes, the poller, stdio, imported modules' files).
FD_RESERVE = 64


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


def status_class(code):
    """An HTTP status code -> its class: ``200`` -> ``"2xx"``."""
    code = int(code)
    return f"{code // 100}xx" if 100 <= code <= 999 else "other"


def merge_history(a, b):
    """Two per-second histories merged by ``t`` rounded to the nearest whole
    second (the workers' clocks tick apart by a few milliseconds; counts
    summed), sorted."""
    by_t = {}
    for entry in list(a) + list(b):
        t = int(entry["t"] + 0.5)
        cur = by_t.get(t)
        if cur is None:
            by_t[t] = {"t": t, **{f: entry.get(f, 0) for f in HISTORY_FIELDS}}
        else:
            for f in HISTORY_FIELDS:
                cur[f] += entry.get(f, 0)
    return [by_t[t] for t in sorted(by_t)]


class CpuClock:
    """CPU time (user + system) over a stretch of wall time, for the "the
    client ran out of CPU" check.  ``CpuClock()`` measures this process;
    ``CpuClock(children=True)`` the child processes reaped meanwhile (the
    workers).  Start it when the load starts; ``stop(stats, processes=N)``
    when it ends adds the CPU seconds to ``stats.cpu_s`` and N times the
    wall seconds to ``stats.cpu_wall_s``."""

    def __init__(self, children=False):
        self.children = children
        self.start()

    def cpu_now(self):
        try:
            import resource
            ru = resource.getrusage(resource.RUSAGE_CHILDREN if self.children
                                    else resource.RUSAGE_SELF)
            return ru.ru_utime + ru.ru_stime
        except ImportError:  # pragma: no cover
            t = os.times()
            return (t.children_user + t.children_system) if self.children \
                else (t.user + t.system)

    def start(self):
        self.cpu0 = self.cpu_now()
        self.wall0 = time.monotonic()

    def stop(self, stats, processes=1):
        stats.cpu_s += max(0.0, self.cpu_now() - self.cpu0)
        stats.cpu_wall_s += max(0.0, time.monotonic() - self.wall0) * max(1, processes)
        return stats


class LoadStats:
    """Counters and histograms of one load run (or of several, merged)."""

    COUNTERS = ("requests", "responses", "bytes_sent", "bytes_received",
                "connections_opened", "connections_failed", "mismatches", "in_flight",
                "failed")

    def __init__(self):
        self.hist = new_histogram()
        self.hist_raw = new_histogram()
        self.errors = {}
        self.status_classes = {}
        self.history = []
        for name in self.COUNTERS:
            setattr(self, name, 0)
        self.duration = 0.0
        self.cpu_s = 0.0          # user + system CPU seconds of the generator
        self.cpu_wall_s = 0.0     # the wall seconds over which cpu_s was measured

    def record(self, latency_s, raw_s=None):
        """One response's latency; ``raw_s``, the uncorrected latency of an
        open-loop request, goes to ``hist_raw``."""
        self.hist.record_value(clamp_us(latency_s))
        if raw_s is not None:
            self.hist_raw.record_value(clamp_us(raw_s))

    def error(self, kind, n=1):
        self.errors[kind] = self.errors.get(kind, 0) + n

    def status(self, code_or_class, n=1):
        """Count a response by HTTP status class (``200`` or ``"2xx"``)."""
        k = code_or_class if isinstance(code_or_class, str) else status_class(code_or_class)
        self.status_classes[k] = self.status_classes.get(k, 0) + n

    def second(self, t, **counts):
        """Add one second's counts (``t``: whole seconds since the start) to
        the history; fields not given count 0."""
        self.history = merge_history(self.history, [{"t": t, **counts}])

    @property
    def error_total(self):
        return sum(self.errors.values())

    @property
    def request_errors(self):
        """Requests that ended in an error: ``failed`` when the engine counts
        them, else the errors of the kinds in REQUEST_ERROR_KINDS."""
        if self.failed:
            return self.failed
        return sum(v for k, v in self.errors.items() if k in REQUEST_ERROR_KINDS)

    def unaccounted(self):
        """requests - (responses + request_errors + in_flight): 0 when the
        counts add up."""
        return self.requests - (self.responses + self.request_errors + self.in_flight)

    def merge(self, other):
        self.hist.add(other.hist)
        self.hist_raw.add(other.hist_raw)
        for name in self.COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.errors.items():
            self.error(k, v)
        for k, v in other.status_classes.items():
            self.status(k, v)
        self.history = merge_history(self.history, other.history)
        self.duration = max(self.duration, other.duration)
        self.cpu_s += other.cpu_s
        self.cpu_wall_s += other.cpu_wall_s
        return self

    def to_dict(self):
        """A plain dict, JSON-safe, for the pipe between processes."""
        d = {name: getattr(self, name) for name in self.COUNTERS}
        d["errors"] = dict(self.errors)
        d["status_classes"] = dict(self.status_classes)
        d["history"] = [dict(e) for e in self.history]
        d["duration"] = self.duration
        d["cpu_s"] = self.cpu_s
        d["cpu_wall_s"] = self.cpu_wall_s
        d["hist"] = encode_histogram(self.hist)
        d["hist_raw"] = encode_histogram(self.hist_raw)
        return d

    @classmethod
    def from_dict(cls, d):
        s = cls()
        for name in cls.COUNTERS:
            setattr(s, name, d.get(name, 0))
        s.errors = dict(d.get("errors", {}))
        s.status_classes = dict(d.get("status_classes", {}))
        s.history = merge_history([], d.get("history", []))
        s.duration = d.get("duration", 0.0)
        s.cpu_s = d.get("cpu_s", 0.0)
        s.cpu_wall_s = d.get("cpu_wall_s", 0.0)
        s.hist = decode_histogram(d.get("hist", ""))
        s.hist_raw = decode_histogram(d.get("hist_raw", ""))
        return s

    def latency_ms(self, hist=None):
        """Percentiles, mean, stdev, min and max of `hist` (default: the
        corrected histogram) in milliseconds; None when it is empty."""
        h = self.hist if hist is None else hist
        keys = ["p" + f"{p:g}" for p in REPORT_PERCENTILES]
        if h.get_total_count() == 0:
            out = {k: None for k in keys}
            out.update({"max": None, "min": None, "mean": None, "stdev": None, "count": 0})
            return out
        out = {}
        for p, key in zip(REPORT_PERCENTILES, keys):
            out[key] = h.get_value_at_percentile(p) / 1000.0
        out["max"] = h.get_max_value() / 1000.0
        out["min"] = h.get_min_value() / 1000.0
        out["mean"] = round(h.get_mean_value() / 1000.0, 3)
        out["stdev"] = round(h.get_stddev() / 1000.0, 3)
        out["count"] = h.get_total_count()      # one per response
        return out

    def cpu_per_worker(self):
        """CPU seconds per wall second per worker (1.0: one core busy), or
        None when no CPU time was measured."""
        if self.cpu_wall_s <= 0:
            return None
        return self.cpu_s / self.cpu_wall_s

    def summary(self, **extra):
        """The report as a dict (what ``--json`` writes).

        ``extra`` goes into the dict as given; the keys read here are
        ``rate`` (open loop: the requested rate), ``workers``, ``concurrency``,
        ``source_addresses`` (a count), ``limits`` (a
        :func:`limits_in_force` dict or None; computed from ``concurrency``
        when not given) and ``cpu_s`` (the generator's user + system CPU
        seconds over the run, all workers, when the stats carry none: see
        :class:`CpuClock`)."""
        dur = self.duration or 0.0
        rate = (self.responses / dur) if dur > 0 else 0.0
        sent_rate = (self.requests / dur) if dur > 0 else 0.0
        d = dict(extra)
        d.update({
            "duration_s": round(dur, 3),
            "connections": {"opened": self.connections_opened,
                            "failed": self.connections_failed},
            "requests": self.requests,
            "responses": self.responses,
            "in_flight": self.in_flight,
            "failed": self.request_errors,      # requests that ended in an error
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "req_per_s": round(rate, 1),
            "sent_per_s": round(sent_rate, 1),
            "mb_per_s": {
                "sent": round(self.bytes_sent / dur / 1e6, 3) if dur > 0 else 0.0,
                "received": round(self.bytes_received / dur / 1e6, 3) if dur > 0 else 0.0,
            },
            "latency_ms": self.latency_ms(),
            "errors": dict(sorted(self.errors.items())),
            "error_total": self.error_total,
            "status_classes": dict(sorted(self.status_classes.items())),
            "history": [dict(e) for e in self.history],
        })
        requested = extra.get("rate")
        if requested and self.hist_raw.get_total_count():
            d["latency_uncorrected_ms"] = self.latency_ms(self.hist_raw)
        cpu = self.cpu_per_worker()
        given = d.pop("cpu_s", None)
        if cpu is None and given is not None and dur > 0:
            # the caller measured the generator's CPU (user + sys) itself
            self_cpu, self_wall = float(given), dur * max(1, int(extra.get("workers") or 1))
            cpu = self_cpu / self_wall
            d["client_cpu"] = {"cpu_s": round(self_cpu, 3), "wall_s": round(self_wall, 3),
                               "per_worker": round(cpu, 3)}
        else:
            d["client_cpu"] = None if cpu is None else {
                "cpu_s": round(self.cpu_s, 3), "wall_s": round(self.cpu_wall_s, 3),
                "per_worker": round(cpu, 3)}
        limits = extra.get("limits")
        if "limits" not in extra and extra.get("concurrency"):
            workers = max(1, int(extra.get("workers") or 1))
            per_process = -(-int(extra["concurrency"]) // workers)
            limits = limits_in_force(per_process, int(extra.get("source_addresses") or 1))
        d["limits"] = limits
        d["warnings"] = self._warnings(requested, sent_rate, cpu, limits)
        return d

    def _warnings(self, requested, sent_rate, cpu, limits):
        out = []
        if requested and self.duration > 0 and sent_rate < RATE_SHORTFALL * requested:
            out.append(
                f"achieved rate {sent_rate:.1f} req/s is {100.0 * sent_rate / requested:.1f}% of "
                f"the requested {requested:g} req/s (under {RATE_SHORTFALL:.0%}): the schedule "
                f"fell behind; latencies still count from the intended send times")
        if cpu is not None and cpu >= CPU_SATURATED:
            out.append(
                f"the load generator used {cpu:.0%} of a CPU per worker: the result measures "
                f"the client, not the server (more --workers, or a lighter --script)")
        if limits and limits.get("capped_by"):
            out.append(format_limits(limits))
        return out


def limits_in_force(connections, source_addresses=1):
    """The limits that cap ``connections`` in one process: the open-files
    limit (RLIMIT_NOFILE; the soft limit can be raised up to the hard one,
    which cypoe does) and the local port range (one connection per local
    port per source address and destination).  None when neither caps it,
    else a dict of what is in force and the largest count it allows."""
    capped = []
    out = {"connections": connections}
    allowed = connections
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        inf = resource.RLIM_INFINITY
        out["nofile"] = {"soft": None if soft == inf else soft, "hard": None if hard == inf else hard}
        usable = hard if hard != inf else (soft if soft != inf else None)
        if usable is not None and usable - FD_RESERVE < connections:
            capped.append("RLIMIT_NOFILE")
            allowed = min(allowed, max(0, usable - FD_RESERVE))
    except ImportError:  # pragma: no cover
        pass
    rng = local_port_range()
    if rng is not None:
        out["local_port_range"] = list(rng)
        ports = (rng[1] - rng[0] + 1) * max(1, source_addresses)
        if ports < connections:
            capped.append("ip_local_port_range")
            allowed = min(allowed, ports)
    if not capped:
        return None
    out["capped_by"] = capped
    out["max_connections"] = allowed
    return out


def local_port_range(path="/proc/sys/net/ipv4/ip_local_port_range"):
    try:
        with open(path) as fh:
            lo, hi = (int(x) for x in fh.read().split()[:2])
        return lo, hi
    except (OSError, ValueError):
        return None


def format_limits(limits):
    """The warning for a :func:`limits_in_force` dict (or any dict whose
    ``capped_by`` lists what caps the connections)."""
    if "max_connections" not in limits:
        return "the limits in force cap the connections: " + "; ".join(
            str(c) for c in limits.get("capped_by", ()))
    parts = []
    nf = limits.get("nofile")
    if nf:
        parts.append(f"open files {nf['soft'] if nf['soft'] is not None else 'unlimited'} soft / "
                     f"{nf['hard'] if nf['hard'] is not None else 'unlimited'} hard")
    if limits.get("local_port_range"):
        lo, hi = limits["local_port_range"]
        parts.append(f"local ports {lo}-{hi}")
    return (f"the limits in force cap the connections: {limits['connections']} asked, at most "
            f"{limits['max_connections']} possible ({', '.join(limits.get('capped_by', []))}): "
            + ", ".join(parts))


def _ms(v):
    return "-" if v is None else (f"{v:.3f} ms" if v < 1000 else f"{v / 1000:.3f} s")


def _latency_lines(label, lat):
    pad = " " * 15
    return [
        f"  {label:<12} mean {_ms(lat['mean'])}  stdev {_ms(lat['stdev'])}  max {_ms(lat['max'])}",
        pad + "  ".join(f"{k} {_ms(lat[k])}" for k in ("p50", "p75", "p90", "p99")),
        pad + "  ".join(f"{k} {_ms(lat.get(k))}" for k in ("p99.9", "p99.99")),
    ]


def format_report(summary):
    """The human report (stdout) for a ``summary()`` dict."""
    lat = summary["latency_ms"]
    conns = summary["connections"]
    mb = summary["mb_per_s"]
    lines = [
        f"cypoe load: {summary.get('target', '?')}: {summary.get('concurrency', '?')} connections, "
        f"pipeline {summary.get('pipeline', 1)}, {summary['duration_s']:.2f} s, "
        f"{summary.get('workers', 1)} worker(s)"
        + (f", rate {summary['rate']:g}/s" if summary.get("rate") else ""),
        f"  connections  {conns['opened']} opened, {conns['failed']} failed",
        f"  requests     {summary['requests']}  responses {summary['responses']}"
        f"  failed {summary.get('failed', 0)}  in flight at stop {summary.get('in_flight', 0)}",
        f"  throughput   {summary['req_per_s']:.1f} req/s"
        + (f" ({summary['sent_per_s']:.1f} sent/s)" if summary.get("rate") and "sent_per_s" in summary
           else "")
        + f"   {mb['sent']:.2f} MB/s sent   {mb['received']:.2f} MB/s received",
    ]
    corrected = "latency" if not summary.get("latency_uncorrected_ms") else "latency*"
    lines += _latency_lines(corrected, lat)
    if summary.get("latency_uncorrected_ms"):
        lines += _latency_lines("uncorrected", summary["latency_uncorrected_ms"])
        lines.append("               * from the intended send times (coordinated omission "
                     "corrected); uncorrected: from the actual send times")
    if summary.get("status_classes"):
        lines.append("  status       " + "  ".join(
            f"{k} {v}" for k, v in summary["status_classes"].items()))
    if summary["errors"]:
        lines.append("  errors       " + ", ".join(f"{k} {v}" for k, v in summary["errors"].items()))
    else:
        lines.append("  errors       none")
    cpu = summary.get("client_cpu")
    if cpu:
        lines.append(f"  client CPU   {cpu['cpu_s']:.2f} s in {cpu['wall_s']:.2f} s: "
                     f"{cpu['per_worker']:.0%} of a core per worker")
    for w in summary.get("warnings", ()):
        lines.append(f"  warning: {w}")
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


def format_interval(elapsed, interval_s, counts, hist=None, conns=None):
    """One ``-i/--interval`` report line: the rates over the last
    ``interval_s`` seconds ending at ``elapsed`` from the counts of that
    interval (a dict with the HISTORY_FIELDS, e.g. the sum of its history
    entries) and the percentiles of that interval's histogram."""
    dt = interval_s if interval_s > 0 else 1.0
    get = counts.get
    parts = [f"[{elapsed:6.1f}s]",
             f"{get('requests', 0) / dt:10.1f} sent/s",
             f"{get('responses', 0) / dt:10.1f} resp/s",
             f"{get('bytes_sent', 0) / dt / 1e6:7.2f} MB/s out",
             f"{get('bytes_received', 0) / dt / 1e6:7.2f} MB/s in"]
    if hist is not None and hist.get_total_count():
        parts.append("p50 {:.3f} ms  p99 {:.3f} ms  max {:.3f} ms".format(
            hist.get_value_at_percentile(50.0) / 1000.0,
            hist.get_value_at_percentile(99.0) / 1000.0, hist.get_max_value() / 1000.0))
    else:
        parts.append("p50 -  p99 -  max -")
    parts.append(f"errors {get('errors', 0)}")
    if conns is not None:
        parts.append(f"conns {conns}")
    return "  ".join(parts)


def sum_history(history, t_from, t_to):
    """The counts of the history entries with t_from < t <= t_to."""
    out = {f: 0 for f in HISTORY_FIELDS}
    for e in history:
        if t_from < e["t"] <= t_to:
            for f in HISTORY_FIELDS:
                out[f] += e.get(f, 0)
    return out


def write_history_csv(history, stream):
    """The per-second history as CSV (``--csv FILE``): a header, then one
    row per second: ``t`` (seconds since the start), the counts of that
    second."""
    cols = ("t",) + HISTORY_FIELDS
    stream.write(",".join(cols) + "\n")
    for e in history:
        stream.write(",".join(str(e.get(c, 0)) for c in cols) + "\n")


#: The name load.py's wiring uses.
write_csv = write_history_csv


def read_history_csv(text):
    """The inverse of write_history_csv (for tests and tools)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    cols = lines[0].split(",")
    return [dict(zip(cols, (int(x) for x in ln.split(",")))) for ln in lines[1:]]


# -- the outputs beside the report: --latency, --hgrm, --csv, -i ---------------

def latency_block(stats, open_loop=False):
    """The ``--latency`` text (wrk2's): the recorded (corrected) latency's
    distribution, and in open loop the uncorrected one after it."""
    from cypoe.cli import hgrm
    text = hgrm.format_latency_distribution(stats.hist)
    if open_loop and stats.hist_raw.get_total_count():
        text += "\n" + hgrm.format_latency_distribution(
            stats.hist_raw, "Uncorrected Latency (measured without taking delayed starts into "
                            "account)")
    return text


def write_outputs(stats, hgrm_path=None, csv_path=None):
    """``--hgrm FILE`` (the corrected latency's .hgrm, in ms) and ``--csv
    FILE`` (the per-second history); ``-`` writes to stdout.  Raises
    OSError with the file's name."""
    import sys
    from cypoe.cli import hgrm

    def emit(path, write):
        if path == "-":
            write(sys.stdout)
            sys.stdout.flush()
            return
        with open(path, "w", encoding="utf-8") as fh:
            write(fh)
    if hgrm_path:
        emit(hgrm_path, lambda fh: hgrm.write_hgrm(stats.hist, fh))
    if csv_path:
        emit(csv_path, lambda fh: write_history_csv(stats.history, fh))


class IntervalReport:
    """``-i/--interval S``: folds the per-second snapshots (dicts with any of
    HISTORY_FIELDS, or with a ``row`` dict of them; ``hist``, an encoded
    window histogram; ``conns``) and prints one :func:`format_interval`
    line every S seconds."""

    def __init__(self, stream, interval_s, t0=None):
        self.stream = stream
        self.interval_s = float(interval_s)
        self.t0 = time.monotonic() if t0 is None else t0
        self.since = self.t0
        self._reset()

    def _reset(self):
        self.counts = {f: 0 for f in HISTORY_FIELDS}
        self.hist = new_histogram()
        self.conns = {}

    def add(self, snap, who=0):
        counts = snap.get("row") or snap       # an engine's per-second row, or the snapshot
        for f in HISTORY_FIELDS:
            v = counts.get(f)
            if isinstance(v, (int, float)):
                self.counts[f] += v
        if snap.get("hist"):
            self.hist.add(decode_histogram(snap["hist"]))
        if "conns" in snap:
            self.conns[who] = snap["conns"]

    def maybe_emit(self, now=None):
        """Print the line if the interval is over; returns it (or None)."""
        now = time.monotonic() if now is None else now
        if now - self.since < self.interval_s - 1e-6:
            return None
        line = format_interval(now - self.t0, now - self.since, self.counts, self.hist,
                               sum(self.conns.values()) if self.conns else None)
        self.stream.write(line + "\n")
        self.stream.flush()
        conns = self.conns
        self._reset()
        self.conns = conns
        self.since = now
        return line
