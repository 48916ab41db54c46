"""Run a cypoe Kernel inside a running asyncio event loop (docs/aio.rst).

The loop watches the kernel's poller fd (``Kernel.fileno()``, readable when
any fd the kernel watches is ready) with ``loop.add_reader`` and keeps one
loop timer at the kernel's ``next_deadline()``.  Each wake-up runs
``kernel.run_once(0)`` -- one full iteration: readiness, signals the kernel
was told about, due timers, queued events, and the flush of every
connection written to -- and then re-arms the loop timer.  Nothing runs
between wake-ups: an idle kernel costs the loop nothing.

    async def main():
        async with cypoe.aio.embed():            # the default kernel
            server = cypoe.Server(port=0, client_input=lambda c, r: c.put(r))
            port = await cypoe.aio.started(server)
            ...

Code running in asyncio (a coroutine, an aiohttp handler) may call into
cypoe directly -- ``conn.put()``, ``kernel.delay()``, ``session.post()``:
while embedded, the kernel pokes its own wakeup fd when such a call queues
work outside one of its iterations, so the loop runs it at once (one poke
per iteration, however many calls).  ``wakeup()`` asks for a wake-up
explicitly.

Signals are asyncio's: the kernel's ``signal()`` callbacks and its
SIGINT/SIGTERM graceful shutdown are not installed in embedded mode; leaving
``async with embed()`` (or ``aclose()``) does that shutdown.  The ``poll``
backend has no fd to watch and is refused.
"""
from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from cypoe._components import Conn
from cypoe._io import ReadWrite
from cypoe._kernel import Kernel, default_kernel
from cypoe.client import Client
from cypoe.errors import CypoeError
from cypoe.server import Server
from cypoe.tcpmulti import TCPMulti

__all__ = [
    "EmbeddedKernel",
    "embed",
    "embedded",
    "run",
    "wakeup",
    "drained",
    "connect",
    "started",
]

_T = TypeVar("_T")

# The embeddings alive, by id(kernel) (a Kernel cannot be weakly referenced).
_embeddings: dict[int, EmbeddedKernel] = {}


