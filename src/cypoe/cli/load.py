"""``cypoe load``: a TCP load generator (wrk/wrk2, tcpkali, redis-benchmark).

With no target it starts an echo server (``cypoe serve``) on loopback in a
child process and loads it.  Closed loop by default: every connection keeps
``--pipeline`` requests in flight and sends the next one when a response
comes.  With ``--rate`` the load is open loop, as in wrk2: requests are due
at fixed intended times (``rate`` per second over all connections) and a
request's latency is measured from its intended send time, not from when a
busy connection got round to sending it, so a stalled server shows up in the
percentiles instead of being hidden (coordinated omission).

The engines are in :mod:`cypoe.cli.load_compiled` and
:mod:`cypoe.cli.load_tcpmulti` (and :mod:`cypoe.cli.load_script`); this module parses,
starts the processes, merges their HDR histograms and reports.
"""
import argparse
import json
import signal
import sys
import time

from cypoe.cli import common, report
from cypoe.cli import cluster_cli  # --cluster (imports no distributed)

EXAMPLES = """\
examples:
  cypoe load                                   load a built-in echo server on loopback
  cypoe load -c 256 -d 30s -P 8                more connections, pipelined
  cypoe load 127.0.0.1:6379 -m 'PING' --expect redis -c 50 -P 16     redis-benchmark's PING
  cypoe load http://127.0.0.1:8080/index.html -c 50 -d 10s          wrk's keep-alive GET
  cypoe load http://127.0.0.1:8080/ -R 20000 -c 100 --latency        wrk2: open loop, full distribution
  cypoe load 127.0.0.1:7000 --rate 50000 -c 100 --json out.json
  cypoe load -t 4 -c 400 --source-addresses 127.0.0.1-127.0.0.20
"""

EXPECTS = ("echo", "line", "any", "redis", "http")


def add_parser(sub):
    p = sub.add_parser(
        "load", help="TCP load generator (with a built-in echo server)",
        description="Open connections to HOST:PORT or an http:// URL (or to an echo server it "
                    "starts on loopback when no target is given), send requests, match "
                    "responses, and report throughput and latency percentiles (HDR histogram). "
                    "Closed loop by default; -R/--rate makes it open (wrk2), latency counted "
                    "from each request's intended send time.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", metavar="HOST:PORT|URL",
                   help="server to load: HOST:PORT, or http://HOST[:PORT]/PATH (default: a "
                        "built-in echo server on 127.0.0.1)")
    p.add_argument("-c", "--connections", type=common.positive_int, default=16,
                   help="connections (default 16)")
    p.add_argument("-d", "--duration", type=common.duration, default=10.0,
                   help="how long to send, e.g. 10s, 500ms, 2m (default 10s)")
    p.add_argument("-n", "--requests", type=common.positive_int, default=None,
                   help="stop after this many requests in all (and at --duration at the latest)")
    p.add_argument("-P", "--pipeline", type=common.positive_int, default=1,
                   help="requests in flight per connection (default 1)")
    msg = p.add_mutually_exclusive_group()
    msg.add_argument("-m", "--message", action="append", default=None,
                     help="a request (C escapes allowed); '\\r\\n' is added unless it "
                          "ends in a newline; repeat for several, sent in turn (default 'PING')")
    msg.add_argument("--messages", metavar="FILE", default=None,
                     help="requests from FILE, one per line (C escapes allowed), sent in turn")
    msg.add_argument("--size", type=common.size, default=None, metavar="BYTES",
                     help="requests of this many bytes, line end included (>= 2)")
    p.add_argument("-R", "--rate", type=common.positive_float, default=None, metavar="REQ/S",
                   help="open loop: this many requests per second over all connections, "
                        "latency from the intended send time (wrk2)")
    p.add_argument("--connect-rate", type=common.positive_float, default=None, metavar="CONN/S",
                   help="open connections at this rate (default: all at once)")
    p.add_argument("--expect", choices=EXPECTS, default=None,
                   help="echo: a response is the request's bytes (checked); line: one line; "
                        "any: any bytes received answer the oldest request; redis: one RESP "
                        "reply (-ERR counts as an error); http: one HTTP/1.1 response "
                        "(default echo; http for a URL)")
    http = p.add_argument_group("HTTP (with an http:// URL or --expect http)")
    http.add_argument("--method", default="GET", help="request method (default GET)")
    http.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                      help="a request header (repeatable)")
    http.add_argument("--body", default=None, help="request body (C escapes allowed)")
    p.add_argument("--source-addresses", metavar="ADDRS", default=None,
                   help="spread connections over these local addresses "
                        "(127.0.0.1-127.0.0.20, a list, a CIDR)")
    p.add_argument("-t", "--threads", "--workers", dest="workers", type=common.positive_int,
                   default=1,
                   help="worker processes (connections and rate are split; histograms merged)")
    p.add_argument("--timeout", type=common.duration, default=5.0, metavar="SECONDS",
                   help="connect timeout, and how long to wait for the last responses (default 5s)")
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="FILE",
                     help="write the report as JSON to FILE ('-': stdout; the human report "
                          "then goes to stderr)")
    out.add_argument("--csv", metavar="FILE", help="write the per-second history as CSV")
    out.add_argument("--html", metavar="FILE",
                     help="also write a self-contained HTML report (latency percentile curve, "
                          "throughput and errors per second) to FILE")
    out.add_argument("--hgrm", metavar="FILE",
                     help="write the latency distribution in HdrHistogram's .hgrm format")
    out.add_argument("--latency", action="store_true",
                     help="print the full latency percentile distribution (as wrk2 --latency)")
    out.add_argument("-i", "--interval", type=common.positive_float, default=1.0,
                     metavar="SECONDS", help="live line every SECONDS (default 1)")
    out.add_argument("-q", "--quiet", action="store_true", help="no live line on stderr")
    modes = p.add_argument_group("other modes")
    modes.add_argument("--script", metavar="FILE",
                       help="run a conversation written in Python (a class with on_connect, "
                            "on_input, ...; slower than the compiled engine)")
    modes.add_argument("--idle", action="store_true",
                       help="open the connections, hold them idle, report memory per "
                            "connection (redis-benchmark -I)")
    modes.add_argument("--engine", choices=("auto", "compiled", "tcpmulti"), default="auto",
                       help="auto: the compiled engine (cypoe._load) when built; tcpmulti: "
                            "the Python engine over TCPMulti")
    cluster_cli.add_arguments(p, "load")
    return p


