"""Ping-pong over a socketpair through the Kernel's readiness loop.

Run: python docs/examples/ping_pong.py [ROUND_TRIPS]
"""
import os
import socket
import sys
import time

import cypoe


def main(round_trips: int = 100_000) -> None:
    k = cypoe.Kernel()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    left = {"n": round_trips}

    def on_a(fd: int) -> None:
        os.read(fd, 1)
        left["n"] -= 1
        if left["n"] == 0:
            k.select_read(a, None)
            k.select_read(b, None)
            return
        os.write(fd, b"p")

    def on_b(fd: int) -> None:
        os.write(fd, os.read(fd, 1))

    k.select_read(a, on_a)
    k.select_read(b, on_b)
    os.write(a.fileno(), b"p")
    start = time.perf_counter()
    k.run()
    elapsed = time.perf_counter() - start
    print(f"cypoe {cypoe.__version__} ({k.backend}): {round_trips} round trips "
          f"in {elapsed:.3f} s, {round_trips / elapsed:,.0f} per second")
    a.close()
    b.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
