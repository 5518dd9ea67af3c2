"""What every kind of comparison run does the same way: the device, ``config.json`` (checked on
``--resume``), the progress bar, and the run's metadata."""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

from .._util import optional_import
from .config import CompareError
from .distributed import Dist
from .timing import peak_rss_mib
from .training import _read_json, atomic_write_json


def progress_bar(steps: int, enabled: bool = True) -> Any:
    """A tqdm progress bar of ``steps`` training steps on stderr (the ``compare`` extra), or
    ``None`` when not ``enabled`` (no progress asked for, or not the main process)."""
    if not enabled:
        return None
    tqdm = optional_import("tqdm.auto", "compare", "the progress bar of rectifiers compare").tqdm
    return tqdm(total=steps, file=sys.stderr, unit="step", dynamic_ncols=True, leave=True)


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


def _write_config(out_dir: str, cfg_dict: dict[str, Any], resume: bool, dist: Dist) -> None:
    """Write ``config.json``; with ``resume``, first check that ``out_dir`` was made with it."""
    cfg_path = os.path.join(out_dir, "config.json")
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


def run_meta(ds: Any, dev: torch.device, dist: Dist, wall: float, step_timing: Any, rss0: float,
             resume: bool) -> dict[str, Any]:
    """The metadata every run records: data, device, world size, versions, time and memory."""
    return {
        "data": ds.describe(),
        "num_classes": ds.num_classes,
        "device": str(dev),
        "world_size": dist.world,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "wall_s": wall,
        "step_timing": step_timing,
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_growth_mib": peak_rss_mib() - rss0,
        "resumed": resume,
    }
