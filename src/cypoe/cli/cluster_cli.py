"""``--cluster`` for ``cypoe scan`` and ``cypoe load``: the options, and
the commands' runs on a Dask cluster (:mod:`cypoe.cluster`).

The options import nothing (``--help`` stays fast); ``distributed`` is
imported only when a run asks for a cluster.
"""
import argparse
import os
import sys
import time

from cypoe.cli import common

DEFAULT_RETRIES = 2
DEFAULT_SHARDS_PER_AGENT = 8


def add_arguments(p, kind):
    """The cluster options of ``cypoe scan`` (kind "scan") or ``cypoe load``."""
    g = p.add_argument_group(
        "cluster", "run on a Dask cluster (pip install 'cypoe[cluster]'); see "
                   "'Running on a cluster' in the docs")
    g.add_argument("--cluster", metavar="ADDRESS", default=os.environ.get("CYPOE_CLUSTER") or None,
                   help="Dask scheduler (tcp://HOST:8786, tls://…, a scheduler file, or "
                        "'auto': Dask's scheduler-address); default $CYPOE_CLUSTER.  Workers "
                        "offering the resource cypoe=1 each run a share; --workers is then "
                        "processes per agent")
    if kind == "scan":
        g.add_argument("--cluster-retries", type=common.nonneg_int, default=DEFAULT_RETRIES,
                       metavar="N",
                       help="resubmit a shard that kills workers (KilledWorker) up to N times "
                            f"(default {DEFAULT_RETRIES}); then its --shards/--shard line is "
                            "printed to re-run it")
        g.add_argument("--cluster-shards", type=common.positive_int,
                       default=DEFAULT_SHARDS_PER_AGENT, metavar="N",
                       help=f"shards per agent (default {DEFAULT_SHARDS_PER_AGENT}): smaller "
                            "shards lose less work when a worker dies")
    else:
        g.add_argument("--cluster-retries", type=common.nonneg_int, default=0, metavar="N",
                       help=argparse.SUPPRESS)  # a load share is never re-run (it would be late)


