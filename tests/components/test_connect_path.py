"""The components' one connect path and one name-resolution service (Client
and TCPMulti alike), and their parameter checks kept in one place."""
import errno
import socket
import threading

import pytest

from cypoe import Client, Line, Server, TCPMulti

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake_names(monkeypatch):
    """getaddrinfo answering for ``*.cypoe.test`` only (127.0.0.1, or a
    failure for ``fail.cypoe.test``), recording the thread it ran in."""
    real = socket.getaddrinfo
    calls = []

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if isinstance(host, str) and host.endswith(".cypoe.test"):
            calls.append((host, family, threading.current_thread()))
            if host.startswith("fail."):
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def echo_server(kernel, **kw):
    kw.setdefault("client_input", lambda c, r: c.put(r))
    return Server(port=0, address="127.0.0.1", kernel=kernel, **kw)


def test_client_connects_to_a_name_through_the_resolver(kernel, fake_names):
    server = echo_server(kernel, client_disconnected=lambda c: server.shutdown())
    got = []
    Client(remote_address="echo.cypoe.test", remote_port=server.port, kernel=kernel,
           connected=lambda c, sock, host, port: (got.append((host, port)), c.put(b"hi")),
           server_input=lambda c, r: (got.append(r), c.shutdown()))
    kernel.run()
    assert got == [("127.0.0.1", server.port), b"hi"]
    assert [(h, f) for h, f, _ in fake_names] == [("echo.cypoe.test", socket.AF_UNSPEC)]
    assert fake_names[0][2] is not threading.main_thread()     # never on the loop


def test_tcpmulti_connects_to_a_name_through_the_same_resolver(kernel, fake_names):
    server = echo_server(kernel)
    got = []

    def on_input(conn, rec):
        got.append((conn.addr, rec))
        m.die()

    m = TCPMulti(on_input=on_input, on_success=lambda c: c.put(b"ho"), kernel=kernel,
                 on_disconnected=lambda c: server.shutdown())
    m.connect("multi.cypoe.test", server.port)
    kernel.run()
    assert got == [("multi.cypoe.test", b"ho")]
    assert [h for h, _, _ in fake_names] == ["multi.cypoe.test"]
    assert fake_names[0][2] is not threading.main_thread()


def test_failed_lookup_is_reported_one_way(kernel, fake_names, unused_port):
    events = []
    Client(remote_address="fail.cypoe.test", remote_port=unused_port, kernel=kernel,
           server_input=lambda c, r: None,
           connect_error=lambda c, op, n, s: events.append(("client", op, n)))
    m = TCPMulti(on_input=lambda c, r: None, kernel=kernel,
                 on_failure=lambda c, op, n, s: (events.append(("multi", op, n)), m.die()))
    m.connect("fail.cypoe.test", unused_port)
    kernel.run()
    assert sorted(events) == [("client", "resolve", socket.EAI_NONAME),
                              ("multi", "resolve", socket.EAI_NONAME)]


def test_refused_connect_is_reported_one_way(kernel, unused_port):
    events = []
    Client(remote_address="127.0.0.1", remote_port=unused_port, kernel=kernel,
           server_input=lambda c, r: None,
           connect_error=lambda c, op, n, s: events.append(("client", op, n)))
    m = TCPMulti(on_input=lambda c, r: None, kernel=kernel,
                 on_failure=lambda c, op, n, s: (events.append(("multi", op, n)), m.die()))
    m.connect("127.0.0.1", unused_port)
    kernel.run()
    assert sorted(events) == [("client", "connect", errno.ECONNREFUSED),
                              ("multi", "connect", errno.ECONNREFUSED)]


