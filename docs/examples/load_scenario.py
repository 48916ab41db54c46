"""A ``cypoe load --script`` scenario: redis SET, then GET the key back.

    redis-server --port 6379 &
    cypoe load 127.0.0.1:6379 --script docs/examples/load_scenario.py -c 50 -d 10

Each connection owns a key; it SETs a fresh value, GETs it back and checks
it, and starts again.  Both commands are timed (``conn.request()`` when a
command is sent, ``conn.response()`` when its reply is complete); a wrong
value or an error reply is counted with ``conn.fail()``.  Redis's inline
commands and its RESP replies are lines, so the filter is ``Line()``: a
bulk reply (``$5`` then ``hello``) is two records.
"""
import itertools
from typing import Any

import cypoe

_keys = itertools.count()


class Scenario:
    filter = cypoe.Line()          # CRLF lines both ways

    def on_connect(self, conn: Any) -> None:
        self.key = f"cypoe:load:{next(_keys)}"
        self.n = 0
        self.bulk_pending = False  # a "$N" header came; its data line is next
        self.set(conn)

    def set(self, conn: Any) -> None:
        if conn.request():         # False once the run is over
            self.n += 1
            self.value = f"v{self.n}"
            self.step = "set"
            conn.send(f"SET {self.key} {self.value}".encode())

    def get(self, conn: Any) -> None:
        if conn.request():
            self.step = "get"
            conn.send(f"GET {self.key}".encode())

    def on_input(self, conn: Any, line: bytes) -> None:
        if line.startswith(b"-"):                  # an error reply
            conn.fail("redis-error")
            self.set(conn)
        elif self.step == "set":
            if line == b"+OK":
                conn.response()
            else:
                conn.fail("mismatch")
            self.get(conn)
        elif not self.bulk_pending:
            if line.startswith(b"$") and line != b"$-1":
                self.bulk_pending = True           # the value is the next line
                return
            conn.fail("mismatch")                  # a null or unexpected reply
            self.set(conn)
        else:
            self.bulk_pending = False
            if line == self.value.encode():
                conn.response()
            else:
                conn.fail("mismatch")
            self.set(conn)

    def on_error(self, conn: Any, operation: str, errnum: int, errstr: str) -> None:
        pass                                       # counted by the runner already
