"""``cypoe scan``: a TCP connect scanner and banner grabber.

Conventions from nmap (target and port syntax, ``-iL``, ``--exclude``,
``-T0``…``-T5``, ``-oG``-style grepable output), masscan and zmap (``--rate``,
``--seed``, ``--shards``/``--shard``, list output) and zgrab2 (banners,
status vocabulary, JSON Lines).  The network part is in
:mod:`cypoe.cli.scan_engine`; this module parses, plans and writes.
"""
import argparse
import re
import sys
import time

from cypoe.cli import common, order, output, ports as portspec, targets as targetspec, timing
from cypoe.cli import cluster_cli  # --cluster (imports no distributed)

DEFAULT_PORTS = "1-1024"
DEFAULT_MAX_READ = 96 * 1024

EXAMPLES = """\
examples:
  cypoe scan 127.0.0.1 -p-                      every port of this machine
  cypoe scan 10.0.0.0/24 -p 22,80,443 -T4 -o out.jsonl
  cypoe scan -iL hosts.txt --exclude 10.0.0.5 -p 1-1024 --rate 5000
  cypoe scan 192.0.2.1-20 -p 21,22,25 --banners
  cypoe scan example.internal -p 80 --probe 'HEAD / HTTP/1.0\\r\\n\\r\\n'
  cypoe scan 10.0.0.0/16 -p 443 --tls --seed 7 --shards 4 --shard 0
"""


def add_parser(sub):
    p = sub.add_parser(
        "scan", help="TCP connect scan and banner grab",
        description="Connect to every (address, port) of the targets and report which "
                    "ports are open; with --banners, also what they say.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    t = p.add_argument_group("targets")
    t.add_argument("targets", nargs="*", metavar="TARGET",
                   help="address, CIDR network, range (10.0.0.1-20, 10.0.0.1-10.0.1.5) "
                        "or host name; IPv4 or IPv6")
    t.add_argument("-iL", dest="input_list", metavar="FILE", action="append", default=[],
                   help="read targets from FILE ('-': standard input)")
    t.add_argument("--exclude", metavar="LIST", action="append", default=[],
                   help="comma-separated targets to leave out")
    t.add_argument("--excludefile", metavar="FILE", action="append", default=[],
                   help="read targets to leave out from FILE")
    fam = t.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=4,
                     help="IPv4 only (host names resolve to IPv4)")
    fam.add_argument("-6", dest="family", action="store_const", const=6,
                     help="IPv6 only")
    t.add_argument("-p", "--ports", default=DEFAULT_PORTS, metavar="PORTS",
                   help=f"ports: 22,80,8000-8100; '-p-' for 1-65535 (default {DEFAULT_PORTS})")

    s = p.add_argument_group("speed")
    s.add_argument("-T", dest="timing", type=int, choices=range(6), metavar="0-5",
                   help="timing template as in nmap (default 3): sets concurrency, "
                        "rate, timeout and retries")
    s.add_argument("--rate", type=common.positive_float, metavar="N",
                   help="new connections per second (default: as fast as the concurrency allows)")
    s.add_argument("--concurrency", type=common.positive_int, metavar="N",
                   help="connections in flight at once")
    s.add_argument("--timeout", type=common.duration, metavar="SECONDS",
                   help="connect timeout (500ms, 2s, …)")
    s.add_argument("--retries", type=common.nonneg_int, metavar="N",
                   help="tries again after a connect timeout (a refusal is final)")
    s.add_argument("--workers", type=common.positive_int, default=1, metavar="N",
                   help="processes to split the scan over (default 1), each with an exact "
                        "share of the work (as --shards) and of --concurrency and --rate")

    b = p.add_argument_group("banners")
    b.add_argument("--banners", action="store_true",
                   help="read what the service sends after connecting (and after --probe)")
    b.add_argument("--probe", action="append", default=[], metavar="[PORTS:]PAYLOAD",
                   help="send PAYLOAD (C escapes allowed: \\r\\n, \\x00) after connecting; "
                        "'80,8080:GET / HTTP/1.0\\r\\n\\r\\n' for some ports only; implies --banners")
    b.add_argument("--max-read", type=common.size, default=DEFAULT_MAX_READ, metavar="BYTES",
                   help="bound of the banner read (default 96k)")
    b.add_argument("--read-timeout", type=common.duration, metavar="SECONDS",
                   help="how long to wait for banner bytes (default: the connect timeout, at least 1 s)")
    b.add_argument("--tls", action="store_true",
                   help="TLS handshake after connecting (certificates are not verified); "
                        "records the protocol, cipher and certificate; implies --banners")
    b.add_argument("--sni", metavar="NAME", help="server name to send with --tls")

    o = p.add_argument_group("order and sharding")
    o.add_argument("--seed", type=int, metavar="N",
                   help="seed of the random order (default: a random seed, printed at the end)")
    o.add_argument("--sequential", action="store_true",
                   help="scan in address/port order instead of a random one")
    o.add_argument("--shards", type=common.positive_int, default=1, metavar="N",
                   help="split the scan into N shards (give every shard the same targets and ports)")
    o.add_argument("--shard", type=common.nonneg_int, default=0, metavar="I",
                   help="which shard this is, 0-based (default 0)")

    w = p.add_argument_group("output")
    w.add_argument("-o", "--output", metavar="FILE", help="write results to FILE ('-': stdout, the default)")
    w.add_argument("--format", choices=output.FORMATS, default="jsonl",
                   help="jsonl (default), csv, list (masscan -oL), grepable (nmap -oG)")
    w.add_argument("--all", dest="all_results", action="store_true",
                   help="write closed and filtered ports too (default: open ones only)")
    w.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress on stderr even when it is not a terminal")
    w.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary on stderr")
    cluster_cli.add_arguments(p, "scan")
    return p


