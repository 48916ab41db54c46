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

from cypoe.cli import common, html, order, output, ports as portspec, targets as targetspec, timing
from cypoe.cli import cluster_cli  # --cluster (imports no distributed)

DEFAULT_MAX_READ = 96 * 1024

EXAMPLES = """\
examples:
  cypoe scan 127.0.0.1 -p-                      every port of this machine
  cypoe scan 10.0.0.0/24 -p 22,80,443 -T4 -o out.jsonl
  cypoe scan -iL hosts.txt --exclude 10.0.0.5 --top-ports 100 --max-rate 5000
  cypoe scan 192.0.2.1-20 -p 21,22,25 --banners -oA run1
  cypoe scan example.internal -p 80 --probe 'HEAD / HTTP/1.0\\r\\n\\r\\n'
  cypoe scan 10.0.0.0/16 -p 443 --tls --seed 7 --shards 1/4 --metadata-file m.json
  cypoe scan 10.0.0.0/8 -p 22 --resume paused.json     after a Ctrl-C that saved it

nmap's -Pn, -n and -sT are accepted and are what cypoe always does: it pings
nothing first, makes no reverse DNS lookups and makes TCP connect scans.
"""

# -oX FILE etc.: nmap's output options -> cypoe's format names
NMAP_OUTPUTS = {"-oN": "normal", "-oG": "grepable", "-oX": "xml", "-oL": "list", "-oJ": "jsonl"}
OUTPUT_SUFFIXES = {"normal": ".nmap", "grepable": ".gnmap", "xml": ".xml"}


def check_argv(argv):
    """What argparse cannot say about ``cypoe scan``'s arguments: an
    nmap-style option cypoe does not know (``-oZ`` would otherwise parse
    as ``-o Z``, ``-sS`` as ``-s S``).  Returns an error message or None."""
    for a in argv:
        if a == "--":
            break
        # (-oFILE, -o with its value attached, stays what it was)
        if len(a) == 3 and a.startswith("-o") and a[2].isalpha() \
                and a not in NMAP_OUTPUTS and a != "-oA":
            return (f"unknown output option {a} (nmap's -oN, -oG, -oX, -oA, masscan's "
                    f"-oL, -oJ; or -o FILE --format F)")
        if len(a) == 3 and a.startswith("-s") and a not in ("-sT", "-sL"):
            return (f"{a}: cypoe makes TCP connect scans only (-sT) and lists targets "
                    f"(-sL); raw-packet scans need nmap or masscan")
    return None


def rate_value(text):
    """--rate N: new connections per second; 0 means unlimited."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return x


def shards_value(text):
    """--shards N, or masscan's X/Y (shard X of Y, 1-based) -> (N, I or None)."""
    if "/" in text:
        x, _, y = text.partition("/")
        try:
            x, y = int(x), int(y)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not X/Y: {text!r}") from None
        if y < 1 or not 1 <= x <= y:
            raise argparse.ArgumentTypeError(
                f"X/Y takes 1 <= X <= Y (masscan's 1-based form), not {text}")
        return (y, x - 1)
    return (common.positive_int(text), None)


def shard_value(text):
    if "/" in text:
        return shards_value(text)
    return (None, common.nonneg_int(text))


