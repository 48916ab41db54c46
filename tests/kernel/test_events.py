import pytest

import cypoe
from cypoe import CypoeError, Session


def test_post_is_fifo_and_call_is_synchronous(kernel):
    out = []

    def start(s):
        for i in range(5):
            s.post("ev", i)
        out.append(("call", s.call("double", 21)))

    s = Session({"_start": start, "ev": lambda s, i: out.append(i),
                 "double": lambda s, x: 2 * x}, kernel=kernel)
    assert out == [("call", 42)]
    kernel.run()
    assert out == [("call", 42), 0, 1, 2, 3, 4]
    assert s.stopped


def test_start_runs_in_constructor_with_args_and_stop_exactly_once(kernel):
    out = []
    s = Session({
        "_start": lambda s, a, b: (out.append(("start", a, b)), s.post("x")),
        "x": lambda s: out.append("x"),
        "_stop": lambda s: out.append("stop"),
    }, args=(1, 2), kernel=kernel)
    assert out == [("start", 1, 2)]
    assert not s.stopped
    kernel.run()
    s.stop()  # again: nothing more
    assert out == [("start", 1, 2), "x", "stop"]




def test_session_timers_keep_it_alive(kernel):
    out = []

    def start(s):
        s.heap["n"] = 0
        s.delay(0.01, "tick")

    def tick(s):
        s.heap["n"] += 1
        if s.heap["n"] < 3:
            s.delay(0.001, "tick")

    s = Session({"_start": start, "tick": tick, "_stop": lambda s: out.append(s.heap["n"])},
                kernel=kernel)
    kernel.run()
    assert out == [3]


def test_stop_drops_pending_events_and_timers(kernel):
    out = []

    def start(s):
        s.post("a")
        s.post("b")
        s.delay(0.01, "c")

    def a(s):
        out.append("a")
        s.stop()

    Session({"_start": start, "a": a, "b": lambda s: out.append("b"),
             "c": lambda s: out.append("c"), "_stop": lambda s: out.append("stop")},
            kernel=kernel)
    kernel.run()
    assert out == ["a", "stop"]
    assert kernel.n_timers == 0


def test_cancelling_the_last_timer_from_outside_ends_the_session(kernel):
    out = []
    s = Session({"_start": lambda s: s.heap.__setitem__("t", s.delay(3600, "never")),
                 "_stop": lambda s: out.append("stop")}, kernel=kernel)
    assert not s.stopped
    kernel.delay(0.001, lambda: s.heap["t"].cancel())
    kernel.run()
    assert out == ["stop"] and s.stopped


def test_aliases(kernel):
    out = []
    s = Session({"_start": lambda s: s.delay(0.05, "end"), "hello": lambda s, w: out.append(w),
                 "end": lambda s: None}, alias="greeter", kernel=kernel)
    assert s.alias == "greeter"
    assert kernel.alias_resolve("greeter") is s
    assert kernel.post("greeter", "hello", "by alias") is True
    assert kernel.post(s.id, "hello", "by id") is True
    assert kernel.post(s, "hello", "by session") is True
    with pytest.raises(CypoeError):
        kernel.alias_set("greeter", Session({"_start": lambda s: s.delay(0.01, "x"),
                                              "x": lambda s: None}, kernel=kernel))
    kernel.alias_set("other-name", s)
    assert kernel.alias_resolve("other-name") is s
    kernel.alias_remove("other-name")
    assert kernel.alias_resolve("other-name") is None
    kernel.run()
    assert out == ["by alias", "by id", "by session"]
    assert kernel.alias_resolve("greeter") is None  # removed when the session ended


def test_post_to_unknown_target(kernel):
    assert kernel.post("nobody", "x") is False
    assert kernel.post(99999, "x") is False
    with pytest.raises(CypoeError):
        kernel.call("nobody", "x")
    with pytest.raises(TypeError):
        kernel.post(1.5, "x")
    with pytest.raises(TypeError, match="event"):
        kernel.post("nobody", 3)


def test_default_state_gets_unknown_events(kernel):
    got = []
    s = Session({"_start": lambda s: s.post("mystery", 1, 2),
                 "_default": lambda s, ev, args: got.append((ev, args))}, kernel=kernel)
    kernel.run()
    assert got == [("mystery", (1, 2))]


def test_handler_exception_is_reported_and_session_goes_on(kernel, caplog):
    out = []

    def bad(s):
        raise KeyError("bad handler")

    Session({"_start": lambda s: (s.post("bad"), s.post("good")), "bad": bad,
             "good": lambda s: out.append("good")}, kernel=kernel)
    with caplog.at_level("ERROR", logger="cypoe"):
        kernel.run()
    assert out == ["good"]
    assert any("bad handler" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_events_posted_during_delivery_come_after(kernel):
    out = []

    def a(s, n):
        out.append(n)
        if n < 3:
            s.post("a", n + 1)
            s.post("b", n)

    Session({"_start": lambda s: s.post("a", 0), "a": a,
             "b": lambda s, n: out.append(f"b{n}")}, kernel=kernel)
    kernel.run()
    assert out == [0, 1, "b0", 2, "b1", 3, "b2"]


def test_session_validation(kernel):
    with pytest.raises(TypeError, match="states"):
        Session(["not", "a", "dict"], kernel=kernel)
    with pytest.raises(TypeError, match="states"):
        Session({"x": 3}, kernel=kernel)
    with pytest.raises(TypeError, match="kernel"):
        Session({}, kernel="k")


def test_default_kernel_and_module_functions():
    assert isinstance(cypoe.kernel, cypoe.Kernel)
    out = []
    cypoe.kernel.delay(0, out.append, 1)
    cypoe.run()
    assert out == [1]
    cypoe.kernel.delay(0, cypoe.stop)
    pending = cypoe.kernel.delay(3600, out.append, "never")
    cypoe.run()  # returns on stop() although a timer is pending
    assert out == [1] and pending.active
    pending.cancel()


def test_backend_names():
    assert cypoe.Kernel().backend in ("epoll", "kqueue")
    assert cypoe.Kernel(backend="poll").backend == "poll"
    with pytest.raises(ValueError, match="backend"):
        cypoe.Kernel(backend="select")
    with pytest.raises(TypeError, match="backend"):
        cypoe.Kernel(backend=3)


def test_run_once_and_stop(kernel):
    out = []
    kernel.delay(0, out.append, "x")
    kernel.run_once(0.05)
    assert out == ["x"]
    with pytest.raises(ValueError, match="timeout"):
        kernel.run_once(-1)


def test_run_is_not_reentrant(kernel):
    errors = []

    def inner():
        try:
            kernel.run()
        except CypoeError as e:
            errors.append(e)

    kernel.delay(0, inner)
    kernel.run()
    assert len(errors) == 1
