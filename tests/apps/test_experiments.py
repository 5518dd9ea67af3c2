"""The claim experiments: premise checks and verdict rules on synthetic records, and a --quick run."""

from __future__ import annotations

import json
import math
import os
import re

import pytest

from rectifiers import _spec as S
from rectifiers.cli import main
from rectifiers.compare.experiments import EXPERIMENTS, experiment_of, experiments_for, run_specs
from rectifiers.report.claim_rules import RULES, findings, kink_facts
from rectifiers.report.claims import PREMISES, weigh
from rectifiers.report.statistics import Stat

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")


# ---------------------------------------------------------------------------- the design


def test_every_claim_has_one_experiment_and_one_rule() -> None:
    ids = set(S.claim_ids())
    assert ids == set(RULES)
    assert ids == {c for e in EXPERIMENTS for c in e.claims}
    assert sum(len(e.claims) for e in EXPERIMENTS) == len(ids)  # each claim in exactly one experiment
    assert set(PREMISES) == {e.name for e in EXPERIMENTS}
    assert "frelu-learnable" in ids and experiment_of("frelu-learnable").name == "learnable"


def test_seeds_are_fixed_counts_five_or_more_by_default() -> None:
    for e in EXPERIMENTS:
        if not e.arms:
            continue
        quick, default, full = e.seeds
        assert 2 <= quick < default <= full and default >= 5, e.name
        specs = run_specs(e, list(range(default)))
        assert [s.seed for _, s in specs[:default]] == list(range(default))
        assert len({s.name for _, s in specs}) == len(specs)
    assert experiments_for(["funnel-acc"])[0].name == "funnel"
    assert [e.name for e in experiments_for([])] == [e.name for e in EXPERIMENTS]


# ---------------------------------------------------------------------------- the rule


def test_weigh_supports_contradicts_and_cannot_decide() -> None:
    a, b = Stat([0.50, 0.52, 0.48]), Stat([0.0, 0.01, 0.0])
    v, d, lo, hi, _ = weigh(a, b, 0.01)
    assert v == "supports" and lo > 0 and d == pytest.approx(0.4967, abs=1e-3)
    assert weigh(b, a, 0.01)[0] == "contradicts"  # reversed
    # no effect, tight interval: the predicted effect is absent
    v, d, lo, hi, why = weigh(Stat([0.100, 0.101, 0.099]), Stat([0.100, 0.1005, 0.0995]), 0.01)
    assert v == "contradicts" and hi < 0.01 and "smaller than the minimum" in why
    # within noise
    assert weigh(Stat([0.1, 0.5, 0.3]), Stat([0.2, 0.0, 0.1]), 0.01)[0] == "cannot decide"
    # one seed: no interval
    assert weigh(Stat([0.9]), Stat([0.1]), 0.01)[0] == "cannot decide"
    # one group against 0, and the direction
    assert weigh(Stat([0.3, 0.31]), None, 0.01)[0] == "supports"
    assert weigh(Stat([0.3, 0.31]), None, 0.01, direction=-1)[0] == "contradicts"
    # the interval uses Student's t for n_a + n_b - 2 degrees of freedom
    v, d, lo, hi, _ = weigh(Stat([1.0, 1.2]), Stat([0.0, 0.2]), 0.0)
    assert hi - d == pytest.approx(4.303 * 0.2 / math.sqrt(2))


# ---------------------------------------------------------------------------- synthetic records


