"""Scan result records and their writers.

A result is a dict (the JSON Lines record as written):

``ip``, ``port``, ``protocol`` ("tcp"), ``state`` (nmap's: ``open``,
``closed``, ``filtered``), ``status`` (zgrab2's vocabulary, below),
``timestamp`` (RFC 3339, UTC), ``connect_ms`` (from the connect call to
the connection made, for open ports), ``banner_ms`` (from the connection
made to the end of the banner read or the TLS handshake, with
``--banners``/``--tls``), and where they apply ``banner`` (text: UTF-8,
undecodable bytes as ``\\xNN``),
``banner_base64`` (the exact bytes, when they are not valid UTF-8),
``banner_truncated`` (the bounded read stopped at its limit), ``tls`` and
``error``.

Status (zgrab2's ``ScanStatus``): ``success``, ``connection-refused``,
``connection-timeout``, ``connection-closed``, ``io-timeout``,
``protocol-error``, ``application-error``, ``handshake-error`` (a TLS
handshake that failed), ``unknown-error``, ``blacklisted``.  A port is
``open`` when the TCP connection was made, whatever the banner read did
afterwards.
"""
import base64
import csv
import datetime
import io
import json
import re
import time

STATUSES = (
    "success",
    "connection-refused",
    "connection-timeout",
    "connection-closed",
    "io-timeout",
    "protocol-error",
    "application-error",
    "handshake-error",
    "unknown-error",
    "blacklisted",
)
STATES = ("open", "closed", "filtered")
FORMATS = ("jsonl", "csv", "list", "grepable", "normal", "xml")


_TS = [None, ""]


def now_rfc3339():
    """The time now, RFC 3339 in UTC with milliseconds (cached per second)."""
    t = time.time()
    sec = int(t)
    if sec != _TS[0]:
        _TS[0] = sec
        _TS[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_TS[1]}.{int((t - sec) * 1000):03d}Z"


def make_result(ip, port, state, status, *, rtt=None, banner=None, truncated=False,
                error=None, tls=None, timestamp=None, banner_time=None):
    """A result record; ``rtt`` is the connect time and ``banner_time`` the
    banner read's (seconds)."""
    if state not in STATES:
        raise ValueError(f"bad state {state!r}")
    if status not in STATUSES:
        raise ValueError(f"bad status {status!r}")
    rec = {
        "ip": ip,
        "port": port,
        "protocol": "tcp",
        "state": state,
        "status": status,
        "timestamp": timestamp or now_rfc3339(),
    }
    if rtt is not None:
        rec["connect_ms"] = round(rtt * 1000.0, 3)
    if banner_time is not None:
        rec["banner_ms"] = round(banner_time * 1000.0, 3)
    if banner is not None:
        rec["banner"] = banner.decode("utf-8", "backslashreplace")
        try:
            banner.decode("utf-8")
        except UnicodeDecodeError:
            rec["banner_base64"] = base64.b64encode(banner).decode("ascii")
        if truncated:
            rec["banner_truncated"] = True
    if tls is not None:
        rec["tls"] = tls
    if error is not None:
        rec["error"] = error
    return rec


def banner_bytes(rec):
    """The exact banner bytes of a result record (None without banner)."""
    if rec.get("banner_base64"):  # a CSV row has the column, empty
        return base64.b64decode(rec["banner_base64"])
    if "banner" in rec:
        return rec["banner"].encode("utf-8")
    return None


def _hostport(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class Writer:
    """Base writer: ``write(result)`` for each final result, ``close()``.

    Only open ports are written unless ``all_results`` is true (the
    grepable format counts the others per host either way)."""

    def __init__(self, fh, all_results=False, meta=None):
        self.fh = fh
        self.all = all_results
        self.meta = meta or {}
        self.written = 0
        self.start()

    @property
    def keeps_others(self):
        """Whether closed/filtered results matter to this writer."""
        return self.all

    def wants(self, rec):
        return self.all or rec["state"] == "open"

    def start(self):
        pass

    def write(self, rec):
        if self.wants(rec):
            self.emit(rec)
            self.written += 1
            if rec["state"] == "open":
                self.flush()  # what was found survives whatever happens next

    def emit(self, rec):
        raise NotImplementedError

    def flush(self):
        try:
            self.fh.flush()
        except (OSError, ValueError):
            pass

    def close(self, summary=None):
        self.finish(summary or {})
        self.flush()

    def finish(self, summary):
        pass


class JSONLWriter(Writer):
    def emit(self, rec):
        self.fh.write(json.dumps(rec, separators=(",", ":")) + "\n")


CSV_FIELDS = ["ip", "port", "protocol", "state", "status", "connect_ms", "banner_ms", "banner",
              "banner_base64", "error", "timestamp"]


# Text fields that carry what a peer sent (or an error's words about it).
CSV_ESCAPED = ("banner", "error")
# C0 controls, DEL and the C1 controls: written as JSON writes them, so that
# a banner can neither break the one-line-per-record layout nor put raw
# bytes (NUL, ESC sequences) into a terminal or a spreadsheet.  A backslash
# is escaped too, so that the escapes read back unambiguously.
_CSV_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f-\x9f]")
_JSON_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b",
               "\f": "\\f"}
