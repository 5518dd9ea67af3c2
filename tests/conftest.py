"""pytest fixtures shared by the tests; the helpers themselves live in ``helpers.py``."""

from __future__ import annotations

import pytest

from helpers import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def broken_build(monkeypatch):
    """The FReLU/PReLU kernels and the C++ operators not loaded yet, and their build failing as
    without a compiler."""
    from rectifiers.ops.cpp import pointwise as E

    monkeypatch.delenv("RECTIFIERS_NO_CPP", raising=False)
    monkeypatch.setitem(E._state, "tried", False)
    monkeypatch.setitem(E._state, "ok", False)
    monkeypatch.setitem(E._state, "seconds", None)

    def broken() -> None:
        raise RuntimeError("Error building extension 'x': g++: command not found")

    monkeypatch.setattr(E, "_build", broken)