def _run(exp: str, arm: str, seed: int, act: str, *, dead: float = 0.0, acc: float = 0.9,
         loss: float = 1.0, norms: list[list[float]] | None = None, params: list[dict] | None = None,
         exploding: bool = False, value: float | None = None, inactive: float | None = None) -> dict:
    norms = norms if norms is not None else [[1.0, 1.0]] * 4
    params = params if params is not None else [{}, {}]
    return {
        "experiment": exp, "arm": arm, "seed": seed, "activation": act, "model": "mlp",
        "spec": {"value": value},
        "history": {
            "epoch": [0, 1], "test_acc": [0.1, acc], "test_loss": [2.3, loss], "train_loss": [None, loss],
            "dead": [dead, dead], "inactive": [inactive if inactive is not None else dead] * 2,
            "near_dead": [0, 0], "grad_norms": norms, "grad_layers": ["a", "b"], "act_params": params,
            "exploding": [exploding], "vanishing": [False], "first_last_ratio": [1.0], "step_time_s": [0.01],
        },
    }


def _weigh(claim: str, runs: list[dict], **ctx) -> list:  # type: ignore[no-untyped-def]
    from rectifiers.report.claims import group_runs

    fs, premises = findings(group_runs(runs), [claim], {"chance": 0.1, **ctx})
    return fs


def _vanishing_runs(relu_ratio: float) -> list[dict]:
    runs = []
    for s in range(3):
        j = 1 + 0.05 * s
        runs += [
            _run("vanishing", "relu", s, "relu", norms=[[relu_ratio * j, 1.0]] * 4),
            _run("vanishing", "prelu", s, "prelu", norms=[[relu_ratio * 10 * j, 1.0]] * 4),
            _run("vanishing", "flexible_relu", s, "flexible_relu", norms=[[relu_ratio / 10 * j, 1.0]] * 4),
            _run("vanishing", "leaky_relu", s, "leaky_relu", norms=[[relu_ratio * 1.01 * j, 1.0]] * 4),
            _run("vanishing", "sigmoid", s, "sigmoid", norms=[[relu_ratio * 1e-6 * j, 1.0]] * 4),
        ]
    return runs


def test_vanishing_premise_met_and_rules() -> None:
    runs = _vanishing_runs(1e-6)
    v = {c: _weigh(c, runs)[0].verdict for c in ("relu-vanishing", "leaky-vanishing", "prelu-vanishing",
                                                 "frelu-vanishing")}
    assert v == {"relu-vanishing": "supports", "leaky-vanishing": "contradicts",  # 0.004 decades: too small
                 "prelu-vanishing": "supports", "frelu-vanishing": "contradicts"}


def test_vanishing_premise_violated() -> None:
    runs = _vanishing_runs(0.5)  # ReLU's ratio 0.5: nothing vanishes
    for c in ("leaky-vanishing", "prelu-vanishing", "frelu-vanishing", "relu-vanishing"):
        f = _weigh(c, runs)[0]
        assert f.verdict == "cannot decide" and f.reason.startswith("premise not met"), c


def _held(b: float) -> list[dict]:
    return [{"features.2.bias": [b], "features.4.bias": [b]}] * 2


def _dying_runs(relu_dead: float, *, drift: float = 0.0, b0_equal: bool = True) -> list[dict]:
    runs = []
    for s in range(3):
        j = 0.001 * s
        runs += [
            _run("dying", "relu", s, "relu", dead=relu_dead + j),
            _run("dying", "leaky_relu", s, "leaky_relu", dead=0.0, inactive=relu_dead),
            _run("dying", "prelu", s, "prelu", dead=0.0),
            _run("dying", "frelu-bm1", s, "flexible_relu", dead=relu_dead + j, params=_held(-1.0 + drift),
                 value=-1.0),
            _run("dying", "frelu-b1", s, "flexible_relu", dead=max(relu_dead - 0.3, 0) + j, params=_held(1.0),
                 value=1.0),
            _run("dying", "frelu-b0", s, "flexible_relu", dead=relu_dead + j + (0 if b0_equal else 0.001),
                 params=_held(0.0), value=0.0),
        ]
    return runs


