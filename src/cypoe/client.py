"""Client: POE::Component::Client::TCP.

One outbound connection at a time, with reconnects.  The connection itself is
a compiled ``ClientLink`` (a ReadWrite); this module holds the parameters,
the connect/reconnect logic and the client's life cycle.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import threading

from cypoe._components import (CALLBACK_FAILED, _ClientCore, call_soon, call_user, family_of,
                               make_filter_py)
from cypoe.errors import CypoeError
from cypoe._component import (callable_or_none, check_args, choose_filters, check_marks,
                              check_states, check_timeout, client_tls_context, enlist,
                              resolve_kernel, retire)

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl as _ssl

    from cypoe._components import ClientLink
    from cypoe._kernel import Kernel, Timer
    from cypoe.filters import FilterSpec

__all__ = ["Client"]

_log = logging.getLogger("cypoe")


def resolve_async(kernel, host, port, family, on_done):
    """getaddrinfo in a thread; ``on_done(family, address)`` or
    ``on_done(None, exc)`` runs on the loop.  Name lookups never block it."""
    def work():
        try:
            infos = socket.getaddrinfo(host, port, family or socket.AF_UNSPEC,
                                       socket.SOCK_STREAM)
            fam, _, _, _, sa = infos[0]
            result = (fam, sa[0])
        except (socket.gaierror, OSError, UnicodeError) as exc:
            result = (None, exc)
        kernel.call_soon_threadsafe(on_done, *result)

    th = threading.Thread(target=work, name="cypoe-resolve", daemon=True)
    th.start()


class Client:
    """A TCP client (POE::Component::Client::TCP); the Client page of the
    documentation describes every parameter and callback."""

    kernel: Kernel
    remote_address: str
    remote_port: int | None
    bind_address: str | None
    bind_port: int | None
    domain: int | None
    alias: str | None
    args: tuple[Any, ...]
    heap: dict[Any, Any]
    server_hostname: str | None
    shutting_down: bool

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
        elif bind_port is not None and (isinstance(bind_port, bool)
                                        or not isinstance(bind_port, int)
                                        or not 0 <= bind_port <= 65535):
            raise ValueError(f"bind_port: expected a port number 0-65535, not {bind_port!r}")
        in_filter, out_filter = choose_filters("", filter, input_filter, output_filter)
        high, low = check_marks(("high_mark", "low_mark", "server_high", "server_low"),
                                (high_mark, low_mark, server_high, server_low))
        self._connect_timeout = check_timeout("connect_timeout", connect_timeout)
        states = check_states(states)
        args_t = check_args("args", args)
        self._tls = client_tls_context(ssl)
        if self._tls is None and server_hostname is not None:
            raise TypeError("server_hostname: needs ssl")

        self.kernel = k
        self.remote_address = remote_address
        self.remote_port = remote_port
        self.bind_address = bind_address
        self.bind_port = bind_port
        self.domain = domain
        self.alias = alias
        self.args = args_t
        self.heap = {}
        self.server_hostname = server_hostname
        self._states = states
        self._started_cb = started
        self._connected_cb = connected
        self._connect_error_cb = connect_error
        self._disconnected_cb = disconnected
        self._pre_connect = pre_connect
        self._in_filter = in_filter
        self._out_filter = out_filter
        self._marks = (high, low)
        core = _ClientCore(k, self)
        core.server_input = server_input
        core.server_error = server_error
        core.server_flushed = server_flushed
        core.server_high = server_high
        core.server_low = server_low
        self._core = core
        self._link = None
        self._attempt = 0          # bumped by every connect/reconnect request
        self._timers: list[Timer] = []
        self._ended = False
        self.shutting_down = False
        self._hook = enlist(self, k, alias, self.shutdown)
        if started is not None:
            call_user(k, "the Client's started callback", started, self, *self.args)
        if autoconnect and self._link is None and not self._ended:
            self.connect()
        elif not autoconnect:
            # Idle until asked to connect: ends at the next check unless it is.
            call_soon(k, self._maybe_end)

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
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
            raise ValueError(f"remote_port: expected a port number 1-65535, not {port!r}")

    # -- connecting ------------------------------------------------------------

    def connect(self, address: str | None = None, port: int | None = None) -> None:
        """Connect (dropping the current connection first, without
        ``disconnected``); a new address/port is kept for reconnects."""
        if self._ended:
            raise CypoeError("connect: the Client has ended")
        if address is not None or port is not None:
            a = address if address is not None else self.remote_address
            p = port if port is not None else self.remote_port
            self._check_address(a, p, self.domain)
            self.remote_address, self.remote_port = a, p
        self._drop_link()
        self.shutting_down = False
        self._attempt += 1
        attempt = self._attempt
        family = self.domain or family_of(self.remote_address)
        if family:
            self._start(attempt, family, self.remote_address)
        else:
            def resolved(fam, result, attempt=attempt):
                if attempt != self._attempt or self._ended:
                    return
                self._resolving = False
                if fam is None:
                    self._report_connect_error("resolve", result.errno or 0,
                                               result.strerror or str(result))
                    return
                self._start(attempt, fam, result)
            self._resolving = True
            resolve_async(self.kernel, self.remote_address, self.remote_port, self.domain,
                          resolved)

    def reconnect(self) -> None:
        """Drop the current connection (pending output lost, no
        ``disconnected``) and connect again."""
        self.connect()

    def _start(self, attempt, family, numeric):
        link = self._core.new_link()
        try:
            fd = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                               | socket.SOCK_CLOEXEC)
        except OSError as exc:
            call_soon(self.kernel, self._report_connect_error, "socket",
                                             exc.errno or 0, exc.strerror or str(exc))
            return
        sock = fd
        unix = family == socket.AF_UNIX
        try:
            if unix:
                if self.bind_address is not None:
                    sock.bind(self.bind_address)
            elif self.bind_address is not None or self.bind_port:
                sock.bind((self.bind_address or ("::" if family == socket.AF_INET6
                                                 else "0.0.0.0"), self.bind_port or 0))
        except OSError as exc:
            sock.close()
            call_soon(self.kernel, self._report_connect_error, "bind",
                                             exc.errno or 0, exc.strerror or str(exc))
            return
        if unix:
            err = sock.connect_ex(numeric)
            # EAGAIN on a UNIX socket is a full backlog, not a connect in
            # progress: the attempt has failed.
            in_progress = (0, errno.EINPROGRESS)
        else:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex((numeric, self.remote_port))
            in_progress = (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK)
        if err not in in_progress:
            sock.close()
            call_soon(self.kernel, self._report_connect_error, "connect", err, os.strerror(err))
            return
        self._link = link
        link.begin(self.kernel, sock.detach(), self._make_in(), self._make_out())
        self._core.arm_link(link, self._connect_timeout)

    def _make_in(self):
        return make_filter_py(self._in_filter, "filter")

    def _make_out(self):
        if self._out_filter is None:
            return None
        return make_filter_py(self._out_filter, "output_filter")

    # Called by the link.
    def _tcp_connected(self, link):
        if link is not self._link:
            return
        # The socket object handed to user code owns the fd from now on, and
        # the link owns the socket object: closing the link closes it.
        sock = socket.socket(fileno=link.fd_)
        link.adopt(sock)
        self._sock = sock
        try:
            peer = sock.getpeername()
        except OSError:
            peer = (self.remote_address, self.remote_port)
        if not isinstance(peer, tuple):
            peer = (peer or self.remote_address, None)    # UNIX: the path, no port
        self._peer = peer
        if self._pre_connect is not None:
            result = call_user(self.kernel, "the Client's pre_connect callback (the "
                               "connection is closed)", self._pre_connect, self, sock)
            if result is None or result is CALLBACK_FAILED:
                link.abort(False)
                self._link = None
                self._report_connect_error("connect", errno.ECONNABORTED,
                                           "connection rejected by pre_connect")
                return
            if type(result).__name__ == "SSLSocket":
                ctx, host = result.context, result.server_hostname
                plain = socket.socket(result.family, result.type, result.proto,
                                      result.detach())
                link.adopt(plain)
                self._sock = plain
                link.tls(ctx, host, 10.0)
                return
        if self._tls is not None:
            host = self.server_hostname if self.server_hostname is not None \
                else self.remote_address
            link.tls(self._tls, host, 10.0)
            return
        self._ready(link)

    def _ready(self, link):
        if link is not self._link:
            return
        link.mark_connected()
        if self._marks[0]:
            link.marks(*self._marks)
        # Like POE's SocketFactory success event, "connected" is queued: a
        # server in this process that accepted in the same iteration has its
        # client_connected delivered first.
        call_soon(self.kernel, self._deliver_connected, link)

    def _deliver_connected(self, link):
        if link is not self._link or link.ended:
            return
        if self._connected_cb is not None:
            if call_user(self.kernel, "the Client's connected callback (the connection is "
                         "closed)", self._connected_cb, self, self._sock, self._peer[0],
                         self._peer[1]) is CALLBACK_FAILED:
                link.abort(True)

    def _connect_failed(self, link, op, errnum, errstr):
        if link is not self._link:
            return
        link.abort(False)
        self._link = None
        self._report_connect_error(op, errnum, errstr)

    def _connect_timed_out(self, link):
        if link is not self._link:
            return
        link.abort(False)
        self._link = None
        self._report_connect_error("connect", errno.ETIMEDOUT, "Connection timed out")

    def _report_connect_error(self, op, errnum, errstr):
        attempt = self._attempt
        if self._connect_error_cb is not None:
            call_user(self.kernel, "the Client's connect_error callback",
                      self._connect_error_cb, self, op, errnum, errstr)
        else:
            _log.warning("cypoe: Client %s:%s %s error %d: %s", self.remote_address,
                         self.remote_port, op, errnum, errstr)
        if attempt == self._attempt:
            self._maybe_end()

    def _link_ended(self, link):
        if link is not self._link:
            return
        self._link = None
        attempt = self._attempt
        if self._disconnected_cb is not None:
            call_user(self.kernel, "the Client's disconnected callback", self._disconnected_cb,
                      self)
        if attempt == self._attempt:
            self._maybe_end()

    def _drop_link(self):
        link = self._link
        self._link = None
        if link is not None:
            link.abort(False)

    def _maybe_end(self):
        """The client ends when it has no connection, no lookup and no
        pending delay()."""
        if self._ended or self._link is not None or getattr(self, "_resolving", False):
            return
        self._timers = [t for t in self._timers if t.active]
        if self._timers:
            return
        self._ended = True
        retire(self, self.kernel, self.alias, self._hook)

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
        fn = self._states.get(event) if self._states else None
        if fn is None:
            self.kernel.report_exception(f"Client: no state {event!r}",
                                         CypoeError(f"no state {event!r}"), self)
            return None
        return self._call_handler(f"Client state {event!r}", fn, args)

    def _call_handler(self, where, fn, args):
        # A state handler or event callback that raises closes the
        # connection it ran for (``disconnected`` follows), as any other
        # callback does.
        link = self._link
        result = call_user(self.kernel, where + " (the connection is closed)", fn, self, *args)
        if result is CALLBACK_FAILED:
            if link is not None and link is self._link and link.established:
                link.abort(True)
            return None
        return result

    def _timer_fired(self, event, args):
        try:
            self._run_event(event, args)
        finally:
            self._maybe_end()

    # -- public --------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the connection to the server is established."""
        link = self._link
        return link is not None and link.connected

    @property
    def wheel(self) -> ClientLink | None:
        """The current connection's ReadWrite, or None."""
        return self._link

    @property
    def local_addr(self) -> Any:
        """The local end of the connection (``getsockname()``), or None
        while not connected."""
        link = self._link
        return link.local_addr if link is not None else None

    def put(self, *records: Any) -> bool:
        """Send records to the server; returns True while buffered output is
        at or above high_mark."""
        link = self._link
        if link is None or not link.connected:
            raise CypoeError("put: the Client is not connected")
        return link.put(*records)

    def shutdown(self) -> None:
        """Flush pending output, disconnect (``disconnected`` runs), end."""
        if self._ended:
            return
        self.shutting_down = True
        self._attempt += 1
        for t in self._timers:
            t.cancel()
        self._timers = []
        link = self._link
        if link is None:
            self._resolving = False
            self._maybe_end()
            return
        if not link.connected:
            self._drop_link()
            self._maybe_end()
            return
        link.graceful()

    def delay(self, seconds: float, event: str | Callable[..., Any], *args: Any) -> Timer:
        """After ``seconds``, deliver ``event``: a state name, ``"shutdown"``,
        ``"reconnect"``, ``"connect"``, or a callable called as
        ``event(client, *args)``.  Returns a Timer; a pending delay keeps the
        client alive."""
        if not (isinstance(event, str) or callable(event)):
            raise TypeError(f"event: expected a state name or a callable, not "
                            f"{type(event).__name__}")
        if self._ended:
            raise CypoeError("delay: the Client has ended")
        t = self.kernel.delay(seconds, self._timer_fired, event, args)
        self._timers.append(t)
        return t

    def post(self, event: str | Callable[..., Any], *args: Any) -> bool:
        """Queue ``event`` for this client."""
        if not (isinstance(event, str) or callable(event)):
            raise TypeError(f"event: expected a state name or a callable, not "
                            f"{type(event).__name__}")
        if self._ended:
            return False
        call_soon(self.kernel, self._run_event, event, args)
        return True

    @property
    def ended(self) -> bool:
        """True once the client has ended: it will not connect again."""
        return self._ended

    def __repr__(self) -> str:
        state = "connected" if self.connected else ("ended" if self._ended else "idle")
        where = (self.remote_address if self.remote_port is None
                 else f"{self.remote_address}:{self.remote_port}")
        return f"<cypoe.Client {where} {state}>"
