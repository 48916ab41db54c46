#!/usr/bin/env python
"""A long-running correctness soak of cypoe's Server and TCPMulti.

A server (cypoe.Server, echo, Stream or Line filter) and a client
(cypoe.TCPMulti) run in separate processes on loopback and hold
``--connections`` connections (default 15,000) for ``--minutes``.  Each
connection sends chunks of random length (from a seeded PRNG) after random
pauses and keeps a running BLAKE2b hash of what it sent and of what came
back; whenever the echo has caught up with what was sent the two hashes
must be equal.  Every ``--reset-interval`` seconds a ``--reset-fraction``
of the live connections, picked at random, is aborted (SO_LINGER 0: a TCP
reset, pending output dropped).  A connection that has sent its planned
chunks waits for the rest of its echo, compares, and closes gracefully.
Every end is followed by a new connection, so the count stays near the
target.  The run's own process samples RSS (VmRSS) and open descriptors of
both processes every 10 s.

Accounting: bytes a reset connection had in flight are expected to be lost
and are counted apart ("reset in flight").  On every other connection all
bytes must come back: "bytes lost" (sent and never echoed on connections
that were not reset) must be 0, and so must "mismatches" (hash
comparisons that failed) and unexpected ends (the server closing or
resetting a connection, input or connect timeouts).  Exit status 1 if any
of these is not 0, 2 for a run that could not be made.

    nice -n 5 python bench/soak.py --minutes 2
    python bench/soak.py --minutes 30 --json soak.json
"""
import argparse
import hashlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

SAMPLE_EVERY = 10.0
PROGRESS_EVERY = 2.0
DRAIN_TIMEOUT = 60.0
POOL_SIZE = 1 << 20
LINGER_ABORT = struct.pack("ii", 1, 0)


def raise_nofile():
    """Soft RLIMIT_NOFILE up to the hard limit; returns (soft, hard)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft, hard


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# -- the server process --------------------------------------------------------

def run_server(args):
    import cypoe
    raise_nofile()
    kernel = cypoe.Kernel()
    stats = {"accepted": 0, "client_errors": {}, "exceptions": 0, "listener_errors": 0}

    def on_exception(kernel, context):
        stats["exceptions"] += 1
        sys.stderr.write(f"soak server: {context.get('message')}: {context.get('exception')!r}\n")

    kernel.set_exception_handler(on_exception)

    def connected(conn):
        stats["accepted"] += 1

    def client_error(conn, operation, errnum, errstr):
        key = f"{operation}:{errnum}"
        stats["client_errors"][key] = stats["client_errors"].get(key, 0) + 1

    def error(server, operation, errnum, errstr):
        stats["listener_errors"] += 1
        sys.stderr.write(f"soak server: {operation} failed: {errstr}\n")

    filt = cypoe.Line() if args.filter == "line" else cypoe.Stream()
    echoed = [0]

    def echo(conn, record):
        echoed[0] += 1
        if args.corrupt_every and echoed[0] % args.corrupt_every == 0:
            record = bytes([record[0] ^ 1]) + record[1:]  # the checks' own test
        conn.put(record)

    server = cypoe.Server(port=0, address="127.0.0.1", kernel=kernel, listen_queue=4096,
                          client_input=echo,
                          client_connected=connected, client_error=client_error,
                          client_filter=filt, client_input_timeout=None, error=error,
                          started=lambda s: emit({"port": s.port}))
    kernel.signal("TERM", lambda name: kernel.stop())
    kernel.signal("INT", lambda name: None)  # the run's process decides
    kernel.run()
    stats["connections_at_end"] = server.connections
    emit({"server": stats})


# -- the client process --------------------------------------------------------

class Peer:
    """One connection's bookkeeping."""
    __slots__ = ("sent", "recv", "h_sent", "h_recv", "chunks_left", "timer", "closing",
                 "reset", "ended", "bad")

    def __init__(self, chunks):
        self.sent = self.recv = 0
        self.h_sent = hashlib.blake2b(digest_size=16)
        self.h_recv = hashlib.blake2b(digest_size=16)
        self.chunks_left = chunks
        self.timer = None
        self.closing = False   # all chunks sent: close once the echo is complete
        self.reset = False     # aborted on purpose: in-flight bytes may be lost
        self.ended = False     # accounted for
        self.bad = False       # its echo differed from what it sent


