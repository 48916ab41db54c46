"""TCPMulti: POE::Component::Client::TCPMulti.

One session for any number of outbound connections.  Each connection is a
compiled ``Conn`` (a ReadWrite with an id, an address and a lazily created
heap; no Python socket, dict or session of its own); timeouts are deadlines
checked by one sweep for the whole component.
"""
from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from cypoe import _kernel
from cypoe._components import Conn, _MultiCore, call_soon, call_user
from cypoe.client import resolve_async
from cypoe.errors import CypoeError
from cypoe._component import (ShutdownHook, callable_or_none, check_args, choose_filters,
                              check_states, check_timeout, client_tls_context, resolve_kernel,
                              retire)

if TYPE_CHECKING:
    import ssl as _ssl

    from cypoe._kernel import Kernel, Session, Timer
    from cypoe.filters import FilterSpec

__all__ = ["TCPMulti", "Conn"]

DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_INPUT_TIMEOUT = 300.0

_RESERVED_STATES = ("connect", "send", "shutdown", "die")


class TCPMulti:
    """Many outbound TCP connections in one session; the TCPMulti page of
    the documentation describes every parameter and callback.

    Beyond POE's parameters: ``ssl=True`` or an ``ssl.SSLContext`` runs TLS on every
    connection (``on_success`` after the handshake; a failed or timed-out
    handshake is ``on_failure(conn, "tls", ...)``), ``server_hostname`` for
    SNI/verification, ``tls_timeout`` (default 10 s) bounds the handshake
    once TCP is connected.

    State handlers (``states=``) and the session's ``_start``/``_stop``
    receive the TCPMulti first: ``handler(multi, *args)``.  The session's
    events ``connect``, ``send``, ``shutdown`` and ``die`` are built in
    (``kernel.post(alias, "connect", address, port)``).
    """

    kernel: Kernel
    alias: str | None
    session: Session | None
    heap: dict[Any, Any]

    def __init__(self, *, on_input: Callable[..., Any],
                 on_success: Callable[..., Any] | None = None,
                 on_failure: Callable[..., Any] | None = None,
                 on_error: Callable[..., Any] | None = None,
                 on_disconnected: Callable[..., Any] | None = None,
                 on_timeout: Callable[..., Any] | None = None,
                 on_initialize: Callable[..., Any] | None = None,
                 filter: FilterSpec | None = None,
                 input_filter: FilterSpec | None = None,
                 output_filter: FilterSpec | None = None,
                 connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
                 input_timeout: float | None = DEFAULT_INPUT_TIMEOUT,
                 domain: int | None = None, bind_address: str | None = None,
                 alias: str | None = None,
                 states: Mapping[str, Callable[..., Any]] | None = None,
                 args: tuple[Any, ...] | list[Any] = (), kernel: Kernel | None = None,
                 ssl: bool | _ssl.SSLContext | None = None,
                 server_hostname: str | None = None, tls_timeout: float = 10.0) -> None:
        k = resolve_kernel(kernel)
        if not callable(on_input):
            raise TypeError(f"on_input: expected a callable, not {type(on_input).__name__}")
        for name, cb in (("on_success", on_success), ("on_failure", on_failure),
                         ("on_error", on_error), ("on_disconnected", on_disconnected),
                         ("on_timeout", on_timeout), ("on_initialize", on_initialize)):
            callable_or_none(name, cb)
        in_filter, out_filter = choose_filters("", filter, input_filter, output_filter)
        ct = check_timeout("connect_timeout", connect_timeout)
        it = check_timeout("input_timeout", input_timeout)
        if domain not in (None, socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"domain: expected None, AF_INET or AF_INET6, not {domain!r}")
        if bind_address is not None and not isinstance(bind_address, str):
            raise TypeError("bind_address: expected a str")
        states = check_states(states)
        args = check_args("args", args)
        tls = client_tls_context(ssl)

        core = _MultiCore(k, self)
        core.on_input = on_input
        core.on_success = on_success
        core.on_failure = on_failure
        core.on_error = on_error
        core.on_disconnected = on_disconnected
        core.on_timeout = on_timeout
        core.on_initialize = on_initialize
        core.in_filter = in_filter
        core.out_filter = out_filter
        core.connect_timeout = ct
        core.input_timeout = it
        core.bind_address = bind_address
        core.domain = domain or 0
        core.tls_context = tls
        core.server_hostname = server_hostname
        tt = check_timeout("tls_timeout", tls_timeout)
        if tls is not None and tt <= 0:
            raise ValueError("tls_timeout: must be > 0")
        core.tls_timeout = tt or 10.0
        self._core = core
        self.kernel = k
        self.alias = alias
        self._states = states
        self._ended = False
        self._held = False
        self.session = None
        self.heap = {}

        user_states = dict(states) if states else {}
        session_states = {}
        for name, fn in user_states.items():
            if name in _RESERVED_STATES or name in ("_start", "_stop"):
                continue
            session_states[name] = self._adapt(fn)
        session_states["_stop"] = self._on_stop
        session_states["connect"] = lambda s, *a: self.connect(*a)
        session_states["send"] = lambda s, c, *recs: self.send(c, *recs)
        session_states["shutdown"] = lambda s, c: self.shutdown(c)
        session_states["die"] = lambda s: self.die()
        self._session_states = session_states
        user_start = user_states.get("_start")
        self._user_stop = user_states.get("_stop")
        # Registered while the session lives: SIGINT/SIGTERM call die().
        self._hook = ShutdownHook(self.die)
        # The alias names the TCPMulti, not one session: it stays valid
        # while the TCPMulti is idle (see _wake) and goes with die().
        if alias is not None:
            k.alias_set(alias, self)
        self._new_session(args, user_start)

    def _adapt(self, fn):
        # Posted and delayed events are the kernel's: an exception in their
        # handler is reported like any other; call() hands it to the caller.
        return lambda session, *a: fn(self, *a)

    # -- the session ---------------------------------------------------------------

    def _new_session(self, args=(), user_start=None):
        """Start a session for this TCPMulti: at construction, and again
        when it is used after it went idle."""
        k = self.kernel

        def start(session, *a):
            self.session = session
            # Held until the next loop iteration, so that connect() can be
            # called right after the constructor.
            session.retain()
            call_soon(k, session.release)
            k.register_component(self._hook)
            if user_start is not None:
                call_user(k, "TCPMulti state '_start'", user_start, self, *a)

        states = dict(self._session_states)
        states["_start"] = start
        _kernel.Session(states, heap=self.heap, args=args, kernel=k)
        return self.session

    def _wake(self, what):
        """The live session; a TCPMulti that went idle (its session ended
        because it had nothing to do) gets a new one, with the same states
        and heap.  Raises CypoeError once die() has been called."""
        if self._ended or self._core.dying:
            raise CypoeError(f"{what}: this TCPMulti has ended")
        s = self.session
        if s is None or s.stopped:
            s = self._new_session()
        return s

    def _on_stop(self, session):
        # The session ends: for good after die(), otherwise because the
        # TCPMulti is idle (no connection, event or timer): it then keeps
        # nothing alive until it is used again.
        self._held = False
        self.kernel.unregister_component(self._hook)
        if self._core.dying:
            self._finish()

    def _finish(self):
        if self._ended:
            return
        self._ended = True
        retire(self, self.kernel, self.alias, self._hook)
        if self._user_stop is not None:
            call_user(self.kernel, "TCPMulti state '_stop'", self._user_stop, self)

    # kernel.post(alias, event, *args) / kernel.call(alias, ...)
    def _cypoe_event(self, event, args):
        if self._ended or self._core.dying:
            return None
        return self._wake("post").call(event, *args)

    # -- connections -----------------------------------------------------------

    def connect(self, address: str, port: int, *, bind_address: str | None = None,
                bind_port: int | None = None, connect_timeout: float | None = None,
                input_timeout: float | None = None,
                heap: dict[Any, Any] | None = None) -> Conn:
        """Open a connection; returns its Conn at once (``on_initialize`` has
        run).  The outcome arrives as on_success or on_failure."""
        if self._ended or self._core.dying:
            raise CypoeError("connect: this TCPMulti has ended")
        if not isinstance(address, str) or not address:
            raise TypeError(f"address: expected a host name or address (str), not {address!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
            raise ValueError(f"port: expected a port number 1-65535, not {port!r}")
        if bind_address is not None and not isinstance(bind_address, str):
            raise TypeError("bind_address: expected a str")
        if bind_port is not None and (isinstance(bind_port, bool) or not isinstance(bind_port, int)
                                      or not 0 <= bind_port <= 65535):
            raise ValueError(f"bind_port: expected a port number 0-65535, not {bind_port!r}")
        ct = None if connect_timeout is None else check_timeout("connect_timeout",
                                                                 connect_timeout)
        it = None if input_timeout is None else check_timeout("input_timeout", input_timeout)
        if heap is not None and not isinstance(heap, dict):
            raise TypeError(f"heap: expected a dict, not {type(heap).__name__}")
        self._wake("connect")
        return self._hold(self._core.connect(address, port, bind_address, bind_port, ct, it,
                                             heap))

    def _hold(self, c):
        if self._core.conns and not self._held:
            # Live connections keep the session alive.
            self._held = True
            self.session.retain()
        return c

    def adopt(self, sock: socket.socket | int, address: str, port: int, *,
              input_timeout: float | None = None, heap: dict[Any, Any] | None = None) -> Conn:
        """Take over ``sock`` -- a non-blocking TCP ``socket.socket`` (it
        is detached) or its fd -- already connected (or connecting) to
        ``address``:``port``, as a connection of this TCPMulti: what the
        port scanner does with the open ports its compiled engine found.
        The Conn goes on as one from connect() would (TLS first when
        configured, then on_success); it owns the fd from now on.  Returns
        the Conn.  ``input_timeout`` and ``heap`` are as for connect()."""
        if self._ended or self._core.dying:
            raise CypoeError("adopt: this TCPMulti has ended")
        fd = sock if isinstance(sock, int) else sock.detach()
        it = None if input_timeout is None else check_timeout("input_timeout", input_timeout)
        self._wake("adopt")
        return self._hold(self._core.adopt(fd, address, port, it, heap))

    #: The name adopt() had while it was private (kept for older callers).
    _adopt = adopt

    def _resolve(self, c, host, port, bind):
        attempt_id = c.id

        def done(fam, result):
            conn = self._core.conns.get(attempt_id)
            if conn is None:
                return
            if fam is None:
                self._core.fail(conn, "resolve", getattr(result, "errno", 0) or 0,
                                getattr(result, "strerror", None) or str(result))
                return
            self._core.start(conn, fam, result, bind)

        resolve_async(self.kernel, host, port, self._core.domain or None, done)

    def _conn_gone(self, c):
        if self._core.conns:
            return
        if self._core.dying and not self._ended:
            self._held = False
            self._end_session()
        elif self._held:
            self._held = False
            self.session.release()

    def _end_session(self):
        if self.session is not None and not self.session.stopped:
            self.session.stop()         # _on_stop finishes
        else:
            self._finish()

    def _conn(self, conn_or_id):
        if isinstance(conn_or_id, Conn):
            return conn_or_id
        return self._core.conns.get(conn_or_id)

    def send(self, conn_or_id: Conn | int, *records: Any) -> bool:
        """Queue records on a connection (no-op for one that is gone)."""
        c = self._conn(conn_or_id)
        if c is None or not c.connected:
            return False
        return c.put(*records)

    def shutdown(self, conn_or_id: Conn | int) -> None:
        """Graceful close: flush, close, then on_disconnected.  Nothing for a
        connection that is already gone."""
        c = self._conn(conn_or_id)
        if c is not None:
            c.shutdown()

    def die(self) -> None:
        """Shut every connection down gracefully and end the session: the
        TCPMulti is unusable from here on (until then it is usable, idle or
        not)."""
        if self._ended or self._core.dying:
            return
        self._core.dying = True
        self._core.shutdown_all()
        if not self._core.conns:
            self._held = False
            self._end_session()

    # -- session face ------------------------------------------------------------

    def post(self, event: str, *args: Any) -> bool:
        """Queue ``event`` for the session (False once the TCPMulti has ended)."""
        if self._ended or self._core.dying:
            return False
        return self._wake("post").post(event, *args)

    def call(self, event: str, *args: Any) -> Any:
        """Deliver ``event`` to the session now and return what its handler
        returns (an idle TCPMulti gets a new session first).  Raises
        CypoeError once die() has been called."""
        return self._wake("call").call(event, *args)

    def delay(self, seconds: float, event: str, *args: Any) -> Timer:
        """Deliver ``event`` to the session after ``seconds``; returns the
        Timer.  Raises CypoeError once die() has been called."""
        return self._wake("delay").delay(seconds, event, *args)

    @property
    def connections(self) -> int:
        """The number of connections (connecting or connected)."""
        return len(self._core.conns)

    @property
    def ended(self) -> bool:
        """True once die() has finished and the session has ended."""
        return self._ended

    def __getitem__(self, conn_id: int) -> Conn:
        c = self._core.conns.get(conn_id)
        if c is None:
            raise KeyError(conn_id)
        return c

    def __contains__(self, conn_id: object) -> bool:
        return conn_id in self._core.conns

    def __iter__(self) -> Iterator[Conn]:
        return iter(list(self._core.conns.values()))

    def __len__(self) -> int:
        return len(self._core.conns)

    def __repr__(self) -> str:
        return f"<cypoe.TCPMulti connections={len(self._core.conns)}>"
