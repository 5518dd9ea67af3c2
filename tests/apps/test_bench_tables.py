"""The benchmark's tables of small tensors and training steps, and its thread counts: rows, both
sides really run, the side-by-side order, the CSV and Markdown, the command line. Timings are
never compared with a threshold here (they belong to the benchmark's runs, not to tests)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rectifiers import bench
from rectifiers.bench import host, steps
from rectifiers.cli.bench import _thread_counts
from rectifiers.cli.bench import main as bench_main


def _rectifiers_activations(model: nn.Module) -> list[nn.Module]:
    from rectifiers.zoo import MLP, SmallCNN

    return [m for m in model.modules() if type(m).__module__.startswith(("rectifiers.modules", "rectifiers.zoo"))
            and not isinstance(m, (SmallCNN, MLP))]


def _check_ratios(rows):
    for r in rows:
        assert not r["error"], r
        for k in ("us", "twin_us", "vs_twin"):
            assert isinstance(r[k], float) and math.isfinite(r[k]) and r[k] > 0, (k, r)
        assert r["vs_twin"] == pytest.approx(r["us"] / r["twin_us"], rel=0.01, abs=0.002)
        assert r["threads"] == torch.get_num_threads()


def test_interleaved_alternates_which_side_goes_first():
    order = []

    def side(name, seconds):
        def run(n):
            order.append((name, n))
            return seconds * n
        return run

    a, b = bench.interleaved([side("a", 2.0), side("b", 3.0)], rounds=4, calls=5, warmup=1)
    assert a == [2.0] * 4 and b == [3.0] * 4  # seconds per call, one figure per round
    # the warm-up round, then a b / b a / a b / b a
    assert [n for n, _ in order] == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert all(c == 5 for _, c in order)


def test_small_table_rows_and_both_sides_really_run(monkeypatch):
    made = []
    real = host.make_module

    def counting(act, impl, shape, dtype):
        m = real(act, impl, shape, dtype)
        entry = {"act": act, "impl": impl, "module": m, "calls": 0}
        m.register_forward_hook(lambda *_: entry.__setitem__("calls", entry["calls"] + 1))
        made.append(entry)
        return m

    monkeypatch.setattr(host, "make_module", counting)
    rows = bench.run_small(activations=["relu", "prelu", "frelu_channel", "funnel"], shapes=[(2, 4, 3, 3), (4, 6)],
                           rounds=3, calls=2, warmup=1, log=lambda s: None)
    got = [(r["shape"], r["activation"], r["mode"]) for r in rows]
    assert got == [(s, a, m) for s, acts in (("2x4x3x3", ("relu", "prelu", "frelu_channel", "funnel")),
                                            ("4x6", ("relu", "prelu", "frelu_channel")))  # no funnel on 2-D
                   for a in acts for m in ("fwd", "fwdbwd")]
    _check_ratios(rows)
    for r in rows:
        assert r["table"] == "small" and r["impl"] == "default" and r["dtype"] == "fp32"
        assert r["calls"] == 6 and r["repeats"] == 3 and r["twin"] == bench.twin_name(r["activation"])
    # per row one module of each side, and each made every call (warm-up round included)
    assert len(made) == 2 * len(rows)
    for ours, twin in zip(made[::2], made[1::2]):
        assert (ours["impl"], twin["impl"]) == ("default", "torch") and ours["act"] == twin["act"]
        assert ours["calls"] == twin["calls"] == (1 + 3) * 2
        assert type(ours["module"]).__module__.startswith("rectifiers.modules")
        assert not type(twin["module"]).__module__.startswith("rectifiers.modules")
        assert ours["module"].backend is None  # what a user's R.ReLU() runs


def test_small_table_calls_reach_the_gradients_only_with_backward():
    for impl in ("default", "torch"):
        m = bench.make_module("prelu", impl, (2, 4, 3, 3), torch.float32)
        x = torch.randn(2, 4, 3, 3, requires_grad=True)
        hits = []
        x.register_hook(lambda g: hits.append("x"))
        m.weight.register_hook(lambda g: hits.append("weight"))
        assert host._forward(m, x)(2) > 0 and hits == []
        assert host._forward_backward(m, x, torch.ones_like(x))(2) > 0
        assert sorted(hits) == ["weight", "weight", "x", "x"]
        assert x.grad is None and m.weight.grad is None  # set to None again, untimed
    with pytest.raises(ValueError, match="modes: expected each of fwd, fwdbwd; got 'bwd'"):
        bench.run_small(modes=("bwd",), log=lambda s: None)


def test_step_table_rows_and_both_models_really_train(monkeypatch):
    built = []
    real = steps.build_step_model

    def counting(model, act, impl, seed=0):
        m = real(model, act, impl, seed)
        entry = {"model": model, "act": act, "impl": impl, "module": m, "calls": 0}
        m.register_forward_hook(lambda *_: entry.__setitem__("calls", entry["calls"] + 1))
        built.append(entry)
        return m

    monkeypatch.setattr(steps, "build_step_model", counting)
    rows = bench.run_steps(activations=["relu", "frelu", "funnel"], models=["cnn", "mlp"], rounds=2, steps=3,
                           warmup=1, batch=8, log=lambda s: None)
    assert [(r["model"], r["activation"]) for r in rows] == [
        (m, a) for m in ("cnn", "mlp") for a in ("relu", "frelu", "funnel")]
    _check_ratios(rows)
    for r in rows:
        assert r["table"] == "step" and r["mode"] == "step" and r["shape"] == "8x1x8x8"
        assert r["calls"] == 6 and r["repeats"] == 2
    assert len(built) == 2 * len(rows)
    for ours, twin in zip(built[::2], built[1::2]):
        assert (ours["impl"], twin["impl"]) == ("default", "torch")
        assert ours["calls"] == twin["calls"] == 1 + 2 * 3  # warm-up step, then rounds x steps
        # the same model around a different activation: rectifiers' in one, none in the other
        assert len(_rectifiers_activations(ours["module"])) >= 4
        assert _rectifiers_activations(twin["module"]) == []
        assert type(ours["module"]) is type(twin["module"])
        assert sum(p.numel() for p in ours["module"].parameters()) == \
            sum(p.numel() for p in twin["module"].parameters())


def test_stepper_restores_its_saved_state_before_each_round():
    model = steps.build_step_model("mlp", "prelu", "default")
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    s = steps._Stepper(model, x, y)
    s.step()
    s.save()
    before = [t.clone() for t, _ in s.saved]
    assert s(3) > 0  # three steps move the weights ...
    assert any(not torch.equal(t, b) for (t, _), b in zip(s.saved, before))
    s(0)  # ... and the next round starts from the saved state again
    assert all(torch.equal(t, b) for (t, _), b in zip(s.saved, before))
    assert any(len(st) for st in s.opt.state.values())  # momentum was saved too
    with pytest.raises(ValueError, match="models: expected each of cnn, mlp; got 'vgg'"):
        steps.build_step_model("vgg", "relu", "torch")


def test_thread_counts():
    assert _thread_counts(None, 4) == [4]
    assert _thread_counts(["1", "default"], 4) == [1, 4]
    assert _thread_counts(["default", "1", "DEFAULT", "1"], 1) == [1]


def test_csv_round_trip_of_every_table_and_old_files(tmp_path):
    rows = bench.run_small(activations=["relu"], shapes=[(2, 3)], rounds=1, calls=1, warmup=0, log=lambda s: None)
    rows += [dict(r, table=None) for r in bench.run_benchmark(
        ["relu"], [(2, 3)], ["fp32"], ["torch"], repeats=1, warmup=0, log=lambda s: None, cold=False)]
    path = tmp_path / "rows.csv"
    bench.write_csv(rows, str(path))
    back = bench.read_csv(str(path))
    assert [r["table"] for r in back] == ["small", "small", "large"]
    assert back[0]["us"] == pytest.approx(rows[0]["us"]) and back[0]["calls"] == 1
    assert back[2]["us"] is None and back[2]["fwdbwd_ms"] == pytest.approx(rows[2]["fwdbwd_ms"])
    assert list(bench.COLUMNS[:28]) == path.read_text().splitlines()[0].split(",")[:28]  # old columns first
    # a CSV written before the new tables: its rows are large-tensor rows
    old = tmp_path / "old.csv"
    old.write_text("device,threads,activation,impl,fwdbwd_ms\ncpu,1,relu,torch,0.5\n")
    assert bench.read_csv(str(old)) == [{"device": "cpu", "threads": "1", "activation": "relu", "impl": "torch",
                                         "fwdbwd_ms": 0.5, "table": "large"}]


def test_cli_runs_each_table_at_each_thread_count(tmp_path, capsys):
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # torch's count at start-up, for 'default'
    try:
        csv_path, md_path = tmp_path / "rows.csv", tmp_path / "out" / "rows.md"
        rc = bench_main(["--quick", "--tables", "step", "small", "--threads", "1", "default",
                         "--activations", "relu", "--small-shapes", "2x4x3x3", "--step-models", "mlp",
                         "--csv", str(csv_path), "--markdown", str(md_path)])
        assert rc == 0, capsys.readouterr().err
        assert torch.get_num_threads() == 2  # put back
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    rows = bench.read_csv(str(csv_path))
    # tables in their own order whatever the order asked; no large table
    assert [(r["threads"], r["table"], r.get("mode")) for r in rows] == [
        (n, t, m) for n in ("1", "2") for t, m in (("small", "fwd"), ("small", "fwdbwd"), ("step", "step"))]
    assert all(r["activation"] == "relu" and r["vs_twin"] > 0 for r in rows)
    md = md_path.read_text()
    for text in (out, md):
        assert text.count("(1 thread)") == 2 and text.count("(2 threads, the default)") == 2
    assert "## Small tensors: microseconds per module call" in md and "| shape | activation | twin |" in md
    assert "## Training step of the digits models" in md and "| model | activation | twin |" in md
    assert "Goals" not in md


@pytest.mark.parametrize("args,message", [
    (["--tables", "huge"], "unknown table 'huge'"),
    (["--step-models", "vgg"], "unknown model 'vgg'"),
    (["--threads", "two"], "--threads takes counts >= 1 or 'default', got 'two'"),
    (["--threads", "1", "-3"], "--threads must be >= 1, got -3"),
    (["--small-rounds", "0"], "--small-rounds and --step-rounds must be >= 1"),
])
def test_usage_errors_of_the_new_options(args, message, capsys):
    assert bench_main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
