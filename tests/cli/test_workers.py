"""The shared fork-worker start-up of ``--workers N`` (cypoe.cli.workers):
results come back from every worker, a worker that dies is reported, the
parent's SIGINT/SIGTERM reaches every worker (also one that arrives while
they start), and no worker outlives the pool."""
import os
import signal

import pytest

from cypoe.cli.workers import EXIT_CRASHED, WorkerPool, write_lines

WAIT = 20.0   # the longest a test worker waits for a signal: every test ends


def _wait_for_sigterm(wfd):
    """In a worker: SIGTERM is blocked, so it cannot be missed; say ready,
    wait for it (at most WAIT seconds), say whether it came."""
    got = signal.sigtimedwait([signal.SIGTERM], WAIT)
    write_lines(wfd, ["stopped" if got is not None else "no signal"])
    return 0


def _collect(pool, **kw):
    lines = {}

    def on_line(worker, line):
        lines.setdefault(worker.index, []).append(line.decode())
    pool.run(on_line, **kw)
    return lines


def test_results_are_collected_from_every_worker():
    def work(index, wfd):
        write_lines(wfd, [f"{index}:{k}" for k in range(1000)])
        # a last line without a newline is delivered too
        os.write(wfd, f"{index}:end".encode())

    pool = WorkerPool(3, work)
    lines = _collect(pool)
    assert sorted(lines) == [0, 1, 2]
    for index in range(3):
        assert lines[index] == [f"{index}:{k}" for k in range(1000)] + [f"{index}:end"]
    assert [w.exit_code for w in pool.workers] == [0, 0, 0]
    assert pool.died == [] and pool.signals == []


@pytest.mark.parametrize("how", ["exception", "signal"])
def test_a_worker_that_dies_is_reported(capfd, how):
    def work(index, wfd):
        if index == 1:
            if how == "exception":
                raise RuntimeError("boom in the worker")
            signal.signal(signal.SIGUSR2, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGUSR2)
        write_lines(wfd, ["fine"])

    pool = WorkerPool(3, work, prog="cypoe test")
    lines = _collect(pool)
    assert lines == {0: ["fine"], 2: ["fine"]}
    assert [w.index for w in pool.died] == [1]
    dead = pool.workers[1]
    err = capfd.readouterr().err
    if how == "exception":
        assert dead.exit_code == EXIT_CRASHED
        assert "RuntimeError: boom in the worker" in err
        assert f"cypoe test: worker 2 of 3 (pid {dead.pid}) died: exit code {EXIT_CRASHED}" in err
    else:
        assert dead.exit_code == -signal.SIGUSR2
        assert f"cypoe test: worker 2 of 3 (pid {dead.pid}) died: killed by SIGUSR2" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_reaches_every_worker(sig):
    def work(index, wfd):
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
        write_lines(wfd, ["ready"])
        return _wait_for_sigterm(wfd)

    pool = WorkerPool(3, work)
    ready = set()

    def on_line(worker, line):
        if line == b"ready":
            ready.add(worker.index)
            if len(ready) == 3:
                os.kill(os.getpid(), sig)    # the parent alone, as `kill PID` does
        else:
            results[worker.index] = line.decode()
    results = {}
    pool.run(on_line)
    assert pool.signals == [sig]
    assert results == {0: "stopped", 1: "stopped", 2: "stopped"}
    assert pool.died == []
    # the parent's own handler is back
    assert signal.getsignal(signal.SIGINT) is not pool._on_signal


def test_a_signal_while_the_workers_start_is_not_lost():
    """The parent's handler is in place before the first fork: a SIGTERM
    sent as the workers start (here by the first worker itself) does not
    end the parent with its workers left running, and reaches them all
    (issue 13: ``cypoe serve --workers 2`` signalled just after its first
    line left its workers holding the test's stderr pipe)."""
    def work(index, wfd):
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
        if index == 0:
            os.kill(os.getppid(), signal.SIGTERM)
        return _wait_for_sigterm(wfd)

    pool = WorkerPool(3, work)
    lines = _collect(pool)
    assert pool.signals == [signal.SIGTERM]
    for w in pool.workers:
        # every worker got the SIGTERM: either it waited for it, or it came
        # before the worker had blocked it and ended it
        assert lines.get(w.index) == ["stopped"] or w.exit_code == -signal.SIGTERM
        assert w.signalled == signal.SIGTERM
    assert pool.died == []


def test_a_failing_callback_stops_and_reaps_every_worker():
    def work(index, wfd):
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
        write_lines(wfd, ["ready"])
        return _wait_for_sigterm(wfd)

    def on_line(worker, line):
        raise ValueError("the parent's callback failed")

    pool = WorkerPool(2, work)
    with pytest.raises(ValueError):
        pool.run(on_line)
    for w in pool.workers:
        assert w.reaped and w.signalled == signal.SIGTERM
        with pytest.raises(ChildProcessError):
            os.waitpid(w.pid, os.WNOHANG)


def test_a_second_signal_escalates():
    def work(index, wfd):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a worker slow to stop
        write_lines(wfd, ["ready"])
        signal.sigtimedwait([signal.SIGUSR1], WAIT)
        return 0

    pool = WorkerPool(2, work, escalate=signal.SIGKILL)
    ready = set()

    def on_line(worker, line):
        ready.add(worker.index)
        if len(ready) == 2:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10 ** 6):        # let the handler run: the two are not merged
                if pool.signals:
                    break
            os.kill(os.getpid(), signal.SIGINT)
    pool.run(on_line)
    assert pool.signals == [signal.SIGINT, signal.SIGINT]
    assert [w.exit_code for w in pool.workers] == [-signal.SIGKILL, -signal.SIGKILL]
    assert pool.died == []      # the pool killed them: not a death to report
