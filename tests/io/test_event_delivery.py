"""Queued ReadWrite events are checked again when they are delivered.

An event that arises inside a callback (a put whose bytes the kernel takes
at once, inside on_input) is queued behind that callback; by the time it is
delivered the buffer may hold megabytes again.  `flushed` must then not be
delivered (a handler that closes on it would truncate the output), and
high/low/flushed keep a consistent order.
"""
import socket
import threading

import pytest

from cypoe import Line, ReadWrite, Stream

from .conftest import run_until, tcp_pair

MIB = 1 << 20


def drain_in_thread(sock, into):
    def run():
        while True:
            try:
                b = sock.recv(1 << 20)
            except OSError:
                break
            if not b:
                break
            into.append(len(b))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def check_order(events):
    """high and low alternate, starting with high; flushed never while above."""
    above = False
    for e in events:
        if e[0] == "high":
            assert not above, events
            above = True
        elif e[0] == "low":
            assert above, events
            above = False
        elif e[0] == "flushed":
            assert not above, events
            assert e[1] == 0, events     # buffer empty when delivered


@pytest.mark.timeout(60)
def test_queued_flushed_is_delivered_only_when_the_buffer_is_empty(kernel):
    a, b = tcp_pair()
    got = []
    reader = drain_in_thread(b, got)
    events = []
    state = {"closed_at_flush": None}

    def on_input(rw, record):
        for _ in range(8):
            rw.put(b"x" * MIB)
        events.append(("input-done", rw.get_driver_out_octets()))

    def on_flushed(rw):
        events.append(("flushed", rw.get_driver_out_octets()))
        state["closed_at_flush"] = rw.get_driver_out_octets()
        rw.close()

    rw = ReadWrite(a, kernel=kernel, input_filter=Line(), output_filter=Stream(),
                   on_input=on_input, on_flushed=on_flushed,
                   on_error=lambda rw, op, n, s: events.append(("error", op, n)),
                   high_mark=256 * 1024, low_mark=64 * 1024,
                   on_high=lambda rw: events.append(("high", rw.get_driver_out_octets())),
                   on_low=lambda rw: events.append(("low", rw.get_driver_out_octets())))
    b.sendall(b"go\n")
    run_until(kernel, lambda: rw.closed, timeout=30)
    reader.join(10)
    check_order([e for e in events if e[0] != "input-done"])
    assert state["closed_at_flush"] == 0
    assert sum(got) == 8 * MIB
    assert rw.dropped_octets == 0
    b.close()


@pytest.mark.timeout(60)
def test_many_puts_inside_one_callback_give_one_consistent_sequence(kernel):
    """Without closing: every flushed delivered sees an empty buffer, and
    the high/low edges alternate."""
    a, b = tcp_pair()
    got = []
    reader = drain_in_thread(b, got)
    events = []

    def on_input(rw, record):
        for _ in range(8):
            rw.put(b"y" * MIB)

    rw = ReadWrite(a, kernel=kernel, input_filter=Line(), output_filter=Stream(),
                   on_input=on_input,
                   on_flushed=lambda rw: events.append(("flushed", rw.get_driver_out_octets())),
                   high_mark=256 * 1024, low_mark=64 * 1024,
                   on_high=lambda rw: events.append(("high",)),
                   on_low=lambda rw: events.append(("low",)))
    b.sendall(b"go\n")
    run_until(kernel, lambda: sum(got) >= 8 * MIB and rw.get_driver_out_octets() == 0
              and events and events[-1][0] == "flushed", timeout=30)
    check_order(events)
    assert events[-1] == ("flushed", 0)
    rw.close()
    b.close()
    reader.join(10)
