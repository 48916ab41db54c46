# The flags and limits of the connection layer (_readwrite: ReadWrite and
# its drivers, _tls, _socketfactory) and of the components' connections
# (_components), in one place.  The kernel's EV_READ / EV_WRITE are in _kernel.pxd, the poller's
# CP_* in includes/poller.pxd.

# ReadWrite state bits.
cdef enum:
    F_CLOSED = 1
    F_EOF = 2            # read side finished: EOF, read error, shutdown_input
    F_PAUSED = 4
    F_SHUT_OUT = 8       # shutdown_output asked: shut the write side once drained
    F_WDONE = 16         # write side finished: shut down or failed
    F_ABOVE = 32         # on_high fired, on_low not yet
    F_CONNECTING = 64
    F_BUSY = 128         # one of our callbacks is running
    F_NOTSOCK = 256      # pipe / tty / file: read()/write() instead of recv/send
    F_MARKS = 512
    F_SWITCHED = 1024    # the input filter changed while a batch was delivered
    F_DEAD = 2048        # a hard error was reported: no further error events
    F_INBATCH = 4096
    F_HANDSHAKING = 8192 # the driver's handshake runs: it reads even while input is
                         # paused, its own records are not the application's output
                         # (no flushed), a failure is reported as its operation
    F_WNOTSOCK = 16384   # the output side is not a socket: write() instead of send()
    F_HIGH_TOLD = 32768  # on_high was delivered, on_low not yet
    F_FLUSH_QUEUED = 65536   # a flushed event is queued behind a callback
    F_DRIVER = 131072    # the driver keeps state of its own (bytes it holds count as
                         # pending output; it hears of errors and close; no lingering)

# Event kinds (queued when raised from inside one of our own callbacks).
cdef enum:
    K_ERROR = 1
    K_FLUSHED = 2
    K_HIGH = 3
    K_LOW = 4
    K_CONNECTED = 5
    K_HANDSHAKE = 6

cdef enum:
    LINGER_READ = 1 << 20    # input dropped per wakeup of a lingering socket
    MAX_READS = 4          # reads per wakeup, so one busy peer cannot starve the rest
    ACCEPT_BATCH = 64      # accepts per wakeup
    TLS_READ = 65536

cdef enum:
    SF_LISTEN = 1
    SF_CONNECT = 2
    SF_UDP = 3


# A component connection's state (ComponentConnection.state, _components.pyx).
cdef enum:
    S_CONNECTING = 1        # connect() in progress
    S_CONNECTED = 2         # the "connected" callback has been delivered
    S_SHUTTING = 4          # graceful shutdown: input ignored, output flushing
    S_ENDED = 8             # closed; the terminal callback is queued or done
    S_ERROR = 16            # an error event was delivered
    S_RESOLVING = 32        # waiting for a name lookup
    S_OPEN = 64             # the TCP connection is established
