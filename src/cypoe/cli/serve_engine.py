"""The network part of ``cypoe serve``: Server glue and worker processes."""
import os
import signal
import socket
import time
import ssl as _ssl

from cypoe.cli import common, protocols


def check():
    common.require("Server", "Kernel", "Line", "Stream", "Block")


def tls_context(cert, key=None):
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# A peer that sends without reading would otherwise have everything it sent
# buffered as output: above HIGH_MARK bytes of pending output the connection
# stops reading (TCP then holds the peer back), below LOW_MARK it reads again.
HIGH_MARK = 1 << 20
LOW_MARK = 256 << 10
# How long a graceful shutdown waits for pending output (a peer that does not
# read would hold it forever); what is left then is dropped.
DRAIN_TIMEOUT = 10.0


def drain_deadline(kernel, server, seconds, quiet=False, ignore_sigint=False):
    """The first SIGINT/SIGTERM shuts the kernel's components down
    gracefully (the server stops accepting, its connections flush and
    close); ``seconds`` later the kernel stops, closing whatever has not
    flushed.  A second signal stops at once.  ``ignore_sigint``: for worker
    processes, which a terminal's Ctrl-C reaches too: their parent decides
    and sends SIGTERM."""
    signals = []

    def on_signal(name):
        signals.append(name)
        if len(signals) > 1:
            kernel.stop()
            return
        kernel.shutdown()
        kernel.delay(seconds, expire)

    def expire():
        if not quiet and server.connections:
            common.err("cypoe serve", f"{server.connections} connection(s) had not flushed "
                                      f"after {seconds:g} s; closed")
        kernel.stop()

    kernel.signal("INT", (lambda name: None) if ignore_sigint else on_signal)
    kernel.signal("TERM", on_signal)


def make_server(protocol, host, port, filter_kind="line", *, max_connections=None,
                idle_timeout=None, ssl=None, reuse_port=False, kernel=None,
                started=None, error=None):
    """A cypoe.Server speaking `protocol` (a name of protocols.PROTOCOLS)."""
    cy = common.require("Server", "Kernel", "Line", "Stream", "Block")
    proto = protocols.make_protocol(protocol, filter_kind)
    resp = protocol == "pong" and filter_kind != "block"
    if resp:
        # RESP's framing is not lines (a bulk string may hold any bytes):
        # the bytes go as they come to a compiled command counter.
        filter_kind = "stream"
    filt = {"line": cy.Line, "stream": cy.Stream, "block": cy.Block}[filter_kind]()
    put_more = proto.streams

    def client_connected(conn):
        if resp:
            conn.heap["resp"] = RespCounter()
            return
        out = proto.connected()
        if out:
            conn.put(*out)
        if proto.close_after_connect:
            conn.shutdown()
        elif put_more:
            conn.heap["state"] = {}
            conn.put(*proto.more(conn.heap["state"]))

    if protocol == "echo":
        def client_input(conn, record):
            conn.put(record)
    elif resp:
        from cypoe._resp import RespCounter
        pong = protocols.PONG

        def client_input(conn, record):
            counter = conn.heap["resp"]
            n = counter.feed(record)
            if n:
                conn.put(pong * n)
            if counter.error is not None:
                # as redis: the error, then the connection closes
                conn.put(b"-ERR " + counter.error.encode() + b"\r\n")
                conn.shutdown()
    else:
        def client_input(conn, record):
            out = proto.input(record)
            if out:
                conn.put(*out)

    stopping = []

    class _StreamStopper:
        """On SIGINT/SIGTERM, streaming protocols (chargen) end their
        streams, so that the graceful shutdown can finish."""

        def shutdown(self):
            stopping.append(True)
            k.unregister_component(self)

    k = kernel if kernel is not None else cy.kernel
    if put_more:
        k.register_component(_StreamStopper())

    def client_flushed(conn):
        if not (put_more and conn.connected and not conn.shutting_down):
            return
        if stopping:
            conn.shutdown()
        else:
            conn.put(*proto.more(conn.heap["state"]))

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kw = {}
    if put_more:
        kw["client_flushed"] = client_flushed
    elif proto.answers:
        kw.update(high_mark=HIGH_MARK, low_mark=LOW_MARK,
                  client_high=lambda conn: conn.pause_input(),
                  client_low=lambda conn: conn.resume_input())
    return cy.Server(port=port, address=host, domain=family,
                     concurrency=-1 if max_connections is None else max_connections,
                     reuse_port=reuse_port, client_input=client_input,
                     client_connected=client_connected, client_filter=filt,
                     client_input_timeout=idle_timeout, ssl=ssl, kernel=kernel,
                     started=started, error=error, **kw)