class SoakClient:
    def __init__(self, args):
        import cypoe
        self.cy = cypoe
        self.args = args
        self.rng = random.Random(args.seed)
        line = args.filter == "line"
        self.line = line
        if line:
            # printable text, no line ends: the Line filter frames it
            alphabet = bytes(range(32, 127))
            self.pool = bytes(self.rng.choice(alphabet) for _ in range(POOL_SIZE))
        else:
            self.pool = self.rng.randbytes(POOL_SIZE)
        self.kernel = cypoe.Kernel()
        self.kernel.set_exception_handler(self._on_exception)
        self.live = {}
        self.stopping = False
        self.drain_deadline = None
        self.s = dict(opened=0, connected=0, connect_failures=0, graceful_closes=0,
                      resets=0, reset_inflight_bytes=0, unexpected_ends=0, timeouts=0,
                      bytes_sent=0, bytes_received=0, bytes_lost=0, hash_checks=0,
                      mismatches=0, exceptions=0, undrained=0, reconnects=0)
        self.errors = {}
        filt = cypoe.Line() if line else cypoe.Stream()
        self.multi = cypoe.TCPMulti(
            on_input=self._on_input, on_success=self._on_success,
            on_failure=self._on_failure, on_error=self._on_error,
            on_disconnected=self._on_disconnected, on_timeout=self._on_timeout,
            filter=filt, connect_timeout=30.0, input_timeout=0, kernel=self.kernel)

    # -- driving ----------------------------------------------------------------

    def run(self):
        a = self.args
        self.t0 = self.kernel.time()
        self.end_at = self.t0 + a.minutes * 60.0
        self.kernel.signal("INT", lambda name: None)
        self.kernel.signal("TERM", lambda name: self._stop())
        self.multi.session.retain()
        self._ramp()
        self.kernel.delay(a.reset_interval, self._reset_tick)
        self.kernel.delay(PROGRESS_EVERY, self._report)
        self.kernel.delay(a.minutes * 60.0, self._stop)
        self.kernel.run()
        return self.s

    def _ramp(self):
        """Open connections up to the target, at most --connect-rate a second."""
        if self.stopping:
            return
        want = self.args.connections - len(self.live)
        batch = min(want, max(1, int(self.args.connect_rate / 20)))
        for _ in range(batch):
            self._connect()
        if len(self.live) < self.args.connections:
            self.kernel.delay(0.05, self._ramp)

    def _connect(self):
        a = self.args
        p = Peer(self.rng.randint(a.min_chunks, a.max_chunks))
        conn = self.multi.connect("127.0.0.1", a.port, heap={"p": p})
        self.live[conn.id] = conn
        self.s["opened"] += 1

    def _pause(self):
        return self.rng.uniform(0.0, self.args.max_pause)

    def _chunk(self):
        n = self.rng.randint(1, self.args.max_chunk)
        off = self.rng.randrange(0, POOL_SIZE - n)
        return self.pool[off:off + n]

    def _send(self, conn):
        p = conn.heap["p"]
        p.timer = None
        if p.ended or p.closing or not conn.connected:
            return
        chunk = self._chunk()
        conn.put(chunk)
        if self.line:
            chunk += b"\n"  # what comes back: the record, and a line end
        p.sent += len(chunk)
        p.h_sent.update(chunk)
        self.s["bytes_sent"] += len(chunk)
        p.chunks_left -= 1
        if p.chunks_left <= 0:
            p.closing = True
        else:
            p.timer = conn.delay(self._pause(), self._send)

    def _reset_tick(self):
        if self.stopping:
            return
        conns = [c for c in self.live.values()
                 if c.connected and not c.heap["p"].ended and not c.heap["p"].closing]
        k = int(round(self.args.reset_fraction * len(conns)))
        for conn in self.rng.sample(conns, min(k, len(conns))):
            self._abort(conn)
        self.kernel.delay(self.args.reset_interval, self._reset_tick)

    def _abort(self, conn):
        p = conn.heap["p"]
        p.reset = True
        p.ended = True
        if p.recv == p.sent:
            self._compare(p)
        self.s["resets"] += 1
        self.s["reset_inflight_bytes"] += p.sent - p.recv
        try:
            s = socket.socket(fileno=conn.fileno())
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
            finally:
                s.detach()
        except OSError:
            pass
        conn.close()

    def _stop(self):
        """End of the run: no new connections or chunks; every connection
        closes once its echo is complete (or at the drain deadline)."""
        if self.stopping:
            return
        self.stopping = True
        self.drain_deadline = self.kernel.time() + DRAIN_TIMEOUT
        for conn in list(self.live.values()):
            p = conn.heap["p"]
            if p.timer is not None:
                p.timer.cancel()
                p.timer = None
            p.closing = True
            if not p.ended and conn.connected and p.recv == p.sent:
                self._finish(conn, p)
        self.kernel.delay(0.5, self._drain)

    def _drain(self):
        if self.live and self.kernel.time() < self.drain_deadline:
            self.kernel.delay(0.5, self._drain)
            return
        for conn in list(self.live.values()):
            p = conn.heap["p"]
            if not p.ended:
                p.ended = True
                self.s["undrained"] += 1
                self.s["bytes_lost"] += p.sent - p.recv
            conn.close()
        self._report()
        self.multi.session.release()
        self.multi.die()
        self.kernel.stop()

    def _report(self):
        emit({"progress": dict(self.s, live=len(self.live),
                               t=round(self.kernel.time() - self.t0, 1))})
        if not self.stopping:
            self.kernel.delay(PROGRESS_EVERY, self._report)

    # -- checks --------------------------------------------------------------

    def _compare(self, p):
        """Echo caught up: the two running hashes must be equal.  A
        connection's mismatch is counted once (its hashes differ from then
        on)."""
        self.s["hash_checks"] += 1
        if p.h_sent.digest() != p.h_recv.digest():
            self._mismatch(p)
            return False
        return True

    def _mismatch(self, p):
        if not p.bad:
            p.bad = True
            self.s["mismatches"] += 1

    def _finish(self, conn, p):
        """All chunks sent and echoed: compare, close gracefully."""
        p.ended = True
        self._compare(p)
        self.s["graceful_closes"] += 1
        conn.shutdown()

    def _lost(self, p, why):
        """A connection not reset on purpose ended before its echo was in."""
        if p.ended:
            return
        p.ended = True
        self.s["unexpected_ends"] += 1
        self.s["bytes_lost"] += p.sent - p.recv
        self.errors[why] = self.errors.get(why, 0) + 1

    # -- TCPMulti callbacks ----------------------------------------------------

    def _on_success(self, conn):
        self.s["connected"] += 1
        p = conn.heap["p"]
        if self.stopping:
            p.ended = True
            conn.shutdown()
            return
        p.timer = conn.delay(self._pause(), self._send)

    def _on_input(self, conn, record):
        p = conn.heap["p"]
        if self.line:
            record += b"\n"
        p.recv += len(record)
        p.h_recv.update(record)
        self.s["bytes_received"] += len(record)
        if p.recv == p.sent:
            if p.closing and not p.ended:
                self._finish(conn, p)
            elif not p.ended:
                self._compare(p)
        elif p.recv > p.sent:  # more came back than went out
            self._mismatch(p)

    def _on_error(self, conn, operation, errnum, errstr):
        p = conn.heap["p"]
        if not p.ended:
            self._lost(p, f"{operation}:{errnum}")

    def _on_failure(self, conn, operation, errnum, errstr):
        p = conn.heap["p"]
        p.ended = True
        self.s["connect_failures"] += 1
        key = f"connect {operation}:{errnum}"
        self.errors[key] = self.errors.get(key, 0) + 1

    def _on_timeout(self, conn):
        self.s["timeouts"] += 1
        self._lost(conn.heap["p"], "timeout")
        self._ended(conn)

    def _on_disconnected(self, conn):
        p = conn.heap["p"]
        if not p.ended:
            self._lost(p, "disconnected")
        self._ended(conn)

    def _ended(self, conn):
        self.live.pop(conn.id, None)
        if not self.stopping:
            self.s["reconnects"] += 1
            self._connect()

    def _on_exception(self, kernel, context):
        self.s["exceptions"] += 1
        sys.stderr.write(f"soak client: {context.get('message')}: "
                         f"{context.get('exception')!r}\n")