def run_scan(args):
    """``cypoe scan --cluster``: as :func:`cypoe.cli.scan.run`, the shards on
    the cluster's agents."""
    from cypoe.cli import output, timing
    from cypoe.cli.scan import Progress, build_plan
    prog = "cypoe scan"
    parser = args._parser
    try:
        plan = build_plan(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.probe or args.tls:
        args.banners = True
    tm = timing.resolve(args.timing, args.concurrency, args.rate, args.timeout, args.retries)
    try:
        from cypoe import cluster
        client = cluster.connect(args.cluster)
    except Exception as exc:  # noqa: BLE001 - ClusterError, or the client's own
        common.err(prog, str(exc))
        return 1
    read_timeout = args.read_timeout if args.read_timeout is not None else max(1.0, tm.timeout)
    progress = None
    try:
        run = cluster.ScanRun(plan, tm, client, shards_per_agent=args.cluster_shards,
                              retries=args.cluster_retries, owns_client=True,
                              banners=args.banners, max_read=args.max_read,
                              read_timeout=read_timeout, tls=args.tls, sni=args.sni,
                              all_results=args.all_results, workers=args.workers)
    except cluster.ClusterError as exc:
        client.close()
        common.err(prog, str(exc))
        return 1
    out_fh = sys.stdout if args.output in (None, "-") else None
    if out_fh is None:
        try:
            out_fh = open(args.output, "w", encoding="utf-8", newline="")
        except OSError as exc:
            client.close()
            common.err(prog, f"{args.output}: {exc.strerror}")
            return 1
    meta = {"command": "cypoe scan " + " ".join(list(args.targets) + ["-p", args.ports])}
    writer = output.make_writer(args.format, out_fh, all_results=args.all_results, meta=meta)
    progress = Progress(plan.total, force=args.progress, quiet=args.quiet)
    shown = [0]

    def on_event(ev):
        if ev.get("kind") in ("progress", "done"):
            now = run.done_estimate
            if now > shown[0]:
                progress.update(now - shown[0])
                shown[0] = now
        elif ev.get("kind") == "resubmitted" and not args.quiet:
            common.err(prog, f"shard {ev['shard']} killed its workers: resubmitted "
                             f"(attempt {ev['attempt']})")

    run.on_event = on_event
    t0 = time.monotonic()
    error = None
    try:
        for rec in run:
            writer.write(rec)
    except cluster.ClusterError as exc:
        error = str(exc)
    finally:
        elapsed = time.monotonic() - t0
        progress.close()
        writer.close({"elapsed_s": elapsed})
        if out_fh is not sys.stdout:
            out_fh.close()
    if error:
        common.err(prog, error)
        return 1
    counts = run.counts
    if not args.quiet:
        done = sum(counts.values())
        rate = done / elapsed if elapsed > 0 else 0.0
        seed = f"seed {plan.seed}" if plan.seed is not None else "sequential order"
        shard = f", shard {plan.shard}/{plan.shards}" if plan.shards > 1 else ""
        stopped = " (interrupted)" if run.interrupted else ""
        if run.failed:
            stopped += f" ({len(run.failed)} shard(s) failed: see below)"
        print(f"{prog}: {done}/{plan.total} probes in {elapsed:.2f} s ({rate:.0f}/s){stopped}: "
              f"{counts['open']} open, {counts['closed']} closed, {counts['filtered']} filtered; "
              f"{seed}{shard}; {tm.name} timing; cluster of {len(run.agents)} agent(s), "
              f"{run.shards} shards, {run.resubmitted} resubmitted", file=sys.stderr)
    for f in run.failed:
        # always printed: the run is incomplete without them
        common.err(prog, f"shard {f['shard']} of {f['shards']} failed ({f['reason']}); "
                         f"re-run it with: {f['rerun']}")
    if run.interrupted:
        return 130
    return 1 if run.failed else 0


def run_load(args, cfg):
    """``cypoe load --cluster``: one share per agent, one start, one report.
    ``cfg`` is the whole run's :class:`~cypoe.cli.load.Config`, built by
    ``cypoe load`` from the same arguments as a local run."""
    from cypoe.cli import report
    prog = "cypoe load"
    try:
        from cypoe import cluster
        client = cluster.connect(args.cluster)
    except Exception as exc:  # noqa: BLE001
        common.err(prog, str(exc))
        return 1
    live = cluster.LiveTotal(sys.stderr, args.quiet)
    try:
        try:
            run = cluster.LoadRun(cfg, client, workers=args.workers, live=live)
            stats, per_agent, interrupted = run.run()
        finally:
            client.close()
    except cluster.ClusterError as exc:
        common.err(prog, str(exc))
        return 1
    summary = cluster.summarize(run, stats, per_agent, interrupted, per_agent=bool(args.json))
    print(report.format_report(summary))
    cl = summary["cluster"]
    skew = f", set up in {cl['setup_s']:.2f} s" if cl["setup_s"] is not None else ""
    skew += f", start skew {cl['start_skew_ms']:.1f} ms" if cl["start_skew_ms"] is not None else ""
    print(f"  cluster      {cl['agents']} agent(s) × {cl['workers_per_agent']} process(es){skew}"
          + (f", {cl['lost']} share(s) lost" if cl["lost"] else ""))
    for a in per_agent:
        if a["status"] not in ("ok", "interrupted"):
            common.err(prog, f"agent {a['agent']} ({a.get('worker', '?')}): {a['status']}: "
                             f"{a.get('reason', '')}; its share "
                             f"({a['share']['connections']} connections) did not run")
    if args.json and not common.write_json_report(prog, args.json, summary):
        return 1
    if interrupted:
        return 130
    if cl["lost"]:
        return 1
    if stats.responses == 0 and stats.error_total:
        return 1
    return 0
