"""The gradient-flow monitor: per-layer gradient norms and activation parameters at every step."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .hooks import _Hooked, _NoHandle
from .reports import GradientFlowReport
from .rules import _TRACKED_PARAMS, _lookup

class GradientFlowMonitor(_Hooked):
    """Record per-layer gradient norms and activation parameters at every training step.

    Args:
        model: the model being trained.
        optimizer: if given, a step pre-hook on it calls :meth:`step` before every
            ``optimizer.step()``; otherwise call :meth:`step` yourself after ``backward``.
        every: record every ``every``-th step (default 1).
        vanish_ratio, explode_ratio: first/last ratio thresholds (defaults 1e-3 and 1e3).
        norm_floor, norm_ceiling: per-layer norm thresholds (defaults 1e-7 and 1e3).
        track_params: record the activations' parameters (PReLU ``weight``, FReLU ``bias``).
        include_activations: count activation modules with parameters (PReLU, FReLU, funnel)
            as layers too (default False: layers are the Linear/Conv/Norm... modules).
        zero_rtol: what counts as a zero gradient (below): a largest element at most
            ``zero_rtol`` times the model's largest gradient element at that step. Default
            (None): 16 epsilons of the gradient's dtype (1.9e-6 in float32), at most 1e-3.

    Layers are the modules with parameters of their own that require grad, in the order of
    their first call in a forward pass while attached (registration order for those not
    called). One :meth:`step` costs one norm per parameter tensor and one device sync.

    Every parameter of the model that requires grad is also watched for a gradient that is
    zero at every recorded step where it had one: exactly zero, or zero up to rounding (every
    element within ``zero_rtol`` of the model's largest gradient element). The report names
    them in ``zero_grad``. Such a parameter cannot learn, whatever the learning rate. The
    typical cases are a bias that BatchNorm cancels: an FReLU bias followed by a 1x1 conv and
    BatchNorm (in exact arithmetic its gradient is 0; in float32 about 1e-8 of the others'),
    which ``convert(..., "frelu")`` notes too, or a conv bias right before BatchNorm.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        every: int = 1,
        vanish_ratio: float = 1e-3,
        explode_ratio: float = 1e3,
        norm_floor: float = 1e-7,
        norm_ceiling: float = 1e3,
        track_params: bool = True,
        include_activations: bool = False,
        zero_rtol: float | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"GradientFlowMonitor: model must be a torch.nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"GradientFlowMonitor: optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"GradientFlowMonitor: every must be a positive int, got {every!r}")
        th = {"vanish_ratio": vanish_ratio, "explode_ratio": explode_ratio,
              "norm_floor": norm_floor, "norm_ceiling": norm_ceiling}
        for k, v in th.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ValueError(f"GradientFlowMonitor: {k} must be a positive finite number, got {v!r}")
        if vanish_ratio >= explode_ratio:
            raise ValueError(
                f"GradientFlowMonitor: vanish_ratio ({vanish_ratio}) must be below explode_ratio ({explode_ratio})"
            )
        if norm_floor >= norm_ceiling:
            raise ValueError(
                f"GradientFlowMonitor: norm_floor ({norm_floor}) must be below norm_ceiling ({norm_ceiling})"
            )
        self.model = model
        self.optimizer = optimizer
        self.every = every
        self.thresholds = {k: float(v) for k, v in th.items()}
        self.track_params = track_params
        self.include_activations = include_activations
        if zero_rtol is not None and (isinstance(zero_rtol, bool) or not isinstance(zero_rtol, (int, float))
                                      or not (0 <= zero_rtol < 1)):
            raise ValueError(f"GradientFlowMonitor: zero_rtol must be a number in [0, 1) or None, got {zero_rtol!r}")
        self.zero_rtol = None if zero_rtol is None else float(zero_rtol)
        self._handles: list[Any] = []
        self._order: list[str] = []
        self._order_hooks: list[Any] = []
        self._layout: tuple[list[str], list[torch.Tensor], torch.Tensor, list[str], list[torch.Tensor]] | None = None
        self._count = 0
        self._steps: list[int] = []
        self._rows: list[torch.Tensor] = []
        # zero-gradient watch: every parameter requiring grad (fixed at the first recorded
        # step), whether it had a gradient at some recorded step, and whether one was nonzero
        self._watch: list[tuple[str, nn.Parameter]] | None = None
        self._had_grad: np.ndarray = np.zeros(0, dtype=bool)
        self._nonzero: torch.Tensor | None = None

    # -- layout ---------------------------------------------------------------------------
    def _candidates(self) -> list[tuple[str, nn.Module]]:
        out = []
        for name, m in self.model.named_modules():
            if not self.include_activations and _lookup(m, {}) is not None:
                continue
            if any(p.requires_grad for p in m.parameters(recurse=False)):
                out.append((name or type(m).__name__, m))
        return out

    def _build_layout(self) -> tuple[list[str], list[torch.Tensor], torch.Tensor, list[str], list[torch.Tensor]]:
        found = self._candidates()
        rank = {n: i for i, n in enumerate(self._order)}
        keyed = sorted(enumerate(found), key=lambda im: rank.get(im[1][0], len(rank) + im[0]))
        cands = [nm for _, nm in keyed]
        names, params, index = [], [], []
        for j, (name, m) in enumerate(cands):
            names.append(name)
            for p in m.parameters(recurse=False):
                if p.requires_grad:
                    params.append(p)
                    index.append(j)
        pnames, pvals = [], []
        if self.track_params:
            for name, m in self.model.named_modules():
                for cls in type(m).__mro__:
                    if cls in _TRACKED_PARAMS:
                        for attr in _TRACKED_PARAMS[cls]:
                            p = getattr(m, attr, None)
                            if isinstance(p, torch.Tensor) and not isinstance(p, nn.parameter.UninitializedParameter):
                                pnames.append(f"{name or type(m).__name__}.{attr}")
                                pvals.append(p)
                        break
        return (names, params, torch.tensor(index, dtype=torch.long), pnames, pvals)

    # -- attaching ------------------------------------------------------------------------
    def attach(self) -> "GradientFlowMonitor":
        """Start watching: record the forward order of the layers at the next forward pass,
        and hook the optimizer if one was given (idempotent)."""
        if self._handles:
            return self
        if not self._order:
            for name, m in self._candidates():
                self._order_hooks.append(m.register_forward_pre_hook(self._make_order_hook(name)))
            self._handles.append(self.model.register_forward_hook(self._order_done, always_call=True))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(lambda *a: self.step()))
        if not self._handles:  # keep `attached` meaningful
            self._handles.append(_NoHandle())
        return self

    def _detached(self) -> None:
        for h in self._order_hooks:
            h.remove()
        self._order_hooks.clear()

    def _make_order_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            if name not in self._order:
                self._order.append(name)
        return hook

    def _order_done(self, module: nn.Module, args: Any, out: Any) -> None:
        for h in self._order_hooks:
            h.remove()
        self._order_hooks.clear()

    # -- recording ------------------------------------------------------------------------
    def step(self) -> None:
        """Record this step's per-layer gradient norms and activation parameters (call after
        ``backward`` and before ``zero_grad``). Every ``every``-th call is recorded."""
        self._count += 1
        if (self._count - 1) % self.every:
            return
        if self._layout is None:  # fixed at the first recorded step (lazy modules are built by then)
            self._layout = self._build_layout()
        names, params, index, pnames, pvals = self._layout
        with torch.no_grad():
            present = [i for i, p in enumerate(params) if p.grad is not None]
            L = len(names)
            dev = params[present[0]].grad.device if present else torch.device("cpu")  # type: ignore[union-attr]
            sq = torch.zeros(L, dtype=torch.float64, device=dev)
            has = torch.zeros(L, dtype=torch.float64, device=dev)
            if present:
                grads = [params[i].grad for i in present]
                if all(g.dtype in (torch.float32, torch.float64) and g.device == dev for g in grads):  # type: ignore[union-attr]
                    pn = torch.stack(torch._foreach_norm(grads)).double()  # type: ignore[arg-type]
                else:  # low precision: accumulate in fp32 so that the norm itself cannot overflow
                    pn = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32).to(dev)  # type: ignore[arg-type]
                                      for g in grads]).double()
                idx = index[present].to(dev)
                sq.index_add_(0, idx, pn * pn)
                has.index_add_(0, idx, torch.ones_like(pn))
            norms = torch.where(has > 0, sq.sqrt(), torch.full_like(sq, math.nan))
            parts = [norms, (has > 0).double()]
            if pvals:
                parts.append(torch.cat([p.detach().reshape(-1).to(dev, torch.float64) for p in pvals]))
            row = torch.cat(parts).cpu()
            self._watch_zero()
        self._steps.append(self._count - 1)
        self._rows.append(row)

    def _watch_zero(self) -> None:
        """Note which watched parameters have a gradient, and which have one above rounding
        level: a largest element beyond ``zero_rtol`` times the largest gradient element of
        the whole model at this step. No device sync."""
        if self._watch is None:
            self._watch = [(n, p) for n, p in self.model.named_parameters()
                           if p.requires_grad and not isinstance(p, nn.parameter.UninitializedParameter)]
            self._had_grad = np.zeros(len(self._watch), dtype=bool)
        idx = [i for i, (_, p) in enumerate(self._watch) if p.grad is not None and p.grad.numel()]
        if not idx:
            return
        grads = [self._watch[i][1].grad.detach() for i in idx]  # type: ignore[union-attr]
        dev = grads[0].device
        if self._nonzero is None:
            self._nonzero = torch.zeros(len(self._watch), dtype=torch.bool, device=dev)
        elif self._nonzero.device != dev:
            self._nonzero = self._nonzero.to(dev)
        if all(g.dtype in (torch.float32, torch.float64) and g.device == dev for g in grads):
            peaks = torch.stack(torch._foreach_norm(grads, math.inf)).double()
        else:
            peaks = torch.stack([g.abs().amax().to(dev, torch.float64) for g in grads])
        rtol = torch.tensor([self._zero_rtol(g.dtype) for g in grads], dtype=torch.float64, device=dev)
        top = torch.nan_to_num(peaks, nan=0.0, posinf=0.0).amax()
        above = ~(peaks <= rtol * top)  # NaN and inf count as nonzero
        self._had_grad[idx] = True
        self._nonzero[torch.tensor(idx, device=dev)] |= above

    def _zero_rtol(self, dtype: torch.dtype) -> float:
        if self.zero_rtol is not None:
            return self.zero_rtol
        eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
        return min(16 * eps, 1e-3)

    def reset(self) -> None:
        """Forget the recorded steps (the layer list and step counter are kept)."""
        self._steps.clear()
        self._rows.clear()
        self._had_grad[:] = False
        if self._nonzero is not None:
            self._nonzero.zero_()

    def report(self) -> GradientFlowReport:
        """The recorded steps, the first/last ratio and the flags."""
        th = self.thresholds
        layout = self._layout if self._layout is not None else self._build_layout()
        names, _, _, pnames, pvals = layout
        L = len(names)
        S = len(self._rows)
        data = torch.stack(self._rows).numpy() if S else np.zeros((0, 2 * L + sum(p.numel() for p in pvals)))
        norms = data[:, :L].astype(np.float64)
        present = data[:, L:2 * L] > 0
        params: dict[str, np.ndarray] = {}
        off = 2 * L
        for name, p in zip(pnames, pvals):
            params[name] = data[:, off:off + p.numel()].copy()
            off += p.numel()
        # first and last layer that had a gradient at that step (frozen or unused layers aside)
        ratio = np.full(S, np.nan)
        for s_, row in enumerate(present):
            idx = np.flatnonzero(row)
            if idx.size:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio[s_] = norms[s_, idx[0]] / norms[s_, idx[-1]]
        finite = np.isfinite(norms)
        nonfinite = (present & ~finite).any(axis=1) if L else np.zeros(S, bool)
        okn = np.where(finite, norms, np.nan)
        with np.errstate(all="ignore"):
            lo = np.array([np.nanmin(r) if np.isfinite(r).any() else np.nan for r in okn])
            hi = np.array([np.nanmax(r) if np.isfinite(r).any() else np.nan for r in okn])
        low_ratio = ratio < th["vanish_ratio"]
        low_norm = lo < th["norm_floor"]
        vsteps = low_ratio | low_norm
        high_ratio = ratio > th["explode_ratio"]
        high_norm = hi > th["norm_ceiling"]
        esteps = nonfinite | high_ratio | high_norm
        vanishing = bool(S and vsteps.sum() * 2 >= S)
        exploding = bool(esteps.any())
        fin_ratio = ratio[np.isfinite(ratio)]
        med = float(np.median(fin_ratio)) if fin_ratio.size else math.nan
        reasons = []
        if S:
            if low_ratio.any():
                reasons.append(f"first/last ratio below {th['vanish_ratio']:g} on {int(low_ratio.sum())}/{S} steps")
            if low_norm.any():
                reasons.append(f"a layer norm below {th['norm_floor']:g} on {int(low_norm.sum())}/{S} steps")
            if nonfinite.any():
                reasons.append(f"non-finite gradient on {int(nonfinite.sum())}/{S} steps")
            if high_ratio.any():
                reasons.append(f"first/last ratio above {th['explode_ratio']:g} on {int(high_ratio.sum())}/{S} steps")
            if high_norm.any():
                reasons.append(f"a layer norm above {th['norm_ceiling']:g} on {int(high_norm.sum())}/{S} steps")
        return GradientFlowReport(
            layers=list(names),
            steps=np.asarray(self._steps, dtype=np.int64),
            norms=norms,
            first_last_ratio=ratio,
            first_last_ratio_median=med,
            vanishing=vanishing,
            exploding=exploding,
            vanishing_steps=vsteps,
            exploding_steps=esteps,
            nonfinite_steps=nonfinite,
            reasons=reasons,
            thresholds=dict(th, vanishing_step_share=0.5),
            params=params,
            zero_grad=self._zero_grad(),
        )

    def _zero_grad(self) -> list[str]:
        """The watched parameters whose gradient was exactly zero at every recorded step."""
        if self._watch is None or self._nonzero is None:
            return []
        nonzero = self._nonzero.cpu().numpy()
        return [n for (n, _), had, nz in zip(self._watch, self._had_grad, nonzero) if had and not nz]
