"""pytest fixtures shared by the tests; the helpers themselves live in ``helpers.py``."""

from __future__ import annotations

import pytest

from helpers import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param
