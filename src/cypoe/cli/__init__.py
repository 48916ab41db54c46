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
    try:
        args = parser.parse_args(argv)
        if getattr(args, "_run", None) is None:
            parser.print_usage(sys.stderr)
            print("cypoe: error: a command is required (load, scan, serve or bench)",
                  file=sys.stderr)
            return 2
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
