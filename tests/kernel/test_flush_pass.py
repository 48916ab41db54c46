"""The kernel's flush pass (step 6 of an iteration): every handler marked
dirty gets one on_flush, marks made during the pass wait for the next
iteration, and a pass cut short by a BaseException leaves the rest for the
next one (the pass takes handlers out of its list as it goes)."""
import socket

import pytest

from cypoe import ReadWrite, Stream


def _recv_exactly(sock, n):
    sock.settimeout(5)
    data = b""
    while len(data) < n:
        chunk = sock.recv(65536)
        assert chunk, "peer closed"
        data += chunk
    return data


def test_a_pass_cut_short_by_a_base_exception_leaves_the_rest_flushed_later(kernel):
    pairs = [socket.socketpair() for _ in range(3)]
    raised = []

    def on_flushed(rw):
        if not raised:
            raised.append(rw)
            raise KeyboardInterrupt

    rws = [ReadWrite(a, kernel=kernel, filter=Stream(), on_input=lambda rw, r: None,
                     on_flushed=on_flushed) for a, _ in pairs]
    try:
        for i, rw in enumerate(rws):
            rw.put(b"from %d;" % i)
        with pytest.raises(KeyboardInterrupt):
            kernel.run_once(0)
        # The loop still works: the handlers after the one that raised are
        # flushed by the next iteration, the first one is not flushed twice.
        for _ in range(3):
            kernel.run_once(0)
        for i, (rw, (_, b)) in enumerate(zip(rws, pairs)):
            assert _recv_exactly(b, len(b"from %d;" % i)) == b"from %d;" % i
            assert rw.get_driver_out_octets() == 0
        # and later puts still flush
        rws[0].put(b"again")
        kernel.run_once(0)
        assert _recv_exactly(pairs[0][1], 5) == b"again"
    finally:
        for rw in rws:
            rw.close()
        for a, b in pairs:
            a.close()
            b.close()


def test_marks_made_during_the_pass_are_flushed_by_the_next_iteration(kernel):
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    order = []
    second = {}

    def first_flushed(rw):
        order.append("first")
        if "rw" in second and len(order) == 1:
            second["rw"].put(b"late")      # marks another handler dirty mid-pass

    def second_flushed(rw):
        order.append("second")

    rw1 = ReadWrite(a1, kernel=kernel, filter=Stream(), on_input=lambda rw, r: None,
                    on_flushed=first_flushed)
    rw2 = ReadWrite(a2, kernel=kernel, filter=Stream(), on_input=lambda rw, r: None,
                    on_flushed=second_flushed)
    second["rw"] = rw2
    try:
        rw1.put(b"early")
        kernel.run_once(0)
        assert order == ["first"]
        assert rw2.get_driver_out_octets() == 4      # queued, not yet written
        kernel.run_once(0)
        assert order == ["first", "second"]
        assert _recv_exactly(b1, 5) == b"early"
        assert _recv_exactly(b2, 4) == b"late"
    finally:
        rw1.close()
        rw2.close()
        for s in (a1, b1, a2, b2):
            s.close()
