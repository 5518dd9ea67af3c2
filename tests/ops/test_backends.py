"""Every backend, as ``get_backend`` gives it, has every described activation; one without a
fast path for an activation runs the plain one of the ``"torch"`` backend (docs/DESIGN.md, "How
to add an activation": a new activation needs only its plain op in ``ops/native.py``)."""

from __future__ import annotations

import types

import pytest
import torch

from rectifiers import _spec, ops
from rectifiers.ops import native


@pytest.mark.parametrize("backend", ["torch", "eager"])
def test_every_activation_reaches_every_backend(backend):
    view = ops.get_backend(torch.zeros(2, 3), backend)
    for name in _spec.ACTIVATIONS:
        assert callable(getattr(view, name)), (backend, name)


def test_a_backend_without_a_fast_path_runs_the_plain_op():
    partial = types.SimpleNamespace(relu=lambda x, inplace: x * 0 + 7)  # only ReLU has a fast path
    view = ops._view("_Partial", partial, "a backend with one fast path")
    x = torch.tensor([-1.0, 2.0])
    assert torch.equal(view.relu(x, False), torch.full_like(x, 7))
    assert view.leaky_relu is native.leaky_relu
    assert torch.equal(view.leaky_relu(x, 0.5, False), torch.tensor([-0.5, 2.0]))


def test_an_override_reroutes_one_function():
    view = ops._view("_Rerouted", native, "doc", prelu=native.relu)
    assert view.prelu is native.relu and view.relu is native.relu and view.funnel_relu is native.funnel_relu