_CSV_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|[\\nrtbf])")
_JSON_LONG = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "\\": "\\"}


def _escape_char(m):
    c = m.group()
    return _JSON_SHORT.get(c) or f"\\u{ord(c):04x}"


def _unescape_char(m):
    e = m.group(1)
    return _JSON_LONG[e] if len(e) == 1 else chr(int(e[1:], 16))


def csv_escape(text):
    """``text`` with its control characters and backslashes escaped as JSON
    escapes them (``\\u0000``, ``\\n``, ``\\\\``); other text unchanged."""
    return _CSV_UNSAFE.sub(_escape_char, text)


def csv_unescape(text):
    """The inverse of :func:`csv_escape`."""
    return _CSV_ESCAPE.sub(_unescape_char, text)


class CSVWriter(Writer):
    def start(self):
        self._csv = csv.DictWriter(self.fh, fieldnames=CSV_FIELDS, extrasaction="ignore",
                                   lineterminator="\n")
        self._csv.writeheader()

    def emit(self, rec):
        if any(rec.get(f) and _CSV_UNSAFE.search(rec[f]) for f in CSV_ESCAPED):
            rec = {**rec, **{f: csv_escape(rec[f]) for f in CSV_ESCAPED if rec.get(f)}}
        self._csv.writerow(rec)


class ListWriter(Writer):
    """masscan's ``-oL`` list: ``open tcp PORT IP EPOCH`` a line."""

    def start(self):
        self.fh.write("#cypoe\n")

    def emit(self, rec):
        ts = rec.get("timestamp")
        try:
            epoch = int(datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())
        except (AttributeError, ValueError):
            epoch = 0
        self.fh.write(f"{rec['state']} tcp {rec['port']} {rec['ip']} {epoch}\n")

    def finish(self, summary):
        self.fh.write("# end\n")


class GrepableWriter(Writer):
    """nmap's ``-oG``: one ``Host:`` line per address with its ports."""

    keeps_others = True  # counted per host ("Ignored State")

    def start(self):
        self._hosts = {}
        cmd = self.meta.get("command", "cypoe scan")
        self.fh.write(f"# cypoe scan initiated {now_rfc3339()} as: {cmd}\n")

    def write(self, rec):
        host = self._hosts.setdefault(rec["ip"], {"ports": [], "ignored": {}})
        if self.wants(rec):
            host["ports"].append((rec["port"], rec["state"]))
            self.written += 1
        else:
            host["ignored"][rec["state"]] = host["ignored"].get(rec["state"], 0) + 1

    def finish(self, summary):
        for ip in sorted(self._hosts, key=_ip_sort_key):
            host = self._hosts[ip]
            ports = ", ".join(f"{p}/{s}/tcp//{_service(p)}///" for p, s in sorted(host["ports"]))
            line = f"Host: {ip} ()\tPorts: {ports}" if ports else f"Host: {ip} ()\tStatus: Up"
            if host["ignored"]:
                state, n = max(host["ignored"].items(), key=lambda kv: kv[1])
                line += f"\tIgnored State: {state} ({n})"
            self.fh.write(line + "\n")
        done = summary.get("elapsed_s")
        tail = f"; scanned in {done:.2f} seconds" if done is not None else ""
        self.fh.write(f"# cypoe done at {now_rfc3339()} -- {len(self._hosts)} IP addresses{tail}\n")


def _service(port):
    import socket
    try:
        return socket.getservbyport(port, "tcp")
    except (OSError, OverflowError):
        return ""


def _ip_sort_key(ip):
    import ipaddress
    a = ipaddress.ip_address(ip)
    return (a.version, int(a))