class Plan:
    """What a scan does: the targets × ports index space, this shard's part
    of it in its order, and the per-port probes."""

    def __init__(self, targets, ports, *, seed=None, shards=1, shard=0, probes=None):
        self.targets = targets
        self.ports = list(ports)
        self.nports = len(self.ports)
        self.space = targets.count() * self.nports
        order.check_shard(shards, shard)
        self.shards, self.shard, self.seed = shards, shard, seed
        self.total = order.shard_size(self.space, shards, shard)
        self.probes = probes or {}

    def indices(self):
        return order.shard_order(self.space, self.shards, self.shard, self.seed)

    def items(self):
        """(address, port, version) for each index of this shard, in order."""
        targets, ports, n = self.targets, self.ports, self.nports
        cache = {}
        for idx in self.indices():
            t, pi = divmod(idx, n)
            hit = cache.get(t)
            if hit is None:
                if len(cache) > 4096:
                    cache.clear()
                hit = cache[t] = (targets[t], targets.version_at(t))
            yield hit[0], ports[pi], hit[1]

    def probe_for(self, port):
        p = self.probes.get(port)
        return self.probes.get(None) if p is None else p


_PROBE_PORTS = re.compile(r"^([0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*):(.*)$", re.S)


def parse_probes(values):
    """``--probe`` values -> {port or None: payload bytes}."""
    out = {}
    for v in values:
        m = _PROBE_PORTS.match(v)
        if m:
            for port in portspec.parse_ports(m.group(1)):
                out[port] = common.unescape(m.group(2))
        else:
            out[None] = common.unescape(v)
    return out


def build_plan(args):
    """Parse targets, ports, probes and order; errors raise ValueError with
    a message for the usage line."""
    specs = list(args.targets)
    for path in args.input_list:
        try:
            specs.extend(targetspec.read_spec_file(path))
        except OSError as exc:
            raise ValueError(f"-iL {path}: {exc.strerror}") from None
    if not specs:
        raise ValueError("no targets (give addresses, networks, ranges, names or -iL FILE)")
    excludes = []
    for item in args.exclude:
        excludes.extend(x for x in item.split(",") if x.strip())
    for path in args.excludefile:
        try:
            excludes.extend(targetspec.read_spec_file(path))
        except OSError as exc:
            raise ValueError(f"--excludefile {path}: {exc.strerror}") from None
    tset = targetspec.TargetSet(specs, exclude=excludes, family=args.family)
    ports = portspec.parse_ports(args.ports)
    probes = parse_probes(args.probe)
    seed = None
    if not args.sequential:
        seed = args.seed if args.seed is not None else order.random_seed()
    return Plan(tset, ports, seed=seed, shards=args.shards, shard=args.shard, probes=probes)