def test_bind_address_of_a_connect_to_a_name_is_kept(kernel, fake_names):
    # The lookup carries connect()'s own bind_address to the connect.
    server = echo_server(kernel)
    local = []

    def on_success(conn):
        local.append(conn.local_addr[0])
        m.die()

    m = TCPMulti(on_input=lambda c, r: None, on_success=on_success, kernel=kernel,
                 on_disconnected=lambda c: server.shutdown())
    m.connect("bound.cypoe.test", server.port, bind_address="127.0.0.2")
    kernel.run()
    assert local == ["127.0.0.2"]


def test_unix_client_refused_through_the_connect_path(kernel, tmp_path):
    events = []
    Client(remote_address=str(tmp_path / "nobody-listens"), domain=socket.AF_UNIX,
           kernel=kernel, server_input=lambda c, r: None,
           connect_error=lambda c, op, n, s: events.append((op, n)))
    kernel.run()
    assert events == [("connect", errno.ENOENT)]


# -- the parameter checks, one place for the three components ---------------------

def _server(**kw):
    return Server(port=0, address="127.0.0.1", client_input=lambda c, r: None, **kw)


def _client(**kw):
    return Client(remote_address="127.0.0.1", remote_port=9, server_input=lambda c, r: None,
                  autoconnect=False, **kw)


def _multi(**kw):
    return TCPMulti(on_input=lambda c, r: None, **kw)


def _error(make, **kw):
    with pytest.raises((TypeError, ValueError)) as info:
        make(**kw)
    return type(info.value), str(info.value)


@pytest.mark.parametrize("spec", [42, object(), "Line"])
def test_filter_spec_errors_are_the_same_everywhere(kernel, spec):
    server = _error(_server, client_filter=spec, kernel=kernel)
    client = _error(_client, filter=spec, kernel=kernel)
    multi = _error(_multi, filter=spec, kernel=kernel)
    assert server[0] is client[0] is multi[0] is TypeError
    assert server[1] == "client_" + client[1]
    assert client[1] == multi[1]
    assert client[1].startswith("filter: expected a Filter instance, a Filter class or a factory")


@pytest.mark.parametrize("value", [-1, "5", True])
def test_timeout_errors_are_the_same_everywhere(kernel, value):
    server = _error(_server, client_input_timeout=value, kernel=kernel)
    client = _error(_client, connect_timeout=value, kernel=kernel)
    multi = _error(_multi, connect_timeout=value, kernel=kernel)
    assert server[0] is client[0] is multi[0]
    assert server[1].replace("client_input_timeout", "X") == client[1].replace(
        "connect_timeout", "X") == multi[1].replace("connect_timeout", "X")


@pytest.mark.parametrize("high, low", [(10, 10), (10, None), (0, 0), ("1", 0), (10, 20)])
def test_watermark_errors_are_the_same_for_server_and_client(kernel, high, low):
    cb = lambda c: None     # noqa: E731
    server = _error(_server, kernel=kernel, high_mark=high, low_mark=low,
                    client_high=cb, client_low=cb)
    client = _error(_client, kernel=kernel, high_mark=high, low_mark=low,
                    server_high=cb, server_low=cb)
    assert server[0] is client[0]
    assert server[1].replace("client_", "server_") == client[1]


def test_a_good_filter_spec_is_accepted_everywhere(kernel):
    for spec in (Line(), Line, lambda: Line()):
        _server(client_filter=spec, kernel=kernel).shutdown()
        _client(filter=spec, kernel=kernel).shutdown()
        _multi(filter=spec, kernel=kernel).die()
    kernel.run()


def test_client_with_a_domain_still_looks_names_up_off_the_loop(kernel, fake_names):
    # A name with domain=AF_INET used to reach connect() unresolved, which
    # looked it up on the loop (blocking it) without the resolver.
    server = echo_server(kernel, client_disconnected=lambda c: server.shutdown())
    got = []
    Client(remote_address="inet.cypoe.test", remote_port=server.port, kernel=kernel,
           domain=socket.AF_INET, connected=lambda c, *a: c.put(b"x"),
           server_input=lambda c, r: (got.append(r), c.shutdown()))
    kernel.run()
    assert got == [b"x"]
    assert [(h, f) for h, f, _ in fake_names] == [("inet.cypoe.test", socket.AF_INET)]
    assert fake_names[0][2] is not threading.main_thread()


