"""The kernel's own tests run on every backend and, on Linux, also on epoll
with the timerfd fallback that replaces epoll_pwait2 where it is missing."""
import sys

import pytest

from tests.conftest import BACKENDS

KERNEL_VARIANTS = BACKENDS + (["epoll-timerfd"] if "epoll" in BACKENDS else [])


@pytest.fixture(params=KERNEL_VARIANTS)
def kernel(request, monkeypatch):
    import cypoe

    if request.param == "epoll-timerfd":
        monkeypatch.setenv("CYPOE_EPOLL_WAIT", "timerfd")
        k = cypoe.Kernel(backend="epoll")
        assert k._wait_mechanism == "timerfd"
        return k
    monkeypatch.delenv("CYPOE_EPOLL_WAIT", raising=False)
    return cypoe.Kernel(backend=request.param)
