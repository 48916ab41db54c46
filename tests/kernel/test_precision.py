"""Sub-millisecond timers: the readiness wait gets the time to the next timer
in nanoseconds, not rounded up to whole milliseconds (SEMANTICS.md, Kernel).
No timing is asserted: a timer is never early, and the mechanism is checked
through the kernel's introspection (the wait chosen, the timeout given)."""
import os
import select
import socket
import sys

import pytest

import cypoe
from cypoe import CypoeError, Session

LINUX = sys.platform.startswith("linux")


def test_wait_mechanism_is_a_precise_one(kernel):
    mech = kernel._wait_mechanism
    if kernel.backend == "epoll":
        assert mech in ("epoll_pwait2", "timerfd")
    elif kernel.backend == "kqueue":
        assert mech == "kevent"
    elif LINUX:
        assert mech == "ppoll"


@pytest.mark.skipif(not LINUX, reason="epoll is Linux's")
def test_timerfd_fallback_is_chosen_on_request(monkeypatch):
    monkeypatch.setenv("CYPOE_EPOLL_WAIT", "timerfd")
    assert cypoe.Kernel(backend="epoll")._wait_mechanism == "timerfd"
    monkeypatch.delenv("CYPOE_EPOLL_WAIT")
    assert cypoe.Kernel(backend="epoll")._wait_mechanism in ("epoll_pwait2", "timerfd")


def test_explicit_timeout_reaches_the_poller_unrounded(kernel):
    keep = kernel.delay(3600, lambda: None)
    kernel.run_once(0.0002)
    assert 200_000 <= kernel._last_poll_timeout_ns <= 200_001
    kernel.run_once(0)
    assert kernel._last_poll_timeout_ns == 0
    kernel.run_once(0.0000005)
    assert 500 <= kernel._last_poll_timeout_ns <= 501
    keep.cancel()


def test_time_to_a_sub_millisecond_timer_is_not_rounded_up(kernel):
    fired = []
    kernel.delay(0.0005, fired.append, 1)
    while not fired:
        kernel.run_once(None)
        # ceil to milliseconds would have given 1_000_000
        assert 0 <= kernel._last_poll_timeout_ns <= 500_001
    assert fired == [1]


def test_sub_millisecond_timers_are_never_early(kernel):
    late = []
    base = kernel.time() + 0.002
    for i in range(200):
        when = base + i * 0.00013
        kernel.alarm(when, lambda w: late.append(kernel.time() - w), when)
    kernel.run()
    assert len(late) == 200
    assert min(late) >= 0.0


def test_timers_and_watchers_together_after_the_timer_woke_the_wait(kernel):
    # After a timer woke the wait (the timerfd fallback: a timerfd fired),
    # a wait that only has a watcher blocks for its fd and nothing else.
    a, b = socket.socketpair()
    got = []
    try:
        kernel.delay(0.0003, got.append, "timer")
        kernel.delay(0.005, b.send, b"x")

        def readable(fd):
            got.append(a.recv(10))
            kernel.select_read(a, None)

        kernel.select_read(a, readable)
        kernel.run()
    finally:
        a.close()
        b.close()
    assert got == ["timer", b"x"]


def test_fileno_is_readable_when_a_watched_fd_is_ready(kernel):
    if kernel.backend == "poll":
        with pytest.raises(CypoeError, match="poll"):
            kernel.fileno()
        return
    fd = kernel.fileno()
    assert isinstance(fd, int) and fd >= 0
    outer = select.poll()   # not select(): fds may be above 1024 here
    outer.register(fd, select.POLLIN)
    r, w = os.pipe()
    try:
        kernel.select_read(r, lambda fd: os.read(fd, 10))
        assert outer.poll(0) == []
        os.write(w, b"x")
        assert outer.poll(5000) == [(fd, select.POLLIN)]
        kernel.run_once(0)
        kernel.select_read(r, None)
        assert outer.poll(0) == []
    finally:
        os.close(r)
        os.close(w)


def test_next_deadline(kernel):
    assert kernel.next_deadline() is None
    t1 = kernel.delay(10, lambda: None)
    t2 = kernel.delay(5, lambda: None)
    assert kernel.next_deadline() == t2.when
    t2.cancel()
    assert kernel.next_deadline() == t1.when
    t1.cancel()
    assert kernel.next_deadline() is None
    before = kernel.time()
    kernel.call_soon_threadsafe(lambda: None)
    assert before <= kernel.next_deadline() <= kernel.time()
    kernel.run_once(0)
    assert kernel.next_deadline() is None
    s = Session({"ev": lambda s: None}, kernel=kernel)   # its queued GC check
    assert kernel.next_deadline() is not None
    kernel.run()
    assert s.stopped and kernel.next_deadline() is None
    past = kernel.alarm(kernel.time() - 1, lambda: None)
    assert kernel.next_deadline() == past.when
    kernel.run()
