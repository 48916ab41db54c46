"""TCPMulti: POE::Component::Client::TCPMulti.

One session for any number of outbound connections.  Each connection is a
compiled ``Conn`` (a ReadWrite with an id, an address and a lazily created
heap; no Python socket, dict or session of its own); timeouts are deadlines
checked by one sweep for the whole component.  The state machine -- connect,
name lookup, TLS, the end of each connection, the session that ends when the
TCPMulti is idle and comes back when it is used -- is the compiled
``MultiCore`` (``cypoe._components``); this module holds the parameters, the
session's events and the public face.
"""
from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from cypoe._components import Conn, MultiCore
from cypoe._params import (ShutdownHook, callable_or_none, check_args, check_states,
                           check_timeout, choose_filters, client_tls_context, resolve_kernel)
from cypoe.errors import CypoeError

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

        core = MultiCore(k, self)
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
        core.states = states
        core.alias = alias
        self._core = core
        self.kernel = k
        self.alias = alias
        self.heap = {}
        core.heap = self.heap

        user_states = dict(states) if states else {}
        session_states = {}
        for name, fn in user_states.items():
            if name in _RESERVED_STATES or name in ("_start", "_stop"):
                continue
            session_states[name] = self._adapt(fn)
        session_states["connect"] = lambda s, *a: self.connect(*a)
        session_states["send"] = lambda s, c, *recs: self.send(c, *recs)
        session_states["shutdown"] = lambda s, c: self.shutdown(c)
        session_states["die"] = lambda s: self.die()
        core.session_states = session_states
        core.user_stop = user_states.get("_stop")
        # Registered while the session lives: SIGINT/SIGTERM call die().
        core.hook = ShutdownHook(core.die)
        # The alias names the TCPMulti, not one session: it stays valid
        # while the TCPMulti is idle (see MultiCore.wake) and goes with die().
        if alias is not None:
            k.alias_set(alias, self)
        core.new_session(args, user_states.get("_start"))

    def _adapt(self, fn):
        # Posted and delayed events are the kernel's: an exception in their
        # handler is reported like any other; call() hands it to the caller.
        return lambda session, *a: fn(self, *a)

    @property
    def session(self) -> Session | None:
        """The TCPMulti's current session (a new one replaces it after it
        ended because the TCPMulti was idle), or None."""
        return self._core.session

    # kernel.post(alias, event, *args) / kernel.call(alias, ...)
    def _cypoe_event(self, event, args):
        core = self._core
        if core.ended or core.dying:
            return None
        return core.wake("post").call(event, *args)

    # -- connections -----------------------------------------------------------

    def connect(self, address: str, port: int, *, bind_address: str | None = None,
                bind_port: int | None = None, connect_timeout: float | None = None,
                input_timeout: float | None = None,
                heap: dict[Any, Any] | None = None) -> Conn:
        """Open a connection; returns its Conn at once (``on_initialize`` has
        run).  The outcome arrives as on_success or on_failure."""
        return self._core.connect(address, port, bind_address, bind_port, connect_timeout,
                                  input_timeout, heap)

    def adopt(self, sock: socket.socket | int, address: str, port: int, *,
              input_timeout: float | None = None, heap: dict[Any, Any] | None = None) -> Conn:
        """Take over ``sock`` -- a non-blocking TCP ``socket.socket`` (it
        is detached) or its fd -- already connected (or connecting) to
        ``address``:``port``, as a connection of this TCPMulti: what the
        port scanner does with the open ports its compiled engine found.
        The Conn goes on as one from connect() would (TLS first when
        configured, then on_success); it owns the fd from now on.  Returns
        the Conn.  ``input_timeout`` and ``heap`` are as for connect()."""
        if self._core.ended or self._core.dying:
            raise CypoeError("adopt: this TCPMulti has ended")
        it = None if input_timeout is None else check_timeout("input_timeout", input_timeout)
        fd = sock if isinstance(sock, int) else sock.detach()
        return self._core.adopt(fd, address, port, it, heap)

    #: The name adopt() had while it was private (kept for older callers).
    _adopt = adopt

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
        self._core.die()

    # -- session face ------------------------------------------------------------

    def post(self, event: str, *args: Any) -> bool:
        """Queue ``event`` for the session (False once the TCPMulti has ended)."""
        if self._core.ended or self._core.dying:
            return False
        return self._core.wake("post").post(event, *args)

    def call(self, event: str, *args: Any) -> Any:
        """Deliver ``event`` to the session now and return what its handler
        returns (an idle TCPMulti gets a new session first).  Raises
        CypoeError once die() has been called."""
        return self._core.wake("call").call(event, *args)

    def delay(self, seconds: float, event: str, *args: Any) -> Timer:
        """Deliver ``event`` to the session after ``seconds``; returns the
        Timer.  Raises CypoeError once die() has been called."""
        return self._core.wake("delay").delay(seconds, event, *args)

    @property
    def connections(self) -> int:
        """The number of connections (connecting or connected)."""
        return len(self._core.conns)

    @property
    def ended(self) -> bool:
        """True once die() has ended the TCPMulti."""
        return self._core.ended

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
