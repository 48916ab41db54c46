"""Running out of file descriptors: the kernel takes its own fds (poller,
wakeup, signal pipe) when it is constructed, so that a program that has used
up RLIMIT_NOFILE can still run() it: signals are installed, timers fire and
watchers work.  In subprocesses, with a small soft limit."""
import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import BACKENDS

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")


def run_script(body, backend, env=None, timeout=60):
    code = textwrap.dedent("""
        import errno, json, os, resource, signal, socket, sys
        import cypoe
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        k = cypoe.Kernel(backend=BACKEND)
        out = []

        def exhaust():
            held = []
            while True:
                try:
                    held.append(socket.socket())
                except OSError as e:
                    assert e.errno == errno.EMFILE, e
                    return held
    """).replace("BACKEND", repr(backend)) + textwrap.dedent(body)
    full_env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_works_with_no_fd_left(backend):
    out = run_script("""
        a, b = socket.socketpair()
        held = exhaust()
        k.signal("USR1", lambda name: out.append(name))
        k.delay(0.01, os.kill, os.getpid(), signal.SIGUSR1)
        k.delay(0.05, out.append, "timer")

        def readable(fd):
            out.append(a.recv(10).decode())
            k.select_read(a, None)

        k.select_read(a, readable)
        k.delay(0.02, b.send, b"data")
        k.run()
        # And again: run() restored what it replaced and can install it anew.
        k.delay(0.01, os.kill, os.getpid(), signal.SIGUSR1)
        k.run()
        out.append(signal.set_wakeup_fd(-1))
        out.append(len(held) > 10)
        print(json.dumps(out))
    """, backend)
    assert out == ["USR1", "data", "timer", "USR1", -1, True]


@pytest.mark.parametrize("backend", BACKENDS)
def test_call_soon_threadsafe_and_shutdown_signal_with_no_fd_left(backend):
    out = run_script("""
        import threading
        held = exhaust()
        k.delay(3600, out.append, "never")   # keeps run() going until SIGTERM
        t = threading.Thread(target=lambda: k.call_soon_threadsafe(
            os.kill, os.getpid(), signal.SIGTERM))
        k.delay(0.01, t.start)

        class Component:
            def shutdown(self):
                out.append("shutdown")
                k.unregister_component(self)

        k.register_component(Component())
        k.run()
        print(json.dumps(out))
    """, backend)
    assert out == ["shutdown"]


def _open_fds():
    return len(os.listdir("/dev/fd"))


def test_a_dropped_kernel_closes_its_fds(kernel):
    import gc

    import cypoe

    backend = kernel.backend
    gc.collect()
    before = _open_fds()
    for _ in range(20):
        k = cypoe.Kernel(backend=backend)
        k.delay(0, lambda: None)
        k.run()
    del k
    gc.collect()
    assert _open_fds() == before
