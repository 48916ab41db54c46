import os
import sys

import pytest

# Make `src/` importable when the tests run from a checkout without install.
_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)

BACKENDS = ["epoll", "poll"] if sys.platform.startswith("linux") else ["kqueue", "poll"]


@pytest.fixture(params=BACKENDS)
def kernel(request):
    import cypoe

    return cypoe.Kernel(backend=request.param)
