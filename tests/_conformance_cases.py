"""PyTorch's own conformance cases for relu, leaky_relu and prelu, shared by the conformance
tests: the ``op_db`` entries of ``torch.testing._internal`` (needs ``expecttest``, in the dev
extra), each sample with the matching rectifiers call, and helpers to compare the results.

Every sample is deterministic: torch's sample functions draw from the global generator, which
is seeded before each draw.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Callable

import torch

from rectifiers.testing import bits_equal  # noqa: F401  (the tests import it from here too)
import torch.nn.functional as TF
from torch.testing._internal.common_methods_invocations import op_db

import rectifiers as R

OP_NAMES = ("nn.functional.relu", "nn.functional.leaky_relu", "nn.functional.prelu")
OPS = {op.name: op for op in op_db if op.name in OP_NAMES and op.variant_test_name == ""}
assert set(OPS) == set(OP_NAMES), f"torch's op_db lacks some of {OP_NAMES}: {sorted(OPS)}"

FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

#: Cases run per source ("op_db sample_inputs", "module_db ReLU", ...): the tests add to it.
CASE_COUNTS: collections.Counter = collections.Counter()


def count(source: str, n: int = 1) -> None:
    CASE_COUNTS[source] += n


def ours(op_name: str, backend: str | None) -> Callable:
    """rectifiers' function with torch's signature for this OpInfo."""
    if op_name == "nn.functional.relu":
        return lambda x, inplace=False: R.relu(x, inplace, backend=backend)
    if op_name == "nn.functional.leaky_relu":
        return lambda x, negative_slope=0.01, inplace=False: R.leaky_relu(x, negative_slope, inplace, backend=backend)
    return lambda x, weight: R.prelu(x, weight, backend=backend)


def inplace_pair(op_name: str, backend: str | None) -> tuple[Callable, Callable] | None:
    """(torch's in-place variant, ours) where torch has one (relu, leaky_relu)."""
    op = OPS[op_name]
    if op_name == "nn.functional.relu":
        # OpInfo lists no in-place variant for relu, but F.relu takes inplace=True (torch.relu_)
        return (lambda x: TF.relu(x, inplace=True)), (lambda x: R.relu(x, True, backend=backend))
    if op.inplace_variant is None:
        return None
    f = ours(op_name, backend)
    return op.inplace_variant, (lambda x, *a, **k: f(x, *a, inplace=True, **k))


@dataclass
class Sample:
    """One torch SampleInput, with a stable id."""

    id: str
    input: torch.Tensor
    args: tuple
    kwargs: dict

    def tensors(self) -> list[torch.Tensor]:
        """The differentiable tensors: the input and any floating tensor argument (prelu's weight)."""
        out = [self.input]
        out += [a for a in self.args if isinstance(a, torch.Tensor) and a.is_floating_point()]
        out += [v for v in self.kwargs.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
        return out

    def rebuild(self, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, tuple, dict]:
        """(input, args, kwargs) with the differentiable tensors replaced by ``tensors``."""
        it = iter(tensors)
        x = next(it)
        args = tuple(next(it) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in self.args)
        kwargs = {k: next(it) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in self.kwargs.items()}
        return x, args, kwargs

    def clone(self, requires_grad: bool) -> "Sample":
        """Fresh leaf copies with the same strides (reference inputs include strided views)."""

        def c(t: torch.Tensor) -> torch.Tensor:
            t = t.detach()
            # a copy of the whole storage seen through the same strides (expanded views too)
            n = t.untyped_storage().nbytes() // t.element_size()
            flat = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage(), 0, (n,), (1,))
            out = flat.clone().as_strided(t.shape, t.stride(), t.storage_offset())
            return out.requires_grad_(requires_grad and t.is_floating_point())

        x, a, k = self.rebuild([c(t) for t in self.tensors()])
        return Sample(self.id, x, a, k)

    def describe(self) -> str:
        def d(v: Any) -> str:
            if isinstance(v, torch.Tensor):
                return f"T{tuple(v.shape)}{'' if v.is_contiguous() else 'nc'}"
            return repr(v)

        parts = [d(self.input)] + [d(a) for a in self.args] + [f"{k}={d(v)}" for k, v in self.kwargs.items()]
        return ",".join(parts)


def samples(op_name: str, kind: str, dtype: torch.dtype, requires_grad: bool = False, every: int = 1) -> list[Sample]:
    """torch's ``sample_inputs`` / ``reference_inputs`` / for this op, every ``every``-th one.

    ``every > 1`` thins a long list deterministically (always keeping the first sample).
    """
    op = OPS[op_name]
    torch.manual_seed(0)
    gen = op.sample_inputs if kind == "sample_inputs" else op.reference_inputs
    out = []
    for i, s in enumerate(gen("cpu", dtype, requires_grad=requires_grad)):
        if i % every:
            continue
        out.append(Sample(f"{kind}{i}", s.input, tuple(s.args), dict(s.kwargs)))
    return out


def within_design_tolerance(ours_t: torch.Tensor, torch_t: torch.Tensor, ref64: torch.Tensor, atol: float) -> tuple[bool, str]:
    """DESIGN's rule for learned-parameter gradients: against a float64 reference, at most twice
    the error plain PyTorch makes in the same dtype, plus a small ``atol``.

    Where the reference is not finite (NaN or inf inputs: torch's extremal samples), ours must be
    the same non-finite value as torch's.
    """
    fin = torch.isfinite(ref64)
    o, t = ours_t.double(), torch_t.double()
    if not bits_equal(o[~fin], t[~fin]):
        return False, f"non-finite entries differ: {o[~fin]} against torch's {t[~fin]}"
    e_ours = (o[fin] - ref64[fin]).abs().max().item() if fin.any() else 0.0
    e_torch = (t[fin] - ref64[fin]).abs().max().item() if fin.any() else 0.0
    ok = e_ours <= 2 * e_torch + atol
    return ok, f"error {e_ours:.3g} against torch's {e_torch:.3g} (atol {atol:.3g})"
