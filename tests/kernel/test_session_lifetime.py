"""A new session's lifetime: POE queues a garbage-collection check after
``_start``, so a session with nothing to do lives until the loop has looked
at it once (SEMANTICS.md, Kernel)."""
import pytest

from cypoe import Session


def test_events_posted_to_a_new_idle_session_are_delivered(kernel):
    got = []
    s = Session({"ev": lambda s, x: got.append(x)}, alias="worker", kernel=kernel)
    assert not s.stopped
    assert kernel.post("worker", "ev", 1) is True
    assert kernel.post(s.id, "ev", 2) is True
    assert kernel.post(s, "ev", 3) is True
    assert s.post("ev", 4) is True
    kernel.run()
    assert got == [1, 2, 3, 4]
    assert s.stopped and kernel.sessions == 0
    assert kernel.alias_resolve("worker") is None


def test_an_idle_session_ends_once_the_loop_has_looked_at_it(kernel):
    out = []
    s = Session({"_stop": lambda s: out.append("stop")}, kernel=kernel)
    assert not s.stopped and out == []
    assert kernel.sessions == 1
    kernel.run_once(0)
    assert s.stopped and out == ["stop"]
    assert kernel.sessions == 0


def test_run_returns_when_a_new_session_has_nothing_to_do(kernel):
    out = []
    s = Session({"_start": lambda s: out.append("start"),
                 "_stop": lambda s: out.append("stop")}, kernel=kernel)
    kernel.run()
    assert out == ["start", "stop"] and s.stopped


def test_stop_inside_start_still_ends_at_once(kernel):
    out = []
    s = Session({"_start": lambda s: s.stop(), "_stop": lambda s: out.append("stop")},
                kernel=kernel)
    assert s.stopped and out == ["stop"]
    assert kernel.post(s, "x") is False
    kernel.run()  # the queued check finds a stopped session: nothing more
    assert out == ["stop"]


def test_a_session_made_during_run_gets_what_its_creator_posts(kernel):
    got = []

    def make(_):
        child = Session({"job": lambda s, n: got.append(n),
                         "_stop": lambda s: got.append("child stop")}, kernel=kernel)
        kernel.post(child, "job", 7)

    Session({"_start": lambda s: s.post("make"), "make": make}, kernel=kernel)
    kernel.run()
    assert got == [7, "child stop"]


def test_an_idle_session_made_during_run_does_not_keep_run_alive(kernel):
    made = []
    kernel.delay(0, lambda: made.append(Session({}, kernel=kernel)))
    kernel.run()
    assert len(made) == 1 and made[0].stopped and kernel.sessions == 0


def test_work_taken_after_the_constructor_keeps_the_session(kernel):
    out = []
    s = Session({"tick": lambda s: out.append("tick"),
                 "_stop": lambda s: out.append("stop")}, kernel=kernel)
    s.delay(0.001, "tick")
    kernel.run()
    assert out == ["tick", "stop"]


@pytest.mark.parametrize("with_default", [False, True])
def test_only_the_gc_check_is_internal(kernel, with_default):
    # The queued check is not an event: no state, not even _default, sees it.
    seen = []
    states = {"_default": lambda s, ev, args: seen.append(ev)} if with_default else {}
    s = Session(states, kernel=kernel)
    kernel.run()
    assert seen == [] and s.stopped