def add_parser(sub):
    p = sub.add_parser(
        "scan", help="TCP connect scan and banner grab",
        description="Connect to every (address, port) of the targets and report which "
                    "ports are open; with --banners, also what they say.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False)
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
    t.add_argument("-p", "--ports", default=None, metavar="PORTS",
                   help="ports: 22,80,8000-8100; '-p-' for 1-65535 (default: the "
                        f"{portspec.DEFAULT_TOP} most common TCP ports, as --top-ports)")
    t.add_argument("--top-ports", type=common.positive_int, metavar="N",
                   help="the N most common TCP ports (nmap's frequencies when nmap is "
                        "installed, else cypoe's own ranking; see --port-ranking)")
    t.add_argument("--port-ranking", choices=portspec.RANKINGS, default="auto",
                   help="what ranks ports for --top-ports and the default set: nmap "
                        "(nmap-services), builtin (cypoe's), auto (nmap's when installed)")
    t.add_argument("-Pn", dest="no_ping", action="store_true",
                   help="scan every target without host discovery: what cypoe always does")
    t.add_argument("-n", dest="no_dns", action="store_true",
                   help="no reverse DNS: cypoe never makes reverse lookups (host names "
                        "given as targets are still resolved)")
    t.add_argument("-sT", dest="connect_scan", action="store_true",
                   help="TCP connect scan: the only kind cypoe makes")
    t.add_argument("-sL", "--dryrun", dest="dryrun", action="store_true",
                   help="list what would be scanned (the addresses, and with -v every "
                        "address and port in scan order) and scan nothing")

    s = p.add_argument_group("speed")
    s.add_argument("-T", dest="timing", type=int, choices=range(6), metavar="0-5",
                   help="timing template as in nmap (default 3): sets concurrency, "
                        "rate, timeout and retries")
    s.add_argument("--rate", "--max-rate", dest="rate", type=rate_value, metavar="N",
                   help="new connections per second at most (0: unlimited; default "
                        "off loopback: 1000/s at -T3, 5000/s at -T4, 20000/s at -T5; on "
                        "loopback: as fast as the concurrency allows)")
    s.add_argument("--min-rate", type=common.positive_float, metavar="N",
                   help="never limit the rate below N connections per second (raises "
                        "the default or -T rate to N)")
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

    o = p.add_argument_group("order, sharding and resuming")
    o.add_argument("--seed", type=int, metavar="N",
                   help="seed of the random order (default: a random seed, printed at the end)")
    o.add_argument("--sequential", action="store_true",
                   help="scan in address/port order instead of a random one")
    o.add_argument("--shards", type=shards_value, default=None, metavar="N|X/Y",
                   help="split the scan into N shards (give every shard the same targets, "
                        "ports and --seed); masscan's X/Y: shard X of Y, 1-based")
    o.add_argument("--shard", type=shard_value, default=None, metavar="I|X/Y",
                   help="which shard this is, 0-based as in zmap (default 0); X/Y as --shards")
    o.add_argument("--resume", metavar="FILE",
                   help="continue the interrupted scan whose state FILE holds (Ctrl-C "
                        "saves it: to --resume-file, default paused.json); the targets, "
                        "ports and order come from FILE")
    o.add_argument("--resume-file", metavar="FILE", default=None,
                   help="where Ctrl-C saves the state of the scan (default paused.json, "
                        "as masscan's paused.conf)")

    w = p.add_argument_group("output")
    w.add_argument("-o", "--output", metavar="FILE", help="write results to FILE ('-': stdout, the default)")
    w.add_argument("--format", choices=output.FORMATS, default="jsonl",
                   help="of -o: jsonl (default), csv, list (masscan -oL), grepable (nmap -oG), "
                        "normal (nmap -oN), xml (nmap -oX)")
    for opt, fmt in NMAP_OUTPUTS.items():
        w.add_argument(opt, dest="outputs", action="append", default=[], metavar="FILE",
                       type=lambda path, fmt=fmt: (fmt, path),
                       help={"normal": "nmap's normal output to FILE",
                             "grepable": "nmap's grepable output to FILE",
                             "xml": "nmap's XML output to FILE",
                             "list": "masscan's list output to FILE",
                             "jsonl": "JSON Lines to FILE (masscan's -oJ; one record a line)"}[fmt])
    w.add_argument("-oA", dest="output_all", metavar="BASENAME",
                   help="nmap's three: BASENAME.nmap, BASENAME.gnmap and BASENAME.xml")
    w.add_argument("--metadata-file", metavar="FILE",
                   help="write the scan's metadata as JSON to FILE at the end (zmap/zgrab2): "
                        "seed, shard, targets, ports, start/end, counts by status, version, "
                        "arguments")
    w.add_argument("--all", dest="all_results", action="store_true",
                   help="write closed and filtered ports too (default: open ones only)")
    w.add_argument("--open", dest="open_only", action="store_true",
                   help="only open ports (the default; overrides --all)")
    w.add_argument("-v", "--verbose", action="count", default=0,
                   help="say each open port on stderr as it is found")
    w.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress on stderr even when it is not a terminal")
    w.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary on stderr")
    w.add_argument("--html", metavar="FILE",
                   help="also write a self-contained HTML report (counts, open ports by host, "
                        "progress over time) to FILE")
    cluster_cli.add_arguments(p, "scan")
    return p


class Plan:
    """What a scan does: the targets × ports index space, this shard's part
    of it in its order, and the per-port probes."""

    def __init__(self, targets, ports, *, seed=None, shards=1, shard=0, probes=None,
                 start=0, pending=()):
        self.targets = targets
        self.ports = list(ports)
        self.nports = len(self.ports)
        self.space = targets.count() * self.nports
        order.check_shard(shards, shard)
        self.shards, self.shard, self.seed = shards, shard, seed
        self.total = order.shard_size(self.space, shards, shard)
        self.probes = probes or {}
        # a resumed scan: the walk from `start` on, after the `pending`
        # probes ([(index, tries)]) the interrupted one had not finished
        if not 0 <= start <= self.total:
            raise ValueError(f"resume position {start} is outside the scan (0..{self.total})")
        self.start = start
        self._cache = {}
        self.pending = [(int(i), int(t)) for i, t in pending]
        for i, _ in self.pending:
            if not (0 <= i < self.space and i % shards == shard):
                raise ValueError(f"pending probe {i} is not of this scan's shard")

    @property
    def remaining(self):
        """Probes this plan makes: its pending ones and the walk from start."""
        return self.total - self.start + len(self.pending)

    def indices(self):
        """This shard's indices in order, from ``start`` on (the pending
        ones not included)."""
        return order.shard_order(self.space, self.shards, self.shard, self.seed, self.start)

    def items(self):
        """(address, port, version) for each index of this shard, in order
        (the pending ones not included)."""
        return self.items_of(self.indices())

    def item(self, idx):
        """(address, port, version) of one index."""
        t, pi = divmod(idx, self.nports)
        cache = self._cache
        hit = cache.get(t)
        if hit is None:
            if len(cache) > 4096:
                cache.clear()
            hit = cache[t] = (self.targets[t], self.targets.version_at(t))
        return hit[0], self.ports[pi], hit[1]

    def items_of(self, indices):
        targets, ports, n = self.targets, self.ports, self.nports
        cache = {}
        for idx in indices:
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


def select_ports(args):
    """The sorted port list of ``-p`` or ``--top-ports`` (default: the
    top :data:`ports.DEFAULT_TOP`), and the ranking that chose them
    (None for ``-p``)."""
    if args.ports is not None and args.top_ports is not None:
        raise ValueError("-p and --top-ports are two ways to give the ports: use one")
    if args.ports is not None:
        return portspec.parse_ports(args.ports), None
    return portspec.top_ports(args.top_ports or portspec.DEFAULT_TOP, args.port_ranking)


def shard_of(args):
    """(shards, shard) from --shards N|X/Y and --shard I|X/Y."""
    shards, shard = 1, 0
    if args.shards is not None:
        shards, given = args.shards
        if given is not None:
            shard = given
    if args.shard is not None:
        n, i = args.shard
        if n is not None:
            if args.shards is not None and args.shards[0] != n:
                raise ValueError(f"--shards {args.shards[0]} and --shard {i + 1}/{n} disagree")
            shards = n
        shard = i
    return shards, shard


def build_targets(args):
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
    return targetspec.TargetSet(specs, exclude=excludes, family=args.family)


def build_plan(args):
    """Parse targets, ports, probes and order; errors raise ValueError with
    a message for the usage line."""
    tset = build_targets(args)
    ports, ranking = select_ports(args)
    probes = parse_probes(args.probe)
    seed = None
    if not args.sequential:
        seed = args.seed if args.seed is not None else order.random_seed()
    shards, shard = shard_of(args)
    plan = Plan(tset, ports, seed=seed, shards=shards, shard=shard, probes=probes)
    plan.ranking = ranking
    return plan


# -- resuming -------------------------------------------------------------------

RESUME_FORMAT = 1
# what the resumed scan takes from the state file: everything that decides
# what is probed and how (the output options come from its own command line)
RESUMED_SETTINGS = ("timing", "rate", "min_rate", "concurrency", "timeout", "retries",
                    "banners", "probe", "max_read", "read_timeout", "tls", "sni")


def save_state(path, plan, args, parts, workers):
    """Write what an interrupted scan leaves: its targets (as address
    intervals, so that names are not resolved again), ports, seed, shard,
    the settings, and per worker the walk's position and the pending
    probes.  Written to a temporary file and renamed: never half a file."""
    import json
    import os
    state = {
        "cypoe_resume": RESUME_FORMAT,
        "version": common_version(),
        "targets": [[v, lo, hi] for v, lo, hi in plan.targets.intervals],
        "ports": portspec.format_ports(plan.ports),
        "seed": plan.seed, "shards": plan.shards, "shard": plan.shard,
        "workers": workers,
        "settings": {k: getattr(args, k) for k in RESUMED_SETTINGS},
        "parts": parts,
        "arguments": getattr(args, "_argv", None),
    }
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def load_state(path):
    import json
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    except OSError as exc:
        raise ValueError(f"--resume {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"--resume {path}: not a cypoe scan state ({exc})") from None
    if not isinstance(state, dict) or state.get("cypoe_resume") != RESUME_FORMAT:
        raise ValueError(f"--resume {path}: not a cypoe scan state")
    return state


def resumed_plans(args, state):
    """The plan of the whole scan and one per worker part, from a state."""
    if args.targets or args.input_list or args.ports or args.top_ports:
        raise ValueError("--resume takes the targets and ports from its file: give neither")
    tset = targetspec.TargetSet.from_intervals([tuple(iv) for iv in state["targets"]])
    ports = portspec.parse_ports(state["ports"])
    for k, v in state["settings"].items():
        setattr(args, k, v)
    probes = parse_probes(args.probe)
    whole = Plan(tset, ports, seed=state["seed"], shards=state["shards"], shard=state["shard"],
                 probes=probes)
    whole.ranking = None
    parts = [Plan(tset, ports, seed=state["seed"], shards=part["shards"], shard=part["shard"],
                  probes=probes, start=part["position"], pending=part["pending"])
             for part in state["parts"]]
    return whole, parts


def common_version():
    from cypoe.cli import _version
    return _version()


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


def output_targets(args):
    """[(format, path)] of every output option; default JSON Lines on
    stdout.  ``-`` is stdout (at most one output may be)."""
    outs = []
    if args.output_all:
        outs += [(fmt, args.output_all + suffix) for fmt, suffix in OUTPUT_SUFFIXES.items()]
    outs += list(args.outputs)
    if args.output is not None or not outs:
        outs.append((args.format, args.output if args.output is not None else "-"))
    if sum(path == "-" for _, path in outs) > 1:
        raise ValueError("only one output can go to stdout ('-')")
    return outs


def dry_run(args, plan, parts, tm, out=None):
    """-sL / --dryrun: the addresses (nmap's -sL), with -v every probe
    ``ADDRESS PORT`` in this shard's order; a summary on stderr."""
    out = out or sys.stdout
    if args.verbose:
        for p in parts or [plan]:
            for ip, port, _v in p.items_of(i for i, _ in p.pending):
                out.write(f"{ip} {port}\n")
            for ip, port, _v in p.items():
                out.write(f"{ip} {port}\n")
    else:
        for ip in plan.targets:
            out.write(ip + "\n")
    out.flush()
    if not args.quiet:
        probes = sum(p.remaining for p in parts) if parts else plan.total
        seed = f"seed {plan.seed}" if plan.seed is not None else "sequential order"
        shard = f", shard {plan.shard}/{plan.shards} (0-based)" if plan.shards > 1 else ""
        rate = f"{tm.rate:g}/s" if tm.rate else "unlimited rate"
        source = f" (top ports by {plan.ranking})" if getattr(plan, "ranking", None) else ""
        print(f"cypoe scan: dry run: {plan.targets.count()} addresses x {plan.nports} ports"
              f"{source} = {plan.space} probes, {probes} in this run; {seed}{shard}; "
              f"{tm.name} timing, concurrency {tm.concurrency}, {rate}", file=sys.stderr)
    return 0


def _status_counts(records_counts, other_counts):
    out = dict(records_counts)
    for status, n in other_counts.items():
        out[status] = out.get(status, 0) + n
    return dict(sorted(out.items()))


def run(args):
    if args.cluster:
        return cluster_cli.run_scan(args)
    prog = "cypoe scan"
    parser = args._parser
    parts = None
    try:
        if args.resume:
            state = load_state(args.resume)
            plan, parts = resumed_plans(args, state)
            workers = len(parts)
        else:
            plan = build_plan(args)
            workers = args.workers
        outs = output_targets(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.min_rate is not None and args.rate and args.min_rate > args.rate:
        parser.error(f"--min-rate ({args.min_rate:g}) is above --max-rate ({args.rate:g})")
    if args.probe or args.tls:
        args.banners = True
    loopback = plan.targets.all_loopback()
    tm = timing.resolve(args.timing, args.concurrency, args.rate, args.timeout, args.retries,
                        loopback=loopback, min_rate=args.min_rate)
    if workers > tm.concurrency:
        parser.error(f"--workers ({workers}) must not exceed the concurrency "
                     f"({tm.concurrency})")
    if args.dryrun:
        return dry_run(args, plan, parts, tm)
    try:
        from cypoe.cli import scan_engine
        scan_engine.check()
    except common.Unavailable as exc:
        common.err(prog, str(exc))
        return 1
    argv = getattr(args, "_argv", None)
    command = "cypoe scan " + (" ".join(argv) if argv is not None else
                               " ".join(list(args.targets) + ["-p", str(args.ports)]))
    meta = {"command": command, "version": common_version(), "nports": plan.nports,
            "ports_text": portspec.format_ports(plan.ports)}
    all_results = args.all_results and not args.open_only
    handles, writers = [], []
    try:
        for fmt, path in outs:
            if path == "-":
                fh = sys.stdout
            else:
                # a FIFO's reader may go away too: as for stdout, that ends the scan
                fh = common.ClosedPipeGuard(open(path, "w", encoding="utf-8", newline=""))
                handles.append(fh)
            writers.append(output.make_writer(fmt, fh, all_results=all_results, meta=meta))
    except OSError as exc:
        for fh in handles:
            fh.close()
        common.err(prog, f"{exc.filename}: {exc.strerror}")
        return 1
    writer = writers[0] if len(writers) == 1 else output.MultiWriter(writers)
    total = sum(p.remaining for p in parts) if parts else plan.total
    progress = Progress(total, force=args.progress, quiet=args.quiet)
    counts = {"open": 0, "closed": 0, "filtered": 0}
    statuses = {}
    other_statuses = {}
    verbose = args.verbose and not args.quiet

    def on_result(rec):
        counts[rec["state"]] += 1
        statuses[rec["status"]] = statuses.get(rec["status"], 0) + 1
        writer.write(rec)
        progress.update(1, rec["state"] == "open")
        if verbose and rec["state"] == "open":
            print(f"Discovered open port {rec['port']}/tcp on {rec['ip']}", file=sys.stderr)

    def on_other(state, n):  # closed or filtered ports the output does not show
        counts[state] += n
        # closed is always a refusal; filtered counted here is a timeout or
        # an error (the metadata file asks for every record to tell them apart)
        status = "connection-refused" if state == "closed" else "connection-timeout"
        other_statuses[status] = other_statuses.get(status, 0) + n
        progress.update(n)

    recorder = html.ScanRecorder() if args.html else None
    if recorder is not None:
        on_result, on_other = recorder.wrap(on_result, on_other)

    keep_others = writer.keeps_others or bool(args.metadata_file)
    read_timeout = args.read_timeout if args.read_timeout is not None else max(1.0, tm.timeout)
    t0 = time.monotonic()
    started = time.time()
    kw = dict(banners=args.banners, max_read=args.max_read, read_timeout=read_timeout,
              tls=args.tls, sni=args.sni, on_other=None if keep_others else on_other)
    info = {}
    try:
        if workers > 1:
            info = scan_engine.scan_workers(plan, tm, workers, on_result, plans=parts, **kw)
        else:
            run_plan = parts[0] if parts else plan
            info = scan_engine.scan(run_plan, tm, on_result, **kw)
            info["parts"] = [{"shards": run_plan.shards, "shard": run_plan.shard,
                              "position": info.get("position", 0),
                              "pending": info.get("pending", [])}]
    finally:
        elapsed = time.monotonic() - t0
        progress.close()
        exit_word = "interrupted" if info.get("interrupted") else "success"
        writer.close({"elapsed_s": elapsed, "exit": exit_word})
        for fh in handles:
            fh.close()
    ended = time.time()
    saved = None
    if info.get("interrupted"):
        saved = args.resume_file or "paused.json"
        try:
            save_state(saved, plan, args, info["parts"], workers)
        except OSError as exc:
            common.err(prog, f"could not save the scan's state to {saved}: {exc.strerror}")
            saved = None
    if args.metadata_file:
        write_metadata(args.metadata_file, plan, parts, tm, info, counts,
                       _status_counts(statuses, other_statuses), started, ended, argv,
                       saved, loopback)
    if not args.quiet:
        done = sum(counts.values())
        rate = done / elapsed if elapsed > 0 else 0.0
        seed = f"seed {plan.seed}" if plan.seed is not None else "sequential order"
        shard = f", shard {plan.shard}/{plan.shards}" if plan.shards > 1 else ""
        stopped = " (interrupted)" if info.get("interrupted") else ""
        if info.get("failed"):
            stopped += f" ({info['failed']} worker(s) failed: their share is incomplete)"
        workers_s = f", {workers} workers" if workers > 1 else ""
        print(f"{prog}: {done}/{total} probes in {elapsed:.2f} s ({rate:.0f}/s){stopped}: "
              f"{counts['open']} open, {counts['closed']} closed, {counts['filtered']} filtered; "
              f"{seed}{shard}; {tm.name} timing, concurrency "
              f"{info.get('concurrency', tm.concurrency)}{workers_s}", file=sys.stderr)
        if saved:
            print(f"{prog}: state saved to {saved}; continue with: cypoe scan --resume {saved}",
                  file=sys.stderr)
    if recorder is not None:
        problem = recorder.write(args.html, counts, seed=plan.seed, elapsed_s=round(elapsed, 3),
                                 interrupted=bool(info.get("interrupted")),
                                 status_counts=_status_counts(statuses, other_statuses))
        if problem:
            common.err(prog, problem)
            return 1
    if info.get("interrupted"):
        return 130
    return 1 if info.get("failed") else 0


def write_metadata(path, plan, parts, tm, info, counts, statuses, started, ended, argv,
                   saved, loopback):
    """zmap's --metadata-file, in JSON: what was scanned, how, when, and
    what came of it."""
    import datetime
    import json

    def iso(t):
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")

    meta = {
        "scanner": "cypoe",
        "cypoe_version": common_version(),
        "arguments": argv,
        "start_time": iso(started),
        "end_time": iso(ended),
        "duration_s": round(ended - started, 3),
        "seed": plan.seed,
        "shards": plan.shards,
        "shard": plan.shard,
        "workers": len(parts) if parts else max(1, info.get("workers") or 1),
        "targets": {"count": plan.targets.count(),
                    "ranges": [[_addr(v, lo), _addr(v, hi)] for v, lo, hi in plan.targets.intervals],
                    "loopback": loopback},
        "ports": {"count": plan.nports, "list": portspec.format_ports(plan.ports),
                  "ranking": getattr(plan, "ranking", None)},
        "probes": {"space": plan.space, "this_shard": plan.total,
                   "this_run": sum(p.remaining for p in parts) if parts else plan.total,
                   "done": sum(counts.values())},
        "timing": {"template": tm.name, "concurrency": tm.concurrency, "rate": tm.rate,
                   "timeout_s": tm.timeout, "retries": tm.retries},
        "counts_by_state": counts,
        "counts_by_status": statuses,
        "interrupted": bool(info.get("interrupted")),
        "resume_file": saved,
        "resumed": parts is not None,
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")


def _addr(version, value):
    import ipaddress
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))