class EmbeddedKernel:
    """A Kernel driven by an asyncio loop.  Made (and started) by
    ``embed()``; ``aclose()`` shuts the kernel's components down gracefully
    and detaches, ``close()`` detaches at once.  Also an async context
    manager (``async with embed() as emb``) that does ``aclose()`` on exit.

    ``wakeups`` counts the kernel iterations run (for tests and for
    curiosity: an idle kernel adds none)."""

    kernel: Kernel
    loop: asyncio.AbstractEventLoop
    wakeups: int

    def __init__(self, kernel: Kernel | None = None, *,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.kernel = default_kernel() if kernel is None else kernel
        if not isinstance(self.kernel, Kernel):
            raise TypeError(f"kernel: expected a Kernel, not {type(self.kernel).__name__}")
        self.loop = asyncio.get_running_loop() if loop is None else loop
        self.wakeups = 0
        self._fd = -1
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._timer_when: float | None = None
        self._fired_for: float | None = None    # the deadline the last timer was for
        self._soon: asyncio.Handle | None = None
        self._closed = True
        # Pending awaits: each check returns True when it has resolved its
        # future (run after every wake-up).
        self._waiters: list[Callable[[], bool]] = []
        # TCPMulti connects awaited with connect(): Conn -> future.
        self._connecting: dict[Conn, asyncio.Future[Conn]] = {}
        self._hooked: set[int] = set()

    # -- attaching -------------------------------------------------------------

    def start(self) -> EmbeddedKernel:
        """Attach the kernel to the loop (``embed()`` calls this)."""
        if not self._closed:
            return self
        k = self.kernel
        if k.running:
            raise CypoeError("embed: the kernel is running its own loop (run())")
        if id(k) in _embeddings:
            raise CypoeError("embed: this kernel is already embedded in an event loop")
        try:
            fd = k.fileno()
        except CypoeError:
            raise CypoeError(
                f"embed: the {k.backend!r} backend has no fd an asyncio loop can "
                f"watch; use Kernel(backend='auto') (epoll or kqueue)") from None
        self.loop.add_reader(fd, self._on_ready)
        k._set_embedded(True)       # work queued from asyncio code wakes the loop
        self._fd = fd
        self._closed = False
        _embeddings[id(k)] = self
        self._arm()
        return self

    def close(self) -> None:
        """Detach now: the loop stops watching the kernel; awaits still
        pending fail with CypoeError.  The kernel and its components stay
        as they are (``aclose()`` shuts them down first)."""
        if self._closed:
            return
        self._closed = True
        if _embeddings.get(id(self.kernel)) is self:
            del _embeddings[id(self.kernel)]
        self.kernel._set_embedded(False)
        if not self.loop.is_closed():
            self.loop.remove_reader(self._fd)
        self._cancel_timer()
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        waiters, self._waiters = self._waiters, []
        connecting, self._connecting = self._connecting, {}
        err = CypoeError("the kernel was detached from the event loop")
        for fut in connecting.values():
            if not fut.done():
                fut.set_exception(err)
        for check in waiters:
            check()

    async def aclose(self, timeout: float | None = None) -> None:
        """Shut every component of the kernel down gracefully (as SIGINT
        does under ``run()``: Servers stop accepting and finish their
        connections, Clients and TCPMultis flush and disconnect), wait for
        the last to finish (at most ``timeout`` seconds: then the ones left
        are left as they are), then detach."""
        if self._closed:
            return
        k = self.kernel
        # What kernel.shutdown() does, without its lasting mark (under run()
        # it ends with run(); here it would shut down every component made
        # on this kernel afterwards).
        for comp in list(k._components):
            try:
                comp.shutdown()
            except Exception as exc:
                k.report_exception("Exception while shutting a component down", exc, comp)
        self.wakeup()
        try:
            if k._components:
                done = self.loop.create_future()

                def finished() -> bool:
                    if self._closed or not self.kernel._components:
                        if not done.done():
                            done.set_result(None)
                        return True
                    return False

                self._waiters.append(finished)
                try:
                    await asyncio.wait_for(done, timeout)
                except asyncio.TimeoutError:
                    pass        # detach anyway: the components are left as they are
            # Events and writes the components' last callbacks queued.
            k.run_once(0)
        finally:
            self.close()

    async def __aenter__(self) -> EmbeddedKernel:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- running the kernel ---------------------------------------------------------

    def wakeup(self) -> None:
        """Run a kernel iteration soon (once, however often it is called
        before it runs).  Loop thread only; from another thread use
        ``kernel.call_soon_threadsafe``, which wakes the kernel's fd."""
        if self._soon is None and not self._closed:
            self._soon = self.loop.call_soon(self._on_soon)

    def _on_ready(self) -> None:
        self._wake()

    def _on_soon(self) -> None:
        self._soon = None
        self._wake()

    def _on_timer(self) -> None:
        self._fired_for = self._timer_when
        self._timer = None
        self._timer_when = None
        self._wake()

    def _wake(self) -> None:
        if self._closed:
            return
        self.wakeups += 1
        try:
            self.kernel.run_once(0)
        finally:
            if not self._closed:
                try:
                    self._check_waiters()
                finally:
                    self._arm()

    def _arm(self) -> None:
        """One loop timer at the kernel's next deadline (none when nothing
        is scheduled); an immediate one when work is already queued."""
        if self._closed:
            return
        when = self.kernel.next_deadline()
        if when is None:
            self._cancel_timer()
            return
        if self._timer is not None and self._timer_when == when:
            return
        self._cancel_timer()
        delay = when - self.kernel.time()
        if when == self._fired_for and delay > 0.0:
            # The loop's timer fired before the kernel's deadline (uvloop
            # keeps time in whole milliseconds): wait a millisecond at
            # least, rather than spinning until the deadline comes.
            delay = max(delay, 0.001)
        self._fired_for = None
        self._timer_when = when
        if delay <= 0.0:
            self._timer = self.loop.call_soon(self._on_timer)
        else:
            self._timer = self.loop.call_later(delay, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_when = None

    def _check_waiters(self) -> None:
        if self._waiters:
            self._waiters = [check for check in self._waiters if not check()]

    def _wait_until(self, check: Callable[[asyncio.Future[_T]], bool]) -> asyncio.Future[_T]:
        """A future resolved by ``check(future)`` (which returns True once it
        has set the result or exception), tried now and after every
        wake-up."""
        fut: asyncio.Future[_T] = self.loop.create_future()
        if self._closed:
            fut.set_exception(CypoeError("the kernel is not embedded in an event loop"))
            return fut

        def waiter() -> bool:
            if fut.done():
                return True
            if self._closed:
                fut.set_exception(CypoeError("the kernel was detached from the event loop"))
                return True
            return check(fut)

        if not waiter():
            self._waiters.append(waiter)
            # Whatever the caller did in cypoe from asyncio code before
            # awaiting is acted on now, not at some later wake-up.
            self.wakeup()
        return fut

    # -- TCPMulti connects -----------------------------------------------------------

    def _hook_multi(self, multi: TCPMulti) -> None:
        """Chain connect()'s resolution onto the TCPMulti's on_success and
        on_failure (the user's callbacks run first, unchanged)."""
        if id(multi) in self._hooked:
            return
        core = multi._core
        user_success = core.on_success
        user_failure = core.on_failure
        connecting = self._connecting

        def on_success(conn: Conn) -> None:
            try:
                if user_success is not None:
                    user_success(conn)
            finally:
                fut = connecting.pop(conn, None)
                if fut is not None and not fut.done():
                    fut.set_result(conn)

        def on_failure(conn: Conn, operation: str, errnum: int, errstr: str) -> None:
            try:
                if user_failure is not None:
                    user_failure(conn, operation, errnum, errstr)
            finally:
                fut = connecting.pop(conn, None)
                if fut is not None and not fut.done():
                    fut.set_exception(OSError(errnum, f"{operation}: {errstr}"))

        core.on_success = on_success
        core.on_failure = on_failure
        self._hooked.add(id(multi))


def embedded(kernel: Kernel | None = None) -> EmbeddedKernel | None:
    """The embedding of ``kernel`` (default: ``cypoe.kernel``), or None."""
    k = default_kernel() if kernel is None else kernel
    return _embeddings.get(id(k))


def embed(kernel: Kernel | None = None, *,
          loop: asyncio.AbstractEventLoop | None = None) -> EmbeddedKernel:
    """Attach ``kernel`` (default: ``cypoe.kernel``) to ``loop`` (default:
    the running loop) and return the started EmbeddedKernel.  Use it as an
    async context manager to shut the components down and detach on exit."""
    return EmbeddedKernel(kernel, loop=loop).start()


def run(main: Coroutine[Any, Any, _T], *, kernel: Kernel | None = None,
        debug: bool | None = None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> _T:
    """Like ``asyncio.run(main)``, with ``kernel`` (default: ``cypoe.kernel``)
    embedded for the whole run; when ``main`` returns (or raises), the
    kernel's components are shut down gracefully before the loop closes.
    ``loop_factory`` picks the loop (e.g. ``uvloop.new_event_loop``)."""

    async def runner() -> _T:
        async with embed(kernel):
            return await main

    if loop_factory is None:
        return asyncio.run(runner(), debug=debug)
    loop = loop_factory()
    try:
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(runner())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _embedding(kernel: Kernel | None) -> EmbeddedKernel:
    if kernel is not None:
        emb = _embeddings.get(id(kernel))
        if emb is None:
            raise CypoeError("this kernel is not embedded in an event loop "
                             "(cypoe.aio.embed(kernel))")
        return emb
    loop = asyncio.get_running_loop()
    mine = [e for e in _embeddings.values() if e.loop is loop]
    if len(mine) == 1:
        return mine[0]
    if not mine:
        raise CypoeError("no cypoe kernel is embedded in the running loop "
                         "(cypoe.aio.embed())")
    raise CypoeError("several kernels are embedded in this loop: pass kernel=")


def wakeup(kernel: Kernel | None = None) -> None:
    """Have the embedded ``kernel`` run an iteration soon: after asyncio
    code called into cypoe (``put``, ``delay``, ``post``...) outside a
    cypoe callback.  Without ``kernel``: the one embedded in the running
    loop."""
    _embedding(kernel).wakeup()


def _kernel_of(obj: object) -> Kernel | None:
    k = getattr(obj, "kernel", None)
    return k if isinstance(k, Kernel) else None


async def drained(obj: ReadWrite | Client, *, kernel: Kernel | None = None) -> None:
    """Wait until ``obj``'s buffered output has been written (its
    ``flushed`` point): a Connection, a TCPMulti Conn, a ReadWrite or a
    Client.  Returns at once when nothing is buffered.  Raises
    ConnectionError when the connection closed with output still
    unwritten.  ``conn.put(...)`` then ``await drained(conn)`` is
    asyncio's ``write()`` / ``await drain()``."""
    emb = _embedding(kernel if kernel is not None else _kernel_of(obj))
    rw: ReadWrite
    if isinstance(obj, Client):
        link = obj.wheel
        if link is None:
            raise CypoeError("drained: the Client is not connected")
        rw = link
    elif isinstance(obj, ReadWrite):
        rw = obj
    else:
        raise TypeError(f"drained: expected a connection, a ReadWrite or a Client, "
                        f"not {type(obj).__name__}")
    dropped = rw.dropped_octets
    emb.wakeup()        # put() from asyncio code: flush it now

    def check(fut: asyncio.Future[None]) -> bool:
        if rw.dropped_octets > dropped:
            fut.set_exception(ConnectionError(
                errno.EPIPE, "drained: the connection closed before its output was written"))
            return True
        if rw.closed or rw.get_driver_out_octets() == 0:
            fut.set_result(None)
            return True
        return False

    await emb._wait_until(check)


async def connect(multi: TCPMulti, address: str, port: int, *, kernel: Kernel | None = None,
                  **options: Any) -> Conn:
    """``multi.connect(address, port, **options)``, resolved when the
    connection is established (after ``on_success``): returns the Conn.
    A failure raises OSError (ConnectionRefusedError...) after
    ``on_failure``; a connect timeout raises TimeoutError and a shutdown
    before the connection was made ConnectionAbortedError.  Cancelling the
    await shuts the connection down."""
    emb = _embedding(kernel if kernel is not None else multi.kernel)
    emb._hook_multi(multi)
    conn = multi.connect(address, port, **options)
    fut: asyncio.Future[Conn] = emb.loop.create_future()
    emb._connecting[conn] = fut

    def ended(_: asyncio.Future[None]) -> bool:
        # An end without on_success/on_failure: a timeout or a shutdown.
        if fut.done():
            return True
        if conn.id in multi:
            return False
        emb._connecting.pop(conn, None)
        if multi.ended or multi._core.dying:
            fut.set_exception(ConnectionAbortedError(
                errno.ECONNABORTED, f"connect: {address}:{port}: the TCPMulti shut down"))
        else:
            fut.set_exception(TimeoutError(
                errno.ETIMEDOUT, f"connect: {address}:{port}: timed out"))
        return True

    watcher = emb._wait_until(ended)
    emb.wakeup()
    try:
        return await fut
    except asyncio.CancelledError:
        emb._connecting.pop(conn, None)
        multi.shutdown(conn)
        raise
    finally:
        if not watcher.done():
            watcher.cancel()


async def started(server: Server, *, kernel: Kernel | None = None) -> int | None:
    """Wait until ``server`` listens and return its port (None for a UNIX
    socket); raises OSError when it could not listen.  (A Server binds in
    its constructor, so this rarely has to wait; it is the one place where
    a failure to listen becomes an exception.)"""
    emb = _embedding(kernel if kernel is not None else server.kernel)

    def check(fut: asyncio.Future[int | None]) -> bool:
        if server.started:
            fut.set_result(server.port)
            return True
        if server._core.ended:
            failure = server._core.listen_error
            if failure is not None:
                op, errnum, errstr = failure
                fut.set_exception(OSError(errnum, f"{op}: {errstr}"))
            else:
                exc = getattr(server, "_resolve_error", None)
                fut.set_exception(OSError(getattr(exc, "errno", 0) or 0,
                                          f"listen: {exc or 'the server could not listen'}"))
            return True
        return False

    return await emb._wait_until(check)
