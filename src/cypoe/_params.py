"""The parameter checks of Server, Client and TCPMulti (one place for all
three: the same parameter gets the same error from each), and the kernel
registration that makes SIGINT/SIGTERM shut a component down.  The checks
that ReadWrite and the compiled components need too (filter specs,
watermarks, timeouts) live in ``cypoe._checks`` and are re-exported here."""
from __future__ import annotations

from cypoe import _kernel
from cypoe._checks import check_filter_spec, check_marks, check_timeout

__all__ = ["callable_or_none", "check_filter_spec", "check_timeout", "choose_filters",
           "check_marks", "check_port", "check_states", "check_args", "client_tls_context",
           "resolve_kernel", "ShutdownHook", "enlist"]


def callable_or_none(name, value):
    if value is not None and not callable(value):
        raise TypeError(f"{name}: expected a callable or None, not {type(value).__name__}")
    return value


def choose_filters(prefix, filter, input_filter, output_filter):
    """The filter prototypes of a component's connections: ``filter`` for
    both directions, or ``input_filter``/``output_filter`` (the half not given
    is ``Line()``); ``Line()`` when none is given.  Returns (input, output),
    output None meaning "the input filter's instance"."""
    names = [prefix + "filter", prefix + "input_filter", prefix + "output_filter"]
    if filter is not None and (input_filter is not None or output_filter is not None):
        raise TypeError(f"{names[0]}: give either {names[0]} or {names[1]}/{names[2]}")
    for name, spec in zip(names, (filter, input_filter, output_filter)):
        check_filter_spec(name, spec)
    from cypoe.filters import Line
    if input_filter is None and output_filter is None:
        return (filter if filter is not None else Line()), None
    return (input_filter if input_filter is not None else Line(),
            output_filter if output_filter is not None else Line())


def check_port(name, port, *, zero_ok=False):
    """A port number: 1-65535 (0-65535 with ``zero_ok``)."""
    low = 0 if zero_ok else 1
    if isinstance(port, bool) or not isinstance(port, int) or not low <= port <= 65535:
        raise ValueError(f"{name}: expected a port number {low}-65535, not {port!r}")
    return port


def check_states(states):
    if states is None:
        return None
    if not isinstance(states, dict):
        raise TypeError(f"states: expected a dict, not {type(states).__name__}")
    for name, fn in states.items():
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(f"states: {name!r} must map a str to a callable")
    return dict(states)


def check_args(name: str, args: object) -> tuple[object, ...]:
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"{name}: expected a tuple or list")
    return tuple(args)


def client_tls_context(ssl):
    """``ssl=`` of an outbound component: True -> verifying default context."""
    if ssl is None or ssl is False:
        return None
    import ssl as ssl_mod
    if ssl is True:
        return ssl_mod.create_default_context()
    if isinstance(ssl, ssl_mod.SSLContext):
        return ssl
    raise TypeError("ssl: expected True or an ssl.SSLContext")


def resolve_kernel(kernel):
    if kernel is None:
        return _kernel.default_kernel()
    if not isinstance(kernel, _kernel.Kernel):
        raise TypeError(f"kernel: expected a Kernel, not {type(kernel).__name__}")
    return kernel


class ShutdownHook:
    """Registered with the kernel for a component: SIGINT/SIGTERM call
    ``shutdown()``, which runs the component's graceful stop."""

    __slots__ = ("stop",)

    def __init__(self, stop):
        self.stop = stop

    def shutdown(self):
        self.stop()


def enlist(component, kernel, alias, stop):
    """Register ``component`` (its alias, its signal shutdown); returns the
    hook, which the component's core unregisters when it ends."""
    hook = ShutdownHook(stop)
    kernel.register_component(hook)
    if alias is not None:
        kernel.alias_set(alias, component)
    return hook
