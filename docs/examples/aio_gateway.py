"""cypoe inside an asyncio application (cypoe.aio), all in one thread.

A cypoe Server answers each line with its upper-case.  An asyncio server
(the "gateway", as an aiohttp or FastAPI app would be) forwards each line a
client sends it to that service over a cypoe TCPMulti connection and relays
the answer.  An asyncio client checks the round trip.

Run: python docs/examples/aio_gateway.py [--lines N] [--uvloop]
"""
import argparse
import asyncio
import sys
from typing import Callable, List, Optional, Sequence

import cypoe
import cypoe.aio


async def app(lines: int) -> bool:
    # -- the cypoe side: a line service, and a TCPMulti to reach it ----------------
    service = cypoe.Server(port=0, address="127.0.0.1",
                           client_input=lambda conn, line: conn.put(line.upper()))
    port = await cypoe.aio.started(service)
    assert port is not None
    answers: "asyncio.Queue[bytes]" = asyncio.Queue()
    multi = cypoe.TCPMulti(on_input=lambda conn, line: answers.put_nowait(line))
    upstream = await cypoe.aio.connect(multi, "127.0.0.1", port)
    print(f"gateway: connected to the cypoe service on 127.0.0.1:{port}")

    # -- the asyncio side: a gateway server ----------------------------------------
    async def gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            upstream.put(line.rstrip(b"\r\n"))       # cypoe, called from asyncio code:
            await cypoe.aio.drained(upstream)        # ... drained() also wakes the kernel
            writer.write(await answers.get() + b"\n")
            await writer.drain()
        writer.close()

    gw = await asyncio.start_server(gateway, "127.0.0.1", 0)
    gw_port = gw.sockets[0].getsockname()[1]

    # -- a client of the gateway ------------------------------------------------------
    reader, writer = await asyncio.open_connection("127.0.0.1", gw_port)
    sent: List[bytes] = [f"line {i} through asyncio and cypoe".encode() for i in range(lines)]
    got: List[bytes] = []
    for line in sent:
        writer.write(line + b"\n")
        await writer.drain()
        got.append((await reader.readline()).rstrip(b"\n"))
    writer.close()
    await writer.wait_closed()
    gw.close()
    await gw.wait_closed()
    print(f"client: {len(got)} answers through the gateway")
    # Returning ends the app: cypoe.aio.run shuts the cypoe components down
    # gracefully (the service stops, the TCPMulti disconnects).
    return got == [line.upper() for line in sent]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--lines", type=int, default=5)
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    opts = ap.parse_args(argv)
    loop_factory: Optional[Callable[[], asyncio.AbstractEventLoop]] = None
    if opts.uvloop:
        import uvloop
        loop_factory = uvloop.new_event_loop
    ok = cypoe.aio.run(asyncio.wait_for(app(opts.lines), 30.0), loop_factory=loop_factory)
    print(f"{'OK' if ok else 'FAIL'} {opts.lines} lines upper-cased by the cypoe service "
          f"behind an asyncio gateway; components left: {len(cypoe.kernel._components)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
