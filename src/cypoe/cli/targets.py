"""Scan targets: addresses, networks, ranges and names, as nmap takes them.

A target specification is one of

- an address: ``10.0.0.1``, ``::1``;
- a network in CIDR notation: ``10.0.0.0/24``, ``fd00::/120`` (every address
  of it, network and broadcast included, like nmap and zmap);
- a range: ``10.0.0.1-20`` (last octet), ``10.0.0.1-10.0.1.5``,
  ``fd00::1-fd00::ff``;
- a host name, resolved once, up front (every address it has, or only the
  family asked for).

A :class:`TargetSet` keeps the addresses as merged integer intervals, with
exclusions subtracted, and maps an index to its address without ever
listing the whole set: a /8 costs a few integers, not 16 million objects.
"""
import bisect
import ipaddress
import socket


class TargetSpecError(ValueError):
    pass


def _interval_of_network(net):
    return int(net.network_address), int(net.broadcast_address)


def _parse_one(spec, resolve=True, family=None):
    """-> list of (version, lo, hi) for one specification."""
    text = spec.strip()
    if not text:
        raise TargetSpecError("empty target")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    # CIDR
    if "/" in text:
        addr, _, bits = text.partition("/")
        if not bits.isdigit():
            raise TargetSpecError(f"bad prefix length in {spec!r}")
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            if resolve and not _looks_numeric(addr):
                # nmap allows host/24: the name's address, widened
                out = []
                for ver, lo, _hi in _resolve(addr, spec, family):
                    net = ipaddress.ip_network(
                        f"{ipaddress.ip_address(lo)}/{bits}", strict=False)
                    out.append((ver, *_interval_of_network(net)))
                return out
            raise TargetSpecError(f"bad network {spec!r}") from None
        return [(net.version, *_interval_of_network(net))]
    # a single address
    try:
        a = ipaddress.ip_address(text)
        return [(a.version, int(a), int(a))]
    except ValueError:
        pass
    # a range
    if "-" in text:
        left, _, right = text.rpartition("-") if ":" not in text else text.partition("-")
        try:
            lo = ipaddress.ip_address(left.strip())
        except ValueError:
            lo = None
        if lo is not None:
            right = right.strip()
            if lo.version == 4 and right.isdigit():
                last = int(right)
                if last > 255:
                    raise TargetSpecError(f"bad range end {right!r} in {spec!r}")
                hi = ipaddress.ip_address((int(lo) & ~0xFF) | last)
            else:
                try:
                    hi = ipaddress.ip_address(right)
                except ValueError:
                    raise TargetSpecError(f"bad range end {right!r} in {spec!r}") from None
            if hi.version != lo.version:
                raise TargetSpecError(f"range mixes IPv4 and IPv6: {spec!r}")
            if int(hi) < int(lo):
                raise TargetSpecError(f"reversed range {spec!r}")
            return [(lo.version, int(lo), int(hi))]
    if _looks_numeric(text):
        raise TargetSpecError(f"bad address {spec!r}")
    if not resolve:
        raise TargetSpecError(f"host names are not allowed here: {spec!r}")
    return _resolve(text, spec, family)


def _looks_numeric(text):
    return all(c in "0123456789." for c in text) or ":" in text


