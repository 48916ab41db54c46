"""Fixtures for the filter tests: every test that takes ``impl`` runs against
the compiled filters (cypoe._filters) and the plain-Python reference
(cypoe._filters_ref)."""
import pytest

from cypoe import _filters, _filters_ref

IMPLS = {"compiled": _filters, "reference": _filters_ref}


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    """The module providing Line, Block and Stream."""
    return IMPLS[request.param]