# -- the components' hooks are typed ----------------------------------------------

HOOKS = ("tcp_connected", "conn_ready", "connect_failed", "resolved", "timed_out",
         "conn_ended", "open_connection")
# What the compiled connections used to call on the Python components.
OLD_UNTYPED_HOOKS = ("_finished", "_resolve", "_conn_gone", "_tcp_connected", "_ready",
                     "_connect_failed", "_connect_timed_out", "_link_ended", "_link",
                     "_states", "_maybe_end", "_finish", "_on_stop", "_hold")


def test_connection_hooks_are_typed_and_not_on_the_python_components():
    from cypoe import _components
    cores = (_components.ComponentCore, _components.ServerCore, _components.ClientCore,
             _components.MultiCore)
    for core in cores:
        for hook in HOOKS:
            # a cdef method: no Python attribute, no Python call
            assert not hasattr(core, hook), (core.__name__, hook)
    for component in (Server, Client, TCPMulti):
        for name in OLD_UNTYPED_HOOKS:
            assert not hasattr(component, name), (component.__name__, name)


# -- ReadWrite and the components share one check ------------------------------

def _readwrite(kernel, **kw):
    from cypoe import ReadWrite
    a, b = socket.socketpair()
    try:
        rw = ReadWrite(a, on_input=lambda rw, r: None, kernel=kernel, **kw)
    except BaseException:
        a.close()
        raise
    finally:
        b.close()
    rw.close()
    raise AssertionError("accepted")


@pytest.mark.parametrize("spec", [42, object(), "Line"])
def test_readwrite_and_the_components_reject_a_bad_filter_alike(kernel, spec):
    rw = _error(lambda **kw: _readwrite(kernel, **kw), filter=spec)
    rw_in = _error(lambda **kw: _readwrite(kernel, **kw), input_filter=spec)
    server = _error(_server, client_filter=spec, kernel=kernel)
    client = _error(_client, filter=spec, kernel=kernel)
    multi = _error(_multi, filter=spec, kernel=kernel)
    assert rw == client == multi
    assert server == (TypeError, "client_" + rw[1])
    assert rw_in == (TypeError, "input_" + rw[1])
    assert rw[1] == f"filter: expected a Filter instance, a Filter class or a factory, " \
                    f"not {type(spec).__name__}"


@pytest.mark.parametrize("high, low", [(10, 10), (10, None), (0, 5), ("1", 0), (10, 20),
                                       (None, 5)])
def test_readwrite_and_the_components_reject_bad_watermarks_alike(kernel, high, low):
    cb = lambda c: None     # noqa: E731
    rw = _error(lambda **kw: _readwrite(kernel, **kw), high_mark=high, low_mark=low,
                on_high=cb, on_low=cb)
    server = _error(_server, kernel=kernel, high_mark=high, low_mark=low,
                    client_high=cb, client_low=cb)
    client = _error(_client, kernel=kernel, high_mark=high, low_mark=low,
                    server_high=cb, server_low=cb)
    assert server[0] is client[0] is rw[0]
    assert server[1].replace("client_", "on_") == client[1].replace("server_", "on_") == rw[1]


def test_readwrite_takes_a_filter_class_or_factory_like_the_components(kernel):
    from cypoe import ReadWrite
    a, b = socket.socketpair()
    rw = ReadWrite(a, filter=Line, on_input=lambda rw, r: None, kernel=kernel)
    assert isinstance(rw.get_input_filter(), Line)
    assert rw.get_output_filter() is rw.get_input_filter()
    rw.set_output_filter(lambda: Line(literal=b"\r\n"))
    assert isinstance(rw.get_output_filter(), Line)
    assert rw.get_output_filter() is not rw.get_input_filter()
    rw.close()
    b.close()
