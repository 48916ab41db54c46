"""Where --cluster comes from, without a cluster."""
import pytest

from cypoe import cluster
from cypoe.cli import build_parser


def test_cypoe_cluster_variable_turns_it_on(monkeypatch):
    monkeypatch.setenv("CYPOE_CLUSTER", "tcp://127.0.0.1:8786")
    for cmd in ("scan", "load"):
        args = build_parser().parse_args([cmd, "127.0.0.1:1"])
        assert args.cluster == "tcp://127.0.0.1:8786"
    monkeypatch.delenv("CYPOE_CLUSTER")
    assert build_parser().parse_args(["scan", "127.0.0.1"]).cluster is None


def test_auto_is_dasks_scheduler_address(monkeypatch):
    import dask.config
    monkeypatch.delenv("CYPOE_CLUSTER", raising=False)
    with dask.config.set({"scheduler-address": "tcp://127.0.0.1:8786"}):
        assert cluster.resolve_address("auto") == "tcp://127.0.0.1:8786"
        assert cluster.resolve_address(None) == "tcp://127.0.0.1:8786"
        assert cluster.resolve_address("tcp://127.0.0.2:9") == "tcp://127.0.0.2:9"
    with dask.config.set({"scheduler-address": None}):
        with pytest.raises(cluster.ClusterError, match="no cluster address"):
            cluster.resolve_address("auto")


def test_the_cluster_options_cost_no_import():
    """--help and the parsers never import distributed."""
    import subprocess
    import sys

    from tests.cluster.conftest import SRC
    code = ("import sys; from cypoe.cli import build_parser; "
            "build_parser().parse_args(['scan', '127.0.0.1', '--cluster', 'x']); "
            "print('distributed' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": SRC}, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
