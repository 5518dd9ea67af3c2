"""One training run of a comparison: train, evaluate, probe dead units, checkpoint, resume."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._util import atomic_write, atomic_write_bytes
from ..zoo import build_model, init_weights, provoke_biases
from .config import PROBE_LIMIT, Config, RunSpec
from .distributed import Dist
from .timing import SavedBytes

__all__ = ["train_one", "train_spec", "evaluate", "probe_dead", "atomic_write_json", "PAUSE_ENV"]


def atomic_write_json(path: str, obj: Any) -> None:
    """``obj`` as indented JSON at ``path``, atomically (:func:`rectifiers._util.atomic_write_bytes`)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def _read_json(path: str) -> Any | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode on ``x``, ``y``."""
    was = model.training
    model.eval()
    correct, loss = 0, 0.0
    for s in _batches(len(y), 1024):
        out = model(x[s].to(device))
        t = y[s].to(device)
        loss += float(F.cross_entropy(out, t, reduction="sum"))
        correct += int((out.argmax(1) == t).sum())
    model.train(was)
    n = max(len(y), 1)
    return correct / n, loss / n


@torch.no_grad()
def probe_dead(model: nn.Module, x: torch.Tensor, device: torch.device) -> Any:
    """Stream ``x`` through ``model`` (eval mode) under a ``DeadUnitMonitor``; return its report,
    or None when the model has no activation the monitor knows (a sigmoid baseline)."""
    from ..diagnostics import DeadUnitMonitor
    from ..zoo import BASELINES

    if any(isinstance(m, tuple(BASELINES.values())) for m in model.modules()):
        return None
    was = model.training
    model.eval()
    with DeadUnitMonitor(model) as dead:
        for s in _batches(len(x), 512):
            model(x[s].to(device))
    model.train(was)
    return dead.report()


def _dead_summary(rep: Any) -> dict[str, Any]:
    if rep is None:
        return {"dead": None, "inactive": None, "near_dead": None}
    return {
        "dead": float(rep.dead_fraction),
        "inactive": float(rep.inactive_fraction),
        "near_dead": float(rep.near_dead_fraction),
    }


def _to_jsonable(obj: Any) -> Any:
    """Tensors, numpy values and dataclasses into plain JSON types."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else (1e308 if obj > 0 else -1e308)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "__dataclass_fields__"):
        return _to_jsonable(asdict(obj))
    return str(obj)


def _act_params(model: nn.Module) -> dict[str, list[float]]:
    """The activations' own learnable parameters, per layer: those the descriptions name
    (``learnable``: PReLU's slopes ``weight``, FlexibleReLU's biases ``bias``)."""
    from .. import _spec as S
    from .. import modules as M

    kinds = [(getattr(M, d.cls), d.learnable) for d in S.DESCRIPTIONS.values() if d.learnable]
    out: dict[str, list[float]] = {}
    for name, m in model.named_modules():
        for cls, attr in kinds:
            if isinstance(m, cls):
                out[f"{name}.{attr}"] = getattr(m, attr).detach().cpu().tolist()
                break
    return out


#: Test hook: ``<run name>:<epoch>`` makes the process pause (sleep, up to an hour) right after
#: that run's checkpoint of that epoch is in place, so a test can kill it there without a race.
PAUSE_ENV = "RECTIFIERS_COMPARE_PAUSE_AFTER_CHECKPOINT"


def _pause_hook(name: str, epoch: int) -> None:
    if os.environ.get(PAUSE_ENV) == f"{name}:{epoch}":
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            time.sleep(0.5)


