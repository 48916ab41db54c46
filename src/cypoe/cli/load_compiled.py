"""The compiled engine's side of ``cypoe load`` (:mod:`cypoe._load`).

The engine runs the connections, the framing and the latency record in C;
this module runs it in a Kernel, turns its once-a-second tick into the live
line and the per-second history, folds its C histograms into ``hdrh``
histograms (a C-level add of the counts), and fills a
:class:`cypoe.cli.report.LoadStats` at the end.  Worker processes send the
same figures as JSON lines, histograms in HdrHistogram's compressed base64
form (``hdrh``'s encode), and the parent merges them (``hdrh``'s add):
percentiles are never averaged.
"""
import socket

from cypoe.cli import common, report


def available():
    try:
        import cypoe._load  # noqa: F401
    except ImportError:
        return False
    return True


def check():
    if not available():
        raise common.Unavailable("the compiled load engine (cypoe._load) is not built")
    common.require("Kernel")


def resolve(host, port):
    """HOST -> (family, numeric address); a name is looked up once."""
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise common.Unavailable(f"cannot resolve {host!r}: {exc.strerror}") from None
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    family, _, _, _, addr = infos[0]
    return int(family), addr[0]


def new_stats():
    s = report.LoadStats()
    for name, value in (("hist_raw", report.new_histogram()), ("history", []),
                        ("status_classes", {}), ("in_flight", 0), ("failed", 0)):
        if getattr(s, name, None) is None or name in ("history", "status_classes"):
            setattr(s, name, value)
    return s


class FastRun:
    """One process's share of the load, on the compiled engine."""

    COUNTERS = ("requests", "responses", "bytes_sent", "bytes_received")

    def __init__(self, cfg, tick=None, kernel=None):
        cy = common.require("Kernel")
        from cypoe._load import LoadEngine
        self.cfg = cfg
        self.kernel = kernel if kernel is not None else cy.Kernel()
        self.tick = tick
        family, address = resolve(cfg.host, cfg.port)
        self.stats = new_stats()
        self.last = dict.fromkeys(self.COUNTERS + ("errors",), 0)
        self.engine = LoadEngine(
            self.kernel, address, cfg.port, cfg.messages, connections=cfg.connections,
            pipeline=cfg.pipeline, expect=cfg.expect, rate=cfg.rate or 0.0,
            duration=cfg.duration, max_requests=cfg.requests if cfg.requests else -1,
            timeout=cfg.timeout, connect_rate=cfg.connect_rate or 0.0, sources=cfg.sources,
            family=family, no_body=getattr(cfg, "no_body", False), on_tick=self._on_tick)

    def prepare(self, timeout):
        """Open the connections and send nothing (the engine's
        ``prepare``): ``run()`` then starts sending at once.  Returns the
        number of connections up."""
        return self.engine.prepare(timeout)

    def run(self):
        e = self.engine
        e.start()
        self.kernel.run()
        if not e.finished:           # the loop ended another way (kernel.stop)
            e.shutdown()
        self._fold()
        s = self.stats
        for name in self.COUNTERS:
            setattr(s, name, getattr(e, name))
        s.connections_opened = e.connections_opened
        s.connections_failed = e.connections_failed
        s.mismatches = e.mismatches
        s.errors = e.all_errors()
        s.in_flight = e.in_flight
        s.failed = e.failed
        s.status_classes = e.status_classes
        s.duration = max(0.0, e.t_stop - e.t0)
        s.sample = e.sample_bytes
        s.protocol_error = e.protocol_error_text
        s.fd_failures = e.failed_for_good
        if self.tick is not None and (e.t_done - e.t0) % 1.0 > 0.05:
            self._history(e)        # the last partial second
        return s, e.interrupted

    def _fold(self):
        """Move the engine's C counts into the run's hdrh histograms; returns
        the window's (corrected) histogram."""
        e = self.engine
        window = report.new_histogram()
        e.hist.add_to(window)
        self.stats.hist.add(window)
        raw = report.new_histogram()
        e.hist_raw.add_to(raw)
        self.stats.hist_raw.add(raw)
        return window

    def _history(self, e):
        now = {name: getattr(e, name) for name in self.COUNTERS}
        now["errors"] = e.failed + sum(e.errors.values())
        row = {"t": round(self.kernel.time() - e.t0, 3)}
        for name, v in now.items():
            row[name] = v - self.last[name]
        self.last = now
        self.stats.history.append(row)
        return row

    def _on_tick(self, e):
        window = self._fold()
        row = self._history(e)
        if self.tick is not None:
            self.tick({"type": "tick", "responses": row["responses"], "errors": row["errors"],
                       "conns": e.conns_up, "hist": report.encode_histogram(window),
                       "row": row})


