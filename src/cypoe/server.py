"""Server: POE::Component::Server::TCP.

A listening socket and one ``Connection`` per client.  The per-connection
work (input, errors, flushing, timeouts) is compiled in ``cypoe._components``;
this module validates parameters and does the bookkeeping that happens once
per server or once per connection.
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from cypoe._components import Connection, ServerCore, call_user
from cypoe._params import (callable_or_none, check_args, check_marks, choose_filters,
                           check_states, check_timeout, enlist, resolve_kernel)
from cypoe.errors import CypoeError

if TYPE_CHECKING:
    import ssl as _ssl

    from cypoe._kernel import Kernel
    from cypoe.filters import FilterSpec

__all__ = ["Server", "Connection"]

_log = logging.getLogger("cypoe")

_CLIENT_PARAMS = (
    "client_connected", "client_disconnected", "client_error", "client_flushed",
    "client_pre_connect", "client_filter", "client_input_filter", "client_output_filter",
    "client_high", "client_low", "client_input_timeout",
)


class Server:
    """A TCP server (POE::Component::Server::TCP); the Server page of the
    documentation describes every parameter and callback."""

    kernel: Kernel
    alias: str | None
    address: str | None
    listener_args: tuple[Any, ...]

    def __init__(self, *, port: int | str = 0, address: str | None = None,
                 hostname: str | None = None, domain: int = socket.AF_INET,
                 alias: str | None = None, concurrency: int = -1, reuse_port: bool = False,
                 listen_queue: int | None = None,
                 acceptor: Callable[..., Any] | None = None,
                 error: Callable[..., Any] | None = None,
                 started: Callable[..., Any] | None = None,
                 stopped: Callable[..., Any] | None = None,
                 listener_args: tuple[Any, ...] | list[Any] = (),
                 client_input: Callable[..., Any] | None = None,
                 client_connected: Callable[..., Any] | None = None,
                 client_disconnected: Callable[..., Any] | None = None,
                 client_error: Callable[..., Any] | None = None,
                 client_flushed: Callable[..., Any] | None = None,
                 client_pre_connect: Callable[..., Any] | None = None,
                 client_filter: FilterSpec | None = None,
                 client_input_filter: FilterSpec | None = None,
                 client_output_filter: FilterSpec | None = None,
                 client_args: tuple[Any, ...] | list[Any] = (),
                 client_shutdown_on_error: bool = True,
                 high_mark: int | None = None, low_mark: int | None = None,
                 client_high: Callable[..., Any] | None = None,
                 client_low: Callable[..., Any] | None = None,
                 client_input_timeout: float | None = None,
                 ssl: _ssl.SSLContext | None = None,
                 states: Mapping[str, Callable[..., Any]] | None = None,
                 kernel: Kernel | None = None) -> None:
        k = resolve_kernel(kernel)
        if (acceptor is None) == (client_input is None):
            raise TypeError("acceptor/client_input: exactly one of them is required")
        callable_or_none("acceptor", acceptor)
        callable_or_none("client_input", client_input)
        if acceptor is not None:
            local = locals()
            for name in _CLIENT_PARAMS:
                if local[name] is not None:
                    raise TypeError(f"{name}: needs client_input (not with acceptor)")
            if client_args:
                raise TypeError("client_args: needs client_input (not with acceptor)")
            if high_mark is not None or low_mark is not None:
                raise TypeError("high_mark: needs client_input (not with acceptor)")
            if ssl is not None:
                raise TypeError("ssl: needs client_input (not with acceptor)")
        for name, cb in (("error", error), ("started", started), ("stopped", stopped),
                         ("client_connected", client_connected),
                         ("client_disconnected", client_disconnected),
                         ("client_error", client_error), ("client_flushed", client_flushed),
                         ("client_pre_connect", client_pre_connect)):
            callable_or_none(name, cb)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise TypeError(f"concurrency: expected an int, not {type(concurrency).__name__}")
        if concurrency < -1:
            raise ValueError(f"concurrency: must be -1 (unlimited) or >= 0, not {concurrency}")
        in_filter, out_filter = choose_filters("client_", client_filter, client_input_filter,
                                               client_output_filter)
        high, low = check_marks(("high_mark", "low_mark", "client_high", "client_low"),
                                (high_mark, low_mark, client_high, client_low))
        timeout = check_timeout("client_input_timeout", client_input_timeout)
        states = check_states(states)
        listener_args_t = check_args("listener_args", listener_args)
        client_args_t = check_args("client_args", client_args)
        tls_context = None
        if ssl is not None and ssl is not False:
            import ssl as ssl_mod
            if not isinstance(ssl, ssl_mod.SSLContext):
                raise TypeError("ssl: expected an ssl.SSLContext (a server needs its "
                                "certificate)")
            tls_context = ssl
        if hostname is not None and address is not None:
            raise TypeError("hostname: give either address or hostname")
        if hostname is not None:
            if not isinstance(hostname, str):
                raise TypeError("hostname: expected a str")
            try:
                infos = socket.getaddrinfo(hostname, None, domain, socket.SOCK_STREAM)
                address = str(infos[0][4][0])
            except socket.gaierror as exc:
                address = None
                self._resolve_error = exc
        self.kernel = k
        self.alias = alias
        self.address = None
        self.listener_args = listener_args_t
        self._bound = False
        core = ServerCore(k, self)
        core.states = states
        core.alias = alias
        core.stopped_cb = stopped
        core.error = error
        core.client_input = client_input
        core.client_connected = client_connected
        core.client_disconnected = client_disconnected
        core.client_error = client_error
        core.client_flushed = client_flushed
        core.client_pre_connect = client_pre_connect
        core.client_high = client_high
        core.client_low = client_low
        core.acceptor = acceptor
        if client_input is not None:
            core.in_filter = in_filter
            core.out_filter = out_filter
        core.client_args = client_args_t
        core.shutdown_on_error = bool(client_shutdown_on_error)
        core.input_timeout = timeout
        core.high_mark = high
        core.low_mark = low
        core.tls_context = tls_context
        core.concurrency = concurrency
        core.family = domain if isinstance(domain, int) else socket.AF_INET
        self._core = core
        core.hook = enlist(self, k, alias, core.signal_shutdown)

        if hostname is not None and address is None:
            resolve_error = self._resolve_error
            core.listener = None
            k.call_soon_threadsafe(core.listen_failed, "resolve", resolve_error.errno or 0,
                                   resolve_error.strerror or str(resolve_error))
            return
        bind_address = address
        if bind_address is None and domain != socket.AF_UNIX:
            bind_address = "::" if domain == socket.AF_INET6 else "0.0.0.0"
        listener = core.make_listener(
            socket_domain=domain, bind_address=bind_address, bind_port=port,
            reuse=True, reuse_port=reuse_port, listen_queue=listen_queue,
            on_success=core.listener_success, on_failure=core.listener_failure,
            kernel=k)
        try:
            core.sockname = listener.getsockname()
        except Exception:
            core.sockname = None
        if core.sockname is None or core.listen_error is not None:
            core.sockname = None
            core.listener = None
            return
        self._bound = True
        self.address = (core.sockname[0] if isinstance(core.sockname, tuple)
                        else core.sockname)
        if concurrency == 0:
            core.check_concurrency()
        if started is not None:
            call_user(k, "the Server's started callback", started, self, *self.listener_args)

    # kernel.post(alias, "shutdown" | "set_concurrency" | "disconnected", ...)
    def _cypoe_event(self, event, args):
        if event == "shutdown":
            return self.shutdown()
        if event == "set_concurrency":
            return self.set_concurrency(*args)
        if event == "disconnected":
            return self.disconnected()
        raise CypoeError(f"Server: unknown event {event!r}")

    # -- public --------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The bound port (known as soon as the Server is constructed)."""
        core = getattr(self, "_core", None)
        s = core.sockname if core is not None else None
        return s[1] if isinstance(s, tuple) else None

    @property
    def connections(self) -> int:
        """The number of connections open now."""
        return self._core.count

    @property
    def concurrency(self) -> int:
        """The connection limit (-1: none); see ``set_concurrency``."""
        return self._core.concurrency

    @property
    def started(self) -> bool:
        """True once the server listens (False when the bind failed)."""
        return self._bound

    def getsockname(self) -> Any:
        """The listening socket's address (a tuple, or a UNIX socket's path),
        or None when the Server could not listen."""
        return self._core.sockname

    def set_concurrency(self, n: int) -> None:
        """Change the connection limit; takes effect at once, both ways."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"concurrency: expected an int, not {type(n).__name__}")
        if n < -1:
            raise ValueError(f"concurrency: must be -1 or >= 0, not {n}")
        self._core.concurrency = n
        self._core.check_concurrency()

    def disconnected(self) -> None:
        """For a custom acceptor: one of its connections has ended."""
        self._core.disconnected()

    def shutdown(self, *, connections: bool = False) -> None:
        """Stop accepting now; open connections finish; ``stopped`` runs after
        the last one has ended.  With ``connections=True`` (a cypoe addition)
        every open connection is also shut down gracefully: input ignored,
        pending output flushed, then closed."""
        if self._core.ended:
            return
        self._core.shutdown()
        if connections:
            self._core.shutdown_connections()

    def __repr__(self) -> str:
        return (f"<cypoe.Server port={self.port} connections={self._core.count}"
                f"{' ended' if self._core.ended else ''}>")
