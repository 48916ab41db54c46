"""``cypoe load --idle``: open N connections, hold them, report what each costs.

redis-benchmark's ``-I`` (idle mode) opens connections and waits; this
does the same with one TCPMulti session and reports, per open connection:

- the generator's resident memory (RSS growth from before the first
  connect to the end of the hold, divided by the connections open then):
  the figure cypoe sells, one ``Conn`` with its buffers and no session;
- the kernel's TCP socket memory (``/proc/net/sockstat``, line ``TCP:``,
  field ``mem``: pages of socket buffers, for the whole machine, so a
  server on the same host is included) growth times the page size;
- the kernel's slab memory (``/proc/meminfo`` ``Slab``, whole machine)
  growth: the socket, inode and file structures, which sockstat's ``mem``
  (buffers only, none while idle) leaves out;
- file descriptors (``/proc/self/fd``), one per connection expected.

Nothing is sent: the connections are idle.  A connection the server
closes is counted (``closed_by_peer``) and not reopened.
"""
import gc
import os

from cypoe.cli import common, report

LIVE_INTERVAL = 1.0


def page_size():
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 4096


def rss_bytes(pid="self"):
    """Resident set size of a process (``/proc/PID/status`` VmRSS)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def tcp_mem_pages(path="/proc/net/sockstat"):
    """The ``mem`` field of the ``TCP:`` line of /proc/net/sockstat (pages)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith("TCP:"):
                    parts = line.split()
                    for i, word in enumerate(parts):
                        if word == "mem" and i + 1 < len(parts):
                            return int(parts[i + 1])
    except (OSError, ValueError):
        pass
    return None


def tcp_sockets_in_use(path="/proc/net/sockstat"):
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith("TCP:"):
                    parts = line.split()
                    return int(parts[parts.index("inuse") + 1])
    except (OSError, ValueError):
        pass
    return None


