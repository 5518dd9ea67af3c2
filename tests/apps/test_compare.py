"""``rectifiers compare``: models, the decision rule, verdicts, an end-to-end tiny run, CLI errors."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from rectifiers import modules as M
from rectifiers.cli import main
from rectifiers.compare import Config, SavedBytes, interleaved_step_times, run_compare
from rectifiers.data import load_data
from rectifiers.report import Stat, decide, diverged, summarise, t_critical, verdicts, write_report
from rectifiers.zoo import ACTIVATIONS, activation_gain, build_model, init_weights, provoke_biases

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")


# ---------------------------------------------------------------------------- models


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_models_take_every_activation(kind: str, act: str) -> None:
    torch.manual_seed(0)
    m = build_model(kind, act, (3, 11, 9), 7, depth=3)
    out = m(torch.randn(5, 3, 11, 9))
    assert out.shape == (5, 7)
    out.sum().backward()
    acts = [x for x in m.modules() if isinstance(x, (M.ReLU, M.LeakyReLU, M.PReLU, M.FlexibleReLU,
                                                      M.FunnelReLU, M.FunnelReLU1d))]
    assert len(acts) == 3  # one module per use site, so learnable parameters are per layer
    assert len({id(a) for a in acts}) == 3


def test_kaiming_init_uses_the_activations_gain() -> None:
    torch.manual_seed(0)
    m = build_model("mlp", "leaky_relu", (1, 32, 32), 10, depth=2, width=512)
    init_weights(m, "kaiming", "leaky_relu")
    first = m.features[1]
    assert isinstance(first, nn.Linear)
    want = nn.init.calculate_gain("leaky_relu", 0.01) / math.sqrt(1024)
    assert abs(float(first.weight.detach().std()) / want - 1) < 0.02
    assert float(first.bias.detach().abs().max()) == 0
    assert abs(float(m.classifier.weight.detach().std()) * math.sqrt(512) - 1) < 0.1  # gain 1 at the output
    assert activation_gain("prelu") == nn.init.calculate_gain("leaky_relu", 0.25)


def test_provoke_sets_the_biases_before_activations_only() -> None:
    m = build_model("cnn", "relu", (1, 8, 8), 10, depth=2)
    provoke_biases(m, -3.0)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert all(float(c.bias.detach().max()) == -3.0 for c in convs)
    assert float(m.classifier.bias.detach().max()) != -3.0


def test_saved_bytes_counts_distinct_storages() -> None:
    lin = nn.Linear(100, 50)
    x = torch.randn(8, 100)
    with SavedBytes(lin) as sb:
        y = torch.relu(lin(x))
    # Linear keeps x (8 x 100 fp32); relu keeps its output (8 x 50); the weight is excluded.
    assert sb.bytes == 4 * (8 * 100 + 8 * 50)
    y.sum().backward()


# ---------------------------------------------------------------------------- decision rule


def test_decide_needs_a_difference_beyond_t_standard_errors() -> None:
    a, b = Stat([0.90, 0.91, 0.92]), Stat([0.80, 0.81, 0.79])
    assert decide(a, b, 0.005)[0] == "greater"
    assert decide(b, a, 0.005)[0] == "less"
    noisy = Stat([0.70, 0.95, 0.82])
    assert decide(noisy, b, 0.005)[0] == "same"  # difference within the spread
    assert decide(a, b, 0.5)[0] == "same"  # below the minimum effect
    assert decide(Stat([0.9]), Stat([0.1]), 0.005)[0] == "same"  # one seed: no spread, no verdict
    # No spread at all: any real difference decides, none does not.
    assert decide(Stat([0.2, 0.2]), Stat([0.0, 0.0]), 0.01)[0] == "greater"
    assert decide(Stat([0.2, 0.2]), Stat([0.2, 0.2]), 0.0)[0] == "same"
    # 2 + 2 seeds: the threshold is t(2) = 4.303 standard errors, not 2 (the old rule).
    a2, b2 = Stat([1.0, 1.2]), Stat([0.0, 0.2])  # s = 0.1 sqrt(2), se = 0.2 / sqrt(2), difference 1.0
    assert decide(a2, b2, 0.0) == ("greater", pytest.approx(1.0), pytest.approx(4.303 * 0.2 / math.sqrt(2)))
    c2 = Stat([0.4, 0.6])  # difference 0.4: beyond 2 se = 0.28, within 4.303 se = 0.61
    assert decide(c2, b2, 0.0)[0] == "same"


def test_t_critical_values() -> None:
    assert t_critical(1) == 12.706 and t_critical(2) == 4.303 and t_critical(4) == 2.776
    assert t_critical(30) == 2.042 and t_critical(31) == t_critical(1000) == 1.96
    assert all(t_critical(d) > t_critical(d + 1) for d in range(1, 30))
    with pytest.raises(ValueError, match="df must be >= 1"):
        t_critical(0)


@pytest.mark.parametrize("n", [2, 3])
def test_equal_groups_rarely_get_a_verdict(n: int) -> None:
    # Both groups from one normal distribution: the rule should decide about 5% of the time
    # (the old rule, 2 standard errors, decided 12-18% of the time with 2-3 seeds).
    rng = np.random.default_rng(1234)
    draws = 2000
    false = sum(decide(Stat(list(rng.normal(0.9, 0.02, n))), Stat(list(rng.normal(0.9, 0.02, n))), 0.0)[0]
                != "same" for _ in range(draws))
    assert 0.02 < false / draws < 0.08, false / draws


def _run(model: str, act: str, seed: int, *, acc: float, dead: float = 0.0, inactive: float = 0.0,
         ratio: float = 0.5, vanishing: bool = False, bias: float | None = None,
         grad: float = 1.0) -> dict:
    params = {}
    if act == "flexible_relu":
        params = {"features.1.bias": [bias if bias is not None else -1.0]}
    start = {"features.1.bias": [-1.0]} if act == "flexible_relu" else {}
    return {
        "model": model, "activation": act, "seed": seed,
        "history": {
            "epoch": [0, 1], "test_acc": [0.1, acc], "train_loss": [None, 1.0],
            "dead": [dead, dead], "inactive": [inactive, inactive], "near_dead": [0, 0],
            "first_last_ratio": [ratio], "vanishing": [vanishing], "exploding": [False],
            "grad_norms": [[grad, 1.0]], "grad_layers": ["a", "b"], "act_params": [start, params],
            "step_time_s": [0.01],
        },
        "saved_bytes": 1000,
    }


def _verdict(vs, claim: str) -> str:  # type: ignore[no-untyped-def]
    return next(v.verdict for v in vs if v.claim == claim)


def test_verdicts_follow_the_numbers() -> None:
    runs = []
    for s, jitter in enumerate((0.0, 0.01, -0.01)):
        runs += [
            _run("mlp", "relu", s, acc=0.80 + jitter, dead=0.30 + jitter, ratio=1e-4, vanishing=True),
            _run("mlp", "leaky_relu", s, acc=0.81 + jitter, inactive=0.3, ratio=1e-2, vanishing=False),
            _run("mlp", "prelu", s, acc=0.95 + jitter, ratio=1.2e-4, vanishing=True),
            _run("mlp", "flexible_relu", s, acc=0.80, dead=0.45 + jitter, bias=-1.0 - jitter / 10),
            _run("mlp", "funnel_relu", s, acc=0.50 + 3 * jitter),
        ]
    vs = verdicts(summarise(runs), ["mlp"])
    assert _verdict(vs, "LeakyReLU mitigates dying ReLU") == "supports"
    assert _verdict(vs, "LeakyReLU mitigates vanishing gradients") == "supports"
    assert _verdict(vs, "PReLU mitigates vanishing gradients") == "cannot decide"  # within spread/effect
    assert _verdict(vs, "FReLU avoids dying ReLU when b != 0") == "contradicts"
    assert _verdict(vs, "FReLU causes exploding gradients as b grows") == "cannot decide"  # b did not grow
    assert _verdict(vs, "Funnel is more accurate than ReLU") == "contradicts"
    assert _verdict(vs, "Funnel is more accurate than PReLU") == "contradicts"


def test_no_dead_relu_units_means_no_verdict_on_dying_relu() -> None:
    runs = [_run("cnn", a, s, acc=0.9, dead=0.0) for s in range(3) for a in ("relu", "leaky_relu")]
    vs = verdicts(summarise(runs), ["cnn"])
    v = next(v for v in vs if v.claim == "LeakyReLU mitigates dying ReLU")
    assert v.verdict == "cannot decide" and "nothing to mitigate" in v.reason


def test_one_seed_never_gives_a_verdict() -> None:
    runs = [_run("mlp", "relu", 0, acc=0.5, dead=0.5), _run("mlp", "funnel_relu", 0, acc=0.99),
            _run("mlp", "leaky_relu", 0, acc=0.9)]
    vs = verdicts(summarise(runs), ["mlp"])
    assert vs and all(v.verdict == "cannot decide" for v in vs)


# ---------------------------------------------------------------------------- end to end


def _small(**kw) -> Config:  # type: ignore[no-untyped-def]
    base = dict(activations=["relu", "leaky_relu", "funnel_relu"], seeds=[0, 1], epochs=2, depth=2,
                limit=128, batch_size=32)
    base.update(kw)
    return Config(**base)


def test_tiny_run_writes_a_complete_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "rep"
    res = run_compare(_small(), str(out), progress=False)
    assert len(res["results"]) == 2 * 3 * 2
    for name in ("report.md", "report.html", "training_curves.png", "dead_units.png",
                 "gradient_norms.png", "activations.png"):
        data = (out / name).read_bytes()
        assert data, name
        if name.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    for needle in ("| cnn | ReLU |", "| mlp | Funnel |", "The article's claims", "LeakyReLU mitigates dying ReLU",
                   "Funnel is more accurate than ReLU", "![", "saved_tensors_hooks"):
        assert needle in md, needle
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and 'src="dead_units.png"' in html
    r = json.loads((out / "runs" / "cnn-relu-s0.json").read_text())
    h = r["history"]
    assert h["epoch"] == [0, 1, 2] and len(h["test_acc"]) == 3 and h["train_loss"][0] is None
    assert len(h["grad_norms"]) == 2 * (128 // 32) and len(h["grad_norms"][0]) == len(h["grad_layers"])
    assert r["saved_bytes"] > 0 and 0 <= h["dead"][-1] <= 1
    assert not [p for p in os.listdir(out / "runs") if p.startswith(".")]  # no temporary left
    assert "side by side" in md and "step ms (x ReLU)" in md and "(1.00x)" in md
    assert "t x standard error" not in md and "Student-t" in md
    mode = 0o666 & ~_umask()
    for sub in ("report.md", "runs/cnn-relu-s0.json", "checkpoints/cnn-relu-s0.pt", "dead_units.png"):
        assert (os.stat(out / sub).st_mode & 0o777) == mode, sub  # a normal file mode, not mkstemp's 0600


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_same_seed_same_numbers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = _small(activations=["prelu"], models=["cnn"], seeds=[3])
    a = run_compare(cfg, str(tmp_path / "a"), progress=False, write_report=False)["results"][0]
    b = run_compare(cfg, str(tmp_path / "b"), progress=False, write_report=False)["results"][0]
    for k in ("test_acc", "train_loss", "dead", "grad_norms", "act_params"):
        assert a["history"][k] == b["history"][k], k
    c = run_compare(_small(activations=["prelu"], models=["cnn"], seeds=[4]), str(tmp_path / "c"),
                    progress=False, write_report=False)["results"][0]
    assert c["history"]["grad_norms"] != a["history"]["grad_norms"]


def test_provoke_kills_relu_units_while_leaky_ones_keep_a_gradient(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = _small(activations=["relu", "leaky_relu", "prelu"], models=["mlp"], seeds=[0], provoke=-2.0,
                 epochs=3, depth=3, init="kaiming", limit=None, batch_size=64)
    res = {r["activation"]: r["history"] for r in
           run_compare(cfg, str(tmp_path / "p"), progress=False, write_report=False)["results"]}
    relu, leaky, prelu = res["relu"], res["leaky_relu"], res["prelu"]
    assert min(relu["dead"]) > 0.5  # died at the start and stayed dead
    assert relu["dead"] == relu["inactive"]  # under ReLU, never positive = no gradient
    assert max(leaky["dead"]) == 0.0 and leaky["inactive"][0] > 0.5  # inactive, yet never dead
    assert max(prelu["dead"]) == 0.0 and prelu["inactive"][-1] < prelu["inactive"][0] / 2  # units come back
    assert prelu["test_acc"][-1] > 0.5 > relu["test_acc"][-1]


@pytest.mark.parametrize("argv, message", [
    (["--activations", "reluu"], "did you mean 'relu'"),
    (["--epochs", "0"], "--epochs must be a positive int"),
    (["--activations", "elu"], "did you mean 'relu'"),
    (["--activations", "relu", "funnel_relu3d"], "is not one of the compared activations"),
    (["--activations", ","], "got none"),
    (["--lr", "-1"], "--lr must be a positive finite number, got -1.0"),
    (["--lr", "nan"], "--lr must be a positive finite number"),
    (["--lr", "inf"], "--lr must be a positive finite number"),
    (["--momentum", "-0.5"], "--momentum must be a finite number >= 0, got -0.5"),
    (["--momentum", "nan"], "--momentum must be a finite number >= 0"),
    (["--momentum", "inf"], "--momentum must be a finite number >= 0"),
    (["--depth", "0"], "--depth must be a positive int, got 0"),
    (["--width", "0"], "--width must be a positive int, got 0"),
    (["--batch-size", "0"], "--batch-size must be a positive int, got 0"),
    (["--image-size", "-3"], "--image-size must be a positive int, got -3"),
    (["--limit", "0"], "--limit must be a positive int, got 0"),
    (["--seeds", "0", "-1"], "--seeds must be integers in 0..2147483647, got -1"),
    (["--provoke", "nan"], "--provoke must be a finite bias"),
    (["--models", "resnet"], "invalid choice"),
    (["--device", "tpu"], "--device"),
    (["--batch-size", "5000"], "larger than the training split"),
])
def test_cli_usage_errors(tmp_path, capsys, argv: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    rc = main(["compare", "--out", str(tmp_path / "o"), "--no-progress", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err


def test_resume_refuses_other_settings(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "o")
    common = ["compare", "--out", out, "--no-progress", "--models", "mlp", "--activations", "relu",
              "--seeds", "0", "--epochs", "1", "--limit", "64"]
    assert main(common) == 0
    assert main([*common[:-4], "--epochs", "2", "--limit", "64", "--resume"]) == 2
    assert "was made with other settings" in capsys.readouterr().err


@pytest.mark.parametrize("spelling, canonical", [
    ("frelu", "flexible_relu"), ("FReLU", "flexible_relu"), ("leaky", "leaky_relu"),
    ("funnel", "funnel_relu"), ("LeakyReLU", "leaky_relu"), ("relu", "relu"),
])
def test_activation_aliases_resolve(spelling: str, canonical: str) -> None:
    from rectifiers.cli import build_parser
    from rectifiers.cli.compare import _config_from_args

    args = build_parser().parse_args(["compare", "--activations", spelling, "prelu," + spelling])
    assert _config_from_args(args).activations == [canonical, "prelu"]  # canonical, duplicates dropped


def test_activation_aliases_run_end_to_end(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "o"
    assert main(["compare", "--out", str(out), "--no-progress", "--activations", "frelu", "funnel",
                 "--models", "mlp", "--seeds", "0", "--epochs", "1", "--depth", "2", "--limit", "64"]) == 0
    assert sorted(os.listdir(out / "runs")) == ["mlp-flexible_relu-s0.json", "mlp-funnel_relu-s0.json"]


# ---------------------------------------------------------------------------- diverged runs


def _diverged_run(seed: int) -> dict:
    r = _run("mlp", "relu", seed, acc=0.1)
    h = r["history"]
    h["train_loss"] = [None, None]  # NaN is stored as None
    h["test_loss"] = [2.3, None]
    h["grad_norms"] = [[1e17, 3e17], [1e308, 1e308], [None, None]]  # inf is stored as 1e308
    h["first_last_ratio"] = [None]
    return r


def test_report_of_synthetic_diverged_runs_is_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runs = [_diverged_run(0), _diverged_run(1)]
    assert all(diverged(r) for r in runs) and not diverged(_run("mlp", "relu", 0, acc=0.9))
    cfg = dict(Config(activations=["relu"], models=["mlp"], seeds=[0, 1]).__dict__)
    meta = {"data": "synthetic", "num_classes": 10, "device": "cpu", "world_size": 1, "threads": 1,
            "torch": torch.__version__, "wall_s": 1.0, "peak_rss_mib": 1.0, "peak_rss_growth_mib": 0.0}
    paths = write_report(str(tmp_path), cfg, runs, meta)
    md = (tmp_path / "report.md").read_text()
    assert "**Diverged**" in md and "MLP ReLU (seeds 0, 1)" in md and "diverged 2/2" in md
    assert "could not be drawn" not in md  # every plot drawn, NaN as gaps
    for key in ("curves", "dead", "grads"):
        assert open(paths[key], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "runs were timed one after another" in md  # no interleaved timing in this meta


def test_diverging_run_still_writes_its_report(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "o"
    rc = main(["compare", "--out", str(out), "--no-progress", "--lr", "1e6", "--epochs", "1", "--seeds", "0",
               "1", "--models", "mlp", "--activations", "relu", "--depth", "2", "--limit", "256"])
    assert rc == 0, capsys.readouterr().err
    md = (out / "report.md").read_text()
    assert "**Diverged**" in md and "could not be drawn" not in md
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------- step timing


def test_interleaved_step_times_cover_every_activation_equally() -> None:
    ds = load_data("digits", limit=64)
    cfg = Config(activations=["relu", "prelu", "funnel_relu"], models=["mlp", "cnn"], depth=2, batch_size=32)
    t = interleaved_step_times(cfg, ds, rounds=6, budget_s=60.0)
    assert t["batch"] == 32 and t["rounds"] == {"mlp": 6, "cnn": 6}
    for m in ("mlp", "cnn"):
        assert sorted(t["ms"][m]) == sorted(cfg.activations)
        assert all(len(v) == 6 and min(v) > 0 for v in t["ms"][m].values())
    short = interleaved_step_times(cfg, ds, rounds=1000, budget_s=0.0)  # stops at the minimum rounds
    assert set(short["rounds"].values()) == {5}


def test_verdicts_weigh_claims_of_the_descriptions() -> None:
    """Every weighed claim id is a claim of some activation's description."""
    from rectifiers._spec import claim_ids
    from rectifiers.report.verdicts import WEIGHERS

    assert WEIGHERS and set(WEIGHERS) <= set(claim_ids())
