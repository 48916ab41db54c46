import random

import pytest

import cypoe


def test_timers_fire_in_due_order(kernel):
    out = []
    kernel.delay(0.03, out.append, "c")
    kernel.delay(0.01, out.append, "a")
    kernel.delay(0.02, out.append, "b")
    kernel.run()
    assert out == ["a", "b", "c"]


def test_equal_due_times_fire_in_the_order_set(kernel):
    out = []
    when = kernel.time() + 0.01
    for i in range(50):
        kernel.alarm(when, out.append, i)
    kernel.run()
    assert out == list(range(50))


def test_cancelled_timer_never_fires_and_keeps_nothing_alive(kernel):
    out = []
    t = kernel.delay(3600, out.append, "never")
    assert t.active
    t.cancel()
    assert not t.active
    t.cancel()  # twice is harmless
    start = kernel.time()
    kernel.run()  # returns at once: the cancelled timer is no work
    assert kernel.time() - start < 60
    assert out == []


def test_cancel_from_inside_another_timer(kernel):
    out = []
    when = kernel.time() + 0.01
    victims = []

    def killer():
        out.append("killer")
        for v in victims:
            v.cancel()

    kernel.alarm(when, killer)
    # Due at the same moment, set after the killer: already popped with it.
    victims.append(kernel.alarm(when, out.append, "same-batch"))
    victims.append(kernel.delay(0.02, out.append, "later"))
    kernel.delay(0.03, out.append, "survivor")
    kernel.run()
    assert out == ["killer", "survivor"]


def test_timer_args_and_kernel_callback_signature(kernel):
    got = []
    kernel.delay(0, lambda *a: got.append(a), 1, "two", None)
    kernel.run()
    assert got == [(1, "two", None)]


def test_100k_timers_fire_in_order(kernel):
    rng = random.Random(7)
    base = kernel.time()
    whens = [base + rng.random() * 0.2 for _ in range(100_000)]
    out = []
    for i, w in enumerate(whens):
        kernel.alarm(w, out.append, i)
    kernel.run()
    expected = [i for _, i in sorted((w, i) for i, w in enumerate(whens))]
    assert out == expected


def test_many_cancellations_are_compacted(kernel):
    fired = []
    timers = [kernel.delay(3600 + i, fired.append, i) for i in range(20_000)]
    for t in timers[:19_990]:
        t.cancel()
    assert kernel.n_timers == 10
    for t in timers[19_990:]:
        t.cancel()
    assert kernel.n_timers == 0
    kernel.run()
    assert fired == []


def test_timer_fires_not_before_its_time(kernel):
    fired_at = []
    start = kernel.time()
    kernel.delay(0.05, lambda: fired_at.append(kernel.time()))
    kernel.run()
    assert fired_at and fired_at[0] - start >= 0.05 - 1e-6


def test_bad_timer_arguments(kernel):
    with pytest.raises(TypeError, match="callback"):
        kernel.delay(1, "not callable")
    with pytest.raises(TypeError, match="seconds"):
        kernel.delay("soon", print)
    with pytest.raises(TypeError, match="when"):
        kernel.alarm(None, print)


def test_exception_in_timer_is_logged_and_loop_goes_on(kernel, caplog):
    out = []

    def boom():
        raise RuntimeError("boom in timer")

    kernel.delay(0.001, boom)
    kernel.delay(0.01, out.append, "after")
    with caplog.at_level("ERROR", logger="cypoe"):
        kernel.run()
    assert out == ["after"]
    recs = [r for r in caplog.records if r.name == "cypoe"]
    assert recs and recs[0].exc_info and "boom in timer" in str(recs[0].exc_info[1])


def test_custom_exception_handler_gets_context(kernel):
    seen = []
    kernel.set_exception_handler(lambda k, ctx: seen.append((k, ctx)))
    err = ValueError("x")

    def boom():
        raise err

    kernel.delay(0, boom)
    kernel.run()
    assert len(seen) == 1
    k, ctx = seen[0]
    assert k is kernel and ctx["exception"] is err and isinstance(ctx["message"], str)
    kernel.set_exception_handler(None)
    assert kernel.get_exception_handler() is None


def test_a_million_pending_timers(kernel):
    import tracemalloc

    fired = []
    cb = fired.append
    now = kernel.time()
    whens = [now + 3600 + (i * 7919) % 1_000_000 for i in range(1_000_000)]
    timers = [None] * len(whens)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i, w in enumerate(whens):
        timers[i] = kernel.alarm(w, cb)
    per_timer = (tracemalloc.get_traced_memory()[0] - base) / len(timers)
    tracemalloc.stop()
    assert kernel.n_timers == 1_000_000
    # One Timer object and its slot in the heap.
    assert per_timer < 160, per_timer
    # The earliest still comes first after a million pushes.
    due = kernel.alarm(now, fired.append, "first")
    for t in timers:
        t.cancel()
    assert kernel.n_timers == 1
    kernel.run()
    assert fired == ["first"]
