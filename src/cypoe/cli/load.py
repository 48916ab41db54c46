"""``cypoe load``: a TCP load generator (wrk/wrk2, tcpkali, redis-benchmark).

With no target it starts an echo server (``cypoe serve``) on loopback in a
child process and loads it.  Closed loop by default: every connection keeps
``--pipeline`` requests in flight and sends the next one when a response
comes.  With ``--rate`` the load is open loop, as in wrk2: requests are due
at fixed intended times (``rate`` per second over all connections) and a
request's latency is measured from its intended send time, not from when a
busy connection got round to sending it, so a stalled server shows up in the
percentiles instead of being hidden (coordinated omission).

The network part is in :mod:`cypoe.cli.load_engine`; this module parses,
starts the processes, merges their HDR histograms and reports.
"""
import argparse
import json
import os
import selectors
import signal
import sys
import time

from cypoe.cli import common, report
from cypoe.cli import cluster_cli  # --cluster (imports no distributed)

EXAMPLES = """\
examples:
  cypoe load                                   load a built-in echo server on loopback
  cypoe load -c 256 -d 30s --pipeline 8        more connections, pipelined
  cypoe load 127.0.0.1:6380 -m 'PING' --expect line      a redis-style line server
  cypoe load 127.0.0.1:7000 --rate 50000 -c 100 --json out.json
  cypoe load --workers 4 -c 400 --source-addresses 127.0.0.1-127.0.0.20
"""


def add_parser(sub):
    p = sub.add_parser(
        "load", help="TCP load generator (with a built-in echo server)",
        description="Open connections to HOST:PORT (or to an echo server it starts on "
                    "loopback when no target is given), send requests, match responses, "
                    "and report throughput and latency percentiles (HDR histogram).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", metavar="HOST:PORT",
                   help="server to load (default: a built-in echo server on 127.0.0.1)")
    p.add_argument("-c", "--connections", type=common.positive_int, default=16,
                   help="connections (default 16)")
    p.add_argument("-d", "--duration", type=common.duration, default=10.0,
                   help="how long to send, e.g. 10s, 500ms, 2m (default 10s)")
    p.add_argument("-n", "--requests", type=common.positive_int, default=None,
                   help="stop after this many requests in all (and at --duration at the latest)")
    p.add_argument("--pipeline", type=common.positive_int, default=1,
                   help="requests in flight per connection (default 1)")
    msg = p.add_mutually_exclusive_group()
    msg.add_argument("-m", "--message", default=None,
                     help="the request (C escapes allowed); '\\r\\n' is added unless it "
                          "ends in a newline (default 'PING')")
    msg.add_argument("--size", type=common.size, default=None, metavar="BYTES",
                     help="requests of this many bytes, line end included (>= 2)")
    p.add_argument("--rate", type=common.positive_float, default=None, metavar="REQ/S",
                   help="open loop: this many requests per second over all connections, "
                        "latency from the intended send time (wrk2)")
    p.add_argument("--connect-rate", type=common.positive_float, default=None, metavar="CONN/S",
                   help="open connections at this rate (default: all at once)")
    p.add_argument("--expect", choices=("echo", "line", "any"), default="echo",
                   help="echo: a response is the request's bytes (checked); line: any one line; "
                        "any: any bytes received answer the oldest request (default echo)")
    p.add_argument("--source-addresses", metavar="ADDRS", default=None,
                   help="spread connections over these local addresses "
                        "(127.0.0.1-127.0.0.20, a list, a CIDR)")
    p.add_argument("--workers", type=common.positive_int, default=1,
                   help="processes (connections and rate are split; histograms are merged)")
    p.add_argument("--timeout", type=common.duration, default=5.0, metavar="SECONDS",
                   help="connect timeout, and how long to wait for the last responses (default 5s)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON to FILE ('-': stdout)")
    p.add_argument("-q", "--quiet", action="store_true", help="no live line on stderr")
    cluster_cli.add_arguments(p, "load")
    return p


