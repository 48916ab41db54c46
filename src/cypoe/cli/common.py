"""Helpers shared by the commands."""
import argparse
import codecs
import re
import os
import sys


class Unavailable(Exception):
    """A command needs a part of cypoe that is not there (yet)."""


def require(*names):
    """Import cypoe and check it has ``names``; raise Unavailable if not."""
    try:
        import cypoe
    except ImportError as exc:
        raise Unavailable(f"cannot import cypoe: {exc}") from None
    missing = [n for n in names if not hasattr(cypoe, n)]
    if missing:
        raise Unavailable("not available yet: needs " + ", ".join("cypoe." + n for n in missing))
    return cypoe


def positive_int(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {n}")
    return n


def nonneg_int(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {n}")
    return n


def positive_float(text):
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not x > 0 or x != x or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return x


_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text):
    """Seconds, with an optional unit as wrk takes them: 10, 10s, 500ms, 2m."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10, 10s, 500ms, 2m)")
    x = float(m.group(1)) * _UNITS[m.group(2) or ""]
    if x <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return x


def size(text):
    """Bytes, with an optional k/M/G suffix (powers of 1024): 96k, 1M."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([kKmMgG])?[iI]?[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512, 96k, 1M)")
    mult = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[(m.group(2) or "").lower()]
    return int(m.group(1)) * mult


def unescape(text):
    """C-style escapes (``\\r\\n``, ``\\x00``, ``\\t``) to bytes, as tcpkali
    and zgrab2 take payloads on the command line."""
    try:
        return codecs.escape_decode(text.encode("utf-8"))[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad escape in {text!r}: {exc}") from None


def hostport(text, default_host="127.0.0.1"):
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` -> (host, port)."""
    t = text.strip()
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"expected [ADDRESS]:PORT, not {text!r}")
        port = rest[1:]
    elif t.count(":") == 1:
        host, port = t.split(":")
    elif t.isdigit():
        host, port = default_host, t
    else:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}")
    return (host or default_host), int(port)


def raise_nofile(wanted):
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (up to the hard
    limit); returns the soft limit in force."""
    try:
        import resource
    except ImportError:  # pragma: no cover
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    return soft


def err(prog, message):
    # one write, so that lines from several processes do not interleave
    sys.stderr.write(f"{prog}: {message}\n")
    sys.stderr.flush()


# -- a closed standard output ---------------------------------------------------

# What a shell reports for a command that SIGPIPE ended: 128 + SIGPIPE.
EXIT_OUTPUT_CLOSED = 141


class OutputClosed(BaseException):
    """The reader of an output went away (EPIPE).  A BaseException, as
    KeyboardInterrupt is, so that it is not one more error of the callback
    that wrote (the kernel logs those and goes on) but ends the command.
    ``args[0]``: the stream whose reader went away."""


class ClosedPipeGuard:
    """A text stream whose writes raise :class:`OutputClosed` instead of
    BrokenPipeError; everything else is the wrapped stream's."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            raise OutputClosed(self.stream) from None

    def writelines(self, lines):
        try:
            return self.stream.writelines(lines)
        except BrokenPipeError:
            raise OutputClosed(self.stream) from None

    def flush(self):
        try:
            return self.stream.flush()
        except BrokenPipeError:
            raise OutputClosed(self.stream) from None

    def close(self):
        try:
            return self.stream.close()
        except BrokenPipeError:
            raise OutputClosed(self.stream) from None

    def __getattr__(self, name):
        return getattr(self.stream, name)


def discard_output(stream):
    """After EPIPE: point ``stream``'s descriptor at /dev/null, so that what
    its buffer still holds is not written (and fails) at exit."""
    import os
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def run_guarded(command):
    """Run ``command()`` with ``sys.stdout`` guarded: the first write to a
    closed stdout, wherever it happens (in a loop's callback too), ends the
    command with :data:`EXIT_OUTPUT_CLOSED` and nothing on stderr, as SIGPIPE
    ends other Unix tools.  Returns command()'s result otherwise."""
    stream = sys.stdout
    guard = ClosedPipeGuard(stream)
    sys.stdout = guard
    try:
        return command()
    except OutputClosed as exc:
        discard_output(exc.args[0] if exc.args else stream)
        return EXIT_OUTPUT_CLOSED
    finally:
        if sys.stdout is guard:
            sys.stdout = stream


def reap(pids, timeout=10.0, sig=None):
    """Wait for child processes ``pids`` to exit (after sending them ``sig``
    when given); any still alive after ``timeout`` seconds is killed."""
    import os
    import signal
    import time

    for pid in pids if sig is not None else ():
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)


def write_json_report(prog, path, summary):
    """Write ``summary`` as JSON to ``path`` ('-': stdout); True, or False
    after saying why it could not."""
    import json
    text = json.dumps(summary, indent=1)
    if path == "-":
        print(text)
        return True
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        err(prog, f"{path}: {exc.strerror}")
        return False
    return True


def pipe_worker(run, wfd, to_msg):
    """A load worker process: ``run(tick)`` -> (stats, interrupted), its
    per-second snapshots and then its totals (``to_msg(stats)``) written
    as JSON lines to ``wfd``; returns the exit code."""
    import json

    def send(obj):
        data = (json.dumps(obj) + "\n").encode()
        while data:
            n = os.write(wfd, data)
            data = data[n:]
    stats, interrupted = run(send)
    send({"type": "done", "stats": to_msg(stats), "interrupted": interrupted})
    os.close(wfd)
    return 0
