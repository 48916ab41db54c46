"""Scan result writers: every format parses back (no network)."""
import io
import json

import pytest

from cypoe.cli import output


TS = "2026-01-02T03:04:05.678Z"


def _results():
    return [dict(r, timestamp=TS) for r in [
        output.make_result("127.0.0.1", 22, "open", "success", rtt=0.0012,
                           banner=b"SSH-2.0-OpenSSH_9.6\r\n"),
        output.make_result("127.0.0.1", 23, "closed", "connection-refused"),
        output.make_result("10.0.0.9", 80, "filtered", "connection-timeout"),
        output.make_result("::1", 8080, "open", "success", banner=b"\xff\xfe binary,\"quoted\"\n"),
        output.make_result("::1", 9, "open", "io-timeout", banner=b""),
    ]]


def _write(fmt, all_results):
    buf = io.StringIO()
    w = output.make_writer(fmt, buf, all_results=all_results)
    for r in _results():
        w.write(r)
    w.close({"elapsed_s": 1.5})
    return buf.getvalue()


def test_result_fields_and_vocabulary():
    r = _results()[0]
    assert r["status"] in output.STATUSES and r["state"] == "open"
    assert r["connect_ms"] == 1.2 and "rtt_ms" not in r and r["protocol"] == "tcp"
    assert r["timestamp"].endswith("Z")
    with pytest.raises(ValueError):
        output.make_result("1.2.3.4", 1, "open", "timeout")  # not zgrab2's word
    with pytest.raises(ValueError):
        output.make_result("1.2.3.4", 1, "up", "success")


@pytest.mark.parametrize("all_results", [False, True])
def test_jsonl_round_trip(all_results):
    recs = output.parse_jsonl(_write("jsonl", all_results))
    expected = [r for r in _results() if all_results or r["state"] == "open"]
    assert recs == json.loads(json.dumps(expected))
    bin_rec = [r for r in recs if r["port"] == 8080][0]
    assert output.banner_bytes(bin_rec) == b"\xff\xfe binary,\"quoted\"\n"
    assert output.banner_bytes(recs[0]) == b"SSH-2.0-OpenSSH_9.6\r\n"


@pytest.mark.parametrize("all_results", [False, True])
def test_csv_round_trip(all_results):
    rows = output.parse_csv(_write("csv", all_results))
    expected = [r for r in _results() if all_results or r["state"] == "open"]
    assert [(r["ip"], r["port"], r["state"], r["status"]) for r in rows] == \
        [(r["ip"], r["port"], r["state"], r["status"]) for r in expected]
    assert rows[0]["banner"] == "SSH-2.0-OpenSSH_9.6\r\n"
    b = [r for r in rows if r["port"] == 8080][0]
    assert output.banner_bytes(b) == b"\xff\xfe binary,\"quoted\"\n"


def test_csv_escapes_control_bytes_as_json_does():
    """A banner's NUL and control bytes never reach the CSV raw (issue 11,
    item 18): they are escaped as JSON escapes them, and parse back."""
    raw = b"\x00ab\x01\x1b[0m\x7f\tend\r\n\\x41 \xc2\x85 caf\xc3\xa9"
    rec = dict(output.make_result("127.0.0.1", 7, "open", "success", banner=raw), timestamp=TS)
    buf = io.StringIO()
    w = output.make_writer("csv", buf)
    w.write(rec)
    w.close()
    text = buf.getvalue()
    body = text.split("\n", 1)[1]
    assert body.count("\n") == 1 and body.endswith("\n")     # one line per record
    assert not any((ord(c) < 32 and c != "\n") or 0x7f <= ord(c) <= 0x9f for c in text)
    assert "\\u0000ab\\u0001\\u001b[0m\\u007f\\tend\\r\\n" in text
    assert "café" in text                                       # text stays text
    row = output.parse_csv(text)[0]
    assert row["banner"] == rec["banner"]
    assert output.banner_bytes(row) == raw


def test_list_round_trip():
    text = _write("list", False)
    assert text.startswith("#cypoe\n") and text.endswith("# end\n")
    rows = output.parse_list(text)
    assert [(r["state"], r["ip"], r["port"]) for r in rows] == [
        ("open", "127.0.0.1", 22), ("open", "::1", 8080), ("open", "::1", 9)]
    rows = output.parse_list(_write("list", True))
    assert len(rows) == 5 and {r["state"] for r in rows} == {"open", "closed", "filtered"}


def test_grepable_round_trip():
    text = _write("grepable", False)
    hosts = output.parse_grepable(text)
    assert hosts == {"127.0.0.1": {22: "open"}, "10.0.0.9": {}, "::1": {8080: "open", 9: "open"}}
    line = [ln for ln in text.splitlines() if ln.startswith("Host: 127.0.0.1")][0]
    assert "22/open/tcp//ssh///" in line and "Ignored State: closed (1)" in line
    assert text.splitlines()[-1].startswith("# cypoe done")
    hosts = output.parse_grepable(_write("grepable", True))
    assert hosts["127.0.0.1"] == {22: "open", 23: "closed"}


def test_unknown_format():
    with pytest.raises(ValueError):
        output.make_writer("yaml", io.StringIO())
