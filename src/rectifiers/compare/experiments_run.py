"""Running the claim experiments: every (experiment, arm, seed), the side-by-side cost, the report."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from .config import CompareError, Plan
from .distributed import init_dist
from .experiments import EXPERIMENTS, Experiment, experiments_for, plan_seeds, run_specs
from .session import _resolve_device, _write_config, progress_bar, run_meta
from .timing import peak_rss_mib, step_times_side_by_side
from .training import train_spec

__all__ = ["run_experiments", "plan_seeds", "cost_builds"]


def cost_builds(ds: Any) -> dict[str, dict[str, Any]]:
    """The models the step-time table times side by side: the ``cost`` experiment's CNN (the funnel
    experiment's, BatchNorm before every activation) and the ``learnable`` experiment's MLP, each
    with every activation (seed 0, default parameters)."""
    from ..zoo import ACTIVATIONS, build_model, init_weights

    by_name = {e.name: e for e in EXPERIMENTS}
    out: dict[str, dict[str, Any]] = {}
    for key in ("cost", "learnable"):
        e = by_name[key]
        label = f"{e.model} (the {'funnel' if key == 'cost' else key} experiment's)"
        out[label] = {}
        for act in ACTIVATIONS:
            def build(e: Experiment = e, act: str = act) -> nn.Module:
                torch.manual_seed(0)
                m = build_model(e.model or "mlp", act, ds.input_shape, ds.num_classes, depth=e.depth,
                                width=e.width, norm=e.norm)
                init_weights(m, e.init, act)
                return m
            out[label][act] = build
    return out


def run_experiments(plan: Plan, out_dir: str, *, resume: bool = False, device: str = "cpu",
                    progress: bool = True, write_report: bool = True) -> dict[str, Any]:
    """Run the experiments that test ``plan.claims`` (all by default) and write the report.

    Returns ``{"config": ..., "results": [...], "meta": ..., "findings": [...]}`` (findings on
    rank 0 only, when the report is written).
    """
    from ..data import load_data

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    exps = experiments_for(plan.claims)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    for e in exps:
        if e.model is not None and e.batch_size % world:
            raise CompareError(f"the {e.name} experiment's batch size {e.batch_size} must be a multiple of "
                               f"the number of processes ({world})")
    dist = init_dist(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        dev = _resolve_device(device, dist)
        ds = load_data(plan.data, image_size=plan.image_size, limit=plan.limit)
        for e in exps:
            if e.model is not None and len(ds.train_y) < e.batch_size:
                raise CompareError(f"the training split ({len(ds.train_y)} images of {ds.name}) is smaller than "
                                   f"the {e.name} experiment's batch size {e.batch_size}")
        cfg_dict = asdict(plan)
        _write_config(out_dir, cfg_dict, resume, dist)
        threads = torch.get_num_threads()
        try:
            # One thread: the experiments' models are far too small to gain from more, and on a busy
            # machine more threads only wait for each other (steps then take 10-50 times longer).
            torch.set_num_threads(1)
            return _run(plan, exps, ds, dev, dist, out_dir, cfg_dict, resume, progress, write_report)
        finally:
            torch.set_num_threads(threads)
    finally:
        dist.close()  # after the last barrier: no rank still needs the group


def _run(plan: Plan, exps: list[Experiment], ds: Any, dev: torch.device, dist: Any, out_dir: str,
         cfg_dict: dict[str, Any], resume: bool, progress: bool, write_report: bool) -> dict[str, Any]:

    todo = [(e, arm, spec) for e in exps for arm, spec in run_specs(e, plan_seeds(plan, e))]
    steps = sum(len(ds.train_y) // s.batch_size * s.epochs for _, _, s in todo)
    bar = progress_bar(steps, progress and dist.main)
    rss0 = peak_rss_mib()
    t0 = time.perf_counter()
    results = []
    try:
        for e, arm, spec in todo:
            if bar is not None:
                bar.set_description(spec.name)
            results.append(train_spec(
                spec, ds, out_dir=out_dir, resume=resume, device=dev, dist=dist,
                on_step=(bar.update if bar is not None else None),
                record={"experiment": e.name, "arm": arm.name, "spec": asdict(spec)},
                checkpoints=False,
            ))
    finally:
        if bar is not None:
            bar.close()
    step_timing = None
    if dist.main:
        # --quick: a quarter of the timing budget (still at least 5 rounds per model)
        step_timing = step_times_side_by_side(cost_builds(ds), ds, dev, batch_size=64 // dist.world,
                                              budget_s=0.25 if plan.preset == "quick" else 1.0)
    wall = time.perf_counter() - t0
    meta = run_meta(ds, dev, dist, wall, step_timing, rss0, resume)
    meta["input_shape"] = list(ds.input_shape)
    meta["load"] = _load()
    findings = None
    if dist.main and write_report:
        from ..report.claims_doc import write_claims_report

        findings = write_claims_report(out_dir, cfg_dict, results, meta)
    dist.barrier()
    return {"config": cfg_dict, "results": results, "meta": meta, "findings": findings}


def _load() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None