def _printable(text, limit=None):
    """A banner on one line of text: control characters as ``\\xNN``
    (``\\r``, ``\\n`` as nmap writes them), so that no output format can be
    broken (or made ill-formed XML) by what a peer sent."""
    if limit is not None and len(text) > limit:
        text = text[:limit]
    return _BANNER_UNSAFE.sub(lambda m: _BANNER_SHORT.get(m.group()) or f"\\x{ord(m.group()):02x}",
                              text)


_BANNER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_BANNER_SHORT = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


class _HostsWriter(Writer):
    """Writers that group ports by host at the end (nmap's formats): open
    (or, with ``all_results``, every) port of each host, and how many of
    the others were closed or filtered."""

    keeps_others = True

    def start(self):
        self._hosts = {}
        self._t0 = time.time()
        self.begin()

    def begin(self):
        pass

    def write(self, rec):
        host = self._hosts.setdefault(rec["ip"], {"ports": [], "ignored": {}, "reasons": {},
                                                  "up": False})
        if rec["state"] != "filtered":
            host["up"] = True  # it answered: open, or refused
        if self.wants(rec):
            host["ports"].append(rec)
            self.written += 1
        else:
            host["ignored"][rec["state"]] = host["ignored"].get(rec["state"], 0) + 1
            reason = _REASONS.get(rec["status"], "no-response")
            key = (rec["state"], reason)
            host["reasons"][key] = host["reasons"].get(key, 0) + 1

    def hosts(self):
        for ip in sorted(self._hosts, key=_ip_sort_key):
            host = self._hosts[ip]
            host["ports"].sort(key=lambda r: r["port"])
            yield ip, host


# nmap's "reason" words for what a connect scan sees
_REASONS = {"connection-refused": "conn-refused", "connection-timeout": "no-response"}


def _reason(rec):
    if rec["state"] == "open":
        return "syn-ack"
    return _REASONS.get(rec["status"], "no-response")


def _ctime(t):
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t))


class NormalWriter(_HostsWriter):
    """nmap's normal output (``-oN``): a report per host with a
    ``PORT STATE SERVICE`` table; banners as ``|_banner:`` lines, as nmap's
    banner script writes them."""

    def begin(self):
        cmd = self.meta.get("command", "cypoe scan")
        self.fh.write(f"# cypoe {self.meta.get('version', '')} scan initiated "
                      f"{_ctime(self._t0)} as: {cmd}\n")

    def finish(self, summary):
        nhosts = up = 0
        for ip, host in self.hosts():
            nhosts += 1
            if not host["up"] and not host["ports"]:
                continue
            up += 1
            self.fh.write(f"Nmap scan report for {ip}\nHost is up.\n")
            for (state, reason), n in sorted(host["reasons"].items(), key=lambda kv: -kv[1]):
                self.fh.write(f"Not shown: {n} {state} tcp ports ({reason})\n")
            if host["ports"]:
                rows = [(f"{r['port']}/tcp", r["state"], _service(r["port"]) or "unknown", r)
                        for r in host["ports"]]
                w0 = max(len("PORT"), *(len(r[0]) for r in rows))
                w1 = max(len("STATE"), *(len(r[1]) for r in rows))
                self.fh.write(f"{'PORT':<{w0}} {'STATE':<{w1}} SERVICE\n")
                for port, state, service, rec in rows:
                    self.fh.write(f"{port:<{w0}} {state:<{w1}} {service}\n")
                    if rec.get("banner"):
                        self.fh.write(f"|_banner: {_printable(rec['banner'], 1024)}\n")
            elif host["ignored"]:
                n = sum(host["ignored"].values())
                self.fh.write(f"All {n} scanned ports on {ip} are in ignored states.\n")
            self.fh.write("\n")
        elapsed = summary.get("elapsed_s") or 0.0
        addrs = "1 IP address" if nhosts == 1 else f"{nhosts} IP addresses"
        hosts_up = "1 host up" if up == 1 else f"{up} hosts up"
        self.fh.write(f"# cypoe done at {_ctime(time.time())} -- {addrs} ({hosts_up}) scanned in "
                      f"{elapsed:.2f} seconds\n")


