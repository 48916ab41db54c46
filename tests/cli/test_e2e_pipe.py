"""A closed standard output (``cypoe … | head -1``) stops a command quietly,
as it stops other Unix tools: no traceback, exit status 141 (128 + SIGPIPE,
what a shell reports for a tool that SIGPIPE ended), and with ``--workers``
the workers stop too (issue 11, item 13)."""
import subprocess
import sys

import pytest

from .conftest import ENV


def _first_line_then_close(args, timeout=120):
    """Run ``python -m cypoe ARGS``, read one line of its stdout, close the
    pipe (as ``head -1`` does); returns (first line, exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "cypoe", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline()
        proc.stdout.close()
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return first, proc.returncode, err.decode("utf-8", "replace")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_scan_into_a_closed_pipe_stops_quietly(workers):
    # 10,000 closed ports written with --all: far more than a pipe holds, so
    # the scan is still writing when the reader goes away.
    first, rc, err = _first_line_then_close(
        ["scan", "127.0.0.1", "-p", "1-10000", "--all", "-q", "--workers", workers,
         "--timeout", "2s"])
    assert first.startswith(b"{") and b'"port"' in first
    assert err == "", err          # no BrokenPipeError traceback (there were 1,642)
    assert rc == 141


def test_scan_summary_survives_a_closed_pipe():
    # without -q, the summary still goes to stderr; no traceback with it
    first, rc, err = _first_line_then_close(
        ["scan", "127.0.0.1", "-p", "1-10000", "--all", "--timeout", "2s"])
    assert first.startswith(b"{")
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert rc == 141


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_its_stdout_closed_stops_quietly(workers):
    # serve's first line cannot be written: it stops (it would otherwise
    # serve without ever saying where), quietly.  Its workers share its
    # stderr, so communicate() returning shows that they ended too.
    proc = subprocess.Popen([sys.executable, "-m", "cypoe", "serve", "--workers", workers],
                            env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert err.decode() == ""
    assert proc.returncode == 141


def test_stdout_guard_in_process():
    """The mechanism itself: EPIPE on stdout, wherever it is raised (in a
    callback inside the loop, whose ``except Exception`` would log it and go
    on), ends the command with 141, and stdout is restored afterwards."""
    from cypoe.cli import common

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    swallowed = []

    def command():
        try:
            print("x")
        except Exception:  # noqa: BLE001 - what the loop does with a callback's error
            swallowed.append(True)
        return 0

    saved = sys.stdout
    closed = sys.stdout = ClosedPipe()
    try:
        rc = common.run_guarded(command)
        assert sys.stdout is closed
    finally:
        sys.stdout = saved
    assert rc == 141
    assert swallowed == []


def test_scan_into_a_fifo_whose_reader_goes_away(tmp_path):
    """-o FIFO: the same as a closed stdout (and stdout itself is left alone)."""
    import os
    import threading
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got = []

    def read_a_little():
        with open(fifo, "rb") as fh:
            got.append(fh.read(100))

    reader = threading.Thread(target=read_a_little, daemon=True)
    reader.start()
    proc = subprocess.run([sys.executable, "-m", "cypoe", "scan", "127.0.0.1", "-p", "1-10000",
                           "--all", "--timeout", "2s", "-o", str(fifo)], env=ENV,
                          capture_output=True, text=True, timeout=120)
    reader.join(10)
    assert got and got[0].startswith(b"{")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 141
