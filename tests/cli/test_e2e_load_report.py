"""The load report's new fields through the command line (whatever engine
``cypoe load`` runs): present, JSON-safe, and the counts add up."""
import json

from .conftest import run_cli, serving


def test_report_fields_through_the_cli(tmp_path):
    out = tmp_path / "r.json"
    with serving("echo", "--filter", "line") as srv:
        proc = run_cli("load", f"127.0.0.1:{srv.port}", "-q", "-d", "1", "-c", "4", "-m", "hi",
                       "--json", out, check_rc=0)
    d = json.loads(out.read_text())
    assert d["requests"] > 0
    assert d["requests"] == d["responses"] + d["failed"] + d["in_flight"]
    lat = d["latency_ms"]
    assert lat["p50"] <= lat["p75"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] \
        <= lat["p99.99"] <= lat["max"]
    assert lat["mean"] > 0 and lat["stdev"] >= 0
    assert not (d["limits"] or {}).get("capped_by")    # 4 connections: within every limit
    assert isinstance(d["warnings"], list) and isinstance(d["history"], list)
    assert "latency_uncorrected_ms" not in d  # closed loop
    assert "p99.99" in proc.stdout and "in flight at stop" in proc.stdout
