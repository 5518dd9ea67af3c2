"""The report of the claim experiments: a summary table first, then one section per experiment."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .. import _spec as S
from .claim_rules import MIN_ACC, MIN_DEAD, MIN_LOG10, MIN_LOSS, MIN_TIME, findings, kink_facts
from .claims import FACT, Finding, Premise, group_runs
from .claims_figures import PLOTS
from .document import Doc, _median
from .labels import _name

__all__ = ["write_claims_report", "summary_rows"]


def _claim_text(f: Finding) -> str:
    d = S.DESCRIPTIONS[f.activation]
    c = d.claim(f.claim)
    text = c.claim if c else f.claim
    return f"`{f.claim}` {text}" + (f" ({f.aspect})" if f.aspect else "")


def _verdict_cell(f: Finding, quick: dict[str, int] | None) -> str:
    v = f"**{f.verdict}**" if f.verdict != FACT else "fact (computed)"
    if quick is not None:
        n = quick.get(f.experiment)
        v += f" (quick run: {n} seeds)" if n else " (quick run)"
    return v


def summary_rows(fs: Sequence[Finding], titles: dict[str, str],
                 quick: dict[str, int] | None = None) -> list[list[str]]:
    """The summary table's rows: claim, activation, verdict, effect with 95% interval, experiment."""
    return [[_claim_text(f), _name(f.activation), _verdict_cell(f, quick), f.effect_cell(), titles[f.experiment]]
            for f in fs]


def _settings(e: Any, seeds: list[int]) -> list[str]:
    out = [f"Question: {e.question}", f"Settings: {e.settings()}.", f"What varies: {e.varies}."]
    if e.model is not None and e.arms:
        out.append(f"Seeds: {', '.join(map(str, seeds))} ({len(seeds)}; the same for every arm, fixed "
                   "before the run).")
    out.append(f"Premise: {e.premise}.")
    return out