def test_dying_premise_met_and_rules() -> None:
    runs = _dying_runs(0.6)
    assert _weigh("relu-dying", runs)[0].verdict == "supports"
    assert _weigh("leaky-dying", runs)[0].verdict == "supports"
    assert _weigh("prelu-dying", runs)[0].verdict == "supports"
    b = _weigh("frelu-dying-b", runs)
    assert [f.aspect for f in b] == ["b = -1", "b = 1"]
    assert [f.verdict for f in b] == ["contradicts", "supports"]  # b = -1: as many dead as ReLU
    b0 = _weigh("frelu-dying-b0", runs)[0]
    assert b0.verdict == "supports" and "measured equal to ReLU" in b0.reason and "is 0" in b0.measured


def test_dying_premise_violated() -> None:
    runs = _dying_runs(0.0)  # no ReLU unit died
    for c in ("relu-dying", "leaky-dying", "prelu-dying", "frelu-dying-b", "frelu-dying-b0"):
        assert all(f.verdict == "cannot decide" and "premise not met" in f.reason for f in _weigh(c, runs)), c
    drifted = _dying_runs(0.6, drift=0.2)  # the held b moved: only frelu-dying-b is held back
    assert all("premise not met" in f.reason for f in _weigh("frelu-dying-b", drifted))
    assert _weigh("leaky-dying", drifted)[0].verdict == "supports"
    unequal = _dying_runs(0.6, b0_equal=False)  # b = 0 yet not ReLU: no verdict
    assert _weigh("frelu-dying-b0", unequal)[0].verdict == "cannot decide"


def _exploding_runs(*, drift: float = 0.0, base_flag: bool = False) -> list[dict]:
    runs = []
    for s in range(3):
        for b in (0, 0.5, 1, 2, 4):
            last = 1.0 * (1 + 10 * b) * (1 + 0.02 * s)
            runs.append(_run("exploding", f"frelu-b{b:g}", s, "flexible_relu", value=float(b),
                             norms=[[1.0 + 0.01 * s, last]], params=_held(b + (drift if b == 4 else 0)),
                             exploding=base_flag and b == 0))
    return runs


def test_exploding_premise_met_and_rules() -> None:
    size, toward = _weigh("frelu-exploding", _exploding_runs())
    assert size.verdict == "supports" and size.effect > 1.4  # about log10(41 / sqrt(2))
    assert toward.verdict == "contradicts" and toward.effect < 0  # the first layer did not grow


def test_exploding_premise_violated() -> None:
    for runs in (_exploding_runs(drift=0.5), _exploding_runs(base_flag=True)):
        assert all(f.verdict == "cannot decide" and "premise not met" in f.reason
                   for f in _weigh("frelu-exploding", runs))


def _learnable_runs(move: float, gain: float) -> list[dict]:
    runs = []
    for s in range(4):
        j = 0.002 * s
        runs += [
            _run("learnable", "leaky-a0.25", s, "leaky_relu", acc=0.90 + j, loss=0.50 + j),
            _run("learnable", "prelu", s, "prelu", acc=0.90 + gain + j, loss=0.50 - gain + j,
                 params=[{"f.w": [0.25]}, {"f.w": [0.25 + move]}]),
            _run("learnable", "relu", s, "relu", acc=0.90 + j, loss=0.5 + j),
            _run("learnable", "frelu-b0", s, "flexible_relu", acc=0.90 + j, loss=0.5 + j,
                 params=[{"f.b": [0.0]}, {"f.b": [move]}]),
        ]
    return runs


def test_learnable_premise_met_and_rules() -> None:
    runs = _learnable_runs(0.3, 0.05)
    acc, conv = _weigh("prelu-learnable", runs)
    assert (acc.aspect, acc.verdict, conv.aspect, conv.verdict) == ("accuracy", "supports", "convergence", "supports")
    facc, fconv = _weigh("frelu-learnable", runs)
    assert facc.verdict == fconv.verdict == "contradicts"  # exactly equal: no gain at all