def run_server(protocol, host, port, filter_kind="line", *, on_ready, on_failure,
               quiet=False, drain_timeout=DRAIN_TIMEOUT, ignore_sigint=False, **server_kw):
    """Serve until SIGINT/SIGTERM (graceful; see :func:`drain_deadline`).

    ``on_ready(port)`` runs once the socket listens (the server's
    ``started``), never before: nothing may say where the server listens
    until it does.  A failure before that (bind, listen) goes to
    ``on_failure(message)`` instead, once; later listener errors are
    printed unless ``quiet``.  Returns an exit code: 1 after any listener
    error."""
    cy = common.require("Kernel")
    kernel = cy.Kernel()
    where = f"[{host}]" if ":" in host else host
    state = {"listening": False, "failed": False}

    def on_started(server, *listener_args):
        state["listening"] = True
        on_ready(server.port)

    def on_error(server, operation, errnum, errstr):
        if not state["listening"]:
            if not state["failed"]:
                on_failure(f"{operation} failed on {where}:{port}: {errstr}")
        elif not quiet:
            common.err("cypoe serve", f"{operation} failed: {errstr}")
        state["failed"] = True

    server = make_server(protocol, host, port, filter_kind, kernel=kernel, started=on_started,
                         error=on_error, **server_kw)
    if not state["failed"]:
        drain_deadline(kernel, server, drain_timeout, quiet, ignore_sigint)
    # after a failure the server has ended, and so does the loop at once
    kernel.run()
    return 1 if state["failed"] else 0


def serve_forever(protocol, host, port, filter_kind="line", *, max_connections=None,
                  idle_timeout=None, ssl=None, reuse_port=False, ready_fd=None, quiet=False,
                  drain_timeout=DRAIN_TIMEOUT, ignore_sigint=False):
    """:func:`run_server` for a child process: it reports the bound port as
    a line on ``ready_fd`` once it listens, or ``error MESSAGE`` when it
    cannot (then it is for the reader to say; without ``ready_fd`` the
    message goes to stderr unless ``quiet``).  Returns an exit code."""

    def on_ready(bound):
        if ready_fd is not None:
            _write_line(ready_fd, str(bound))

    def on_failure(message):
        if ready_fd is not None:
            _write_line(ready_fd, "error " + message)
        elif not quiet:
            common.err("cypoe serve", message)

    return run_server(protocol, host, port, filter_kind, on_ready=on_ready,
                      on_failure=on_failure, quiet=quiet, drain_timeout=drain_timeout,
                      ignore_sigint=ignore_sigint, max_connections=max_connections,
                      idle_timeout=idle_timeout, ssl=ssl, reuse_port=reuse_port)


def _write_line(fd, text):
    os.write(fd, (text + "\n").encode())
    os.close(fd)


def serve_main(args, ssl_ctx):
    host, port = args.host, args.port
    opts = dict(max_connections=args.max_connections, idle_timeout=args.idle_timeout,
                ssl=ssl_ctx)
    drain = args.drain_timeout
    where = f"[{host}]" if ":" in host else host
    if args.workers > 1:
        return _serve_workers(args, host, port, where, dict(opts, drain_timeout=drain))

    def on_ready(bound):
        _announce(args, where, bound)
        if args.ready_fd is not None:
            _write_line(args.ready_fd, str(bound))

    def on_failure(message):
        common.err("cypoe serve", message)
        if args.ready_fd is not None:
            _write_line(args.ready_fd, "error " + message)

    return run_server(args.protocol, host, port, args.filter_kind, on_ready=on_ready,
                      on_failure=on_failure, drain_timeout=drain, **opts)


