"""Signals are tested in subprocesses: os.kill on the test runner itself
would disturb pytest."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import BACKENDS

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")


def run_script(body, backend, timeout=60):
    code = textwrap.dedent("""
        import json, os, signal, sys
        import cypoe
        k = cypoe.Kernel(backend=BACKEND)
        out = []
    """).replace("BACKEND", repr(backend)) + textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_signal_callback_delivered(backend):
    out = run_script("""
        def on_usr1(name):
            out.append(name)
            k.signal("USR1", None)
        k.signal("SIGUSR1", on_usr1)
        k.delay(0.05, os.kill, os.getpid(), signal.SIGUSR1)
        k.delay(0.3, out.append, "timer")
        before = signal.getsignal(signal.SIGUSR1)
        # What SIGINT was before run() (SIG_IGN when a shell without job
        # control started the tests in the background): run() restores it.
        int_before = signal.getsignal(signal.SIGINT)
        k.run()
        out.append(signal.getsignal(signal.SIGUSR1) is before)
        out.append(signal.getsignal(signal.SIGINT) is int_before)
        out.append(signal.set_wakeup_fd(-1))
        print(json.dumps(out))
    """, backend)
    assert out == ["USR1", "timer", True, True, -1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_signal_while_blocked_in_poller(backend):
    # Sent from another process while the loop sleeps with no timer due.
    out = run_script("""
        import subprocess, time
        r, w = os.pipe()
        k.select_read(r, lambda fd: None)
        def on_hup(name):
            out.append(name)
            k.select_read(r, None)
        k.signal("HUP", on_hup)
        subprocess.Popen([sys.executable, "-c",
            "import os, signal, time; time.sleep(0.2); os.kill(%d, signal.SIGHUP)" % os.getpid()])
        t = time.monotonic()
        k.run()
        out.append(time.monotonic() - t < 20)
        print(json.dumps(out))
    """, backend)
    assert out == ["HUP", True]


class _Component:
    pass


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_shutdown_signal_is_graceful(backend, signame):
    out = run_script("""
        class Component:
            def shutdown(self):
                out.append("shutdown")
                # finishes its work a little later, then unregisters
                k.delay(0.05, self.done)
            def done(self):
                out.append("done")
                k.unregister_component(self)
        c = Component()
        k.register_component(c)
        k.delay(0.05, os.kill, os.getpid(), signal.%s)
        k.delay(3600, out.append, "never")   # a pending timer does not hold run()
        k.run()
        out.append("returned")
        print(json.dumps(out))
    """ % signame, backend)
    assert out == ["shutdown", "done", "returned"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_shutdown_signal_stops_at_once(backend):
    out = run_script("""
        class Stubborn:
            def shutdown(self):
                out.append("shutdown")
        k.register_component(Stubborn())
        k.delay(0.05, os.kill, os.getpid(), signal.SIGTERM)
        k.delay(0.15, os.kill, os.getpid(), signal.SIGTERM)
        k.run()
        out.append("returned")
        # run() can run again afterwards
        k.delay(0.01, out.append, "again")
        k.unregister_component(k._components[0])
        k.run()
        print(json.dumps(out))
    """, backend)
    assert out == ["shutdown", "returned", "again"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_int_callback_replaces_default(backend):
    out = run_script("""
        class Component:
            def shutdown(self):
                out.append("component shutdown")
        c = Component()
        k.register_component(c)
        def on_int(name):
            out.append(name)
            k.unregister_component(c)
        k.signal("INT", on_int)
        k.delay(0.05, os.kill, os.getpid(), signal.SIGINT)
        k.run()
        print(json.dumps(out))
    """, backend)
    assert out == ["INT"]


def test_bad_signal_names(kernel):
    with pytest.raises(ValueError, match="signame"):
        kernel.signal("NOPE", print)
    with pytest.raises(TypeError, match="callback"):
        kernel.signal("USR1", 5)
