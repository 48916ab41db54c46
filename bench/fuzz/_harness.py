"""Shared machinery of the atheris fuzz targets in bench/fuzz.

Every target builds a compiled filter and its plain-Python reference with
the same settings (drawn from the fuzz input), drives both with the same
sequence of calls and bytes (also drawn from the input), and requires:

* the same records, errors (type, message, ``.records``) and pending input
  after every call;
* no exception other than ``FilterError`` subclasses (anything else
  escapes and atheris reports it as a crash);
* progress: after an error, ``get([])`` (or ``feed(NULL, 0)``) stops
  raising within a bounded number of calls;
* split-point invariance where SEMANTICS.md promises it: the records and
  errors of a byte stream do not depend on how it was cut into chunks.

A mismatch raises ``AssertionError`` with both traces.
"""
import atheris

from cypoe.errors import FilterError

MAX_ERROR_RETRIES = 10_000
ATOMS = [b"\r", b"\n", b"\r\n", b"\n\r", b"\0", b"0", b"1", b"9", b"12\0",
         b"<>", b"a", b"b", b"x", b"{", b"}", b'"', b"\xff", b"\xc3", b"\xa9",
         b"x" * 40, b"\x00\x00\x00\x05", b"[1,", b"null", b"\\u12"]


class Input:
    """Decisions drawn from the fuzz input (FuzzedDataProvider)."""

    def __init__(self, data):
        self.fdp = atheris.FuzzedDataProvider(data)

    def int(self, lo, hi):
        return self.fdp.ConsumeIntInRange(lo, hi)

    def bool(self):
        return self.fdp.ConsumeBool()

    def pick(self, seq):
        return seq[self.fdp.ConsumeIntInRange(0, len(seq) - 1)]

    def maybe(self, lo, hi):
        """None or an int in [lo, hi]."""
        return None if self.bool() else self.int(lo, hi)

    def blob(self, max_len=64):
        """Some bytes: raw, or glued from protocol-ish atoms."""
        if self.bool():
            return self.fdp.ConsumeBytes(self.int(0, max_len))
        return b"".join(self.pick(ATOMS) for _ in range(self.int(0, 12)))

    def chunks(self):
        return [self.blob() for _ in range(self.int(0, 3))]

    def remaining(self):
        return self.fdp.remaining_bytes()


def _err(exc):
    return (type(exc).__name__, str(exc), list(getattr(exc, "records", []) or []))


def plan(inp, *, c_face=True, put_records=None, max_ops=24):
    """A sequence of operations, the same for both filters."""
    kinds = ["get", "get", "get", "start", "one", "pending", "clone", "put"]
    if c_face:
        kinds += ["feed", "feed", "put_into"]
    ops = []
    for _ in range(inp.int(0, max_ops)):
        if inp.remaining() == 0:
            break
        kind = inp.pick(kinds)
        if kind in ("put", "put_into"):
            ops.append((kind, put_records(inp) if put_records else [inp.blob()]))
        elif kind == "feed":
            ops.append((kind, inp.blob()))
        else:
            ops.append((kind, inp.chunks()))
    return ops


def drive(f, ops, *, compiled):
    """Run ops on f; return the observable trace.  `compiled` makes "feed"
    and "put_into" use the C face (ReadWrite's path); the reference runs the
    equivalent POE calls."""
    from cypoe._buffer import ByteBuffer
    trace = []
    for kind, arg in ops:
        if kind == "clone":
            f = f.clone()
            trace.append(("clone", f.get_pending()))
            continue
        if kind == "pending":
            trace.append(("pending", f.get_pending()))
            continue
        if kind in ("put", "put_into"):
            try:
                if kind == "put_into" and compiled:
                    buf = ByteBuffer()
                    f._c_put_into(arg, buf)
                    trace.append(("put", buf.getvalue()))
                else:
                    trace.append(("put", b"".join(f.put(arg))))
            except FilterError as exc:
                trace.append(("put-error", type(exc).__name__, str(exc)))
            continue
        if kind == "feed" and compiled:
            records, exc = f._c_feed(arg)
            trace.append(("get", records, exc and _err(exc)[:2]))
            tries = 0
            while exc is not None:
                tries += 1
                assert tries < MAX_ERROR_RETRIES, "feed kept raising without progress"
                records, exc = f._c_feed(b"")
                trace.append(("get", records, exc and _err(exc)[:2]))
            trace.append(("pending", f.get_pending()))
            continue
        if kind == "feed":          # the reference's equivalent of feed()
            kind, arg = "get", [arg]
            try:
                trace.append(("get", f.get(arg), None))
                trace.append(("pending", f.get_pending()))
                continue
            except FilterError as exc:
                trace.append(("get", list(exc.records), _err(exc)[:2]))
            tries = 0
            while True:
                tries += 1
                assert tries < MAX_ERROR_RETRIES, "get([]) kept raising without progress"
                try:
                    trace.append(("get", f.get([]), None))
                    break
                except FilterError as exc:
                    trace.append(("get", list(exc.records), _err(exc)[:2]))
            trace.append(("pending", f.get_pending()))
            continue
        try:
            if kind == "get":
                trace.append(("get", f.get(arg)))
            elif kind == "start":
                trace.append(("start", f.get_one_start(arg)))
            else:
                trace.append(("one", f.get_one()))
        except FilterError as exc:
            trace.append(("error",) + tuple(_err(exc)))
        trace.append(("pending", f.get_pending()))
    return trace


def compare(make_compiled, make_reference, ops, *, c_face=True, key=repr):
    """Drive both filters; raise AssertionError with both traces if they
    differ."""
    tc = drive(make_compiled(), ops, compiled=c_face)
    tr = drive(make_reference(), ops, compiled=False)
    if key(tc) != key(tr):
        raise AssertionError(
            "compiled and reference differ\nops: %r\ncompiled:  %r\nreference: %r"
            % (ops, tc, tr))


def events(f, chunks):
    """Records and error types of a stream fed chunk by chunk (an error is
    followed by get([]) until the filter stops raising)."""
    out = []
    for chunk in chunks:
        arg = [chunk]
        for _ in range(MAX_ERROR_RETRIES):
            try:
                out += [("record", r) for r in f.get(arg)]
                break
            except FilterError as exc:
                out += [("record", r) for r in exc.records]
                out.append(("error", type(exc).__name__))
                arg = []
        else:
            raise AssertionError("get([]) kept raising without progress")
    return out


def split_invariance(make, inp, *, key=repr):
    """The stream's records and errors at once == cut at fuzz-chosen points."""
    data = b"".join(inp.blob(48) for _ in range(inp.int(0, 8)))
    cuts = sorted({inp.int(0, len(data)) for _ in range(inp.int(0, 6))})
    pieces, last = [], 0
    for c in cuts + [len(data)]:
        pieces.append(data[last:c])
        last = c
    whole = events(make(), [data])
    split = events(make(), pieces)
    bytewise = events(make(), [data[i:i + 1] for i in range(len(data))])
    if not (key(whole) == key(split) == key(bytewise)):
        raise AssertionError(
            "split points change the records\ndata: %r\ncuts: %r\nwhole: %r\n"
            "split: %r\nbyte by byte: %r" % (data, cuts, whole, split, bytewise))


def main(test_one_input):
    import sys
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
