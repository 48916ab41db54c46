import os
import socket
import threading
import time

import pytest

from cypoe import CypoeError


def test_select_read_on_socketpair(kernel):
    a, b = socket.socketpair()
    got = []

    def on_read(fd):
        data = a.recv(100)
        got.append((fd, data))
        kernel.select_read(a, None)

    kernel.select_read(a, on_read)
    b.send(b"hello")
    kernel.run()
    assert got == [(a.fileno(), b"hello")]
    a.close()
    b.close()


def test_select_read_on_pipe_and_write_watcher(kernel):
    r, w = os.pipe()
    events = []

    def on_write(fd):
        os.write(fd, b"x")
        events.append("w")
        kernel.select_write(w, None)

    def on_read(fd):
        events.append(("r", os.read(fd, 10)))
        kernel.select_read(r, None)

    kernel.select_read(r, on_read)
    kernel.select_write(w, on_write)
    kernel.run()
    assert events == ["w", ("r", b"x")]
    os.close(r)
    os.close(w)


def test_level_triggered_until_drained(kernel):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.send(b"abcdef")
    chunks = []

    def on_read(fd):
        chunks.append(a.recv(2))
        if sum(map(len, chunks)) == 6:
            kernel.select_read(a, None)

    kernel.select_read(a, on_read)
    kernel.run()
    assert b"".join(chunks) == b"abcdef" and len(chunks) == 3
    a.close()
    b.close()


def test_removal_during_dispatch_suppresses_collected_event(kernel):
    pairs = [socket.socketpair() for _ in range(2)]
    for _, peer in pairs:
        peer.send(b"x")
    calls = []

    def make(i):
        def cb(fd):
            calls.append(i)
            pairs[i][0].recv(10)
            # Remove both watchers: whichever ran first must stop the other.
            for s, _ in pairs:
                kernel.select_read(s, None)
        return cb

    for i, (s, _) in enumerate(pairs):
        kernel.select_read(s, make(i))
    kernel.run_once(1.0)
    assert len(calls) == 1
    for s, peer in pairs:
        s.close()
        peer.close()


def test_fd_reuse_within_one_iteration(kernel):
    """An event collected for fd N, which a callback closed and reopened as a
    new socket with the same number, must not reach the new watcher."""
    p1 = socket.socketpair()
    p2 = socket.socketpair()
    p1[1].send(b"x")
    p2[1].send(b"x")
    state = {"reused": None, "stale": 0, "first": None}
    socks = {p1[0].fileno(): p1, p2[0].fileno(): p2}
    new = []

    def on_new(fd):
        state["stale"] += 1

    def make(own):
        def cb(fd):
            if state["first"] is not None:
                return
            state["first"] = own
            other_fd = [f for f in socks if f != own][0]
            other = socks[other_fd]
            kernel.select_read(other_fd, None)
            other[0].close()
            a, b = socket.socketpair()  # lowest free fd: other_fd again
            new.extend([a, b])
            state["reused"] = a.fileno() == other_fd or b.fileno() == other_fd
            reused = a if a.fileno() == other_fd else b
            kernel.select_read(reused, on_new)
            kernel.select_read(own, None)
        return cb

    for fd in socks:
        kernel.select_read(fd, make(fd))
    kernel.run_once(1.0)
    assert state["first"] is not None
    assert state["reused"] is True, "the test needs the fd number to be reused"
    assert state["stale"] == 0
    for s in new:
        kernel.select_read(s, None)
        s.close()
    for a, b in (p1, p2):
        a.close()
        b.close()


def test_exception_in_watcher_logged_and_loop_goes_on(kernel, caplog):
    a, b = socket.socketpair()
    b.send(b"x")
    out = []

    def bad(fd):
        kernel.select_read(a, None)
        raise RuntimeError("watcher failed")

    kernel.select_read(a, bad)
    kernel.delay(0.01, out.append, "timer after")
    with caplog.at_level("ERROR", logger="cypoe"):
        kernel.run()
    assert out == ["timer after"]
    assert any(r.exc_info and "watcher failed" in str(r.exc_info[1]) for r in caplog.records)
    a.close()
    b.close()


def test_watcher_arguments(kernel):
    with pytest.raises(TypeError, match="fd"):
        kernel.select_read("zero", print)
    with pytest.raises(TypeError, match="callback"):
        kernel.select_read(0, 3)
    r, w = os.pipe()
    kernel.select_read(r, None)  # removing what is not there is harmless
    kernel.select_read(r, print)
    assert kernel.n_handlers == 1
    kernel.select_read(r, None)
    assert kernel.n_handlers == 0
    os.close(r)
    os.close(w)


def test_watchers_keep_run_alive(kernel):
    r, w = os.pipe()
    kernel.select_read(r, lambda fd: (os.read(fd, 1), kernel.select_read(fd, None)))
    kernel.delay(0.02, os.write, w, b"!")
    start = time.monotonic()
    kernel.run()
    assert time.monotonic() - start >= 0.015
    assert kernel.n_handlers == 0
    os.close(r)
    os.close(w)


def test_call_soon_threadsafe_wakes_a_blocked_loop(kernel):
    r, w = os.pipe()
    # A watcher that never fires keeps the loop blocked in the poller.
    kernel.select_read(r, lambda fd: None)
    got = []

    def from_loop(value):
        got.append((value, threading.current_thread() is threading.main_thread()))
        kernel.select_read(r, None)

    def worker():
        time.sleep(0.1)
        kernel.call_soon_threadsafe(from_loop, "hi")

    th = threading.Thread(target=worker)
    start = time.monotonic()
    th.start()
    kernel.run()
    th.join()
    assert got == [("hi", True)]
    assert time.monotonic() - start < 30
    os.close(r)
    os.close(w)


def test_call_soon_threadsafe_before_run_counts_as_work(kernel):
    got = []
    kernel.call_soon_threadsafe(got.append, 1)
    kernel.run()
    assert got == [1]


def test_watcher_on_component_fd_is_refused(kernel):
    r, w = os.pipe()
    kernel.select_read(r, print)
    kernel.select_write(r, print)  # same fd, second direction: fine
    assert kernel.n_handlers == 1
    kernel.select_read(r, None)
    kernel.select_write(r, None)
    os.close(r)
    os.close(w)
    with pytest.raises(CypoeError):
        kernel.call("no-such-alias", "x")
