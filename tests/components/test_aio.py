"""cypoe.aio: a Kernel embedded in a running asyncio loop (asyncio's default
loop and uvloop): asyncio clients against a cypoe Server and a cypoe
TCPMulti against an asyncio server in the same thread, timers, drained(),
connect(), started(), graceful shutdown when the loop ends, no busy loop."""
import asyncio
import errno
import socket
import sys

import pytest

import cypoe
import cypoe.aio
from cypoe.errors import CypoeError

# Every wait in these tests is bounded; none of them measures time.
LIMIT = 20.0


def _loop_factories():
    yield pytest.param(asyncio.new_event_loop, id="asyncio")
    try:
        import uvloop
    except ImportError:
        yield pytest.param(None, id="uvloop", marks=pytest.mark.skip(
            reason="uvloop is not installed (the test extra installs it off Windows)"))
    else:
        yield pytest.param(uvloop.new_event_loop, id="uvloop")


@pytest.fixture(params=list(_loop_factories()))
def loop_factory(request):
    return request.param


@pytest.fixture
def k():
    return cypoe.Kernel()


def run(coro, kernel, loop_factory):
    return cypoe.aio.run(asyncio.wait_for(coro, LIMIT), kernel=kernel,
                         loop_factory=loop_factory)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def open_small_window(port):
    """An asyncio connection whose receive buffer is fixed and small
    (SO_RCVBUF set before connecting turns autotuning off): while it reads
    nothing, a few megabytes cannot all be sent to it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


def test_asyncio_client_talks_to_a_cypoe_server(k, loop_factory):
    log = []

    async def main():
        server = cypoe.Server(port=0, address="127.0.0.1", kernel=k,
                              client_connected=lambda c: log.append("connected"),
                              client_input=lambda c, line: c.put(line.upper()),
                              stopped=lambda s: log.append("stopped"))
        port = await cypoe.aio.started(server)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for word in (b"one", b"two", b"three"):
            writer.write(word + b"\r\n")
            await writer.drain()
            answers.append(await reader.readline())
        writer.close()
        await writer.wait_closed()
        return answers

    assert run(main(), k, loop_factory) == [b"ONE\r\n", b"TWO\r\n", b"THREE\r\n"]
    # The loop's end shut the server down gracefully (cypoe.aio.run).
    assert log == ["connected", "stopped"]
    assert not k._components


def test_cypoe_tcpmulti_talks_to_an_asyncio_server(k, loop_factory):
    events = []

    async def echo(reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(b"echo " + line)
            await writer.drain()
        writer.close()

    async def main():
        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        got = asyncio.get_running_loop().create_future()
        multi = cypoe.TCPMulti(on_input=lambda c, r: got.set_result(r),
                               on_success=lambda c: events.append("on_success"),
                               kernel=k)
        conn = await cypoe.aio.connect(multi, "127.0.0.1", port)
        assert conn.connected and events == ["on_success"]
        conn.put(b"from cypoe")        # from asyncio code: drained() wakes the kernel
        await cypoe.aio.drained(conn)
        record = await got
        multi.die()
        srv.close()
        await srv.wait_closed()
        return record

    assert run(main(), k, loop_factory) == b"echo from cypoe"


def test_kernel_timers_and_events_fire(k, loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        fired = loop.create_future()
        order = []
        k.delay(0.05, lambda: order.append("late"))
        k.delay(0.01, lambda: order.append("early"))
        k.delay(0.08, lambda: fired.set_result(order))
        cypoe.Session({"_start": lambda s: s.post("ev"), "ev": lambda s: order.append("event")},
                      kernel=k)
        cypoe.aio.wakeup(k)      # cypoe was called from asyncio code: tell it
        return await fired

    assert run(main(), k, loop_factory) == ["event", "early", "late"]


def test_timer_set_from_asyncio_code_is_armed(k, loop_factory):
    """A delay() made in a coroutine (not in a cypoe callback) fires once the
    kernel is told (wakeup) -- and before a later timer that was armed."""
    async def main():
        loop = asyncio.get_running_loop()
        order = []
        done = loop.create_future()
        k.delay(0.2, lambda: (order.append("armed first"), done.set_result(order)))
        await asyncio.sleep(0)
        k.delay(0.0, lambda: order.append("set from asyncio"))
        cypoe.aio.wakeup(k)
        return await done

    assert run(main(), k, loop_factory) == ["set from asyncio", "armed first"]


def test_drained_waits_until_the_output_is_written(k, loop_factory):
    size = 16 * 1024 * 1024     # far more than the socket buffers hold

    async def main():
        loop = asyncio.get_running_loop()
        accepted = loop.create_future()
        server = cypoe.Server(port=0, address="127.0.0.1", kernel=k, client_filter=cypoe.Stream(),
                              client_input=lambda c, r: None,
                              client_connected=lambda c: accepted.set_result(c))
        reader, writer = await open_small_window(server.port)
        conn = await accepted
        conn.put(b"x" * size)
        waiting = asyncio.ensure_future(cypoe.aio.drained(conn))
        # The peer reads nothing yet: whatever the loop does, the output
        # cannot all be written.
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert not waiting.done()
        assert conn.get_driver_out_octets() > 0
        got = 0
        while got < size:
            chunk = await reader.read(1 << 20)
            assert chunk
            got += len(chunk)
        await waiting
        pending = conn.get_driver_out_octets()
        writer.close()
        return got, pending

    assert run(main(), k, loop_factory) == (size, 0)


def test_drained_returns_at_once_and_fails_on_a_lost_connection(k, loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        accepted = loop.create_future()
        server = cypoe.Server(port=0, address="127.0.0.1", kernel=k,
                              client_filter=cypoe.Stream(), client_input=lambda c, r: None,
                              client_connected=lambda c: accepted.set_result(c))
        reader, writer = await open_small_window(server.port)
        conn = await accepted
        await cypoe.aio.drained(conn)         # nothing buffered
        conn.put(b"y" * (16 * 1024 * 1024))
        waiting = asyncio.ensure_future(cypoe.aio.drained(conn))
        await asyncio.sleep(0.01)
        conn.close()                          # abort: pending output dropped
        cypoe.aio.wakeup(k)
        with pytest.raises(ConnectionError):
            await waiting
        writer.close()
        return True

    assert run(main(), k, loop_factory)


def test_connect_failure_raises_after_on_failure(k, loop_factory):
    port = free_port()
    failures = []

    async def main():
        multi = cypoe.TCPMulti(on_input=lambda c, r: None, kernel=k,
                               on_failure=lambda c, op, n, s: failures.append((op, n)))
        with pytest.raises(ConnectionRefusedError):
            await cypoe.aio.connect(multi, "127.0.0.1", port)
        multi.die()
        return failures

    assert run(main(), k, loop_factory) == [("connect", errno.ECONNREFUSED)]


def test_started_returns_the_port_or_raises(k, loop_factory):
    async def main():
        a = cypoe.Server(port=0, address="127.0.0.1", kernel=k, client_input=lambda c, r: None)
        port = await cypoe.aio.started(a)
        b = cypoe.Server(port=port, address="127.0.0.1", kernel=k,
                         client_input=lambda c, r: None, error=lambda *args: None)
        with pytest.raises(OSError) as info:
            await cypoe.aio.started(b)
        return port == a.port, info.value.errno

    assert run(main(), k, loop_factory) == (True, errno.EADDRINUSE)


def test_an_idle_kernel_does_not_wake_the_loop(k, loop_factory):
    """No busy loop: a listening server, an idle connection and a far timer
    cost a handful of wake-ups over 0.3 s (a busy loop would be thousands)."""
    async def main():
        emb = cypoe.aio.embedded(k)
        server = cypoe.Server(port=0, address="127.0.0.1", kernel=k,
                              client_input=lambda c, r: None)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        far = k.delay(60.0, lambda: None)
        await asyncio.sleep(0.05)             # the connection is accepted by now
        before = emb.wakeups
        await asyncio.sleep(0.3)
        idle_wakeups = emb.wakeups - before
        far.cancel()
        writer.close()
        return idle_wakeups, server.connections

    idle_wakeups, connections = run(main(), k, loop_factory)
    assert connections == 1
    assert idle_wakeups <= 5


def test_waiting_for_a_timer_does_not_spin(k, loop_factory):
    """uvloop's timers fire up to a millisecond early (it keeps time in whole
    milliseconds): waiting for the kernel's deadline after that costs one
    more wake-up, not a spin until the deadline."""
    async def main():
        emb = cypoe.aio.embedded(k)
        counts = []
        for seconds in (0.0103, 0.0207, 0.0151):
            fired = asyncio.get_running_loop().create_future()
            before = emb.wakeups
            k.delay(seconds, lambda: fired.set_result(None))   # pokes the kernel's fd
            await fired
            counts.append(emb.wakeups - before)
        return counts

    assert max(run(main(), k, loop_factory)) <= 4


def test_embedding_and_detaching(k, loop_factory):
    async def main():
        emb = cypoe.aio.embedded(k)
        assert emb is not None and emb.kernel is k
        with pytest.raises(CypoeError, match="already embedded"):
            cypoe.aio.embed(k)
        other = cypoe.Kernel()
        async with cypoe.aio.embed(other) as second:
            with pytest.raises(CypoeError, match="pass kernel="):
                cypoe.aio.wakeup()
            fired = asyncio.get_running_loop().create_future()
            other.delay(0.01, lambda: fired.set_result("other"))
            cypoe.aio.wakeup(other)
            result = await fired
        assert cypoe.aio.embedded(other) is None and second.wakeups > 0
        return result

    assert run(main(), k, loop_factory) == "other"
    assert cypoe.aio.embedded(k) is None


def test_the_poll_backend_is_refused(loop_factory):
    k = cypoe.Kernel(backend="poll")

    async def main():
        with pytest.raises(CypoeError, match="poll"):
            cypoe.aio.embed(k)
        return True

    loop = loop_factory()
    try:
        assert loop.run_until_complete(main())
    finally:
        loop.close()


def test_components_shut_down_when_the_app_ends(k, loop_factory):
    """cypoe.aio.run: a Server with an open connection and a connected
    TCPMulti are shut down gracefully when main() returns."""
    log = []

    async def main():
        server = cypoe.Server(port=0, address="127.0.0.1", kernel=k,
                              client_input=lambda c, r: c.put(r),
                              client_disconnected=lambda c: log.append("server side closed"),
                              stopped=lambda s: log.append("server stopped"))
        multi = cypoe.TCPMulti(on_input=lambda c, r: None, kernel=k,
                               on_disconnected=lambda c: log.append("multi side closed"))
        await cypoe.aio.connect(multi, "127.0.0.1", server.port)
        return server.connections

    assert run(main(), k, loop_factory) == 1
    assert sorted(log) == ["multi side closed", "server side closed", "server stopped"]
    assert not k._components


def test_components_made_after_the_shutdown_live(k, loop_factory):
    """The graceful shutdown at the end of cypoe.aio.run leaves no lasting
    mark on the kernel: a component made afterwards is not shut down."""
    async def main():
        cypoe.Server(port=0, address="127.0.0.1", kernel=k, client_input=lambda c, r: None)
        return True

    assert run(main(), k, loop_factory)
    log = []
    later = cypoe.Server(port=0, address="127.0.0.1", kernel=k,
                         client_input=lambda c, r: None, stopped=lambda s: log.append("stopped"))
    for _ in range(3):
        k.run_once(0)
    assert log == [] and later.started
    later.shutdown()
    k.run_once(0)
    assert log == ["stopped"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")
def test_call_soon_threadsafe_wakes_the_embedded_kernel(k, loop_factory):
    import threading

    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        threading.Thread(target=k.call_soon_threadsafe,
                         args=(lambda: got.set_result("from a thread"),)).start()
        return await got

    assert run(main(), k, loop_factory) == "from a thread"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_gateway_example_runs(loop):
    """docs/examples/aio_gateway.py, as docs/aio.rst shows it."""
    import os
    import subprocess
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(root, "src") + os.pathsep + env.get("PYTHONPATH", "")
    args = ["--lines", "7"] + (["--uvloop"] if loop == "uvloop" else [])
    p = subprocess.run([sys.executable, os.path.join(root, "docs", "examples", "aio_gateway.py"),
                        *args], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "client: 7 answers through the gateway" in p.stdout
    assert p.stdout.splitlines()[-1] == ("OK 7 lines upper-cased by the cypoe service behind "
                                         "an asyncio gateway; components left: 0")


def test_calls_from_asyncio_code_need_no_wakeup(k, loop_factory):
    """put(), delay() and post() made in a coroutine take effect without
    cypoe.aio.wakeup(): the embedded kernel pokes its own wakeup fd.  With no
    other timer armed (the connection's input timeout is off), nothing else
    would wake it."""
    async def main():
        loop = asyncio.get_running_loop()
        conns = []
        got = loop.create_future()
        server = cypoe.Server(port=0, address="127.0.0.1", kernel=k,
                              client_connected=conns.append,
                              client_input=lambda c, line: None)
        port = await cypoe.aio.started(server)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not conns:
            await asyncio.sleep(0.01)
        conns[0].put(b"from asyncio")          # no wakeup() after it
        line = await reader.readline()
        k.delay(0.0, lambda: got.set_result("timer"))    # nor after this
        fired = await got
        writer.close()
        await writer.wait_closed()
        return line, fired

    assert run(main(), k, loop_factory) == (b"from asyncio\r\n", "timer")