def train_one(
    cfg: Config,
    ds: Any,
    model_kind: str,
    activation: str,
    seed: int,
    *,
    out_dir: str,
    resume: bool = False,
    device: torch.device | str = "cpu",
    dist: Dist | None = None,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Train one model of the grid ``cfg`` with one activation and seed (:func:`train_spec`)."""
    return train_spec(cfg.run_spec(model_kind, activation, seed), ds, out_dir=out_dir, resume=resume,
                      device=device, dist=dist, on_step=on_step, record={"config": asdict(cfg)})


def train_spec(
    spec: RunSpec,
    ds: Any,
    *,
    out_dir: str,
    resume: bool = False,
    device: torch.device | str = "cpu",
    dist: Dist | None = None,
    on_step: Callable[[], None] | None = None,
    record: dict[str, Any] | None = None,
    checkpoints: bool = True,
) -> dict[str, Any]:
    """Train one run; return its result (also written as JSON), with ``record`` merged in.

    Checkpoints ``checkpoints/<name>.pt`` after every epoch and the result ``runs/<name>.json`` at
    the end, atomically (rank 0 only). With ``resume``, a finished result is read back as is, and
    an unfinished run continues from its checkpoint. Only parameters that require grad are given
    to the optimizer (a held activation parameter stays where it was put). Without
    ``checkpoints`` none is written (for runs of a second or two an fsync per epoch costs more than
    the run; a killed run then restarts from its start, and finished results are still kept).
    """
    from ..diagnostics import GradientFlowMonitor

    dist = dist or Dist()
    device = torch.device(device)
    name = spec.name
    model_kind, activation, seed = spec.model, spec.activation, spec.seed
    res_path = os.path.join(out_dir, "runs", name + ".json")
    ckpt_path = os.path.join(out_dir, "checkpoints", name + ".pt")
    steps_per_epoch = len(ds.train_y) // spec.batch_size

    if resume:
        done = _read_json(res_path)
        if done is not None and done.get("finished"):
            if on_step is not None:
                for _ in range(steps_per_epoch * spec.epochs):
                    on_step()
            return done

    torch.manual_seed(seed)
    model = build_model(model_kind, activation, ds.input_shape, ds.num_classes, depth=spec.depth,
                        width=spec.width, norm=spec.norm, value=spec.value, frozen=spec.frozen)
    init_weights(model, spec.init, activation)
    if spec.provoke is not None:
        provoke_biases(model, spec.provoke)
    model.to(device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=spec.lr,
                          momentum=spec.momentum)
    probe_x = ds.train_x[:PROBE_LIMIT]

    history: dict[str, Any] = {
        "epoch": [], "train_loss": [], "train_acc": [], "test_loss": [], "test_acc": [],
        "dead": [], "inactive": [], "near_dead": [], "grad_layers": None, "grad_norms": [],
        "first_last_ratio": [], "vanishing": [], "exploding": [], "act_params": [],
        "step_time_s": [],
    }
    extra: dict[str, Any] = {}
    start_epoch = 0
    ckpt = None
    if resume and os.path.exists(ckpt_path):
        try:
            ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        except Exception as e:  # a checkpoint is written atomically, so this is not a torn write
            raise RuntimeError(f"compare: cannot read checkpoint {ckpt_path}: {e}") from e
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        history = ckpt["history"]
        extra = ckpt["extra"]
        start_epoch = int(ckpt["epoch"])
    else:
        if dist.main:
            rep0 = probe_dead(model, probe_x, device) if spec.probe_dead else None
            acc0, loss0 = evaluate(model, ds.test_x, ds.test_y, device)
            extra["dead_start"] = _to_jsonable(rep0.to_dict()) if rep0 is not None else None
            history["epoch"].append(0)
            history["test_acc"].append(acc0)
            history["test_loss"].append(loss0)
            history["train_loss"].append(None)
            history["train_acc"].append(None)
            for k, v in _dead_summary(rep0).items():
                history[k].append(v)
            history["act_params"].append(_act_params(model))

    train_model: nn.Module = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        train_model = DDP(model, device_ids=ids)

    train_x, train_y = ds.train_x, ds.train_y
    b = spec.batch_size
    model.train()
    for epoch in range(start_epoch, spec.epochs):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(len(train_y), generator=gen)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.float64)
        seen = torch.zeros((), dtype=torch.float64)
        times: list[float] = []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with GradientFlowMonitor(model) as flow:
            for i in range(steps_per_epoch):
                idx = perm[i * b : (i + 1) * b]
                if dist.enabled:
                    idx = idx[dist.rank :: dist.world]
                x = train_x[idx].to(device)
                y = train_y[idx].to(device)
                measure = epoch == 0 and i == 0
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                if measure:
                    with SavedBytes(model) as sb:
                        out = train_model(x)
                        loss = F.cross_entropy(out, y)
                    extra["saved_bytes"] = sb.bytes
                    extra["saved_bytes_batch"] = len(idx)
                else:
                    out = train_model(x)
                    loss = F.cross_entropy(out, y)
                loss.backward()
                flow.step()
                opt.step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t0)
                with torch.no_grad():
                    loss_sum += float(loss) * len(idx)
                    correct += float((out.argmax(1) == y).sum())
                    seen += len(idx)
                if on_step is not None:
                    on_step()
        frep = flow.report()
        if dist.enabled:
            stats = torch.stack([loss_sum, correct, seen])
            torch.distributed.all_reduce(stats)
            loss_sum, correct, seen = stats[0], stats[1], stats[2]
        if dist.main:
            acc, tloss = evaluate(model, ds.test_x, ds.test_y, device)
            rep = probe_dead(model, probe_x, device) if spec.probe_dead else None
            history["epoch"].append(epoch + 1)
            history["train_loss"].append(float(loss_sum / max(float(seen), 1)))
            history["train_acc"].append(float(correct / max(float(seen), 1)))
            history["test_acc"].append(acc)
            history["test_loss"].append(tloss)
            for k, v in _dead_summary(rep).items():
                history[k].append(v)
            history["grad_layers"] = list(frep.layers)
            history["grad_norms"].extend(_to_jsonable(frep.norms))
            history["first_last_ratio"].append(_to_jsonable(frep.first_last_ratio_median))
            history["vanishing"].append(bool(frep.vanishing))
            history["exploding"].append(bool(frep.exploding))
            history["act_params"].append(_act_params(model))
            history["step_time_s"].extend(times)
            if device.type == "cuda":
                extra["cuda_peak_bytes"] = max(extra.get("cuda_peak_bytes", 0),
                                               torch.cuda.max_memory_allocated(device))
            if epoch + 1 == spec.epochs:
                extra["dead_end"] = _to_jsonable(rep.to_dict()) if rep is not None else None
                extra["grad_flow_last_epoch"] = _to_jsonable(frep.to_dict())
            if checkpoints:
                state = {"epoch": epoch + 1, "model": model.state_dict(), "opt": opt.state_dict(),
                         "history": history, "extra": extra}
                atomic_write(ckpt_path, lambda f: torch.save(state, f))
                _pause_hook(name, epoch + 1)
        dist.barrier()

    result: dict[str, Any] = {
        "name": name, "model": model_kind, "activation": activation, "seed": seed,
        "finished": True, "world_size": dist.world,
        "resumed_from_epoch": start_epoch if ckpt is not None else None,
        **(record or {}), "history": history, **extra,
    }
    if history["test_acc"]:
        result["test_acc"] = history["test_acc"][-1]
        result["test_loss"] = history["test_loss"][-1]
    result = _to_jsonable(result)  # the same plain values (NaN as None) as a result read back
    if dist.main:
        atomic_write_json(res_path, result)
    return result


# --------------------------------------------------------------------------------------------
# Step time, measured side by side