def write_claims_report(out_dir: str, plan: dict[str, Any], results: Sequence[dict[str, Any]],
                        meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``report.md``, ``report.html`` and one PNG per experiment into ``out_dir``.

    Returns ``{"findings": [Finding], "premises": {experiment: Premise}, "paths": {...}}``. A plot
    that cannot be drawn is left out, and the report says why.
    """
    from ..compare.experiments import experiments_for
    from ..compare.experiments import plan_seeds
    from ..compare.config import Plan

    p = Plan.from_dict(plan)
    exps = experiments_for(p.claims)
    groups = group_runs(results)
    ctx = {"chance": 1 / int(meta.get("num_classes", 10)), "input_shape": meta.get("input_shape"),
           "num_classes": int(meta.get("num_classes", 10)), "step_timing": meta.get("step_timing"),
           "kink": kink_facts()}
    fs, premises = findings(groups, p.claims, ctx)
    titles = {e.name: f"{i}. {e.title}" for i, e in enumerate(exps, 1)}
    quick = {e.name: len(plan_seeds(p, e)) for e in exps if e.arms} if p.preset == "quick" else None

    os.makedirs(out_dir, exist_ok=True)
    paths: dict[str, str] = {}
    failed: dict[str, str] = {}
    for e in exps:
        if e.name in PLOTS and groups.get(e.name):
            fname, _, draw = PLOTS[e.name]
            path = os.path.join(out_dir, fname)
            try:
                draw(groups[e.name], path)
                paths[e.name] = path
            except Exception as ex:  # a missing plot must not cost the report
                failed[e.name] = f"{type(ex).__name__}: {str(ex).splitlines()[0] if str(ex) else ''}".rstrip(": ")

    doc = Doc()
    doc.h(1, "The article's claims, tested")
    doc.p("One experiment per claim of the source article (and of the funnel paper), each built so that "
          "the claim's premise occurs, with its settings fixed in code (`rectifiers.compare.experiments`) "
          "before any run and its seeds 0, 1, 2, ... never chosen by outcome.")
    if quick is not None:
        doc.p("**Quick run** (`--quick`): fewer seeds than the default run, so more claims are left "
              "undecided; every verdict below says so. Run `rectifiers compare` for the default.")
    load = meta.get("load")
    doc.p(f"Data: {meta['data']}. Device {meta['device']}, {meta['world_size']} process(es), "
          f"{meta['threads']} thread(s), torch {meta['torch']}; wall time {meta['wall_s']:.0f} s"
          + (f" (load average {load[0]:.1f} at the end)" if load else "")
          + (" (of the last, resumed invocation)." if meta.get("resumed") else "."))
    doc.p("Reproduce with:")
    doc.code(p.command_line())

    doc.h(2, "Summary")
    doc.table(["claim", "activation", "verdict", "effect (95% interval)", "experiment"],
              summary_rows(fs, titles, quick))
    counts = {v: sum(f.verdict == v for f in fs) for v in ("supports", "contradicts", "cannot decide", FACT)}
    doc.p(f"{counts['supports']} supports, {counts['contradicts']} contradicts, {counts['cannot decide']} "
          f"cannot decide, {counts[FACT]} computed facts.")
    doc.p("How to read it. The effect is oriented so that a positive value is what the claim predicts: "
          "pp = percentage points (of dead units: ReLU's minus the activation's; of accuracy: the claimed "
          "better minus the other), decades = log10 of a gradient-norm ratio, nats = mean training "
          "cross-entropy saved, x = a time ratio. Rule: the 95% interval is the effect plus or minus the "
          "two-sided Student-t value (n_a + n_b - 2 degrees of freedom, n - 1 for a single group) times "
          "its standard error over seeds, sqrt(s_a^2/n_a + s_b^2/n_b). **supports**: the interval lies "
          "above 0 and the effect reaches the minimum that matters; **contradicts**: the whole interval "
          f"lies below that minimum (the effect is absent, too small or reversed); otherwise **cannot "
          f"decide**. Minimum effects, fixed beforehand: {100 * MIN_DEAD:g} pp of dead units, "
          f"{100 * MIN_ACC:g} pp of accuracy, {MIN_LOG10:g} decades of gradient norm, {MIN_LOSS:g} nats of "
          f"mean training loss, {10 ** MIN_TIME - 1:.0%} of step time. A claim whose experiment's premise "
          "failed is 'cannot decide' with the failed check. Facts are computed, not sampled.")

    by_exp: dict[str, list[Finding]] = {}
    for f in fs:
        by_exp.setdefault(f.experiment, []).append(f)
    for e in exps:
        doc.h(2, titles[e.name])
        doc.items(_settings(e, plan_seeds(p, e)))
        pr: Premise | None = premises.get(e.name)
        if pr is not None and pr.checks:
            doc.p(f"Premise check: **{'met' if pr.ok else 'NOT met'}**.")
            doc.items([f"{'ok' if ok else 'FAILED'}: {what}: {got}" for what, ok, got in pr.checks])
        if e.name == "kink":
            doc.table(["activation", "f'(0-)", "f'(0+)", "autograd at 0"],
                      [[_name(k["activation"]), f"{k['left']:g}", f"{k['right']:g}", f"{k['autograd']:g}"]
                       for k in ctx["kink"]])
        if e.name == "cost":
            _cost_table(doc, meta.get("step_timing"))
        rows = [[_claim_text(f), f.measured, _verdict_cell(f, quick), f.reason] for f in by_exp.get(e.name, [])]
        if rows:
            doc.table(["claim", "measured", "verdict", "why"], rows)
        if e.name in paths:
            doc.img(os.path.basename(paths[e.name]), PLOTS[e.name][1])
        elif e.name in failed:
            doc.p(f"Plot {PLOTS[e.name][0]} ({PLOTS[e.name][1]}) could not be drawn: {failed[e.name]}.")

    doc.h(2, "Runs")
    doc.p(f"{len(results)} training runs; each run's numbers per epoch and per step are in "
          "`runs/<experiment>-<arm>-s<seed>.json` (a run takes a second or two, so none is checkpointed: "
          "with `--resume` finished runs are kept and an unfinished one starts again). "
          f"Process peak resident memory {meta['peak_rss_mib']:.0f} MiB.")
    from .._util import atomic_write_bytes

    atomic_write_bytes(os.path.join(out_dir, "report.md"), doc.markdown().encode())
    atomic_write_bytes(os.path.join(out_dir, "report.html"),
                       doc.html("The article's claims, tested").encode())
    return {"findings": fs, "premises": premises, "paths": paths}


def _cost_table(doc: Doc, timing: dict[str, Any] | None) -> None:
    if not timing:
        doc.p("No step timing in this run.")
        return
    doc.p("Step time and memory, side by side: fresh models of every activation took one training step "
          f"each in turn (batch {timing['batch']}; forward, backward, SGD; no monitors), round after round "
          "(rounds: " + ", ".join(f"{m} {n}" for m, n in timing["rounds"].items()) + "), so machine noise "
          "falls on every activation alike: median ms per step and its ratio to ReLU's. Saved for backward: "
          "the bytes autograd keeps for one step, counted once per storage (`saved_tensors_hooks`, "
          "parameters excluded).")
    rows = []
    for m, acts in timing["ms"].items():
        base = _median(acts["relu"]) if acts.get("relu") else None
        for a, ms in acts.items():
            med = _median(ms)
            sb = timing.get("saved_bytes", {}).get(m, {}).get(a)
            rows.append([m, _name(a), f"{med:.2f}" + (f" ({med / base:.2f}x)" if base else ""),
                         f"{sb / 2**10:.1f}" if sb is not None else "n/a",
                         str(timing.get("params", {}).get(m, {}).get(a, "n/a"))])
    doc.table(["model", "activation", "step ms (x ReLU)", "saved for backward KiB", "parameters"], rows)
