"""run() narrows the thread's timer slack so that precise poll timeouts are
not stretched (Linux), and gives the old value back when it returns."""
import ctypes
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="timer slack is a Linux prctl")

PR_SET_TIMERSLACK = 29
PR_GET_TIMERSLACK = 30
_libc = ctypes.CDLL(None, use_errno=True)


def slack():
    return _libc.prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)


def test_run_narrows_the_timer_slack_and_restores_it(kernel):
    before = slack()
    assert before > 1000                    # the default is 50 us
    seen = []
    kernel.delay(0.001, lambda: seen.append(slack()))
    kernel.run()
    assert seen == [1000]
    assert slack() == before


def test_run_restores_a_slack_the_program_chose(kernel):
    before = slack()
    try:
        assert _libc.prctl(PR_SET_TIMERSLACK, 123456, 0, 0, 0) == 0
        kernel.delay(0.0, lambda: None)
        kernel.run()
        assert slack() == 123456
    finally:
        _libc.prctl(PR_SET_TIMERSLACK, before, 0, 0, 0)