def _announce(args, where, port):
    tls = ", TLS" if args.tls_cert else ""
    extra = f", {args.workers} workers" if args.workers > 1 else ""
    print(f"cypoe serve: {args.protocol} on {where}:{port} (filter {args.filter_kind}{tls}{extra})",
          flush=True)


def _serve_workers(args, host, port, where, opts):
    """N processes, each with its own listening socket on the same port
    (SO_REUSEPORT: the kernel spreads the connections).  The first line is
    printed once every worker listens; if any cannot, its error is printed
    (once, however many workers had it), the others are stopped, exit 1."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = None
    if port == 0:
        # pick the port once and hold it while the workers bind
        holder = socket.socket(family, socket.SOCK_STREAM)
        try:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind((host, 0))
        except OSError as exc:
            holder.close()
            common.err("cypoe serve", f"bind failed on {where}:0: {exc.strerror or exc}")
            return 1
        port = holder.getsockname()[1]
    from cypoe.cli.workers import WorkerPool

    def work(index, wfd):
        if holder is not None:
            holder.close()
        return serve_forever(args.protocol, host, port, args.filter_kind, reuse_port=True,
                             ready_fd=wfd, quiet=False, ignore_sigint=True, **opts)

    # Each worker writes one line once it listens (its port, or "error
    # MESSAGE") and closes its pipe; it then serves until SIGTERM.
    reported = {}      # worker index -> its line
    ended = 0          # workers whose pipe has ended: each has said what it will
    failures = []

    def on_line(worker, line):
        if worker.index not in reported:
            reported[worker.index] = line.decode("utf-8", "replace").strip()

    def on_end(worker):
        nonlocal holder, ended
        line = reported.get(worker.index, "")
        if line.startswith("error "):
            failures.append(line[len("error "):])
        elif not line.isdigit():
            failures.append("a worker exited before listening")
        ended += 1
        if ended < args.workers:
            return
        if holder is not None:
            holder.close()
            holder = None
        if failures:
            for message in dict.fromkeys(failures):  # each once, in order
                common.err("cypoe serve", message)
            if args.ready_fd is not None:
                _write_line(args.ready_fd, "error " + failures[0])
            pool.stop()
            return
        _announce(args, where, port)
        if args.ready_fd is not None:
            _write_line(args.ready_fd, str(port))

    pool = WorkerPool(args.workers, work, prog="cypoe serve")
    try:
        pool.run(on_line, on_end=on_end)
    finally:
        if holder is not None:
            holder.close()
    if failures:
        return 1
    return 1 if any(w.exit_code > 0 or w.died for w in pool.workers) else 0


class EmbeddedServer:
    """``cypoe serve echo`` in a child process on 127.0.0.1, port 0 (``cypoe
    load`` without a target); the child writes its port to a pipe."""

    def __init__(self, filter_kind="stream", protocol="echo", timeout=10.0):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (SIGTERM)
                code = serve_forever(protocol, "127.0.0.1", 0, filter_kind,
                                     ready_fd=w, quiet=True, ignore_sigint=True)
            except BaseException:  # noqa: BLE001
                import traceback
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(w)
        self.pid = pid
        try:
            self.port = _read_port(r, timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(r)

    def stop(self, timeout=5.0):
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        common.reap([pid], timeout, signal.SIGTERM)


def _read_port(fd, timeout):
    import select
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("the server did not report its port in time")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 64)
            if not chunk:
                raise RuntimeError("the server exited before listening")
            buf += chunk
    text = buf.split(b"\n", 1)[0].decode()
    if not text.isdigit():
        raise RuntimeError(f"the server failed: {text}")
    return int(text)
