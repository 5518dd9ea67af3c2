"""``rectifiers compare``: train the same models once per activation and seed, and write a report.

The main job. For every model (a small CNN and a plain MLP, :mod:`rectifiers.zoo`), activation and
seed it trains from the same start (``torch.manual_seed(seed)`` before the model is built, a fixed
data split, a per-epoch shuffle drawn from ``(seed, epoch)``), measures

* test accuracy and loss after every epoch,
* dead / inactive / near-dead unit fractions on the training set before training and after every
  epoch (:class:`rectifiers.diagnostics.DeadUnitMonitor`, model in eval mode),
* per-layer gradient norms at every step and the activations' parameters
  (:class:`rectifiers.diagnostics.GradientFlowMonitor`),
* the time of a training step: after all runs, steps of fresh models are timed round-robin across
  activations (:func:`interleaved_step_times`, a second or two per model), so machine noise falls
  on every activation alike (each run also records its own step times, monitors included, in
  ``history["step_time_s"]``), and the memory of a step:
  the bytes autograd keeps for backward, counted per distinct storage with
  ``torch.autograd.graph.saved_tensors_hooks`` (parameters excluded), plus
  ``torch.cuda.max_memory_allocated`` on CUDA,

and writes ``report.md``, ``report.html`` and PNG plots (:mod:`rectifiers.report`).

Faults: every result (``runs/<model>-<activation>-s<seed>.json``) and checkpoint
(``checkpoints/<...>.pt``, written after every epoch) goes to a temporary file first and is moved
into place with ``os.replace``, so a killed run leaves either the old file or the new one. With
``--resume`` finished runs are read back, unfinished ones continue from their last checkpoint, and
the results equal an uninterrupted run's (the shuffle of an epoch depends only on seed and epoch).

Scale-out: under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1) the models are wrapped in
``DistributedDataParallel`` (gloo on CPU, nccl on CUDA); each global batch of ``--batch-size``
samples is split into N equal shards by rank, so N processes compute the same gradient as one
(the mean over the same global batch). Only rank 0 evaluates, writes checkpoints and the report.
The funnel activation holds a BatchNorm: under DDP each rank normalises with its own shard's
statistics (as ``nn.BatchNorm2d`` without ``SyncBatchNorm``; the funnel's functional BatchNorm
cannot be converted by ``SyncBatchNorm.convert_sync_batchnorm``), and running statistics are
broadcast from rank 0, so funnel runs under DDP are close to, not equal to, a 1-process run.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._util import atomic_write, atomic_write_bytes
from .zoo import ACTIVATIONS, MODELS, build_model, init_weights, provoke_biases

__all__ = ["CompareError", "Config", "run_compare", "train_one", "atomic_write_bytes", "atomic_write_json",
           "DEFAULT_OUT", "DEFAULT_PROVOKE_BIAS"]

#: Where the report goes when ``--out`` is not given.
DEFAULT_OUT = "report"

#: The bias ``--provoke`` gives the layers feeding an activation when no value is named.
DEFAULT_PROVOKE_BIAS = -2.0

#: Samples of the training set the dead-unit probe streams over (all, up to this many).
PROBE_LIMIT = 2048


class CompareError(ValueError):
    """Settings that cannot run (batch size vs processes, ``--resume`` into another run's folder)."""


@dataclass
class Config:
    """Everything that decides the numbers of a comparison (``--resume`` checks it is unchanged)."""

    activations: list[str] = field(default_factory=lambda: list(ACTIVATIONS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    models: list[str] = field(default_factory=lambda: list(MODELS))
    epochs: int = 10
    depth: int = 4
    width: int | None = None
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 64
    init: str = "torch"
    provoke: float | None = None
    data: str = "digits"
    image_size: int = 32
    limit: int | None = None

    def run_keys(self) -> list[tuple[str, str, int]]:
        return [(m, a, s) for m in self.models for a in self.activations for s in self.seeds]


def run_name(model: str, activation: str, seed: int) -> str:
    return f"{model}-{activation}-s{seed}"


# --------------------------------------------------------------------------------------------
# Atomic files


def atomic_write_json(path: str, obj: Any) -> None:
    """``obj`` as indented JSON at ``path``, atomically (:func:`rectifiers._util.atomic_write_bytes`)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def _read_json(path: str) -> Any | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Distributed context


@dataclass
class Dist:
    """The process group, if any: ``world`` processes, this one being ``rank``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def _init_dist(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as td

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not td.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        td.init_process_group(backend=backend)
    return Dist(rank=rank, world=world, local_rank=local)


# --------------------------------------------------------------------------------------------
# Measurements


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


def _peak_rss_mib() -> float:
    """This process's peak resident set size so far (``getrusage``; kB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 / (1024 if sys.platform == "darwin" else 1)


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
    """Stream ``x`` through ``model`` (eval mode) under a ``DeadUnitMonitor``; return its report."""
    from .diagnostics import DeadUnitMonitor

    was = model.training
    model.eval()
    with DeadUnitMonitor(model) as dead:
        for s in _batches(len(x), 512):
            model(x[s].to(device))
    model.train(was)
    return dead.report()


def _dead_summary(rep: Any) -> dict[str, Any]:
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
    """The learnable parameters of PReLU (slopes) and FlexibleReLU (biases), per layer."""
    from . import modules as M

    out: dict[str, list[float]] = {}
    for name, m in model.named_modules():
        if isinstance(m, M.PReLU):
            out[f"{name}.weight"] = m.weight.detach().cpu().tolist()
        elif isinstance(m, M.FlexibleReLU):
            out[f"{name}.bias"] = m.bias.detach().cpu().tolist()
    return out


#: Test hook: ``<run name>:<epoch>`` makes the process pause (sleep, up to an hour) right after
#: that run's checkpoint of that epoch is in place, so a test can kill it there without a race.
PAUSE_ENV = "RECTIFIERS_COMPARE_PAUSE_AFTER_CHECKPOINT"


def _pause_hook(name: str, epoch: int) -> None:
    if os.environ.get(PAUSE_ENV) == f"{name}:{epoch}":
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            time.sleep(0.5)


# --------------------------------------------------------------------------------------------
# One training run


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
    """Train one model with one activation and seed; return its result (also written as JSON).

    Checkpoints ``checkpoints/<name>.pt`` after every epoch and the result ``runs/<name>.json`` at
    the end, atomically (rank 0 only). With ``resume``, a finished result is read back as is, and
    an unfinished run continues from its checkpoint.
    """
    from .diagnostics import GradientFlowMonitor

    dist = dist or Dist()
    device = torch.device(device)
    name = run_name(model_kind, activation, seed)
    res_path = os.path.join(out_dir, "runs", name + ".json")
    ckpt_path = os.path.join(out_dir, "checkpoints", name + ".pt")
    steps_per_epoch = len(ds.train_y) // cfg.batch_size

    if resume:
        done = _read_json(res_path)
        if done is not None and done.get("finished"):
            if on_step is not None:
                for _ in range(steps_per_epoch * cfg.epochs):
                    on_step()
            return done

    torch.manual_seed(seed)
    model = build_model(model_kind, activation, ds.input_shape, ds.num_classes, depth=cfg.depth,
                        width=cfg.width)
    init_weights(model, cfg.init, activation)
    if cfg.provoke is not None:
        provoke_biases(model, cfg.provoke)
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
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
            rep0 = probe_dead(model, probe_x, device)
            acc0, loss0 = evaluate(model, ds.test_x, ds.test_y, device)
            extra["dead_start"] = _to_jsonable(rep0.to_dict())
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
    b = cfg.batch_size
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
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
            rep = probe_dead(model, probe_x, device)
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
            if epoch + 1 == cfg.epochs:
                extra["dead_end"] = _to_jsonable(rep.to_dict())
                extra["grad_flow_last_epoch"] = _to_jsonable(frep.to_dict())
            state = {"epoch": epoch + 1, "model": model.state_dict(), "opt": opt.state_dict(),
                     "history": history, "extra": extra}
            atomic_write(ckpt_path, lambda f: torch.save(state, f))
            _pause_hook(name, epoch + 1)
        dist.barrier()

    result: dict[str, Any] = {
        "name": name, "model": model_kind, "activation": activation, "seed": seed,
        "finished": True, "world_size": dist.world,
        "resumed_from_epoch": start_epoch if ckpt is not None else None,
        "config": asdict(cfg), "history": history, **extra,
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

    Returns ``{"rounds": {model: n}, "batch": b, "ms": {model: {activation: [ms per step]}}}``.
    """
    device = torch.device(device)
    b = min(batch_size or cfg.batch_size, len(ds.train_y))
    x = ds.train_x[:b].to(device)
    y = ds.train_y[:b].to(device)
    out: dict[str, Any] = {"rounds": {}, "batch": b, "ms": {}}

    def step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for model_kind in cfg.models:
        setups = []
        for act in cfg.activations:
            torch.manual_seed(cfg.seeds[0] if cfg.seeds else 0)
            model = build_model(model_kind, act, ds.input_shape, ds.num_classes, depth=cfg.depth,
                                width=cfg.width)
            init_weights(model, cfg.init, act)
            if cfg.provoke is not None:
                provoke_biases(model, cfg.provoke)
            model.to(device).train()
            opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
            step(model, opt)  # warm-up: allocations, lazy initialisation
            setups.append((act, model, opt))
        times: dict[str, list[float]] = {act: [] for act in cfg.activations}
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


# --------------------------------------------------------------------------------------------
# The whole comparison


#: Seeds must lie in [0, MAX_SEED): the epoch shuffle is seeded with ``seed * 1_000_003 + epoch``.
MAX_SEED = 2**31


def _resolve_device(spec: str, dist: Dist) -> torch.device:
    """``--device`` as a ``torch.device``; :class:`CompareError` when it is not usable here."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise CompareError(f"--device: expected cpu, cuda, cuda:N or auto, got {spec!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CompareError(f"--device {spec}: CUDA is not available here")
        if dist.enabled:
            dev = torch.device("cuda", dist.local_rank)
    elif dev.type != "cpu":
        raise CompareError(f"--device: expected cpu, cuda, cuda:N or auto, got {spec!r}")
    return dev


def run_compare(cfg: Config, out_dir: str, *, resume: bool = False, device: str = "cpu",
                progress: bool = True, write_report: bool = True) -> dict[str, Any]:
    """Run every (model, activation, seed) of ``cfg`` and write the report into ``out_dir``.

    Returns ``{"config": ..., "results": [...], "meta": ...}`` (on every rank; only rank 0 writes).
    Raises :class:`rectifiers.data.DataError` for unreadable data and :class:`CompareError` for
    settings that cannot run (``resume`` into an ``out_dir`` made with other settings, ...).
    """
    from .data import load_data

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.batch_size % world:
        raise CompareError(f"--batch-size {cfg.batch_size} must be a multiple of the number of processes "
                           f"({world}), so that every rank gets an equal shard of each global batch")
    dist = _init_dist(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dev = _resolve_device(device, dist)
    ds = load_data(cfg.data, image_size=cfg.image_size, limit=cfg.limit)
    if len(ds.train_y) < cfg.batch_size:
        raise CompareError(f"--batch-size {cfg.batch_size} is larger than the training split "
                         f"({len(ds.train_y)} images of {ds.name})")

    cfg_path = os.path.join(out_dir, "config.json")
    cfg_dict = asdict(cfg)
    if resume:
        old = _read_json(cfg_path)
        if old is not None and old != cfg_dict:
            diff = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in cfg_dict.items() if old.get(k) != v]
            raise CompareError(f"--resume: {out_dir} was made with other settings ({'; '.join(diff[:3])}); "
                             f"use the same options or another --out")
    if dist.main:
        os.makedirs(out_dir, exist_ok=True)
        atomic_write_json(cfg_path, cfg_dict)
    dist.barrier()

    steps = len(ds.train_y) // cfg.batch_size * cfg.epochs * len(cfg.run_keys())
    bar = None
    if progress and dist.main:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, file=sys.stderr, unit="step", dynamic_ncols=True, leave=True)
    rss0 = _peak_rss_mib()
    t0 = time.perf_counter()
    results = []
    try:
        for model_kind, act, seed in cfg.run_keys():
            if bar is not None:
                bar.set_description(run_name(model_kind, act, seed))
            results.append(train_one(
                cfg, ds, model_kind, act, seed, out_dir=out_dir, resume=resume, device=dev, dist=dist,
                on_step=(bar.update if bar is not None else None),
            ))
    finally:
        if bar is not None:
            bar.close()
    step_timing = None
    if dist.main:
        step_timing = interleaved_step_times(cfg, ds, dev, batch_size=cfg.batch_size // dist.world)
    wall = time.perf_counter() - t0
    meta = {
        "data": ds.describe(),
        "num_classes": ds.num_classes,
        "device": str(dev),
        "world_size": dist.world,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "wall_s": wall,
        "step_timing": step_timing,
        "peak_rss_mib": _peak_rss_mib(),
        "peak_rss_growth_mib": _peak_rss_mib() - rss0,
        "resumed": resume,
        "command": "rectifiers " + " ".join(sys.argv[1:]) if sys.argv and "rectifiers" in sys.argv[0] else None,
    }
    if dist.main and write_report:
        from .report import write_report

        write_report(out_dir, cfg_dict, results, meta)
    dist.barrier()
    return {"config": cfg_dict, "results": results, "meta": meta}
