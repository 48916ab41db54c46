"""The seeds' examples in docs/examples/ run as users run them: a subprocess
each, which must end by itself, exit 0 and print what it verified."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "docs", "examples")


def run_example(name, *args, timeout=60):
    env = dict(os.environ)
    src = os.path.join(ROOT, "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=timeout, text=True)
    return proc


def test_rot13_server():
    p = run_example("rot13_server.py")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert re.match(r"server: listening on 127\.0\.0\.1:\d+$", lines[0])
    assert "server: got a connection from 127.0.0.1" in lines
    assert "client: greeting 'Smile from the server!'" in lines
    assert "client: got 'Uryyb, Jbeyq!'" in lines
    assert lines[-2] == "server: stopped"
    assert lines[-1] == "OK rot13('Hello, World!') == 'Uryyb, Jbeyq!'"


def test_rot13_server_other_line():
    p = run_example("rot13_server.py", "--line", "abc XYZ 123")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "client: got 'nop KLM 123'" in p.stdout.splitlines()


def test_echo_server():
    p = run_example("echo_server.py", "--clients", "4", "--lines", "7")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert sorted(l for l in lines if l.startswith("client ")) == [
        f"client {i}: 7 lines echoed" for i in range(4)]
    assert lines[-2] == "server: stopped"
    assert lines[-1] == "OK 28/28 lines echoed by 4 clients, 0 wrong, 0 failed"


def test_tcpmulti_1024():
    p = run_example("tcpmulti_1024.py")
    assert p.returncode == 0, p.stdout + p.stderr
    last = p.stdout.splitlines()[-1]
    assert re.match(r"OK 1024/1024 connections echoed their line in [\d.]+ s "
                    r"\(0 wrong, 0 failed, 0 errors, 0 timed out\)$", last), p.stdout


@pytest.mark.parametrize("name", ["rot13_server.py", "echo_server.py", "tcpmulti_1024.py"])
def test_examples_take_a_port(name):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                      # free again: the example binds it
    args = ["--port", str(port)] + (["--connections", "64"] if name == "tcpmulti_1024.py" else [])
    p = run_example(name, *args)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"127.0.0.1:{port}" in p.stdout
    assert p.stdout.splitlines()[-1].startswith("OK ")
