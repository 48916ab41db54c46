# cython: language_level=3
"""The connection layer's Python names in one place (internal).

The code lives in modules named after what they hold: ``_readwrite``
(ReadWrite and its drivers), ``_tls`` (the TLS driver), ``_socketfactory``
(SocketFactory), ``_sockets`` (numeric connect, addresses), ``_linger`` (the
lingering close).  ``cypoe/__init__.py`` and ``cypoe.aio`` import from here.
"""
from cypoe._readwrite import ReadWrite
from cypoe._tls import TLS
from cypoe._socketfactory import SocketFactory
from cypoe._sockets import connect_fd

__all__ = ["ReadWrite", "TLS", "SocketFactory", "connect_fd"]
