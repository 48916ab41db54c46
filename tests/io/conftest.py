"""Helpers for the I/O tests: bounded loop driving and loopback pairs."""
import socket
import time

import pytest


def run_until(kernel, cond, timeout=10.0, step=0.05):
    """Run loop iterations until cond() is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within %.1fs" % timeout)
        kernel.run_once(step)


def run_for(kernel, seconds, step=0.02):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        kernel.run_once(step)


def tcp_pair(family=socket.AF_INET):
    """A connected loopback TCP pair (a, b), both blocking."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.bind((host, 0))
    lst.listen(1)
    a = socket.socket(family, socket.SOCK_STREAM)
    a.connect(lst.getsockname())
    b, _ = lst.accept()
    lst.close()
    return a, b


class Recorder:
    """Collects ReadWrite events in order."""

    def __init__(self):
        self.events = []
        self.records = []

    def on_input(self, rw, record):
        self.records.append(record)

    def on_error(self, rw, op, errnum, errstr):
        self.events.append(("error", op, errnum, errstr))

    def on_flushed(self, rw):
        self.events.append(("flushed",))

    def on_high(self, rw):
        self.events.append(("high",))

    def on_low(self, rw):
        self.events.append(("low",))

    def count(self, kind):
        return sum(1 for e in self.events if e[0] == kind)

    def errors(self):
        return [e for e in self.events if e[0] == "error"]


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def exceptions(kernel):
    """Exceptions reported through the kernel's exception handler."""
    seen = []
    kernel.set_exception_handler(lambda k, ctx: seen.append(ctx))
    return seen
