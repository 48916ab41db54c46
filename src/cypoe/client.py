"""Client: POE::Component::Client::TCP.

One outbound connection at a time, with reconnects.  The connection and the
client's state machine (connect, name lookup, TLS, connected, the end of the
connection, the client's own end) are compiled: ``ClientConnection`` and
``ClientCore`` in ``cypoe._components``.  This module holds the parameters,
the events and the public face.
"""
from __future__ import annotations

import logging
import socket

from cypoe._components import CALLBACK_FAILED, ClientCore, call_soon, call_user
from cypoe._params import (callable_or_none, check_args, check_marks, check_port,
                           check_states, check_timeout, choose_filters, client_tls_context,
                           enlist, resolve_kernel)
from cypoe.errors import CypoeError

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl as _ssl

    from cypoe._components import ClientConnection
    from cypoe._kernel import Kernel, Timer
    from cypoe.filters import FilterSpec

__all__ = ["Client"]

_log = logging.getLogger("cypoe")


class Client:
    """A TCP client (POE::Component::Client::TCP); the Client page of the
    documentation describes every parameter and callback."""

    kernel: Kernel
    domain: int | None
    alias: str | None
    args: tuple[Any, ...]
    heap: dict[Any, Any]

    def __init__(self, *, remote_address: str, remote_port: int | None = None,
                 bind_address: str | None = None, bind_port: int | None = None,
                 domain: int | None = None, connect_timeout: float | None = None,
                 alias: str | None = None, args: tuple[Any, ...] | list[Any] = (),
                 started: Callable[..., Any] | None = None,
                 connected: Callable[..., Any] | None = None,
                 connect_error: Callable[..., Any] | None = None,
                 disconnected: Callable[..., Any] | None = None,
                 server_input: Callable[..., Any],
                 server_error: Callable[..., Any] | None = None,
                 server_flushed: Callable[..., Any] | None = None,
                 filter: FilterSpec | None = None,
                 input_filter: FilterSpec | None = None,
                 output_filter: FilterSpec | None = None,
                 high_mark: int | None = None, low_mark: int | None = None,
                 server_high: Callable[..., Any] | None = None,
                 server_low: Callable[..., Any] | None = None,
                 pre_connect: Callable[..., Any] | None = None,
                 ssl: bool | _ssl.SSLContext | None = None,
                 server_hostname: str | None = None,
                 states: Mapping[str, Callable[..., Any]] | None = None,
                 autoconnect: bool = True, kernel: Kernel | None = None) -> None:
        k = resolve_kernel(kernel)
        if not callable(server_input):
            raise TypeError(f"server_input: expected a callable, not "
                            f"{type(server_input).__name__}")
        for name, cb in (("started", started), ("connected", connected),
                         ("connect_error", connect_error), ("disconnected", disconnected),
                         ("server_error", server_error), ("server_flushed", server_flushed),
                         ("pre_connect", pre_connect)):
            callable_or_none(name, cb)
        if domain not in (None, socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            raise ValueError(f"domain: expected None, AF_INET, AF_INET6 or AF_UNIX, "
                             f"not {domain!r}")
        self._check_address(remote_address, remote_port, domain)
        if bind_address is not None and not isinstance(bind_address, str):
            raise TypeError("bind_address: expected a str")
        if domain == socket.AF_UNIX:
            if bind_port is not None:
                raise ValueError("bind_port: a UNIX socket has no port (give None)")
        elif bind_port is not None:
            check_port("bind_port", bind_port, zero_ok=True)
        in_filter, out_filter = choose_filters("", filter, input_filter, output_filter)
        high, low = check_marks(("high_mark", "low_mark", "server_high", "server_low"),
                                (high_mark, low_mark, server_high, server_low))
        connect_timeout_s = check_timeout("connect_timeout", connect_timeout)
        states = check_states(states)
        args_t = check_args("args", args)
        tls = client_tls_context(ssl)
        if tls is None and server_hostname is not None:
            raise TypeError("server_hostname: needs ssl")

        self.kernel = k
        self.domain = domain
        self.alias = alias
        self.args = args_t
        self.heap = {}
        core = ClientCore(k, self)
        core.remote_address = remote_address
        core.remote_port = remote_port
        core.bind_address = bind_address
        core.bind_port = bind_port
        core.domain = domain or 0
        core.connect_timeout = connect_timeout_s
        core.tls_context = tls
        core.server_hostname = server_hostname
        core.states = states
        core.alias = alias
        core.connected_cb = connected
        core.connect_error_cb = connect_error
        core.disconnected_cb = disconnected
        core.pre_connect = pre_connect
        core.in_filter = in_filter
        core.out_filter = out_filter
        core.high_mark, core.low_mark = high, low
        core.server_input = server_input
        core.server_error = server_error
        core.server_flushed = server_flushed
        core.server_high = server_high
        core.server_low = server_low
        self._core = core
        core.hook = enlist(self, k, alias, core.shutdown)
        if started is not None:
            call_user(k, "the Client's started callback", started, self, *self.args)
        if autoconnect and core.conn is None and not core.ended:
            self.connect()
        elif not autoconnect:
            # Idle until asked to connect: ends at the next check unless it is.
            call_soon(k, core.end_if_idle)

    # The connect parameters live in the compiled core (its connect path
    # reads them); these are their public face.

    @property
    def remote_address(self) -> str:
        """The address (host name, numeric address, or a UNIX socket's path)
        that connect() and reconnects use."""
        return self._core.remote_address

    @property
    def remote_port(self) -> int | None:
        """The port that connect() and reconnects use (None for a UNIX socket)."""
        return self._core.remote_port

    @property
    def bind_address(self) -> str | None:
        """The local address each connect binds to, or None."""
        return self._core.bind_address

    @property
    def bind_port(self) -> int | None:
        """The local port each connect binds to, or None."""
        return self._core.bind_port

    @property
    def server_hostname(self) -> str | None:
        """The name TLS verifies and sends as SNI (default: remote_address)."""
        return self._core.server_hostname

    @property
    def shutting_down(self) -> bool:
        """shutdown() has been called (until the next connect())."""
        return self._core.shutting_down

    @staticmethod
    def _check_address(address, port, domain):
        if domain == socket.AF_UNIX:
            # POE's SocketFactory connects a UNIX socket to a path, no port.
            if not isinstance(address, str) or not address:
                raise TypeError(f"remote_address: expected the socket's path (str), "
                                f"not {address!r}")
            if port is not None:
                raise ValueError(f"remote_port: a UNIX socket has no port (give None), "
                                 f"not {port!r}")
            return
        if not isinstance(address, str) or not address:
            raise TypeError(f"remote_address: expected a host name or address (str), "
                            f"not {address!r}")
        check_port("remote_port", port)

    # -- connecting ------------------------------------------------------------

    def connect(self, address: str | None = None, port: int | None = None) -> None:
        """Connect (dropping the current connection first, without
        ``disconnected``); a new address/port is kept for reconnects."""
        core = self._core
        if core.ended:
            raise CypoeError("connect: the Client has ended")
        if address is not None or port is not None:
            a = address if address is not None else core.remote_address
            p = port if port is not None else core.remote_port
            self._check_address(a, p, self.domain)
            core.remote_address, core.remote_port = a, p
        core.connect()

    def reconnect(self) -> None:
        """Drop the current connection (pending output lost, no
        ``disconnected``) and connect again."""
        self.connect()

    # -- events ------------------------------------------------------------------

    def _cypoe_event(self, event, args):
        return self._run_event(event, args)

    def _run_event(self, event, args):
        if callable(event):
            return self._call_handler("a Client event callback", event, args)
        if event == "shutdown":
            return self.shutdown()
        if event == "reconnect":
            return self.reconnect()
        if event == "connect":
            return self.connect(*args)
        states = self._core.states
        fn = states.get(event) if states else None
        if fn is None:
            self.kernel.report_exception(f"Client: no state {event!r}",
                                         CypoeError(f"no state {event!r}"), self)
            return None
        return self._call_handler(f"Client state {event!r}", fn, args)

    def _call_handler(self, where, fn, args):
        # A state handler or event callback that raises closes the
        # connection it ran for (``disconnected`` follows), as any other
        # callback does.
        conn = self._core.conn
        result = call_user(self.kernel, where + " (the connection is closed)", fn, self, *args)
        if result is CALLBACK_FAILED:
            if conn is not None and conn is self._core.conn and conn.established:
                conn.abort(True)
            return None
        return result

    def _timer_fired(self, event, args):
        try:
            self._run_event(event, args)
        finally:
            self._core.end_if_idle()

    # -- public --------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the connection is established (TCP, and TLS if any)."""
        conn = self._core.conn
        return conn is not None and conn.connected

    @property
    def wheel(self) -> ClientConnection | None:
        """The current connection's ReadWrite, or None."""
        return self._core.wheel

    @property
    def local_addr(self) -> Any:
        """The local address of the current connection, or None."""
        conn = self._core.conn
        return conn.local_addr if conn is not None else None

    def put(self, *records: Any) -> bool:
        """Send records to the server; returns True while buffered output is
        at or above high_mark."""
        conn = self._core.conn
        if conn is None or not conn.connected:
            raise CypoeError("put: the Client is not connected")
        return conn.put(*records)

    def shutdown(self) -> None:
        """Flush pending output, disconnect (``disconnected`` runs), end."""
        self._core.shutdown()

    def delay(self, seconds: float, event: str | Callable[..., Any], *args: Any) -> Timer:
        """After ``seconds``, deliver ``event``: a state name, ``"shutdown"``,
        ``"reconnect"``, ``"connect"``, or a callable called as
        ``event(client, *args)``.  Returns a Timer; a pending delay keeps the
        client alive."""
        if not (isinstance(event, str) or callable(event)):
            raise TypeError(f"event: expected a state name or a callable, not "
                            f"{type(event).__name__}")
        if self._core.ended:
            raise CypoeError("delay: the Client has ended")
        t = self.kernel.delay(seconds, self._timer_fired, event, args)
        self._core.timers.append(t)
        return t

    def post(self, event: str | Callable[..., Any], *args: Any) -> bool:
        """Queue ``event`` for this client."""
        if not (isinstance(event, str) or callable(event)):
            raise TypeError(f"event: expected a state name or a callable, not "
                            f"{type(event).__name__}")
        if self._core.ended:
            return False
        call_soon(self.kernel, self._run_event, event, args)
        return True

    @property
    def ended(self) -> bool:
        """True once the Client has ended (no connection, lookup or delay left)."""
        return self._core.ended

    def __repr__(self) -> str:
        state = "connected" if self.connected else ("ended" if self.ended else "idle")
        where = (self.remote_address if self.remote_port is None
                 else f"{self.remote_address}:{self.remote_port}")
        return f"<cypoe.Client {where} {state}>"