def run_client(args):
    raise_nofile()
    client = SoakClient(args)
    stats = client.run()
    emit({"client": dict(stats, errors=client.errors)})


# -- the run's own process -------------------------------------------------------

def proc_sample(pid):
    """(VmRSS in KiB, open descriptors) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None
    return {"rss_kib": rss, "fds": fds}


class LineReader(threading.Thread):
    """Reads a child's JSON lines; keeps the last one of each kind."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.last = {}
        self.port = threading.Event()

    def run(self):
        for line in self.stream:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            for key, value in msg.items():
                self.last[key] = value
                if key == "port":
                    self.port.set()


def child(role, args, **extra):
    argv = [sys.executable, os.path.abspath(__file__), "--role", role,
            "--filter", args.filter, "--seed", str(args.seed),
            "--corrupt-every", str(args.corrupt_every)]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # Ctrl-C is the run's to handle


def orchestrate(args):
    soft, hard = raise_nofile()
    if args.connections + 256 > hard:
        print(f"soak: --connections {args.connections} needs about {args.connections + 256} "
              f"descriptors per process; the hard limit is {hard}", file=sys.stderr)
        return 2
    server = child("server", args)
    sreader = LineReader(server.stdout)
    sreader.start()
    if not sreader.port.wait(30):
        server.kill()
        print("soak: the server did not start", file=sys.stderr)
        return 2
    port = sreader.last["port"]
    client = child("client", args, port=port, minutes=args.minutes,
                   connections=args.connections, reset_fraction=args.reset_fraction,
                   reset_interval=args.reset_interval, max_pause=args.max_pause,
                   max_chunk=args.max_chunk, min_chunks=args.min_chunks,
                   max_chunks=args.max_chunks, connect_rate=args.connect_rate)
    creader = LineReader(client.stdout)
    creader.start()
    print(f"soak: server pid {server.pid} on 127.0.0.1:{port} ({args.filter} filter), "
          f"client pid {client.pid}: {args.connections} connections for {args.minutes:g} min, "
          f"seed {args.seed}", flush=True)
    samples = []
    t0 = time.monotonic()
    limit = t0 + args.minutes * 60.0 + DRAIN_TIMEOUT + 120.0
    interrupted = False
    next_sample = t0
    try:
        while client.poll() is None and time.monotonic() < limit:
            now = time.monotonic()
            if now >= next_sample:
                s = {"t": round(now - t0, 1), "server": proc_sample(server.pid),
                     "client": proc_sample(client.pid)}
                prog = creader.last.get("progress") or {}
                s["live"] = prog.get("live", 0)
                samples.append(s)
                print(_sample_line(s, prog), flush=True)
                next_sample += SAMPLE_EVERY
            time.sleep(min(0.5, max(0.0, next_sample - time.monotonic())))
    except KeyboardInterrupt:
        interrupted = True
        client.send_signal(signal.SIGTERM)  # drain and report
    try:
        client.wait(timeout=DRAIN_TIMEOUT + 30 if client.poll() is None else None)
    except subprocess.TimeoutExpired:
        client.kill()
        client.wait()
    creader.join(5)
    end_sample = {"t": round(time.monotonic() - t0, 1), "server": proc_sample(server.pid),
                  "client": None}
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    sreader.join(5)
    return report(args, samples, end_sample, creader.last.get("client"),
                  sreader.last.get("server"), client.returncode, server.returncode,
                  interrupted)


