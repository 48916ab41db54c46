"""Forked worker processes: the one start-up of ``--workers N``.

``cypoe load``, ``cypoe scan`` and ``cypoe serve`` split their work over
forked processes the same way, through :class:`WorkerPool`:

- every worker is forked with SIGINT and SIGTERM blocked, so a signal that
  arrives while the pool starts is not lost and does not run the parent's
  handler in a child; in the child SIGINT is ignored (a terminal's Ctrl-C
  reaches the whole process group: the parent decides) and SIGTERM is
  restored to what it was before the pool started;
- each worker gets its index and the write end of its own pipe, and sends
  its results as lines (the read ends of the other workers' pipes are
  closed in it, so each pipe ends when its worker does);
- the parent reads every pipe to its end, calling ``on_line`` per line,
  while forwarding SIGINT and SIGTERM to every worker still running as
  SIGTERM (a later signal sends ``escalate``: SIGTERM again, or SIGKILL);
  its handlers are in place from before the first fork until the last
  worker is reaped, so no signal can end the parent and leave its workers
  running;
- it then reaps every worker and reports (on stderr, and in
  :attr:`WorkerPool.died`) each one that died: killed by a signal the pool
  did not send, or ended by an exception in its work.

An exception in the parent while the pool runs (in a callback, say) stops
and reaps every worker before it propagates: no worker outlives the pool.
"""

from __future__ import annotations

import os
import selectors
import signal
import time

from cypoe.cli import common

#: The exit code of a worker whose work raised (EX_SOFTWARE): a crash.
EXIT_CRASHED = 70

_FORWARDED = (signal.SIGINT, signal.SIGTERM)


class Worker:
    """One forked worker, as the parent sees it."""

    __slots__ = ("index", "pid", "fd", "status", "signalled", "_buf")

    def __init__(self, index, pid, fd):
        self.index = index          # 0 .. count-1: which share it runs
        self.pid = pid
        self.fd = fd                # read end of its pipe (None once at its end)
        self.status = None          # os.waitpid status once reaped
        self.signalled = None       # the last signal the pool sent it
        self._buf = bytearray()

    @property
    def reaped(self):
        """True once the worker has exited and been waited for."""
        return self.status is not None

    @property
    def exit_code(self):
        """Its exit code once reaped (``-N`` when signal N ended it), else None."""
        if self.status is None:
            return None
        return os.waitstatus_to_exitcode(self.status)

    @property
    def died(self):
        """True when it ended by a signal the pool did not send it, or by
        an exception in its work (:data:`EXIT_CRASHED`)."""
        code = self.exit_code
        if code is None:
            return False
        if code < 0:
            return -code != self.signalled
        return code == EXIT_CRASHED

    def describe(self):
        """How it ended, in words: ``"killed by SIGSEGV"``, ``"exit code 70"``."""
        code = self.exit_code
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


def _child(index, wfd, work, inherited_fds, old_term):
    """The forked side: never returns."""
    code = EXIT_CRASHED
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        for fd in inherited_fds:
            os.close(fd)
        code = work(index, wfd)
        code = 0 if code is None else int(code)
    except common.OutputClosed:
        code = common.EXIT_OUTPUT_CLOSED
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a worker must never return into the parent's code
        import traceback
        traceback.print_exc()
        code = EXIT_CRASHED
    finally:
        os._exit(code)