def _resolve(name, spec, family):
    fam = {4: socket.AF_INET, 6: socket.AF_INET6}.get(family, socket.AF_UNSPEC)
    try:
        infos = socket.getaddrinfo(name, None, fam, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetSpecError(f"cannot resolve {spec!r}: {exc.strerror}") from None
    out = []
    for info in infos:
        addr = info[4][0].split("%", 1)[0]
        a = ipaddress.ip_address(addr)
        item = (a.version, int(a), int(a))
        if item not in out:
            out.append(item)
    if not out:
        raise TargetSpecError(f"{spec!r} has no address")
    return out


def _merge(intervals):
    """Sort and merge (version, lo, hi) intervals; returns a new list."""
    out = []
    for ver, lo, hi in sorted(intervals):
        if out and out[-1][0] == ver and lo <= out[-1][2] + 1:
            if hi > out[-1][2]:
                out[-1] = (ver, out[-1][1], hi)
        else:
            out.append((ver, lo, hi))
    return out


def _subtract(intervals, holes):
    out = []
    holes = _merge(holes)
    for ver, lo, hi in intervals:
        cur = lo
        for hver, hlo, hhi in holes:
            if hver != ver or hhi < cur or hlo > hi:
                continue
            if hlo > cur:
                out.append((ver, cur, hlo - 1))
            cur = max(cur, hhi + 1)
            if cur > hi:
                break
        if cur <= hi:
            out.append((ver, cur, hi))
    return out


def read_spec_file(path):
    """Targets from a file (``-iL``/``--excludefile``): whitespace- or
    comma-separated, ``#`` starts a comment; ``-`` reads standard input."""
    import sys
    fh = sys.stdin if path == "-" else open(path, encoding="utf-8")
    try:
        specs = []
        for line in fh:
            line = line.split("#", 1)[0]
            specs.extend(s for s in line.replace(",", " ").split() if s)
        return specs
    finally:
        if fh is not sys.stdin:
            fh.close()


class TargetSet:
    """An ordered, duplicate-free set of addresses with index lookup.

    ``TargetSet(specs, exclude=(), family=None, resolve=True)``;
    ``family`` (4 or 6) keeps only that family.  ``len(ts)`` is the number
    of addresses, ``ts[i]`` the i-th address as a string, iteration lists
    them in order (IPv4 first, ascending).
    """

    def __init__(self, specs, exclude=(), family=None, resolve=True):
        intervals = []
        for spec in specs:
            intervals.extend(_parse_one(spec, resolve=resolve, family=family))
        holes = []
        for spec in exclude:
            holes.extend(_parse_one(spec, resolve=resolve, family=family))
        if family is not None:
            intervals = [iv for iv in intervals if iv[0] == family]
        self.intervals = _subtract(_merge(intervals), holes)
        self._index()

    @classmethod
    def from_intervals(cls, intervals):
        """A set of exactly these ``(version, lo, hi)`` intervals (what
        ``intervals`` holds: a resumed scan's targets, nothing resolved)."""
        self = cls([])
        self.intervals = [(int(v), int(lo), int(hi)) for v, lo, hi in intervals]
        self._index()
        return self

    def _index(self):
        """Where each interval starts in the set's order, and its size."""
        self._starts = []
        total = 0
        for _ver, lo, hi in self.intervals:
            self._starts.append(total)
            total += hi - lo + 1
        self._len = total

    def __len__(self):
        return self._len

    def count(self):
        return self._len

    def __getitem__(self, index):
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("target index out of range")
        k = bisect.bisect_right(self._starts, index) - 1
        ver, lo, _hi = self.intervals[k]
        value = lo + index - self._starts[k]
        if ver == 4:
            return str(ipaddress.IPv4Address(value))
        return str(ipaddress.IPv6Address(value))

    def version_at(self, index):
        k = bisect.bisect_right(self._starts, index) - 1
        return self.intervals[k][0]

    def __iter__(self):
        for ver, lo, hi in self.intervals:
            cls = ipaddress.IPv4Address if ver == 4 else ipaddress.IPv6Address
            for v in range(lo, hi + 1):
                yield str(cls(v))

    def __contains__(self, addr):
        a = ipaddress.ip_address(addr)
        v = int(a)
        for ver, lo, hi in self.intervals:
            if ver == a.version and lo <= v <= hi:
                return True
        return False

    def all_loopback(self):
        """Whether every address is a loopback one (127.0.0.0/8, ::1)."""
        for ver, lo, hi in self.intervals:
            if ver == 4:
                if not (0x7F000000 <= lo and hi <= 0x7FFFFFFF):
                    return False
            elif not lo == hi == 1:
                return False
        return True

    @property
    def versions(self):
        return sorted({iv[0] for iv in self.intervals})
