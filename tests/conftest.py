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


@pytest.fixture
def triton_interpreter(monkeypatch):
    """The Triton kernels under Triton's interpreter (CPU tensors), with launch settings shrunk so
    that the tests' small tensors still span many programs: set on ``ops.triton._shared``, which
    every launch reads (a value set on the package would reach none)."""
    from rectifiers.ops.triton import _shared as S

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("RECTIFIERS_BACKEND", raising=False)
    monkeypatch.setattr(S, "BLOCK", 64)
    monkeypatch.setattr(S, "TILE", 64)
    monkeypatch.setattr(S, "PROGRAMS_PER_SM", 3)
