"""The ``cypoe`` command: ``load``, ``scan``, ``serve``, ``bench``.

``main(argv=None) -> int`` is the console script's entry point (and
``python -m cypoe``'s).  Each command lives in its own module with
``add_parser(subparsers)`` and ``run(args) -> int``; the parsers import
nothing of the network layers, so ``--help`` and argument errors never
need the compiled core.  Bad arguments print a usage message and give exit
code 2, as argparse does.  A closed standard output (``cypoe … | head -1``)
ends any command quietly with 141, as SIGPIPE ends other Unix tools
(:func:`cypoe.cli.common.run_guarded`).
"""
import argparse
import signal
import sys

from cypoe.cli import bench, common, load, scan, serve

COMMANDS = {"load": load, "scan": scan, "serve": serve, "bench": bench}


def _version():
    try:
        from importlib.metadata import version
        return version("cypoe")
    except Exception:
        return "0.1.0"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="cypoe",
        description="cypoe's tools: a load generator, a TCP port scanner and banner "
                    "grabber, small test servers and the comparison benchmarks.",
        epilog="`cypoe COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"cypoe {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in ("load", "scan", "serve", "bench"):
        p = COMMANDS[name].add_parser(sub)
        p.set_defaults(_run=COMMANDS[name].run, _parser=p)
    return parser


def main(argv=None):
    """Run the command line; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Ctrl-C stops every command and reports what it did.  A process that a
    # shell without job control started in the background inherits SIGINT
    # ignored: the kernel's own handling stops local runs anyway, and this
    # gives the commands that wait outside the loop (the cluster client, in
    # Dask calls) the same KeyboardInterrupt.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # The command's own parser reports what it does not know, with its
        # usage (argparse would have the top-level parser say it).
        args, extras = parser.parse_known_args(argv)
        if getattr(args, "_run", None) is None:
            if extras:
                parser.error(f"unrecognized arguments: {' '.join(extras)}")
            parser.print_usage(sys.stderr)
            print("cypoe: error: a command is required (load, scan, serve or bench)",
                  file=sys.stderr)
            return 2
        tail = argv[argv.index(args.command) + 1:] if args.command in argv else argv
        check = getattr(COMMANDS[args.command], "check_argv", None)
        problem = check(tail) if check is not None else None
        if problem:
            args._parser.error(problem)
        if extras:
            args._parser.error(f"unrecognized arguments: {' '.join(extras)}")
        args._argv = tail
        return int(common.run_guarded(lambda: args._run(args)) or 0)
    except SystemExit as exc:  # argparse: --help (0), bad arguments (2)
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