def test_learnable_premise_violated() -> None:
    runs = _learnable_runs(0.0, 0.05)  # the parameter never moved
    assert all(f.verdict == "cannot decide" and "moved" in f.reason for f in _weigh("prelu-learnable", runs))
    untrained = [dict(r, history={**r["history"], "test_acc": [0.1, 0.1]}) if r["arm"] == "relu" else r
                 for r in _learnable_runs(0.3, 0.05)]
    assert all("every arm trained" in f.reason for f in _weigh("frelu-learnable", untrained))


def _funnel_runs(relu_acc: float) -> list[dict]:
    return [_run("funnel", arm, s, act, acc=a + 0.001 * s) for s in range(3)
            for arm, act, a in (("relu", "relu", relu_acc), ("prelu", "prelu", 0.95), ("funnel_relu", "funnel_relu", 0.97))]


def test_funnel_premise_met_and_rules() -> None:
    vs = _weigh("funnel-acc", _funnel_runs(0.95), input_shape=[1, 8, 8], num_classes=10)
    assert [(f.aspect, f.verdict) for f in vs] == [("vs ReLU", "supports"), ("vs PReLU", "supports")]


def test_funnel_premise_violated() -> None:
    vs = _weigh("funnel-acc", _funnel_runs(0.1), input_shape=[1, 8, 8], num_classes=10)  # ReLU did not train
    assert all(f.verdict == "cannot decide" and "every arm trained" in f.reason for f in vs)


def test_cost_rule_and_premise() -> None:
    timing = {"rounds": {"cnn (x)": 6}, "batch": 64,
              "ms": {"cnn (x)": {"relu": [1.0, 1.1, 0.9, 1.0, 1.05, 0.95],
                                 "funnel_relu": [2.0, 2.3, 1.9, 2.1, 2.0, 2.05]}},
              "params": {"cnn (x)": {"relu": 100, "funnel_relu": 150}},
              "saved_bytes": {"cnn (x)": {"relu": 1000, "funnel_relu": 1500}}}
    f = _weigh("funnel-cost", [], step_timing=timing)[0]
    assert f.verdict == "supports" and f.effect_cell().startswith("2.0") and "+50" in f.measured
    timing["rounds"]["cnn (x)"] = 3
    assert _weigh("funnel-cost", [], step_timing=timing)[0].verdict == "cannot decide"


def test_kink_facts_are_computed_by_the_library() -> None:
    got = {k["activation"]: (k["left"], k["right"], k["autograd"]) for k in kink_facts()}
    assert got == {"relu": (0.0, 1.0, 0.0), "leaky_relu": (0.01, 1.0, 0.01), "prelu": (0.25, 1.0, 0.25),
                   "flexible_relu": (0.0, 1.0, 0.0), "funnel_relu": (0.0, 1.0, 0.5)}
    fs = _weigh("nondiff", [])
    assert len(fs) == 5 and all(f.verdict == "fact" for f in fs)


# ---------------------------------------------------------------------------- the command


