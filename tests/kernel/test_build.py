import os
import shutil
import subprocess
import sys

import cypoe


def test_import_without_compiled_modules_says_how_to_build(tmp_path):
    pkg = os.path.dirname(cypoe.__file__)
    dst = tmp_path / "cypoe"
    shutil.copytree(pkg, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    proc = subprocess.run([sys.executable, "-c", "import cypoe"], cwd=tmp_path,
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "pip install" in proc.stderr and "build_ext" in proc.stderr


def test_debug_counters_count_what_is_made_and_released():
    """A CYPOE_DEBUG=1 build counts kernels, watchers, timers, ReadWrites and
    buffers; a release build has no counters at all (None)."""
    import gc
    import socket

    import importlib

    modules = [importlib.import_module("cypoe." + name) for name in cypoe._debug._MODULES]
    per_module = [getattr(m, "debug_counters", None) or m._debug_counters for m in modules]
    if cypoe.debug_counters() is None:
        assert all(fn() is None for fn in per_module)
        assert not cypoe._debug.is_debug_build()
        return
    assert cypoe._debug.is_debug_build()
    gc.collect()
    start = cypoe.debug_counters()
    k = cypoe.Kernel(backend="poll")
    now = cypoe.debug_counters()
    assert now["kernels"] == start["kernels"] + 1
    assert now["handlers"] == start["handlers"] + 1        # its wakeup fd
    t = k.delay(60, print)
    assert cypoe.debug_counters()["timers"] == start["timers"] + 1
    t.cancel()
    assert cypoe.debug_counters()["timers"] == start["timers"]
    a, b = socket.socketpair()
    rw = cypoe.ReadWrite(a, on_input=lambda rw, rec: None, kernel=k)
    rw.put(b"x\n")
    now = cypoe.debug_counters()
    assert now["readwrites"] == start["readwrites"] + 1
    assert now["handlers"] == start["handlers"] + 2
    assert now["bytebuffers"] > start["bytebuffers"]
    rw.close()
    b.close()
    assert cypoe.debug_counters()["handlers"] == start["handlers"] + 1
    del rw, t, k
    gc.collect()
    assert cypoe.debug_counters() == dict(start, pool_blocks=cypoe.debug_counters()["pool_blocks"])


def test_a_dropped_kernel_with_a_registered_watcher_is_collected():
    """The kernel's watcher array holds references the cycle collector must
    see: a Kernel dropped while a ReadWrite is still registered is
    collected, and with it the ReadWrite and its socket (the peer sees EOF)."""
    import gc
    import socket

    k = cypoe.Kernel(backend="poll")
    a, b = socket.socketpair()
    rw = cypoe.ReadWrite(a, on_input=lambda rw, rec: None, kernel=k)
    del rw, a, k
    gc.collect()
    b.settimeout(10)
    try:
        assert b.recv(1) == b""
    finally:
        b.close()
