"""Argument checks shared by the functionals and the modules.

Every error names the function, the argument, what was expected and what was given, so that bad
input never surfaces as a bare traceback from deep inside torch or as a silently wrong answer.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "fast_channel_dim",
    "ShapeError",
    "check_input",
    "check_scalar",
    "check_num_parameters",
    "check_inplace",
    "channel_dim",
    "check_channel_param",
    "check_batch_stats",
]


class ShapeError(ValueError, RuntimeError):
    """A tensor's shape does not fit the call: a parameter's size or rank, an input's rank or
    channel count.

    It is a ``ValueError`` (what rectifiers raises for a wrong value) and a ``RuntimeError``
    (what ``torch.nn`` raises for the same input), so code written to catch either catches it.
    """


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_input(fn: str, x: object, name: str = "input") -> torch.Tensor:
    """Refuse anything but a real floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{fn}: {name} must be a floating-point tensor (float16, bfloat16, float32 or "
            f"float64), got dtype {x.dtype}"
        )
    return x


def check_scalar(fn: str, value: object, name: str) -> float:
    """A finite real number; ``bool`` is refused (``LeakyReLU(True)`` is almost always a mistake)."""
    if type(value) is float and math.isfinite(value):  # the common case, without the ABC checks
        return value
    if isinstance(value, bool):
        raise TypeError(
            f"{fn}: {name} must be a real number, got the bool {value!r} "
            f"(did you mean inplace={value!r}?)"
        )
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{fn}: {name} must be a number, got a tensor of shape {_shape(value)}")
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{fn}: {name} must be finite, got {value}")
    return value


def check_num_parameters(fn: str, value: object, name: str = "num_parameters") -> int | None:
    """A positive int, or ``None`` for "infer from the first input"."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be a positive int or None, got {value!r}")
    if value < 1:
        raise ValueError(f"{fn}: {name} must be a positive int or None, got {value}")
    return int(value)


def check_inplace(fn: str, x: torch.Tensor, inplace: object) -> bool:
    if not isinstance(inplace, bool):
        raise TypeError(f"{fn}: inplace must be a bool, got {inplace!r}")
    if inplace and x.requires_grad and x.is_leaf and torch.is_grad_enabled():
        raise RuntimeError(
            f"{fn}: inplace=True cannot modify a leaf tensor that requires grad (autograd needs "
            "its original value); use inplace=False, or apply it to the output of another layer"
        )
    return inplace


def channel_dim(fn: str, x: torch.Tensor, dim: object) -> int | None:
    """Normalise ``dim``; ``None`` means the input has no channel dimension.

    As in ``torch.nn.PReLU``, a 0-D input, or a 1-D input with the default ``dim=1``, has no
    channel dimension: only a one-element parameter applies to it.
    """
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{fn}: dim must be an int, got {dim!r}")
    nd = x.dim()
    if nd == 0 or (nd == 1 and dim == 1):
        return None
    if not -nd <= dim < nd:
        raise IndexError(
            f"{fn}: dim={dim} is out of range for an input of shape {_shape(x)} "
            f"(expected {-nd} <= dim < {nd})"
        )
    return int(dim) % nd


def fast_channel_dim(x: torch.Tensor, param: object, dim: object) -> int | None:
    """The normalised channel dim when ``param`` is a 1-D floating CPU tensor that
    :func:`channel_dim` and :func:`check_channel_param` would accept for a CPU input of 2 or
    more dims (1 element, or one per channel), else ``None``: a cheap test for the functionals'
    fast paths, which leave every other case to the full checks."""
    if type(dim) is not int or not isinstance(param, torch.Tensor) or param.dim() != 1:
        return None
    nd = x.dim()
    if nd < 2 or not -nd <= dim < nd or not param.is_cpu or not param.is_floating_point():
        return None
    if dim < 0:
        dim += nd
    n = param.shape[0]
    return dim if (n == 1 or n == x.shape[dim]) else None


def check_channel_param(
    fn: str, x: torch.Tensor, param: object, dim: int | None, name: str, *, at_most_1d: bool = False
) -> torch.Tensor:
    """A floating tensor with 1 element or one per channel of ``x`` along ``dim``.

    ``at_most_1d``: refuse a one-element tensor of 2 or more dims too, as ``torch.prelu`` does.
    """
    if not isinstance(param, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(param).__name__}")
    if not param.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating-point tensor, got dtype {param.dtype}")
    n = param.numel()
    if n == 1 and at_most_1d and param.dim() > 1:
        raise ShapeError(
            f"{fn}: {name} must have 1 element or be 1-D, and be a scalar (0-D) or 1-D even with "
            f"one element (as torch.nn.functional.prelu), got shape {_shape(param)}"
        )
    if n == 1:
        return param
    if param.dim() != 1:
        raise ShapeError(
            f"{fn}: {name} must have 1 element or be 1-D with one element per channel, "
            f"got shape {_shape(param)}"
        )
    if dim is None:
        raise ShapeError(
            f"{fn}: {name} has {n} elements but the input of shape {_shape(x)} has no channel "
            "dimension; use a 1-element parameter, or pass dim=0 for a 1-D input of channels"
        )
    if x.shape[dim] != n:
        raise ShapeError(
            f"{fn}: {name} has {n} elements but the input of shape {_shape(x)} has "
            f"{x.shape[dim]} channels along dim {dim}; expected 1 or {x.shape[dim]} elements"
        )
    return param


def check_batch_stats(fn: str, x: torch.Tensor, use_batch: bool) -> None:
    """Refuse batch statistics over one value per channel, as ``torch.nn.BatchNorm`` does.

    The variance of one value is 0 for the normalisation and NaN (0 / 0) for the running
    estimate: every later eval-mode output would be NaN. ``x`` is (N, C, *).
    """
    if not use_batch:
        return
    n = x.shape[0]
    for s in x.shape[2:]:
        n *= s
    if n == 1:
        raise ValueError(
            f"{fn}: Expected more than 1 value per channel when training (batch statistics), "
            f"got input size {_shape(x)}"
        )
