"""Shared benchmark plumbing: ratio reports against the peers.

Every benchmark sets ``benchmark.group`` (one workload) and
``benchmark.extra_info["impl"]`` (``"cypoe"``, ``"asyncio"``, ``"uvloop"``,
``"twisted"``, ``"reference"``, ...).  At the end of the run this prints, for
each group, every implementation's median time and its ratio to cypoe's
(``peer / cypoe``: above 1 means cypoe is faster), and writes the same table
to ``bench/.ratios.json`` for the closing notes.
"""
import json
import os
import sys

import pytest

_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path and any(
        n.startswith("_kernel") for n in os.listdir(os.path.join(_SRC, "cypoe"))):
    sys.path.insert(0, _SRC)

BASELINE = "cypoe"


def ratio_table(benchmarks):
    groups = {}
    for bench in benchmarks:
        impl = bench.extra_info.get("impl") or bench.name
        stats = bench.stats
        median = getattr(stats, "median", None)
        if median is None:
            median = stats["median"]
        groups.setdefault(bench.group or bench.name, []).append((impl, median, bench.extra_info))
    rows = []
    for group, items in sorted(groups.items()):
        base = [m for impl, m, _ in items if impl == BASELINE]
        for impl, median, extra in sorted(items, key=lambda x: x[1]):
            ratio = (median / base[0]) if base and base[0] > 0 else None
            rows.append({"group": group, "impl": impl, "median_s": median,
                         "ratio_vs_cypoe": ratio,
                         **{k: v for k, v in extra.items() if k != "impl"}})
    return rows


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    rows = ratio_table(session.benchmarks)
    tr = terminalreporter
    tr.section("cypoe ratios (peer median / cypoe median; > 1: cypoe faster)")
    current = None
    for row in rows:
        if row["group"] != current:
            current = row["group"]
            tr.write_line(f"{current}")
        ratio = row["ratio_vs_cypoe"]
        rtxt = f"{ratio:8.2f}x" if ratio is not None else "     n/a"
        tr.write_line(f"    {row['impl']:<28} {row['median_s'] * 1e3:12.3f} ms  {rtxt}")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".ratios.json")
    try:
        old = json.load(open(out)) if os.path.exists(out) else []
    except ValueError:
        old = []
    groups = {r["group"] for r in rows}
    merged = [r for r in old if r.get("group") not in groups] + rows
    with open(out, "w") as fh:
        json.dump(merged, fh, indent=1)


@pytest.fixture
def impl(benchmark):
    """Tag a benchmark: ``impl("uvloop")``."""
    def tag(name, group=None):
        benchmark.extra_info["impl"] = name
        if group is not None:
            benchmark.group = group
    return tag
