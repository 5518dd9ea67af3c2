"""Optimizer hygiene: keep activation parameters out of weight decay.

He et al. (2015) train PReLU without weight decay on the slopes: decay pulls ``a`` towards 0,
that is towards plain ReLU, which is not a prior anyone meant to impose. The same holds for the
flexible ReLU's bias ``b`` and for the funnel activation's BatchNorm scale and shift (BatchNorm
parameters are usually not decayed either). :func:`param_groups` splits a model's parameters
into a decayed group and an undecayed one::

    opt = torch.optim.AdamW(param_groups(model, weight_decay=0.05), lr=1e-3)
"""

from __future__ import annotations

import math

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn
from torch.nn.parameter import UninitializedParameter

from . import modules as M

__all__ = ["param_groups", "activation_parameters"]

_FUNNELS = (M.FunnelReLU, M.FunnelReLU1d, M.FunnelReLU3d)
_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def activation_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` for every activation parameter of ``model``, in model order.

    Activation parameters: the slopes of ``rectifiers.PReLU`` and ``torch.nn.PReLU``
    (``weight``), the bias of ``FlexibleReLU`` (``bias``), and the BatchNorm scale and shift of
    the funnel activations (``bn_weight``, ``bn_bias``). A funnel's depthwise conv (``weight``,
    ``bias``) is an ordinary conv and is not listed.
    """
    out = []
    for path, m in model.named_modules():
        if isinstance(m, (M.PReLU, nn.PReLU)):
            names = ("weight",)
        elif isinstance(m, M.FlexibleReLU):
            names = ("bias",)
        elif isinstance(m, _FUNNELS):
            names = ("bn_weight", "bn_bias")
        else:
            continue
        for n in names:
            p = getattr(m, n, None)
            if isinstance(p, nn.Parameter):
                out.append((f"{path}.{n}" if path else n, p))
    return out


def param_groups(
    model: nn.Module,
    weight_decay: float = 1e-4,
    *,
    activation_weight_decay: float = 0.0,
    no_decay_norm_and_bias: bool = False,
    no_decay: Callable[[str, nn.Parameter], bool] | Iterable[str] | None = None,
    **group_options: Any,
) -> list[dict[str, Any]]:
    """Parameter groups for a ``torch.optim`` optimizer, activation parameters undecayed.

    Args:
        model: the model (convert it, and run one forward pass if it has lazy modules, first).
        weight_decay: decay of every other trainable parameter (default 1e-4).
        activation_weight_decay: decay of the activation parameters listed by
            :func:`activation_parameters` (default 0.0, as the PReLU paper advises).
        no_decay_norm_and_bias: also put normalisation-layer parameters and every bias (the
            1-D parameters) in the undecayed group, a common recipe (default False).
        no_decay: more parameters to keep undecayed: names (exact) or a predicate
            ``(name, parameter) -> bool``.
        **group_options: added to every group (``lr=...``, ``betas=...``).

    Returns:
        up to three groups, each ``{"params": [...], "weight_decay": wd, "group": kind,
        "names": [...]}``: ``"decay"`` (``weight_decay``), ``"activation"``
        (``activation_weight_decay``) and ``"no_decay"`` (0.0: ``no_decay`` and, if asked,
        norms and biases); empty groups are left out. Parameters
        with ``requires_grad=False`` are left out; a parameter shared by several modules
        appears once.

    Raises:
        ValueError: when the model still has lazy (uninitialised) parameters.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"param_groups: model must be an nn.Module, got {type(model).__name__}")
    for name, value in (("weight_decay", weight_decay), ("activation_weight_decay", activation_weight_decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ValueError(f"param_groups: {name} must be a finite number >= 0, got {value!r}")
    if no_decay is None:
        extra: Callable[[str, nn.Parameter], bool] = lambda n, p: False  # noqa: E731
    elif callable(no_decay):
        extra = no_decay
    else:
        names = set(no_decay)
        if not all(isinstance(n, str) for n in names):
            raise TypeError(f"param_groups: no_decay must be names or a predicate, got {no_decay!r}")
        known = {n for n, _ in model.named_parameters()}
        if names - known:
            raise ValueError(
                f"param_groups: no_decay names parameters the model does not have: "
                f"{sorted(names - known)}"
            )
        extra = lambda n, p: n in names  # noqa: E731

    lazy = [n for n, p in model.named_parameters() if isinstance(p, UninitializedParameter)]
    if lazy:
        raise ValueError(
            f"param_groups: the model has uninitialised (lazy) parameters, e.g. {lazy[0]!r}: "
            "run one forward pass (or convert(..., sample_input=x)) before building the optimizer"
        )
    act_ids = {id(p) for _, p in activation_parameters(model)}
    norm_ids: set[int] = set()
    if no_decay_norm_and_bias:
        for m in model.modules():
            if isinstance(m, _NORMS):
                norm_ids.update(id(p) for p in m.parameters(recurse=False))
    buckets: dict[str, tuple[list[nn.Parameter], list[str]]] = {
        "decay": ([], []), "activation": ([], []), "no_decay": ([], [])
    }
    for n, p in model.named_parameters():  # named_parameters() already drops duplicates
        if not p.requires_grad:
            continue
        if id(p) in act_ids:
            kind = "activation"
        elif extra(n, p) or (no_decay_norm_and_bias and (id(p) in norm_ids or p.dim() <= 1)):
            kind = "no_decay"
        else:
            kind = "decay"
        buckets[kind][0].append(p)
        buckets[kind][1].append(n)
    decays = {"decay": weight_decay, "activation": activation_weight_decay, "no_decay": 0.0}
    groups = []
    for kind, (params, names_) in buckets.items():
        if params:
            groups.append({
                "params": params, "weight_decay": float(decays[kind]), "group": kind,
                "names": names_, **group_options,
            })
    return groups