class Progress:
    """A tqdm bar on a terminal; plain lines every few seconds otherwise."""

    def __init__(self, total, stream=None, force=None, quiet=False, interval=5.0):
        self.total = total
        self.stream = stream or sys.stderr
        self.done = 0
        self.open = 0
        self.t0 = time.monotonic()
        self.last = self.t0
        self.interval = interval
        self.bar = None
        self.plain = False
        if quiet:
            return
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        if tty and force is not False:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, file=self.stream, unit="probe", unit_scale=True,
                                dynamic_ncols=True, mininterval=0.25, desc="scan")
            except ImportError:
                self.plain = True
        elif force:
            self.plain = True

    def update(self, n=1, opened=0):
        self.done += n
        self.open += opened
        if self.bar is not None:
            self.bar.update(n)
            if opened:
                self.bar.set_postfix(open=self.open, refresh=False)
        elif self.plain:
            now = time.monotonic()
            if now - self.last >= self.interval:
                self.last = now
                self.stream.write(self.line(now) + "\n")
                self.stream.flush()

    def line(self, now=None):
        now = now or time.monotonic()
        el = now - self.t0
        rate = self.done / el if el > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_s = f"{eta:.0f}s" if eta != float("inf") else "?"
        return (f"scan: {self.done}/{self.total} ({pct:.1f}%) {rate:.0f}/s "
                f"ETA {eta_s}, {self.open} open")

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run(args):
    if args.cluster:
        return cluster_cli.run_scan(args)
    prog = "cypoe scan"
    parser = args._parser
    try:
        plan = build_plan(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.probe or args.tls:
        args.banners = True
    tm = timing.resolve(args.timing, args.concurrency, args.rate, args.timeout, args.retries)
    if args.workers > tm.concurrency:
        parser.error(f"--workers ({args.workers}) must not exceed the concurrency "
                     f"({tm.concurrency})")
    try:
        from cypoe.cli import scan_engine
        scan_engine.check()
    except common.Unavailable as exc:
        common.err(prog, str(exc))
        return 1
    out_fh = sys.stdout if args.output in (None, "-") else None
    if out_fh is None:
        try:
            out_fh = open(args.output, "w", encoding="utf-8", newline="")
        except OSError as exc:
            common.err(prog, f"{args.output}: {exc.strerror}")
            return 1
    meta = {"command": "cypoe scan " + " ".join(list(args.targets) + ["-p", args.ports])}
    writer = output.make_writer(args.format, out_fh, all_results=args.all_results, meta=meta)
    progress = Progress(plan.total, force=args.progress, quiet=args.quiet)
    counts = {"open": 0, "closed": 0, "filtered": 0}

    def on_result(rec):
        counts[rec["state"]] += 1
        writer.write(rec)
        progress.update(1, rec["state"] == "open")

    def on_other(state, n):  # closed or filtered ports the output does not show
        counts[state] += n
        progress.update(n)

    read_timeout = args.read_timeout if args.read_timeout is not None else max(1.0, tm.timeout)
    t0 = time.monotonic()
    kw = dict(banners=args.banners, max_read=args.max_read, read_timeout=read_timeout,
              tls=args.tls, sni=args.sni, on_other=None if writer.keeps_others else on_other)
    try:
        if args.workers > 1:
            info = scan_engine.scan_workers(plan, tm, args.workers, on_result, **kw)
        else:
            info = scan_engine.scan(plan, tm, on_result, **kw)
    finally:
        elapsed = time.monotonic() - t0
        progress.close()
        writer.close({"elapsed_s": elapsed})
        if out_fh is not sys.stdout:
            out_fh.close()
    if not args.quiet:
        done = sum(counts.values())
        rate = done / elapsed if elapsed > 0 else 0.0
        seed = f"seed {plan.seed}" if plan.seed is not None else "sequential order"
        shard = f", shard {plan.shard}/{plan.shards}" if plan.shards > 1 else ""
        stopped = " (interrupted)" if info.get("interrupted") else ""
        if info.get("failed"):
            stopped += f" ({info['failed']} worker(s) failed: their share is incomplete)"
        workers = f", {args.workers} workers" if args.workers > 1 else ""
        print(f"{prog}: {done}/{plan.total} probes in {elapsed:.2f} s ({rate:.0f}/s){stopped}: "
              f"{counts['open']} open, {counts['closed']} closed, {counts['filtered']} filtered; "
              f"{seed}{shard}; {tm.name} timing, concurrency "
              f"{info.get('concurrency', tm.concurrency)}{workers}", file=sys.stderr)
    if info.get("interrupted"):
        return 130
    return 1 if info.get("failed") else 0