def slab_bytes(path="/proc/meminfo"):
    """The kernel's slab memory (``Slab:`` of /proc/meminfo), whole machine:
    socket, inode and file structures of idle connections live there."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith("Slab:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def open_fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def snapshot():
    # Garbage first: a collected Kernel closes its fds, and that must not
    # happen between the two snapshots of a run embedded in a larger program.
    gc.collect()
    return {"rss": rss_bytes(), "tcp_mem_pages": tcp_mem_pages(), "fds": open_fds(),
            "tcp_inuse": tcp_sockets_in_use(), "slab": slab_bytes()}


class IdleRun:
    def __init__(self, cfg, tick=None, kernel=None):
        cy = common.require("TCPMulti", "Kernel", "Stream")
        self.cfg = cfg
        self.kernel = kernel if kernel is not None else cy.Kernel()
        self.tick = tick
        self.errors = {}
        self.opened = 0
        self.failed = 0
        self.open_now = 0
        self.closed_by_peer = 0
        self.bytes_received = 0
        self.finished = False
        self.interrupted = False
        self.timers = []
        self.multi = cy.TCPMulti(
            on_input=self._on_input, on_success=self._on_success, on_failure=self._on_failure,
            on_error=self._on_error, on_disconnected=self._on_disconnected,
            on_timeout=self._on_timeout, filter=cy.Stream(), connect_timeout=cfg.timeout,
            input_timeout=0, kernel=self.kernel,
            states={"cli_call": lambda multi, fn, *args: fn(*args)})

    def _later(self, seconds, fn, *args):
        return self.multi.delay(max(0.0, seconds), "cli_call", fn, *args)

    def _error(self, kind):
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def run(self):
        k = self.kernel
        self.t0 = k.time()
        k.register_component(self)
        # the connects start from the running loop, so that the "before"
        # figures include the poller and the session
        self.timers.append(self._later(0.0, self._start))
        self.live_timer = self._later(LIVE_INTERVAL, self._live)
        k.run()
        self.held_s = k.time() - self.t0
        return self.result()

    def _start(self):
        cfg = self.cfg
        self.before = snapshot()
        sources = getattr(cfg, "sources", None) or []
        rate = getattr(cfg, "connect_rate", None)
        for i in range(cfg.connections):
            bind = sources[i % len(sources)] if sources else None
            if rate:
                self.timers.append(self._later(i / rate, self._connect, bind))
            else:
                self._connect(bind)
        # the hold: --duration from the start, plus the time the connects take
        connect_phase = (cfg.connections / rate) if rate else 0.0
        self.timers.append(self._later(connect_phase + cfg.duration, self._measure_and_finish))

    def _connect(self, bind):
        if not self.finished:
            self.multi.connect(self.cfg.host, self.cfg.port, bind_address=bind)

    def _live(self):
        if self.finished:
            return
        if self.tick is not None:
            self.tick({"type": "tick", "responses": 0, "errors": sum(self.errors.values()),
                       "conns": self.open_now, "hist": ""})
        self.live_timer = self._later(LIVE_INTERVAL, self._live)

    def _measure_and_finish(self):
        self.after = snapshot()
        self.open_at_measure = self.open_now
        self._finish()

    def shutdown(self):  # SIGINT / SIGTERM
        self.interrupted = True
        if not hasattr(self, "after"):
            self._measure_and_finish()
        self._finish()

    def _finish(self):
        if self.finished:
            return
        self.finished = True
        for t in self.timers:
            t.cancel()
        self.live_timer.cancel()
        self.multi.die()
        self.kernel.unregister_component(self)

    def _on_success(self, conn):
        self.opened += 1
        self.open_now += 1

    def _on_input(self, conn, data):
        self.bytes_received += len(data)

    def _on_failure(self, conn, operation, errnum, errstr):
        if not self.finished:
            self.failed += 1
            self._error(report.error_kind(operation, errnum))

    def _on_error(self, conn, operation, errnum, errstr):
        if not self.finished:
            self._error(report.error_kind(operation, errnum))
        conn.shutdown()

    def _on_timeout(self, conn):
        if not self.finished:
            self.failed += 1
            self._error("connect:ETIMEDOUT")

    def _on_disconnected(self, conn):
        self.open_now -= 1
        if not self.finished:
            self.closed_by_peer += 1

    def result(self):
        a = getattr(self, "after", None) or snapshot()
        b = getattr(self, "before", None) or a
        n = getattr(self, "open_at_measure", self.open_now)

        def per(key, scale=1):
            if n <= 0 or a.get(key) is None or b.get(key) is None:
                return None
            return round((a[key] - b[key]) * scale / n, 1)
        ps = page_size()
        return {
            "mode": "idle",
            "connections": self.cfg.connections,
            "opened": self.opened,
            "failed": self.failed,
            "open_at_measure": n,
            "closed_by_peer": self.closed_by_peer,
            "held_s": round(getattr(self, "held_s", 0.0), 3),
            "rss_before_bytes": b["rss"],
            "rss_after_bytes": a["rss"],
            "rss_per_conn_bytes": per("rss"),
            "page_size": ps,
            "tcp_mem_pages_before": b["tcp_mem_pages"],
            "tcp_mem_pages_after": a["tcp_mem_pages"],
            "kernel_mem_per_conn_bytes": per("tcp_mem_pages", ps),
            "slab_before_bytes": b["slab"],
            "slab_after_bytes": a["slab"],
            "kernel_slab_per_conn_bytes": per("slab"),
            "tcp_sockets_before": b["tcp_inuse"],
            "tcp_sockets_after": a["tcp_inuse"],
            "fds_before": b["fds"],
            "fds_after": a["fds"],
            "fds_per_conn": per("fds"),
            "bytes_received": self.bytes_received,
            "errors": dict(sorted(self.errors.items())),
            "error_total": sum(self.errors.values()),
            "interrupted": self.interrupted,
        }


def run_idle(cfg, live):
    """Open ``cfg.connections`` connections to ``cfg.host:cfg.port``, hold
    them ``cfg.duration`` seconds (after the connects, at
    ``cfg.connect_rate`` when set), measure, close; returns the figures
    (a JSON-safe dict; :func:`format_idle` prints it)."""
    common.raise_nofile(cfg.connections + report.FD_RESERVE)

    def tick(snap):
        if live is not None:
            live.add(snap)
            live.emit()
    return IdleRun(cfg, tick=tick).run()


def _bytes(v):
    return "-" if v is None else f"{v:,.0f} bytes"


def format_idle(d, target="?"):
    """The human report of an idle run."""
    lines = [
        f"cypoe load --idle: {target}: {d['connections']} connections held {d['held_s']:.2f} s",
        f"  connections  {d['opened']} opened, {d['failed']} failed, "
        f"{d['open_at_measure']} open when measured, {d['closed_by_peer']} closed by the peer",
        f"  RSS          {_bytes(d['rss_per_conn_bytes'])} per connection "
        f"({_bytes(d['rss_before_bytes'])} -> {_bytes(d['rss_after_bytes'])})",
        f"  kernel TCP   {_bytes(d['kernel_mem_per_conn_bytes'])} per connection "
        f"(sockstat mem {d['tcp_mem_pages_before']} -> {d['tcp_mem_pages_after']} pages of "
        f"{d['page_size']} bytes, whole machine)",
        f"  kernel slab  {_bytes(d['kernel_slab_per_conn_bytes'])} per connection "
        f"(/proc/meminfo Slab, whole machine: a server on this host counts too)",
        f"  fds          {d['fds_per_conn'] if d['fds_per_conn'] is not None else '-'} per "
        f"connection ({d['fds_before']} -> {d['fds_after']})",
    ]
    if d["errors"]:
        lines.append("  errors       " + ", ".join(f"{k} {v}" for k, v in d["errors"].items()))
    else:
        lines.append("  errors       none")
    return "\n".join(lines)



def main(cfg, live, json_path=None, human=None):
    """``cypoe load --idle`` from load.py: run, print the report (to `human`,
    default stdout; stderr when the JSON goes to stdout), write the JSON
    (``-``: stdout); returns the exit code (0; 1 when no connection opened
    or the JSON cannot be written; 130 after Ctrl-C)."""
    import json
    import sys
    d = run_idle(cfg, live)
    host, port = cfg.host, cfg.port
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    d["target"] = target
    out = human or (sys.stderr if json_path == "-" else sys.stdout)
    print(format_idle(d, target), file=out)
    if json_path:
        text = json.dumps(d, indent=1)
        if json_path == "-":
            print(text)
        else:
            try:
                with open(json_path, "w", encoding="utf-8") as fh:
                    fh.write(text + "\n")
            except OSError as exc:
                print(f"cypoe load: {json_path}: {exc.strerror}", file=sys.stderr)
                return 1
    if d["interrupted"]:
        return 130
    return 0 if d["opened"] else 1