def stats_to_msg(stats):
    """LoadStats -> a JSON-safe dict for the pipe from a worker."""
    d = stats.to_dict()
    d.setdefault("hist_raw", report.encode_histogram(stats.hist_raw))
    for name in ("history", "status_classes", "in_flight", "failed", "fd_failures"):
        d.setdefault(name, getattr(stats, name, None))
    sample = getattr(stats, "sample", b"")
    d["sample"] = sample.hex() if sample else ""
    d["protocol_error"] = getattr(stats, "protocol_error", None)
    return d


def stats_from_msg(d):
    s = report.LoadStats.from_dict(d)
    if not isinstance(getattr(s, "hist_raw", None), type(s.hist)) or \
            not s.hist_raw.get_total_count():
        s.hist_raw = report.decode_histogram(d.get("hist_raw", ""))
    s.history = d.get("history") or []
    s.status_classes = d.get("status_classes") or {}
    s.in_flight = d.get("in_flight") or 0
    s.failed = d.get("failed") or 0
    s.fd_failures = d.get("fd_failures") or 0
    s.sample = bytes.fromhex(d.get("sample") or "")
    s.protocol_error = d.get("protocol_error")
    return s


def merge_into(total, s):
    """total += s.  LoadStats.merge (report.py) merges what it knows; the
    fields it leaves unchanged are merged here."""
    for name, value in (("hist_raw", report.new_histogram()), ("history", []),
                        ("status_classes", {}), ("in_flight", 0), ("failed", 0),
                        ("fd_failures", 0), ("sample", b""), ("protocol_error", None)):
        if getattr(total, name, None) is None:
            setattr(total, name, value)
    before = {"raw": total.hist_raw.get_total_count(), "sc": dict(total.status_classes),
              "history": list(total.history), "in_flight": total.in_flight,
              "failed": total.failed}
    total.merge(s)
    if total.hist_raw.get_total_count() == before["raw"]:
        total.hist_raw.add(s.hist_raw)
    if total.status_classes == before["sc"]:
        sc = dict(before["sc"])
        for k, v in s.status_classes.items():
            sc[k] = sc.get(k, 0) + v
        total.status_classes = sc
    if total.history == before["history"]:
        rows = {}
        for row in before["history"] + list(s.history):
            key = float(int(row["t"] + 0.5))
            acc = rows.get(key)
            if acc is None:
                rows[key] = dict(row, t=key)
            else:
                for k, v in row.items():
                    if k != "t":
                        acc[k] = acc.get(k, 0) + v
        total.history = [rows[k] for k in sorted(rows)]
    if total.in_flight == before["in_flight"]:
        total.in_flight += s.in_flight
    if total.failed == before["failed"]:
        total.failed += s.failed
    total.fd_failures += s.fd_failures
    total.sample = total.sample or s.sample
    total.protocol_error = total.protocol_error or s.protocol_error
    return total


def run_load(cfg, live):
    """Run one process's load here; `live` gets the per-second snapshots."""
    def tick(snap):
        live.add(snap)
        live.emit()
    return FastRun(cfg, tick=tick).run()


def worker_main(cfg, wfd):
    """A worker process: run, writing JSON lines to `wfd`; returns the exit code."""
    return common.pipe_worker(lambda tick: FastRun(cfg, tick=tick).run(), wfd, stats_to_msg)