class WorkerPool:
    """``count`` forked processes, each running ``work(index, wfd)``.

    ``work`` runs in the child with the write end ``wfd`` of its pipe and
    returns an exit code (None: 0); the pool closes nothing of ``wfd``: the
    worker may close it early (``cypoe serve`` does once it listens) or
    leave it to its exit.  ``prog`` names the command in the report of a
    worker that died; ``escalate`` is what a second and later signal sends
    to the workers (the first always sends SIGTERM).

    Use: ``pool = WorkerPool(...); pool.run(on_line, ...)``; then
    :attr:`workers`, :attr:`died` and :attr:`signals` tell how it went.
    """

    def __init__(self, count, work, *, prog="cypoe", escalate=signal.SIGTERM):
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        self.count = count
        self.work = work
        self.prog = prog
        self.escalate = escalate
        self.workers = []
        #: the signals (SIGINT, SIGTERM) the parent received while it ran
        self.signals = []

    # -- what the callbacks may call ------------------------------------------

    def stop(self, sig=signal.SIGTERM):
        """Send ``sig`` to every worker not yet reaped."""
        for w in self.workers:
            if w.status is None:
                self._kill(w, sig)

    @property
    def died(self):
        """The workers that died (see :attr:`Worker.died`)."""
        return [w for w in self.workers if w.died]

    # -- running ----------------------------------------------------------------

    def run(self, on_line=None, *, on_end=None, on_tick=None, interval=1.0):
        """Fork the workers, read their pipes to the end, reap them.

        ``on_line(worker, line)`` gets each line (bytes, without its
        newline); ``on_end(worker)`` is called when a worker's pipe ends;
        ``on_tick()`` every ``interval`` seconds while any pipe is open.
        Returns the workers (also :attr:`workers`)."""
        saved = {sig: signal.getsignal(sig) for sig in _FORWARDED}
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            for sig in _FORWARDED:
                signal.signal(sig, self._on_signal)
            try:
                self._fork_all(saved[signal.SIGTERM])
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
            self._read_all(on_line, on_end, on_tick, interval)
            self._reap_all()
        except BaseException:
            # no worker outlives the pool
            self._close_pipes()
            self.stop(signal.SIGTERM)
            self._reap_all(timeout=10.0)
            raise
        finally:
            for sig, old in saved.items():
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
        for w in self.died:
            common.err(self.prog, f"worker {w.index + 1} of {self.count} (pid {w.pid}) died: "
                                  f"{w.describe()}")
        return self.workers

    def _fork_all(self, old_term):
        for index in range(self.count):
            r, wfd = os.pipe()
            try:
                pid = os.fork()
            except BaseException:
                os.close(r)
                os.close(wfd)
                raise
            if pid == 0:
                _child(index, wfd, self.work, [r] + [w.fd for w in self.workers], old_term)
            os.close(wfd)
            self.workers.append(Worker(index, pid, r))

    def _read_all(self, on_line, on_end, on_tick, interval):
        sel = selectors.DefaultSelector()
        try:
            for w in self.workers:
                sel.register(w.fd, selectors.EVENT_READ, w)
            next_tick = time.monotonic() + interval
            while sel.get_map():
                wait = max(0.0, next_tick - time.monotonic()) if on_tick else None
                for key, _ in sel.select(wait):
                    w = key.data
                    data = os.read(w.fd, 1 << 16)
                    if not data:
                        sel.unregister(w.fd)
                        os.close(w.fd)
                        w.fd = None
                        if w._buf and on_line is not None:  # a last line without newline
                            line = bytes(w._buf)
                            del w._buf[:]
                            on_line(w, line)
                        if on_end is not None:
                            on_end(w)
                        continue
                    w._buf += data
                    end = w._buf.rfind(b"\n")
                    if end >= 0:
                        lines = bytes(w._buf[:end]).split(b"\n")
                        del w._buf[:end + 1]
                        if on_line is not None:
                            for line in lines:
                                on_line(w, line)
                if on_tick is not None and time.monotonic() >= next_tick:
                    on_tick()
                    next_tick += interval
        finally:
            sel.close()

    def _reap_all(self, timeout=None):
        """Wait for every worker; with ``timeout``, SIGKILL whichever has
        not exited by then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for w in self.workers:
            while w.status is None:
                try:
                    if deadline is None:
                        _, status = os.waitpid(w.pid, 0)
                    else:
                        done, status = os.waitpid(w.pid, os.WNOHANG)
                        if not done:
                            if time.monotonic() > deadline:
                                self._kill(w, signal.SIGKILL)
                                deadline = None
                            else:
                                time.sleep(0.01)
                            continue
                except ChildProcessError:  # reaped elsewhere
                    status = 0
                w.status = status

    def _close_pipes(self):
        for w in self.workers:
            if w.fd is not None:
                os.close(w.fd)
                w.fd = None

    def _on_signal(self, signum, frame):
        # The first SIGINT/SIGTERM asks every worker to stop (SIGTERM: each
        # ends gracefully and reports what it has); a later one sends
        # ``escalate``.  A handler, not KeyboardInterrupt, so that the
        # interrupt cannot land between two statements of the loop.
        self.signals.append(signum)
        self.stop(signal.SIGTERM if len(self.signals) == 1 else self.escalate)

    @staticmethod
    def _kill(w, sig):
        try:
            os.kill(w.pid, sig)
        except ProcessLookupError:
            return
        w.signalled = sig


def write_lines(fd, lines):
    """Write ``lines`` (str or bytes, newline added) to ``fd`` in full."""
    data = b"".join((line.encode() if isinstance(line, str) else line) + b"\n"
                    for line in lines)
    while data:
        n = os.write(fd, data)
        data = data[n:]