@pytest.mark.parametrize("argv, message", [
    (["--claims", "relu-dyin"], "did you mean 'relu-dying'"),
    (["--claims", "funnel-acc", "--models", "mlp"], "does not combine with the grid options (--models)"),
    (["--quick", "--epochs", "2"], "--quick runs the claim experiments"),
    (["--claims", ","], "expected claim ids, got none"),
])
def test_experiment_usage_errors(tmp_path, capsys, argv: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    rc = main(["compare", "--out", str(tmp_path / "o"), "--no-progress", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err


def test_quick_and_full_exclude_each_other(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["compare", "--quick", "--full"]) == 2
    assert "not allowed with argument --quick" in capsys.readouterr().err


def test_quick_run_report_structure(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "q"
    assert main(["compare", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("premise of ") == 6 and "NOT met" not in printed  # every premise met
    assert "(quick run: fewer seeds)" in printed
    md = (out / "report.md").read_text()
    heads = re.findall(r"^## (.+)$", md, flags=re.M)
    assert heads[0] == "Summary" and heads[-1] == "Runs"
    assert heads[1:-1] == [f"{i}. {e.title}" for i, e in enumerate(EXPERIMENTS, 1)]
    summary = md.split("## Summary")[1].split("\n## ")[0]
    rows = [line for line in summary.splitlines() if line.startswith("| `")]
    assert {re.match(r"\| `([a-z0-9-]+)`", r).group(1) for r in rows} == set(S.claim_ids())
    assert all("quick run" in r.split(" | ")[2] for r in rows)  # every verdict says so
    assert summary.splitlines()[2].startswith("| claim | activation | verdict | effect (95% interval) | experiment |")
    for e in EXPERIMENTS:
        section = md.split(f"## {EXPERIMENTS.index(e) + 1}. {e.title}")[1].split("\n## ")[0]
        assert "Premise" in section and "Settings:" in section
    for png in ("vanishing.png", "dying.png", "exploding.png", "learnable.png", "funnel.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and f"]({png})" in md
    assert "could not be drawn" not in md
    assert re.search(r"largest difference in any recorded number \([^)]*\) is 0\b", md)
    assert "step ms (x ReLU)" in md and "saved for backward KiB" in md
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and 'src="dying.png"' in html
    n = sum(e.seeds[0] * len(e.arms) for e in EXPERIMENTS)
    assert len(os.listdir(out / "runs")) == n
    assert json.loads((out / "config.json").read_text())["preset"] == "quick"


def test_claims_subset_seeds_and_resume(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "s"
    args = ["compare", "--claims", "frelu-exploding", "nondiff", "--seeds", "3", "4", "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    runs = sorted(os.listdir(out / "runs"))
    assert runs == sorted(f"exploding-frelu-b{b}-s{s}.json" for b in ("0", "0.5", "1", "2", "4") for s in (3, 4))
    md = (out / "report.md").read_text()
    assert re.findall(r"^## (.+)$", md, flags=re.M) == ["Summary", "1. FReLU's bias b against the gradient norm",
                                                          "2. The kink at 0 (a fact, computed)", "Runs"]
    assert "rectifiers compare --claims frelu-exploding nondiff --seeds 3 4" in md
    mtimes = {f: os.stat(out / "runs" / f).st_mtime_ns for f in runs}
    assert main([*args, "--resume"]) == 0  # finished runs are kept, not recomputed
    assert {f: os.stat(out / "runs" / f).st_mtime_ns for f in runs} == mtimes
    assert main(["compare", "--claims", "frelu-exploding", "nondiff", "--seeds", "3", "--out", str(out),
                 "--no-progress", "--resume"]) == 2
    assert "was made with other settings" in capsys.readouterr().err


def test_experiments_adapt_to_other_data(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """CIFAR-10 python batches (3 x 32 x 32, random here): the models take the data's shape."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1", 96), ("test_batch", 32)):
        d = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
             b"labels": [int(v) for v in rng.integers(0, 10, size=n)], b"batch_label": b"x"}
        with open(tmp_path / name, "wb") as f:
            pickle.dump(d, f)
    out = tmp_path / "c"
    assert main(["compare", "--claims", "frelu-exploding", "funnel-acc", "--seeds", "0", "1",
                 "--data", f"cifar10:{tmp_path}", "--out", str(out), "--no-progress"]) == 0
    md = (out / "report.md").read_text()
    assert "3 x 32 x 32" in md and "## 2. Funnel against ReLU and PReLU, BatchNorm for all" in md
    r = json.loads((out / "runs" / "funnel-funnel_relu-s0.json").read_text())
    assert r["finished"] and len(r["history"]["test_acc"]) == 6
    printed = capsys.readouterr().out
    assert "premise of funnel: NOT met" in printed  # random labels: nothing trains, and it says so
    assert "premise not met" in md