class XMLWriter(_HostsWriter):
    """nmap's XML output (``-oX``), with nmap's element and attribute
    names: ``nmaprun``, ``scaninfo``, ``host`` (``status``, ``address``,
    ``ports`` with ``extraports`` and ``port``/``state``/``service``; a
    banner as nmap's ``script id="banner"``), ``runstats``."""

    def begin(self):
        from xml.sax.saxutils import quoteattr
        self._q = quoteattr
        m = self.meta
        self.fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n')
        self.fh.write(f'<nmaprun scanner="cypoe" args={quoteattr(m.get("command", "cypoe scan"))} '
                      f'start="{int(self._t0)}" startstr={quoteattr(_ctime(self._t0))} '
                      f'version={quoteattr(str(m.get("version", "")))} xmloutputversion="1.05">\n')
        ports = m.get("ports_text", "")
        self.fh.write(f'<scaninfo type="connect" protocol="tcp" '
                      f'numservices="{m.get("nports", 0)}" services={quoteattr(ports)}/>\n')

    def finish(self, summary):
        q = self._q
        now = time.time()
        nhosts = up = 0
        for ip, host in self.hosts():
            nhosts += 1
            is_up = host["up"] or bool(host["ports"])
            up += is_up
            kind = "ipv6" if ":" in ip else "ipv4"
            reason = "conn-refused" if is_up else "no-response"
            self.fh.write(f'<host starttime="{int(self._t0)}" endtime="{int(now)}">'
                          f'<status state="{"up" if is_up else "down"}" reason="{reason}" '
                          f'reason_ttl="0"/>\n<address addr={q(ip)} addrtype="{kind}"/>\n'
                          f'<hostnames>\n</hostnames>\n<ports>')
            for (state, why), n in sorted(host["reasons"].items(), key=lambda kv: -kv[1]):
                self.fh.write(f'<extraports state="{state}" count="{n}">\n'
                              f'<extrareasons reason="{why}" count="{n}" proto="tcp"/>\n'
                              f'</extraports>\n')
            for rec in host["ports"]:
                self.fh.write(f'<port protocol="tcp" portid="{rec["port"]}">'
                              f'<state state="{rec["state"]}" reason="{_reason(rec)}" '
                              f'reason_ttl="0"/>')
                service = _service(rec["port"])
                if service:
                    self.fh.write(f'<service name={q(service)} method="table" conf="3"/>')
                if rec.get("banner"):
                    self.fh.write(f'<script id="banner" output={q(_printable(rec["banner"]))}/>')
                self.fh.write("</port>\n")
            self.fh.write("</ports>\n</host>\n")
        elapsed = summary.get("elapsed_s") or 0.0
        self.fh.write(f'<runstats><finished time="{int(now)}" timestr={q(_ctime(now))} '
                      f'summary={q(f"cypoe done; {nhosts} IP addresses ({up} hosts up) scanned in {elapsed:.2f} seconds")} '
                      f'elapsed="{elapsed:.2f}" exit="{summary.get("exit", "success")}"/>'
                      f'<hosts up="{up}" down="{nhosts - up}" total="{nhosts}"/>\n'
                      f'</runstats>\n</nmaprun>\n')


class MultiWriter:
    """Several writers fed the same results (``-oA``, ``-oX`` with ``-oN``...)."""

    def __init__(self, writers):
        self.writers = list(writers)

    @property
    def keeps_others(self):
        return any(w.keeps_others for w in self.writers)

    @property
    def written(self):
        return max((w.written for w in self.writers), default=0)

    def write(self, rec):
        for w in self.writers:
            if w.keeps_others or rec["state"] == "open" or w.all:
                w.write(rec)

    def close(self, summary=None):
        for w in self.writers:
            w.close(summary)


WRITERS = {"jsonl": JSONLWriter, "csv": CSVWriter, "list": ListWriter, "grepable": GrepableWriter,
           "normal": NormalWriter, "xml": XMLWriter}


def make_writer(fmt, fh, all_results=False, meta=None):
    try:
        cls = WRITERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}") from None
    return cls(fh, all_results=all_results, meta=meta)


# --- reading back (for tests and for tools that post-process) -------------

def parse_jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def parse_csv(text):
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        row["port"] = int(row["port"])
        for field in CSV_ESCAPED:
            if row.get(field):
                row[field] = csv_unescape(row[field])
    return rows


def parse_list(text):
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        state, proto, port, ip, _epoch = line.split()
        out.append({"state": state, "protocol": proto, "port": int(port), "ip": ip})
    return out


def parse_grepable(text):
    """-> {ip: {port: state}}"""
    hosts = {}
    for line in text.splitlines():
        if not line.startswith("Host: "):
            continue
        fields = line.split("\t")
        ip = fields[0].split()[1]
        ports = hosts.setdefault(ip, {})
        for f in fields[1:]:
            if f.startswith("Ports: "):
                for item in f[len("Ports: "):].split(", "):
                    parts = item.split("/")
                    ports[int(parts[0])] = parts[1]
    return hosts