def _one_message(text):
    try:
        data = common.unescape(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None
    if not data:
        raise ValueError("an empty message")
    if not data.endswith(b"\n"):
        data += b"\r\n"
    return data


def build_messages(args):
    """The requests, in the order they are sent."""
    if args.size is not None:
        if args.size < 2:
            raise ValueError("--size must be at least 2 (the line end)")
        body = (b"0123456789abcdefghijklmnopqrstuvwxyz" * (args.size // 36 + 1))[: args.size - 2]
        return [body + b"\r\n"]
    if getattr(args, "messages", None):
        try:
            with open(args.messages, encoding="utf-8") as fh:
                lines = [ln.rstrip("\r\n") for ln in fh]
        except OSError as exc:
            raise ValueError(f"--messages {args.messages}: {exc.strerror}") from None
        out = [_one_message(ln) for ln in lines if ln.strip()]
        if not out:
            raise ValueError(f"--messages {args.messages}: no requests in the file")
        return out
    texts = args.message or ["PING"]
    return [_one_message(t) for t in texts]


def build_message(args):
    """The first request (see build_messages)."""
    return build_messages(args)[0]


def parse_url(text):
    """http://HOST[:PORT]/PATH -> (host, port, path, host header)."""
    from urllib.parse import urlsplit
    u = urlsplit(text)
    if u.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, not {u.scheme}://")
    if not u.hostname:
        raise ValueError(f"no host in {text!r}")
    try:
        port = u.port or 80
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    return u.hostname, port, path, u.netloc


def build_http_request(method, path, host_header, headers=(), body=None):
    """One HTTP/1.1 keep-alive request."""
    lines = [f"{method} {path} HTTP/1.1"]
    names = set()
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"-H: expected 'NAME: VALUE', not {h!r}")
        names.add(name.strip().lower())
        lines.append(f"{name.strip()}: {value.strip()}")
    if "host" not in names:
        lines.insert(1, f"Host: {host_header}")
    data = b""
    if body is not None:
        try:
            data = common.unescape(body)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None
    if (data or method.upper() in ("POST", "PUT", "PATCH")) and "content-length" not in names:
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


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
                 rate=None, connect_rate=None, requests=None, sources=(), timeout=5.0,
                 messages=None, no_body=False):
        self.host, self.port = host, port
        self.connections = connections
        self.duration = duration
        self.pipeline = pipeline
        self.messages = list(messages) if messages else [message]
        self.message = self.messages[0]
        self.expect = expect
        self.rate = rate
        self.connect_rate = connect_rate
        self.requests = requests
        self.sources = list(sources)
        self.timeout = timeout
        self.no_body = no_body

    def share(self, i, parts):
        """Worker i's part of this config."""
        conns = split(self.connections, parts)[i]
        frac = conns / self.connections
        return Config(self.host, self.port, conns, self.duration, self.pipeline, self.message,
                      self.expect,
                      rate=self.rate * frac if self.rate else None,
                      connect_rate=self.connect_rate * frac if self.connect_rate else None,
                      requests=split(self.requests, parts)[i] if self.requests else None,
                      sources=self.sources[i::parts] or self.sources, timeout=self.timeout,
                      messages=self.messages, no_body=self.no_body)


class LiveLine:
    """Merges per-second snapshots and prints the live line every
    ``interval`` seconds."""

    def __init__(self, stream, quiet, interval=1.0):
        self.stream = stream
        self.quiet = quiet
        self.interval = interval
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
        if now - self.since < self.interval - 0.05:
            return
        if not self.quiet:
            line = report.format_live(now - self.t0, now - self.since, self.responses, self.hist,
                                      self.errors, sum(self.conns.values()))
            self.stream.write(line + "\n")
            self.stream.flush()
        conns = self.conns
        self.reset()
        self.conns = conns


def _engine(args):
    """The engine module for this run: load_compiled or load_tcpmulti."""
    from cypoe.cli import load_compiled
    if args.engine == "tcpmulti":
        from cypoe.cli import load_tcpmulti
        return load_tcpmulti
    if args.engine == "compiled" or load_compiled.available():
        return load_compiled
    from cypoe.cli import load_tcpmulti
    return load_tcpmulti


def _optional(module, name, flag):
    """cypoe.cli.MODULE.NAME, or a clear error when it is not built."""
    import importlib
    try:
        return getattr(importlib.import_module(f"cypoe.cli.{module}"), name)
    except (ImportError, AttributeError):
        raise common.Unavailable(f"{flag} is not built in this version "
                                 f"(cypoe.cli.{module}.{name} is missing)") from None


def _limits(connections, sources):
    """The limits in force that cap -c: open files, local ports."""
    out = {}
    soft = common.raise_nofile(connections + 256)
    out["open_files"] = soft
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            lo, hi = (int(x) for x in fh.read().split())
        out["local_ports"] = f"{lo}-{hi}"
        ports = (hi - lo + 1) * max(1, len(sources))
    except (OSError, ValueError):
        ports = None
    capped = []
    if soft < connections + 16:
        capped.append(f"open files {soft} (ulimit -n) < {connections} connections")
    if ports is not None and connections > ports:
        capped.append(f"local ports {out['local_ports']} x {max(1, len(sources))} address(es) "
                      f"< {connections} connections")
    out["capped_by"] = capped
    return out


_SNIFF = ((b"HTTP/", "http"), (b"+", "redis"), (b"-", "redis"), (b":", "redis"),
          (b"$", "redis"), (b"*", "redis"))


def diagnose(stats, expect, messages):
    """A note when no response matched: what came back, and the --expect
    that would frame it."""
    if stats.responses or not stats.requests:
        return None
    sample = getattr(stats, "sample", b"") or b""
    bad = stats.mismatches + stats.errors.get("protocol", 0) + stats.errors.get("redis:ERR", 0)
    if not bad:
        return None
    guess = None
    for prefix, kind in _SNIFF:
        if sample.startswith(prefix):
            guess = kind
            break
    if guess is None and b"\n" in sample:
        guess = "line"
    text = f"no response matched --expect {expect}"
    if sample:
        text += f"; the server sent {sample[:48]!r}" + ("..." if len(sample) > 48 else "")
    perr = getattr(stats, "protocol_error", None)
    if perr:
        text += f" ({perr})"
    if guess and guess != expect:
        text += f"; try --expect {guess}"
        if guess == "redis" and stats.errors.get("redis:ERR") is None and expect == "echo":
            pass
    elif expect == "redis" and stats.errors.get("redis:ERR"):
        text += "; every reply was an error (-ERR): check the command (e.g. -m 'PING')"
    return text


def run(args):
    prog = "cypoe load"
    parser = args._parser
    no_body = False
    try:
        sources = parse_sources(args.source_addresses)
        if args.target and args.target.lower().startswith(("http://", "https://")):
            host, port, path, host_header = parse_url(args.target)
            target = (host, port)
            expect = args.expect or "http"
            if args.message or args.messages or args.size is not None:
                raise ValueError("a URL target builds its own request: -m/--messages/--size "
                                 "do not apply")
            messages = [build_http_request(args.method, path, host_header, args.header,
                                           args.body)]
            no_body = args.method.upper() == "HEAD"
        else:
            target = common.hostport(args.target) if args.target else None
            expect = args.expect or "echo"
            if expect == "http" and not (args.message or args.messages):
                h = f"{target[0]}:{target[1]}" if target else "127.0.0.1"
                messages = [build_http_request(args.method, "/", h, args.header, args.body)]
                no_body = args.method.upper() == "HEAD"
            else:
                if args.header or args.body is not None:
                    raise ValueError("-H/--body need an http:// URL or --expect http")
                messages = build_messages(args)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    if args.workers > args.connections:
        parser.error(f"--workers ({args.workers}) must not exceed --connections ({args.connections})")
    if expect == "line" and any(m.count(b"\n") != 1 for m in messages):
        parser.error("--expect line needs requests of exactly one line each")
    if args.engine == "tcpmulti" and len(messages) > 1:
        parser.error("--engine tcpmulti sends one message; several need the compiled engine")
    if target is None and expect in ("redis", "http"):
        parser.error(f"--expect {expect} needs a target (the built-in server echoes)")
    if args.cluster:
        if target is None:
            parser.error("--cluster needs a HOST:PORT target (the built-in echo server would "
                         "run on this host only)")
        cfg = Config(target[0], target[1], args.connections, args.duration, args.pipeline,
                     messages[0], expect, rate=args.rate, connect_rate=args.connect_rate,
                     requests=args.requests, sources=sources, timeout=args.timeout,
                     messages=messages, no_body=no_body)
        return cluster_cli.run_load(args, cfg)
    try:
        if args.script:
            run_script = _optional("load_script", "run_script", "--script")
        if args.idle:
            run_idle = _optional("load_idle", "run_idle", "--idle")
        if args.hgrm or args.latency:
            _optional("hgrm", "write_hgrm", "--hgrm/--latency")
        engine = _engine(args) if not (args.script or args.idle) else None
        if engine is not None:
            engine.check()
        if target is None:
            from cypoe.cli import serve_engine
            serve_engine.check()
    except common.Unavailable as exc:
        common.err(prog, str(exc))
        return 1
    limits = _limits(args.connections, sources)
    human = sys.stderr if args.json == "-" else sys.stdout
    server = None
    if target is None:
        from cypoe.cli import serve_engine
        try:
            server = serve_engine.EmbeddedServer("line" if expect == "line" else "stream")
        except (OSError, RuntimeError) as exc:
            common.err(prog, f"cannot start the built-in echo server: {exc}")
            return 1
        target = ("127.0.0.1", server.port)
    cfg = Config(target[0], target[1], args.connections, args.duration, args.pipeline,
                 messages[0], expect, rate=args.rate, connect_rate=args.connect_rate,
                 requests=args.requests, sources=sources, timeout=args.timeout,
                 messages=messages, no_body=no_body)
    live = LiveLine(sys.stderr, args.quiet, args.interval)
    interrupted = False
    clock = report.CpuClock(children=args.workers > 1 and not args.script)
    try:
        cfg.script = args.script
        if args.idle:
            from cypoe.cli import load_idle
            return load_idle.main(cfg, live, json_path=args.json)
        if args.script:
            stats = run_script(cfg, live)
            interrupted = stats.interrupted
        elif args.workers == 1:
            stats, interrupted = engine.run_load(cfg, live)
        else:
            stats, interrupted = run_workers(cfg, args.workers, live, engine)
        if not stats.cpu_wall_s:
            clock.stop(stats, processes=args.workers)
    except common.Unavailable as exc:
        common.err(prog, str(exc))
        return 1
    finally:
        if server is not None:
            server.stop()
    host, port = target
    in_flight = getattr(stats, "in_flight", 0) or 0
    failed = getattr(stats, "failed", None)
    if failed is None:
        failed = stats.requests - stats.responses - in_flight
    extra = {}
    if getattr(stats, "hist_raw", None) is not None and args.rate:
        extra["latency_uncorrected_ms"] = _latency_ms(stats.hist_raw)
    summary = stats.summary(
        target=(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        + (" (built-in echo server)" if server is not None else ""),
        concurrency=args.connections, pipeline=args.pipeline, workers=args.workers,
        rate=args.rate, expect=expect, message_bytes=len(messages[0]),
        messages=len(messages), interrupted=interrupted, in_flight=in_flight, failed=failed,
        status_classes=dict(getattr(stats, "status_classes", None) or {}),
        limits=limits, engine="tcpmulti" if engine is None or engine.__name__.endswith(
            "load_tcpmulti") else "compiled", **extra)
    text = report.format_report(summary)
    if in_flight and "in flight" not in text:
        text += f"\n  in flight    {in_flight} (at the interrupt; not errors)"
    if summary.get("status_classes") and "2xx" not in text and "xx " not in text:
        text += "\n  status       " + ", ".join(
            f"{k} {v}" for k, v in sorted(summary["status_classes"].items()))
    if "latency_uncorrected_ms" in summary and "uncorrected" not in text:
        lat = summary["latency_uncorrected_ms"]
        text += "\n  uncorrected  " + "  ".join(
            f"{k} {report._ms(lat[k])}" for k in ("p50", "p90", "p99", "p99.9", "max"))
    if limits["capped_by"] and "limit" not in text:
        text += "\n  limits       " + "; ".join(limits["capped_by"])
    print(text, file=human)
    human.flush()
    note = diagnose(stats, expect, messages)
    if note:
        common.err(prog, note)
    if args.latency:
        print(report.latency_block(stats, open_loop=bool(args.rate)), file=human)
    if args.hgrm:
        write_hgrm = _optional("hgrm", "write_hgrm", "--hgrm")
        try:
            with open(args.hgrm, "w", encoding="utf-8") as fh:
                write_hgrm(stats.hist, fh)
        except OSError as exc:
            common.err(prog, f"{args.hgrm}: {exc.strerror}")
            return 1
    if args.csv:
        try:
            write_csv = _optional("report", "write_csv", "--csv")
            with open(args.csv, "w", encoding="utf-8", newline="") as fh:
                write_csv(getattr(stats, "history", []), fh)
        except common.Unavailable as exc:
            common.err(prog, str(exc))
            return 1
        except OSError as exc:
            common.err(prog, f"{args.csv}: {exc.strerror}")
            return 1
    if args.json and not common.write_json_report(prog, args.json, summary):
        return 1
    if args.html:
        from cypoe.cli import html
        problem = html.write_report(args.html, html.load_html(summary, stats, html.args_config(args)))
        if problem:
            common.err(prog, problem)
            return 1
    if interrupted:
        return 130
    if stats.responses == 0 and (stats.error_total or failed):
        return 1
    return 0


def _latency_ms(h):
    if h.get_total_count() == 0:
        return {"p50": None, "p90": None, "p99": None, "p99.9": None, "max": None}
    out = {}
    for p in (50.0, 90.0, 99.0, 99.9):
        out[f"p{p:g}"] = h.get_value_at_percentile(p) / 1000.0
    out["max"] = h.get_max_value() / 1000.0
    return out


def run_workers(cfg, workers, live, engine=None):
    """Fork `workers` processes (:class:`cypoe.cli.workers.WorkerPool`),
    each running its share; merge what they report (JSON lines on a pipe:
    per-second snapshots, then the totals; histograms in HdrHistogram's
    compressed form, merged by hdrh).  The first Ctrl-C (or SIGTERM) stops
    the workers, which report what was in flight; a second kills them."""
    from cypoe.cli import load_compiled
    from cypoe.cli.workers import WorkerPool
    if engine is None:
        from cypoe.cli import load_tcpmulti as engine
    total = load_compiled.new_stats()
    done = set()
    interrupted = False

    def on_line(worker, line):
        nonlocal interrupted
        msg = json.loads(line)
        if msg["type"] == "tick":
            live.add(msg, worker.pid)
        elif msg["type"] == "done":
            load_compiled.merge_into(total, load_compiled.stats_from_msg(msg["stats"]))
            interrupted = interrupted or msg.get("interrupted", False)
            done.add(worker.index)

    pool = WorkerPool(workers, lambda i, wfd: engine.worker_main(cfg.share(i, workers), wfd),
                      prog="cypoe load", escalate=signal.SIGKILL)
    pool.run(on_line, on_tick=live.emit, interval=1.0)
    missing = workers - len(done)
    if missing:
        total.error("worker:died", missing)
    return total, bool(interrupted or pool.signals)

