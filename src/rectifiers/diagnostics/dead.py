"""The dead-unit monitor: hooks on every activation module, per-unit counters, one report per window."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .counting import _count_above, _count_nonzero_output, _Site
from .hooks import _Hooked
from .reports import DeadUnitReport, LayerDeadUnits
from .rules import LocalRule, _Kind, _lookup, _prelu_dim, _type_name

class DeadUnitMonitor(_Hooked):
    """Stream dead / inactive / near-dead unit counts of every activation of ``model``.

    Args:
        model: any ``nn.Module``; its activation modules (this library's ReLU, LeakyReLU,
            PReLU, FlexibleReLU/FReLU, FunnelReLU*, and ``torch.nn``'s ReLU, LeakyReLU, PReLU,
            RReLU, ReLU6, Hardtanh, Threshold, ELU, CELU, SELU) are watched through hooks while
            the monitor is attached (inside ``with``, or between :meth:`attach` and
            :meth:`detach`). ``model`` may itself be an activation module.
        near_dead_threshold: activation rate under which a unit is near-dead (default 0.01).
        channel_dim: the channel dimension of inputs for per-channel summaries (default 1, as
            (N, C, *); -1 for channels-last (N, *, C)). PReLU and FReLU use their own ``dim``.
        extra_rules: ``{module class: rule}`` for further activation types (see
            :data:`LocalRule`); a rule receives the input (and no output).

    Memory: two float64 counters per unit of each use site (feature shape, not batch). No
    per-sample mask is kept. The counting runs under ``torch.no_grad``, never synchronises
    with the device, and costs one comparison and one reduction over the input per call.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        near_dead_threshold: float = 0.01,
        channel_dim: int = 1,
        extra_rules: dict[type, LocalRule] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"DeadUnitMonitor: model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(near_dead_threshold, bool) or not isinstance(near_dead_threshold, (int, float)) \
                or not 0 <= near_dead_threshold <= 1:
            raise ValueError(
                f"DeadUnitMonitor: near_dead_threshold must be a number in [0, 1], got {near_dead_threshold!r}"
            )
        if isinstance(channel_dim, bool) or not isinstance(channel_dim, int) or channel_dim == 0:
            raise ValueError(
                f"DeadUnitMonitor: channel_dim must be a non-zero int (dim 0 is the batch), got {channel_dim!r}"
            )
        extra: dict[type, _Kind] = {}
        for cls, rule in (extra_rules or {}).items():
            if not (isinstance(cls, type) and issubclass(cls, nn.Module)) or not callable(rule):
                raise TypeError(
                    "DeadUnitMonitor: extra_rules must map nn.Module subclasses to callables, "
                    f"got {cls!r}: {rule!r}"
                )
            extra[cls] = _Kind(cls.__name__.lower(), rule)
        self.model = model
        self.near_dead_threshold = float(near_dead_threshold)
        self.channel_dim = channel_dim
        self._extra = extra
        self._targets: list[tuple[str, nn.Module, _Kind]] = []
        for name, m in model.named_modules():
            k = _lookup(m, extra)
            if k is not None:
                self._targets.append((name or type(m).__name__, m, k))
        if not self._targets:
            raise ValueError(
                f"DeadUnitMonitor: model ({type(model).__name__}) contains no recognised activation "
                "module (rectifiers.ReLU/LeakyReLU/PReLU/FlexibleReLU/FunnelReLU*, torch.nn.ReLU/"
                "LeakyReLU/PReLU/RReLU/ReLU6/Hardtanh/Threshold/ELU/CELU/SELU); functional calls "
                "like torch.relu(x) cannot be watched, and other types need extra_rules"
            )
        self._sites: dict[tuple[str, int], _Site] = {}
        self._calls: dict[int, int] = {}
        self._depth = 0
        self._handles: list[Any] = []
        self._window = 0

    # -- attaching ------------------------------------------------------------------------
    def attach(self) -> "DeadUnitMonitor":
        """Register the hooks (idempotent)."""
        if self._handles:
            return self
        root = self.model
        self._handles.append(root.register_forward_pre_hook(self._root_enter, prepend=True))
        self._handles.append(root.register_forward_hook(self._root_exit, always_call=True))
        for name, m, k in self._targets:
            if k.needs_output:
                h = m.register_forward_hook(self._make_hook(name, k, post=True), with_kwargs=True)
            else:
                h = m.register_forward_pre_hook(self._make_hook(name, k, post=False), with_kwargs=True)
            self._handles.append(h)
        return self

    def _detached(self) -> None:
        self._depth = 0
        self._calls.clear()

    # -- hooks ----------------------------------------------------------------------------
    def _root_enter(self, module: nn.Module, args: Any) -> None:
        if self._depth == 0:
            self._calls.clear()
        self._depth += 1

    def _root_exit(self, module: nn.Module, args: Any, out: Any) -> None:
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0:
            self._calls.clear()

    def _make_hook(self, name: str, kind: _Kind, post: bool) -> Callable[..., None]:
        def take(module: nn.Module, args: Any, kwargs: Any) -> torch.Tensor | None:
            x = args[0] if args else kwargs.get("input", next(iter(kwargs.values()), None))
            return x if isinstance(x, torch.Tensor) else None

        if post:
            def hook(module: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
                x = take(module, args, kwargs)
                if x is not None:
                    self._observe(name, module, kind, x, out)
        else:
            def hook(module: nn.Module, args: Any, kwargs: Any) -> None:  # type: ignore[misc]
                x = take(module, args, kwargs)
                if x is not None:
                    self._observe(name, module, kind, x, None)
        return hook

    def _site(self, name: str, module: nn.Module, kind: _Kind) -> _Site:
        # Calls outside a forward of the monitored model cannot be placed: they go to site #0.
        if self._depth > 0:
            idx = self._calls.get(id(module), 0)
            self._calls[id(module)] = idx + 1
        else:
            idx = 0
        key = (name, idx)
        site = self._sites.get(key)
        if site is None:
            site = self._sites[key] = _Site(module, name, idx, kind)
        return site

    def _observe(self, name: str, module: nn.Module, kind: _Kind, x: torch.Tensor, out: Any) -> None:
        site = self._site(name, module, kind)
        if not x.is_floating_point():
            return
        with torch.no_grad():
            active, grad = kind.rule(module, x.detach(), None if out is None else out.detach())
            batched = x.dim() >= 2
            n = x.shape[0] if batched else 1
            if n == 0:
                return
            shape = tuple(x.shape[1:]) if batched else tuple(x.shape)
            if site.shape is None:
                site.shape = shape
                site.batched = batched
                site.channel_dim = self._channel_dim(module, kind, x)
            elif site.shape != shape:
                raise ValueError(
                    f"DeadUnitMonitor: use site {name}#{site.index} saw inputs of feature shape "
                    f"{shape} after {site.shape}; units are counted per feature, so the feature "
                    "shape (all dims but the batch) must stay the same within a window "
                    "(call reset() between data of different shapes)"
                )
            if isinstance(active, torch.Tensor):
                act_sum = active.sum(0, dtype=torch.int32) if batched else active.to(torch.float64)
            elif kind.count_output and isinstance(out, torch.Tensor) and out.shape == x.shape:
                act_sum = _count_nonzero_output(out, batched)
            else:
                act_sum = _count_above(x, float(active), batched)
            grad_sum: torch.Tensor | int | None
            if grad is None:
                grad_sum = None
            elif grad is True:
                grad_sum = n
            elif isinstance(grad, torch.Tensor) and grad.shape == x.shape:
                grad_sum = grad.sum(0, dtype=torch.int32) if batched else grad.to(torch.float64)
            elif isinstance(grad, torch.Tensor):
                g = grad
                if batched and g.dim() == x.dim():
                    g = g.squeeze(0)
                grad_sum = torch.where(g, float(n), act_sum)
            else:
                raise TypeError(
                    f"DeadUnitMonitor: the rule for {type(module).__name__} returned grad={grad!r}; "
                    "expected None, True or a bool tensor"
                )
            # counters are normal tensors even when created under inference_mode, so that
            # later windows outside it can still update them in place
            if site.active is None or (grad_sum is not None and site.grad is None):
                with torch.inference_mode(False):
                    if site.active is None:
                        site.active = torch.zeros(shape, dtype=torch.float64, device=x.device)
                    if grad_sum is not None and site.grad is None:
                        site.grad = site.active.clone()  # all earlier batches had grad == active
            if site.grad is not None:
                site.grad += act_sum if grad_sum is None else grad_sum
            site.active += act_sum
            site.samples += n

    def _channel_dim(self, module: nn.Module, kind: _Kind, x: torch.Tensor) -> int | None:
        """The channel dim in *feature* coordinates (batch removed), or None (one channel)."""
        batched = x.dim() >= 2
        if kind.own_channel_dim:
            d = _prelu_dim(module, x)
        elif kind.channels_first:  # funnel: (N, C, *)
            d = 1
        elif batched:
            nd = x.dim()
            d = self.channel_dim % nd if -nd <= self.channel_dim < nd else None
            if d == 0:
                d = None
        else:
            d = None
        if d is None:
            return None
        return d - 1 if batched else d

    # -- windows and reports --------------------------------------------------------------
    def reset(self) -> None:
        """Start a new measurement window: clear the counters, remembering which units were
        dead, so that the next report counts the revived and newly dead ones."""
        for site in self._sites.values():
            if site.active is not None and site.samples > 0:
                g = site.grad if site.grad is not None else site.active
                site.prev_dead = (g == 0).cpu().numpy()
            site.clear()
        self._window += 1

    def report(self) -> DeadUnitReport:
        """The statistics of the current window (one device sync per use site)."""
        names_count: dict[str, int] = {}
        for (name, idx), site in self._sites.items():
            if site.samples:
                names_count[name] = names_count.get(name, 0) + 1
        layers = []
        for (name, idx), site in self._sites.items():
            if not site.samples or site.active is None:
                continue
            active = site.active.cpu().numpy()
            grad = active if site.grad is None else site.grad.cpu().numpy()
            n = site.samples
            rate = active.astype(np.float64) / n
            dead = grad == 0
            inactive = active == 0
            near = rate < self.near_dead_threshold
            cd = site.channel_dim

            def per_channel(a: np.ndarray) -> np.ndarray:
                a = np.asarray(a, dtype=np.float64)
                if a.ndim == 0:
                    return a.reshape(1)
                if cd is None:
                    return a.reshape(1, -1).mean(axis=1)
                return np.moveaxis(a, cd, 0).reshape(a.shape[cd], -1).mean(axis=1)

            revived = newly = None
            if site.prev_dead is not None and site.prev_dead.shape == dead.shape:
                revived = int((site.prev_dead & ~dead).sum())
                newly = int((~site.prev_dead & dead).sum())
            label = name if names_count.get(name, 0) <= 1 and idx == 0 else f"{name}#{idx}"
            ch_rate = per_channel(rate)
            layers.append(LayerDeadUnits(
                name=label,
                module=name,
                call_index=idx,
                kind=site.kind.kind,
                module_type=_type_name(site.module),
                feature_shape=tuple(site.shape or ()),
                channel_dim=None if cd is None else cd + 1 if site.batched else cd,
                channels=int(ch_rate.shape[0]),
                samples=n,
                units=int(dead.size),
                dead=int(dead.sum()),
                inactive=int(inactive.sum()),
                near_dead=int(near.sum()),
                activation_rate=float(rate.mean()) if rate.size else math.nan,
                revived=revived,
                newly_dead=newly,
                channel_dead_fraction=per_channel(dead),
                channel_inactive_fraction=per_channel(inactive),
                channel_near_dead_fraction=per_channel(near),
                channel_activation_rate=ch_rate,
            ))
        return DeadUnitReport(layers=layers, near_dead_threshold=self.near_dead_threshold, window=self._window)
