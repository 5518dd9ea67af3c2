"""The whole comparison: every (model, activation, seed), the step timing, and the report."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from typing import Any

import torch

from .config import CompareError, Config, Plan, run_name
from .distributed import init_dist
from .timing import interleaved_step_times, peak_rss_mib
from .session import _resolve_device, _write_config, progress_bar, run_meta
from .training import train_one

__all__ = ["run_compare"]


def run_compare(cfg: Config | Plan, out_dir: str, *, resume: bool = False, device: str = "cpu",
                progress: bool = True, write_report: bool = True) -> dict[str, Any]:
    """Run every (model, activation, seed) of the grid ``cfg`` and write the report into ``out_dir``;
    a :class:`Plan` runs the claim experiments instead (:func:`run_experiments`).

    Returns ``{"config": ..., "results": [...], "meta": ...}`` (on every rank; only rank 0 writes).
    Raises :class:`rectifiers.data.DataError` for unreadable data and :class:`CompareError` for
    settings that cannot run (``resume`` into an ``out_dir`` made with other settings, ...).
    """
    if isinstance(cfg, Plan):
        from .experiments_run import run_experiments

        return run_experiments(cfg, out_dir, resume=resume, device=device, progress=progress,
                               write_report=write_report)
    from ..data import load_data

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.batch_size % world:
        raise CompareError(f"--batch-size {cfg.batch_size} must be a multiple of the number of processes "
                           f"({world}), so that every rank gets an equal shard of each global batch")
    dist = init_dist(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        dev = _resolve_device(device, dist)
        ds = load_data(cfg.data, image_size=cfg.image_size, limit=cfg.limit)
        if len(ds.train_y) < cfg.batch_size:
            raise CompareError(f"--batch-size {cfg.batch_size} is larger than the training split "
                             f"({len(ds.train_y)} images of {ds.name})")

        cfg_dict = asdict(cfg)
        _write_config(out_dir, cfg_dict, resume, dist)

        steps = len(ds.train_y) // cfg.batch_size * cfg.epochs * len(cfg.run_keys())
        bar = progress_bar(steps, progress and dist.main)
        rss0 = peak_rss_mib()
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
        meta = run_meta(ds, dev, dist, wall, step_timing, rss0, resume)
        meta["command"] = ("rectifiers " + " ".join(sys.argv[1:]) if sys.argv and "rectifiers" in sys.argv[0]
                           else None)
        if dist.main and write_report:
            from ..report import write_report

            write_report(out_dir, cfg_dict, results, meta)
        dist.barrier()
        return {"config": cfg_dict, "results": results, "meta": meta}
    finally:
        dist.close()  # after the last barrier: no rank still needs the group