def _mib(kib):
    return f"{kib / 1024:.1f} MiB"


def _sample_line(s, prog):
    def side(x):
        return "gone" if x is None else f"rss {_mib(x['rss_kib'])} fds {x['fds']}"
    return (f"  t={s['t']:>6.0f}s live {prog.get('live', 0):>5} "
            f"sent {prog.get('bytes_sent', 0) / 1e6:8.1f} MB "
            f"resets {prog.get('resets', 0):>5} closes {prog.get('graceful_closes', 0):>5} | "
            f"client {side(s['client'])} | server {side(s['server'])}")


def report(args, samples, end_sample, cstats, sstats, crc, src, interrupted):
    ok = True
    problems = []
    if cstats is None:
        problems.append(f"the client gave no final report (exit status {crc})")
    else:
        for key in ("bytes_lost", "mismatches", "unexpected_ends", "exceptions"):
            if cstats.get(key):
                problems.append(f"client {key}: {cstats[key]}")
    if sstats is None:
        problems.append(f"the server gave no final report (exit status {src})")
    else:
        for key in ("exceptions", "listener_errors"):
            if sstats.get(key):
                problems.append(f"server {key}: {sstats[key]}")
    ok = not problems

    def pick(i):
        return samples[i] if samples else None

    # "start": the first sample with (nearly) every connection open
    steady = [i for i, s in enumerate(samples) if s["live"] >= 0.95 * args.connections]
    first = steady[0] if steady else 0
    memory = {"before": pick(0), "start": pick(first),
              "middle": pick((first + len(samples) - 1) // 2) if samples else None,
              "end": pick(-1), "server_after_client": end_sample}
    result = {
        "ok": ok, "problems": problems, "interrupted": interrupted,
        "options": {k: v for k, v in vars(args).items() if k not in ("role", "json")},
        "client": cstats, "server": sstats, "memory": memory, "samples": samples,
    }
    c = cstats or {}
    print()
    print(f"soak: {'OK' if ok else 'FAILED'}{' (interrupted)' if interrupted else ''}")
    print(f"  bytes moved      {c.get('bytes_sent', 0):,} sent, {c.get('bytes_received', 0):,} "
          f"echoed back")
    print(f"  bytes lost       {c.get('bytes_lost', 0):,} (on connections not reset on purpose; "
          f"must be 0)")
    print(f"  mismatches       {c.get('mismatches', 0)} connections whose echo differed "
          f"({c.get('hash_checks', 0):,} hash comparisons)")
    print(f"  connections      {c.get('opened', 0):,} opened, {c.get('graceful_closes', 0):,} "
          f"closed gracefully (verified), {c.get('resets', 0):,} reset on purpose "
          f"({c.get('reset_inflight_bytes', 0):,} bytes in flight, expected lost), "
          f"{c.get('unexpected_ends', 0)} unexpected ends, "
          f"{c.get('connect_failures', 0)} connect failures, {c.get('undrained', 0)} undrained")
    if sstats:
        print(f"  server           {sstats.get('accepted', 0):,} accepted, "
              f"client errors {sstats.get('client_errors')}, "
              f"{sstats.get('exceptions', 0)} exceptions")
    for name in ("before", "start", "middle", "end"):
        s = memory[name]
        if s:
            def side(x):
                return "gone" if x is None else f"rss {_mib(x['rss_kib'])}, {x['fds']} fds"
            print(f"  {name:<6} t={s['t']:>6.0f}s  client {side(s['client'])}; "
                  f"server {side(s['server'])} ({s['live']} live)")
    for p in problems:
        print(f"  PROBLEM: {p}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0 if ok else 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Soak cypoe's Server and TCPMulti: many echo connections on loopback "
                    "with hashed data, random pauses, resets and reconnects.")
    p.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    p.add_argument("--connections", type=int, default=15000,
                   help="connections to hold (default 15000)")
    p.add_argument("--reset-fraction", type=float, default=0.02,
                   help="fraction of the live connections aborted (TCP reset) every "
                        "--reset-interval (default 0.02)")
    p.add_argument("--reset-interval", type=float, default=10.0, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=1, help="PRNG seed (default 1)")
    p.add_argument("--filter", choices=("stream", "line"), default="stream",
                   help="the echo's framing (default stream)")
    p.add_argument("--max-pause", type=float, default=10.0,
                   help="longest pause between a connection's chunks, s (default 10)")
    p.add_argument("--max-chunk", type=int, default=2048,
                   help="longest chunk, bytes (default 2048)")
    p.add_argument("--min-chunks", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--max-chunks", type=int, default=40,
                   help="a connection closes gracefully after 10 to this many chunks "
                        "(default 40)")
    p.add_argument("--connect-rate", type=float, default=2000.0,
                   help="new connections per second while ramping up (default 2000)")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON to FILE")
    p.add_argument("--role", choices=("run", "server", "client"), default="run",
                   help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--corrupt-every", type=int, default=0,
                   help="(to test the checks) the server flips a bit in every Nth record")
    args = p.parse_args(argv)
    if args.connections < 1 or not 0.0 <= args.reset_fraction < 1.0 or args.minutes <= 0:
        p.error("--connections >= 1, 0 <= --reset-fraction < 1, --minutes > 0")
    if not 1 <= args.min_chunks <= args.max_chunks or args.max_chunk < 1:
        p.error("chunk bounds must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.role == "server":
        run_server(args)
        return 0
    if args.role == "client":
        run_client(args)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
