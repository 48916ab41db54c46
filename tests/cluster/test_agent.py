"""The agent child program on its own: the version check and the stop on
stdin's end, without a cluster."""
import json
import os
import subprocess
import sys

from tests.cluster.conftest import SRC

ENV = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_agent_refuses_another_version():
    proc = subprocess.run([sys.executable, "-m", "cypoe.cli.agent"], env=ENV,
                          input=json.dumps({"version": "0.0.0-other", "kind": "scan"}) + "\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    msg = json.loads(proc.stdout.splitlines()[0])
    assert "version mismatch" in msg["error"] and "0.0.0-other" in msg["error"]


def test_load_agent_stops_when_stdin_closes():
    """Ready, then its task goes away (stdin closes) before the start: it ends."""
    import base64

    import cypoe
    job = {"version": cypoe.__version__, "kind": "load", "workers": 1, "setup_timeout": 600,
           "config": {"host": "127.0.0.1", "port": 9, "connections": 1, "duration": 600,
                      "pipeline": 1, "messages": [base64.b64encode(b"PING\r\n").decode()],
                      "expect": "echo", "rate": None, "connect_rate": None, "requests": None,
                      "sources": [], "timeout": 1.0}}
    proc = subprocess.Popen([sys.executable, "-m", "cypoe.cli.agent"], env=ENV,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()
        assert "ready" in json.loads(proc.stdout.readline())
        proc.stdin.close()
        proc.wait(timeout=60)  # it ends (TimeoutExpired would fail the test)
        assert proc.poll() is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
