"""``cypoe bench``: run the comparison benchmarks and print the ratios.

Runs the pytest-benchmark suites of ``bench/`` (a source checkout's; or
``--bench-dir``) on loopback, against the peers that are installed
(asyncio always; uvloop and Twisted when importable), and prints, for each
workload, every implementation's median and its ratio to cypoe's (peer /
cypoe: above 1 means cypoe is faster).  The table is computed by
``ratio_table`` in ``bench/conftest.py``, the same code that writes the
ratios at the end of a plain ``pytest bench`` run.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import types

from cypoe.cli import common

EXAMPLES = """\
examples:
  cypoe bench --quick                  a short run of every suite
  cypoe bench -k kernel                the kernel suite only
  cypoe bench --json ratios.json       keep the table
"""


def add_parser(sub):
    p = sub.add_parser(
        "bench", help="run the comparison benchmarks (asyncio, uvloop, Twisted) and print ratios",
        description="Run cypoe's benchmark suites against the peers installed here and print "
                    "a table of ratios (peer median / cypoe median; above 1: cypoe is faster).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a short run: one round per benchmark, no warm-up, slow ones left out")
    p.add_argument("-k", dest="keyword", metavar="EXPR",
                   help="only benchmarks matching this pytest -k expression")
    p.add_argument("--bench-dir", metavar="DIR",
                   help="the benchmark suites (default: bench/ of this source checkout)")
    p.add_argument("--json", metavar="FILE", help="write the ratio table as JSON to FILE")
    p.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output")
    return p


def find_bench_dir(explicit=None):
    if explicit:
        return explicit if os.path.isfile(os.path.join(explicit, "conftest.py")) else None
    here = os.path.dirname(os.path.abspath(__file__))
    for up in (3, 2, 4):
        cand = os.path.join(here, *([os.pardir] * up), "bench")
        cand = os.path.normpath(cand)
        if os.path.isfile(os.path.join(cand, "conftest.py")):
            return cand
    cand = os.path.join(os.getcwd(), "bench")
    return cand if os.path.isfile(os.path.join(cand, "conftest.py")) else None


def peers():
    out = ["asyncio"]
    for mod in ("uvloop", "twisted"):
        if importlib.util.find_spec(mod) is not None:
            out.append(mod)
    return out


def load_ratio_table(bench_dir):
    spec = importlib.util.spec_from_file_location("_cypoe_bench_conftest",
                                                  os.path.join(bench_dir, "conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ratio_table


def rows_from_json(data, ratio_table):
    """pytest-benchmark's JSON -> ratio rows (through bench/conftest.py)."""
    benches = [types.SimpleNamespace(name=b.get("name"), group=b.get("group"),
                                     extra_info=b.get("extra_info") or {}, stats=b["stats"])
               for b in data.get("benchmarks", [])]
    return ratio_table(benches)


def format_table(rows):
    lines = [f"{'workload / implementation':<44} {'median':>12} {'ratio':>9}"]
    current = None
    for row in rows:
        if row["group"] != current:
            current = row["group"]
            lines.append(str(current))
        ratio = row["ratio_vs_cypoe"]
        rtxt = f"{ratio:8.2f}x" if ratio is not None else "      n/a"
        lines.append(f"    {row['impl']:<40} {row['median_s'] * 1e3:9.3f} ms {rtxt}")
    return "\n".join(lines)


def run(args):
    prog = "cypoe bench"
    bench_dir = find_bench_dir(args.bench_dir)
    if bench_dir is None:
        common.err(prog, "no benchmark suites found: run it from a source checkout "
                         "or give --bench-dir DIR")
        return 1
    if importlib.util.find_spec("pytest_benchmark") is None:
        common.err(prog, "pytest-benchmark is not installed (pip install 'cypoe[bench]')")
        return 1
    fd, json_path = tempfile.mkstemp(prefix="cypoe-bench-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "pytest", bench_dir, "--benchmark-only",
           f"--benchmark-json={json_path}", "-p", "no:cacheprovider",
           "--rootdir", os.path.dirname(bench_dir), "-o", "addopts="]
    env = dict(os.environ)
    if args.quick:
        cmd += ["--benchmark-min-rounds=1", "--benchmark-max-time=0.05",
                "--benchmark-warmup=off", "-m", "not slow"]
        env["CYPOE_BENCH_QUICK"] = "1"
    if args.keyword:
        cmd += ["-k", args.keyword]
    cmd += ["-q"] if args.verbose else ["-q", "--no-header", "--benchmark-disable-gc"]
    print(f"{prog}: peers here: {', '.join(peers())}; suites: {bench_dir}", file=sys.stderr)
    try:
        proc = subprocess.run(cmd, env=env, cwd=os.path.dirname(bench_dir),
                              stdout=None if args.verbose else subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        try:
            with open(json_path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            data = {"benchmarks": []}
    finally:
        os.unlink(json_path)
    if proc.returncode not in (0,) and not data.get("benchmarks"):
        if proc.stdout:
            sys.stderr.write(proc.stdout[-4000:])
        common.err(prog, f"the benchmarks failed (pytest exit {proc.returncode})")
        return 1
    rows = rows_from_json(data, load_ratio_table(bench_dir))
    print("ratios: peer median / cypoe median (above 1: cypoe is faster)")
    print(format_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    if proc.returncode != 0:
        if proc.stdout:
            sys.stderr.write(proc.stdout[-4000:])
        common.err(prog, f"some benchmarks failed (pytest exit {proc.returncode})")
        return 1
    return 0
