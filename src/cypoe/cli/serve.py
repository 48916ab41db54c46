"""``cypoe serve``: small servers to test against.

echo, discard, chargen (RFC 864), daytime (RFC 867), pong (``+PONG\\r\\n``
for each redis command, inline or RESP array, so ``redis-benchmark -t ping``
can drive it) and upper (echo in capitals).  The protocol logic is in
:mod:`cypoe.cli.protocols`; the Server glue in :mod:`cypoe.cli.serve_engine`.
"""
import argparse

from cypoe.cli import common, protocols

EXAMPLES = """\
examples:
  cypoe serve                                 echo on 127.0.0.1, a free port (printed)
  cypoe serve pong --port 6380                then: redis-benchmark -p 6380 -t ping
  cypoe serve echo --filter stream --workers 4 --port 7000
  cypoe serve chargen --port 19000 --max-connections 100 --idle-timeout 30
  cypoe serve echo --tls-cert cert.pem --tls-key key.pem
"""


def add_parser(sub):
    p = sub.add_parser(
        "serve", help="echo, discard, chargen, daytime, pong and upper servers",
        description="Serve a small protocol over TCP until interrupted (Ctrl-C or SIGTERM "
                    "closes the listener and lets open connections finish). The first line "
                    "on stdout says where it listens.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("protocol", nargs="?", default="echo", choices=protocols.PROTOCOLS,
                   help="what to serve (default echo)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=common.nonneg_int, default=0,
                   help="port (default 0: a free port, printed at start)")
    p.add_argument("--filter", dest="filter_kind", choices=protocols.FILTERS, default="line",
                   help="framing: line (default), stream (bytes as they come), block "
                        "(length-prefixed frames)")
    p.add_argument("--max-connections", type=common.nonneg_int, default=None, metavar="N",
                   help="at most N connections at once (accepting pauses at N)")
    p.add_argument("--idle-timeout", type=common.duration, default=None, metavar="SECONDS",
                   help="close a connection that sends nothing for this long")
    p.add_argument("--drain-timeout", type=common.duration, default=10.0, metavar="SECONDS",
                   help="on Ctrl-C/SIGTERM, how long open connections may take to flush "
                        "their output before they are closed (default 10s)")
    p.add_argument("--tls-cert", metavar="PEM", help="certificate chain (TLS)")
    p.add_argument("--tls-key", metavar="PEM", help="private key (TLS; default: in --tls-cert)")
    p.add_argument("--workers", type=common.positive_int, default=1, metavar="N",
                   help="N processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    return p


def run(args):
    prog = "cypoe serve"
    if args.tls_key and not args.tls_cert:
        args._parser.error("--tls-key needs --tls-cert")
    if args.workers > 1 and args.port == 0 and not _reuseport_supported():
        args._parser.error("--workers needs SO_REUSEPORT, which this system lacks")
    try:
        from cypoe.cli import serve_engine
        serve_engine.check()
    except common.Unavailable as exc:
        common.err(prog, str(exc))
        return 1
    try:
        ssl_ctx = serve_engine.tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    except (OSError, ValueError) as exc:
        common.err(prog, f"TLS: {exc}")
        return 1
    return serve_engine.serve_main(args, ssl_ctx)


def _reuseport_supported():
    import socket
    return hasattr(socket, "SO_REUSEPORT")
