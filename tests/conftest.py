import os
import sys

import pytest

# Make `src/` importable when the tests run from a checkout without install.
_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)

BACKENDS = ["epoll", "poll"] if sys.platform.startswith("linux") else ["kqueue", "poll"]


@pytest.fixture(params=BACKENDS)
def kernel(request):
    import cypoe

    return cypoe.Kernel(backend=request.param)


# ---------------------------------------------------------------------------
# The debug build's leak check (CYPOE_DEBUG=1 builds; nothing in a release
# build).  Every test leaves the compiled modules' counters (kernels,
# registered watchers, timers, sessions, ReadWrites, buffers, ...: see
# cypoe.debug_counters()) where it found them, once what it dropped is
# collected.  Checked after the test's fixtures are torn down, and reported
# as an error of the test's teardown.

def _debug_counts():
    import gc

    import cypoe
    from cypoe._debug import GAUGES

    counts = cypoe.debug_counters()
    if counts is None:
        return None
    for _ in range(3):      # a collected Kernel drops its watchers: more garbage
        if not gc.collect():
            break
    counts = cypoe.debug_counters()
    return {k: v for k, v in counts.items() if k not in GAUGES}


_DEBUG_BASELINE = pytest.StashKey()
_CALL_FAILED = pytest.StashKey()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[_DEBUG_BASELINE] = _debug_counts()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and not report.passed:
        item.stash[_CALL_FAILED] = True
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    before = item.stash.get(_DEBUG_BASELINE, None)
    if before is None or item.stash.get(_CALL_FAILED, False):
        return result       # release build, or the test's own failure shows
    # The fixtures are finalised; their values stay in funcargs until the
    # protocol ends: drop them now so that what they made can be collected.
    if getattr(item, "funcargs", None):
        item.funcargs.clear()
    after = _debug_counts()
    leaked = {k: (before.get(k, 0), v) for k, v in after.items() if v != before.get(k, 0)}
    assert not leaked, f"debug counters not back to their start (before, after): {leaked}"
    return result