def build_message(args):
    if args.size is not None:
        if args.size < 2:
            raise ValueError("--size must be at least 2 (the line end)")
        body = (b"0123456789abcdefghijklmnopqrstuvwxyz" * (args.size // 36 + 1))[: args.size - 2]
        return body + b"\r\n"
    text = args.message if args.message is not None else "PING"
    try:
        data = common.unescape(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None
    if not data.endswith(b"\n"):
        data += b"\r\n"
    return data


def parse_sources(text):
    if not text:
        return []
    from cypoe.cli import targets
    ts = targets.TargetSet([x for x in text.replace(",", " ").split()], resolve=False)
    if len(ts) > 65536:
        raise ValueError("--source-addresses: more than 65536 addresses")
    return list(ts)


def split(n, parts):
    """n split into `parts` near-equal non-negative integers."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


class Config:
    """One worker's share of the load."""

    def __init__(self, host, port, connections, duration, pipeline, message, expect,
                 rate=None, connect_rate=None, requests=None, sources=(), timeout=5.0):
        self.host, self.port = host, port
        self.connections = connections
        self.duration = duration
        self.pipeline = pipeline
        self.message = message
        self.expect = expect
        self.rate = rate
        self.connect_rate = connect_rate
        self.requests = requests
        self.sources = list(sources)
        self.timeout = timeout

    def share(self, i, parts):
        """Worker i's part of this config."""
        conns = split(self.connections, parts)[i]
        frac = conns / self.connections
        return Config(self.host, self.port, conns, self.duration, self.pipeline, self.message,
                      self.expect,
                      rate=self.rate * frac if self.rate else None,
                      connect_rate=self.connect_rate * frac if self.connect_rate else None,
                      requests=split(self.requests, parts)[i] if self.requests else None,
                      sources=self.sources[i::parts] or self.sources, timeout=self.timeout)


class LiveLine:
    """Merges per-second snapshots and prints the live line."""

    def __init__(self, stream, quiet):
        self.stream = stream
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.reset()

    def reset(self):
        self.responses = 0
        self.errors = 0
        self.conns = {}
        self.hist = report.new_histogram()
        self.since = time.monotonic()

    def add(self, snap, who=0):
        self.responses += snap["responses"]
        self.errors += snap["errors"]
        self.conns[who] = snap["conns"]
        if snap.get("hist"):
            self.hist.add(report.decode_histogram(snap["hist"]))

    def emit(self):
        now = time.monotonic()
        if not self.quiet:
            line = report.format_live(now - self.t0, now - self.since, self.responses, self.hist,
                                      self.errors, sum(self.conns.values()))
            self.stream.write(line + "\n")
            self.stream.flush()
        conns = self.conns
        self.reset()
        self.conns = conns


def run(args):
    if args.cluster:
        return cluster_cli.run_load(args)
    prog = "cypoe load"
    parser = args._parser
    try:
        message = build_message(args)
        sources = parse_sources(args.source_addresses)
        target = common.hostport(args.target) if args.target else None
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    if args.workers > args.connections:
        parser.error(f"--workers ({args.workers}) must not exceed --connections ({args.connections})")
    if args.expect == "line" and message.count(b"\n") != 1:
        parser.error("--expect line needs a request of exactly one line")
    try:
        from cypoe.cli import load_engine
        load_engine.check(embedded=target is None)
    except common.Unavailable as exc:
        common.err(prog, str(exc))
        return 1
    common.raise_nofile(args.connections + 256)
    server = None
    if target is None:
        try:
            server = load_engine.EmbeddedServer("line" if args.expect == "line" else "stream")
        except (OSError, RuntimeError) as exc:
            common.err(prog, f"cannot start the built-in echo server: {exc}")
            return 1
        target = ("127.0.0.1", server.port)
    cfg = Config(target[0], target[1], args.connections, args.duration, args.pipeline, message,
                 args.expect, rate=args.rate, connect_rate=args.connect_rate,
                 requests=args.requests, sources=sources, timeout=args.timeout)
    live = LiveLine(sys.stderr, args.quiet)
    interrupted = False
    try:
        if args.workers == 1:
            stats, interrupted = load_engine.run_load(cfg, live)
        else:
            stats, interrupted = run_workers(cfg, args.workers, live)
    finally:
        if server is not None:
            server.stop()
    host, port = target
    summary = stats.summary(
        target=(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        + (" (built-in echo server)" if server is not None else ""),
        concurrency=args.connections, pipeline=args.pipeline, workers=args.workers,
        rate=args.rate, expect=args.expect, message_bytes=len(message),
        interrupted=interrupted)
    print(report.format_report(summary))
    if args.json:
        text = json.dumps(summary, indent=1)
        if args.json == "-":
            print(text)
        else:
            try:
                with open(args.json, "w", encoding="utf-8") as fh:
                    fh.write(text + "\n")
            except OSError as exc:
                common.err(prog, f"{args.json}: {exc.strerror}")
                return 1
    if interrupted:
        return 130
    if stats.responses == 0 and stats.error_total:
        return 1
    return 0


def run_workers(cfg, workers, live):
    """Fork `workers` processes, each running its share; merge what they
    report (JSON lines on a pipe: per-second snapshots, then the totals)."""
    from cypoe.cli import load_engine
    children = {}
    for i in range(workers):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                os.close(r)
                for fd in [c[0] for c in children.values()]:
                    os.close(fd)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
                code = load_engine.worker_main(cfg.share(i, workers), w)
            except BaseException:  # noqa: BLE001 - a child must never return
                import traceback
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(w)
        children[pid] = (r, bytearray())
    sel = selectors.DefaultSelector()
    for pid, (r, _) in children.items():
        sel.register(r, selectors.EVENT_READ, pid)
    total = report.LoadStats()
    got = set()
    interrupted = False
    next_tick = time.monotonic() + 1.0
    open_fds = len(children)
    try:
        while open_fds:
            try:
                events = sel.select(max(0.0, next_tick - time.monotonic()))
            except KeyboardInterrupt:
                interrupted = True
                for pid in children:
                    _kill(pid, signal.SIGTERM)
                continue
            for key, _ in events:
                pid = key.data
                r, buf = children[pid]
                data = os.read(r, 65536)
                if not data:
                    sel.unregister(r)
                    os.close(r)
                    open_fds -= 1
                    continue
                buf += data
                while b"\n" in buf:
                    line, _, rest = bytes(buf).partition(b"\n")
                    buf[:] = rest
                    msg = json.loads(line)
                    if msg["type"] == "tick":
                        live.add(msg, pid)
                    elif msg["type"] == "done":
                        total.merge(report.LoadStats.from_dict(msg["stats"]))
                        interrupted = interrupted or msg.get("interrupted", False)
                        got.add(pid)
            if time.monotonic() >= next_tick:
                live.emit()
                next_tick += 1.0
    finally:
        for pid in children:
            common.reap([pid])
    missing = len(children) - len(got)
    if missing:
        total.error("worker:died", missing)
    return total, interrupted


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
