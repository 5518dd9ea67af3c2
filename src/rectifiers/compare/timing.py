"""What a training step costs: bytes kept for backward, peak memory, and step times side by side."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..zoo import build_model, init_weights, provoke_biases
from .config import Config

__all__ = ["SavedBytes", "peak_rss_mib", "interleaved_step_times", "step_times_side_by_side", "STEP_TIMING_ROUNDS",
           "STEP_TIMING_BUDGET_S", "STEP_TIMING_MIN_ROUNDS"]


class SavedBytes:
    """Bytes autograd keeps for backward, counted once per distinct storage, parameters excluded.

    Use as ``with SavedBytes(model) as m: loss = ...; loss.backward()``, then ``m.bytes``.
    """

    def __init__(self, model: nn.Module) -> None:
        self._skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self._seen: dict[int, int] = {}
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
            ptr = st.data_ptr()
            if ptr not in self._skip:
                self._seen[ptr] = st.nbytes()
        except (RuntimeError, NotImplementedError):  # a tensor without storage (sparse, ...)
            pass
        return t

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())

    def __enter__(self) -> "SavedBytes":
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (``getrusage``; kB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 / (1024 if sys.platform == "darwin" else 1)


#: Rounds of the interleaved step timing (one timed step per activation and round) ...
STEP_TIMING_ROUNDS = 30
#: ... stopping early, after at least ``STEP_TIMING_MIN_ROUNDS``, once a model took this long.
STEP_TIMING_BUDGET_S = 1.0
STEP_TIMING_MIN_ROUNDS = 5


def interleaved_step_times(cfg: Config, ds: Any, device: torch.device | str = "cpu", *,
                           rounds: int = STEP_TIMING_ROUNDS, budget_s: float = STEP_TIMING_BUDGET_S,
                           batch_size: int | None = None) -> dict[str, Any]:
    """Wall-clock times of training steps, taken round-robin across activations.

    Per model: one fresh model per activation (seed ``cfg.seeds[0]``, the run's initialisation and
    SGD settings), one untimed warm-up step each, then up to ``rounds`` rounds in which every
    activation takes one timed step (forward, cross-entropy, backward, ``opt.step``; no monitors)
    on the same batch, the starting activation rotating from round to round. Machine noise thus
    falls on all activations alike. Stops after at least ``STEP_TIMING_MIN_ROUNDS`` rounds once a
    model's rounds took ``budget_s`` seconds.

    Returns ``{"rounds": {model: n}, "batch": b, "ms": {model: {activation: [ms per step]}}}``, and
    the bytes kept for backward and parameter counts of :func:`step_times_side_by_side`.
    """
    builds: dict[str, dict[str, Callable[[], nn.Module]]] = {}
    seed = cfg.seeds[0] if cfg.seeds else 0
    for model_kind in cfg.models:
        builds[model_kind] = {}
        for act in cfg.activations:
            def build(model_kind: str = model_kind, act: str = act) -> nn.Module:
                torch.manual_seed(seed)
                model = build_model(model_kind, act, ds.input_shape, ds.num_classes, depth=cfg.depth,
                                    width=cfg.width)
                init_weights(model, cfg.init, act)
                if cfg.provoke is not None:
                    provoke_biases(model, cfg.provoke)
                return model
            builds[model_kind][act] = build
    return step_times_side_by_side(builds, ds, device, lr=cfg.lr, momentum=cfg.momentum, rounds=rounds,
                                   budget_s=budget_s, batch_size=batch_size or cfg.batch_size)


def step_times_side_by_side(builds: dict[str, dict[str, Callable[[], nn.Module]]], ds: Any,
                            device: torch.device | str = "cpu", *, lr: float = 0.05,
                            momentum: float = 0.9, rounds: int = STEP_TIMING_ROUNDS,
                            budget_s: float = STEP_TIMING_BUDGET_S,
                            batch_size: int = 64) -> dict[str, Any]:
    """Step times of the models ``builds[model][activation]()``, taken in turn (see
    :func:`interleaved_step_times`), with the bytes each keeps for backward (:class:`SavedBytes`,
    measured on the warm-up step) and its parameter count.

    Returns ``{"rounds": {model: n}, "batch": b, "ms": {model: {activation: [ms per step]}},
    "saved_bytes": {model: {activation: bytes}}, "params": {model: {activation: count}}}``.
    """
    device = torch.device(device)
    b = min(batch_size, len(ds.train_y))
    x = ds.train_x[:b].to(device)
    y = ds.train_y[:b].to(device)
    out: dict[str, Any] = {"rounds": {}, "batch": b, "ms": {}, "saved_bytes": {}, "params": {}}

    def step(model: nn.Module, opt: torch.optim.Optimizer, saved: SavedBytes | None = None) -> None:
        opt.zero_grad(set_to_none=True)
        if saved is not None:
            with saved:
                loss = F.cross_entropy(model(x), y)
        else:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for model_kind, acts in builds.items():
        setups = []
        out["saved_bytes"][model_kind] = {}
        out["params"][model_kind] = {}
        for act, build in acts.items():
            model = build().to(device).train()
            opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  momentum=momentum)
            sb = SavedBytes(model)
            step(model, opt, sb)  # warm-up: allocations, lazy initialisation; bytes kept
            out["saved_bytes"][model_kind][act] = sb.bytes
            out["params"][model_kind][act] = sum(p.numel() for p in model.parameters())
            setups.append((act, model, opt))
        times: dict[str, list[float]] = {act: [] for act in acts}
        t_start = time.perf_counter()
        done = 0
        for r in range(rounds):
            k = r % len(setups)
            for act, model, opt in setups[k:] + setups[:k]:
                t0 = time.perf_counter()
                step(model, opt)
                times[act].append(1000 * (time.perf_counter() - t0))
            done = r + 1
            if done >= STEP_TIMING_MIN_ROUNDS and time.perf_counter() - t_start > budget_s:
                break
        out["rounds"][model_kind] = done
        out["ms"][model_kind] = times
    return out


_peak_rss_mib = peak_rss_mib
