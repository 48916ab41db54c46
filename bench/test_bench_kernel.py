"""Kernel benchmarks: cypoe against asyncio's default loop and uvloop, same
workload, same run.  Ratios are printed at the end (bench/conftest.py).

    python -m pytest bench/test_bench_kernel.py --benchmark-only
"""
import asyncio
import os
import random
import socket

import pytest

import cypoe

try:
    import uvloop
except ImportError:  # a peer, not a feature: its rows are simply absent
    uvloop = None

N_TIMERS = 100_000
N_EVENTS = 1_000_000
N_PINGPONG = 100_000

LOOPS = ["cypoe", "asyncio"] + (["uvloop"] if uvloop is not None else [])


def new_asyncio_loop(name):
    return uvloop.new_event_loop() if name == "uvloop" else asyncio.new_event_loop()


# -- timers -----------------------------------------------------------------

def timers_cypoe(delays):
    k = cypoe.Kernel()
    count = [0]

    def cb():
        count[0] += 1

    for d in delays:
        k.delay(d, cb)
    k.run()
    return count[0]


def timers_asyncio(delays, name):
    loop = new_asyncio_loop(name)
    count = [0]
    n = len(delays)

    def cb():
        count[0] += 1
        if count[0] == n:
            loop.stop()

    for d in delays:
        loop.call_later(d, cb)
    loop.run_forever()
    loop.close()
    return count[0]


@pytest.mark.parametrize("loop_name", LOOPS)
def test_timers_100k(benchmark, impl, loop_name):
    impl(loop_name, "kernel: schedule and fire 100k timers")
    rng = random.Random(1)
    delays = [rng.random() * 0.001 for _ in range(N_TIMERS)]
    if loop_name == "cypoe":
        result = benchmark.pedantic(timers_cypoe, args=(delays,), rounds=5, iterations=1)
    else:
        result = benchmark.pedantic(timers_asyncio, args=(delays, loop_name), rounds=5,
                                    iterations=1)
    assert result == N_TIMERS


# -- posted events ------------------------------------------------------------

def events_cypoe(n):
    k = cypoe.Kernel()
    count = [0]

    def ev(session):
        count[0] += 1

    s = cypoe.Session({"_start": lambda s: s.retain(), "ev": ev}, kernel=k)
    post = k.post
    for _ in range(n):
        post(s, "ev")
    k.delay(0, s.release)
    k.run()
    return count[0]


def events_asyncio(n, name):
    loop = new_asyncio_loop(name)
    count = [0]

    def ev():
        count[0] += 1

    call_soon = loop.call_soon
    for _ in range(n):
        call_soon(ev)
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.close()
    return count[0]


@pytest.mark.parametrize("loop_name", LOOPS)
def test_posted_events_1m(benchmark, impl, loop_name):
    impl(loop_name, "kernel: 1M posted events (post/call_soon, then deliver)")
    if loop_name == "cypoe":
        result = benchmark.pedantic(events_cypoe, args=(N_EVENTS,), rounds=3, iterations=1)
    else:
        result = benchmark.pedantic(events_asyncio, args=(N_EVENTS, loop_name), rounds=3,
                                    iterations=1)
    assert result == N_EVENTS


# -- socketpair ping-pong -----------------------------------------------------

def pingpong_cypoe(n):
    k = cypoe.Kernel()
    a, b = socket.socketpair()
    fa, fb = a.fileno(), b.fileno()
    left = [n]
    read, write = os.read, os.write

    def on_a(fd):
        read(fd, 1)
        left[0] -= 1
        if left[0] == 0:
            k.select_read(fa, None)
            k.select_read(fb, None)
            return
        write(fd, b"p")

    def on_b(fd):
        write(fd, read(fd, 1))

    k.select_read(fa, on_a)
    k.select_read(fb, on_b)
    write(fa, b"p")
    k.run()
    a.close()
    b.close()
    return n - left[0]


def pingpong_asyncio(n, name):
    loop = new_asyncio_loop(name)
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    fa, fb = a.fileno(), b.fileno()
    left = [n]
    read, write = os.read, os.write

    def on_a():
        read(fa, 1)
        left[0] -= 1
        if left[0] == 0:
            loop.remove_reader(fa)
            loop.remove_reader(fb)
            loop.stop()
            return
        write(fa, b"p")

    def on_b():
        write(fb, read(fb, 1))

    loop.add_reader(fa, on_a)
    loop.add_reader(fb, on_b)
    write(fa, b"p")
    loop.run_forever()
    loop.close()
    a.close()
    b.close()
    return n - left[0]


@pytest.mark.parametrize("loop_name", LOOPS)
def test_socketpair_pingpong_100k(benchmark, impl, loop_name):
    impl(loop_name, "kernel: 100k socketpair round trips through read watchers")
    if loop_name == "cypoe":
        result = benchmark.pedantic(pingpong_cypoe, args=(N_PINGPONG,), rounds=3, iterations=1)
    else:
        result = benchmark.pedantic(pingpong_asyncio, args=(N_PINGPONG, loop_name), rounds=3,
                                    iterations=1)
    assert result == N_PINGPONG
