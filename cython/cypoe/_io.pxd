# cypoe._io only re-exports Python names (ReadWrite, TLS, SocketFactory,
# connect_fd); it has no C face.  Cimport from the modules that define them:
# _readwrite.pxd (ReadWrite, Driver, install_fast_put), _tls.pxd (TLS,
# TLSDriver), _socketfactory.pxd (SocketFactory), _sockets.pxd (nb_connect,
# sockaddr_to_py).
