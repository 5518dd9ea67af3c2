"""The CPU benchmark's machinery (``python -m rectifiers.bench``): rows, layouts, goals, CSV and
the command line's errors. Timings themselves are never checked here (they belong to the
benchmark's runs, not to tests)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rectifiers import bench


def _rows(**kw):
    args = dict(activations=["leaky_relu", "frelu_channel", "funnel"], shapes=[(2, 4, 6, 6)],
                dtypes=["fp32"], impls=["torch", "eager"], repeats=1, warmup=0, log=lambda s: None,
                cold=False)
    args.update(kw)
    return bench.run_benchmark(**args)


def test_laid_out_keeps_values_and_sets_the_layout():
    t = torch.randn(2, 3, 4, 5)
    for layout in bench.LAYOUTS:
        u = bench._laid_out(t, layout)
        assert torch.equal(u, t)
        assert u.is_contiguous() == (layout == "contiguous")
    assert bench._laid_out(t, "channels_last").is_contiguous(memory_format=torch.channels_last)
    s = bench._laid_out(t, "strided")
    assert s.stride()[-1] == 2  # every other element: not dense


def test_rows_per_layout_and_ratios_to_torch():
    rows = _rows(layouts=("contiguous", "channels_last", "strided"), shapes=[(2, 4, 6, 6), (2, 4, 9)])
    got = {(r["shape"], r["layout"], r["activation"], r["impl"]) for r in rows}
    # channels_last is skipped for the 3-D shape; every other combination is there
    assert ("2x4x9", "channels_last", "leaky_relu", "torch") not in got
    for layout in bench.LAYOUTS:
        for act in ("leaky_relu", "frelu_channel", "funnel"):
            assert ("2x4x6x6", layout, act, "eager") in got
    for r in rows:
        assert not r["error"], r
        if r["impl"] == "torch":
            assert r["fwdbwd_vs_torch"] == 1.0
        assert r["fwdbwd_ms"] > 0 and r["clone_ms"] > 0
    # what is kept for backward does not depend on the timing: the eager LeakyReLU keeps nothing
    leaky = [r for r in rows if r["activation"] == "leaky_relu"]
    assert all(r["extra_bytes_per_elem"] == (0.0 if r["impl"] == "eager" else 4.0) for r in leaky)


def test_goals_table_and_csv_round_trip(tmp_path):
    rows = _rows(layouts=("contiguous", "strided"))
    table = bench.goals_table(rows)
    assert "| goal | dtype | shape | layout |" in table
    assert "funnel: bytes kept vs the plain formula | fp32 | 2x4x6x6 | strided" in table
    path = tmp_path / "b.csv"
    bench.write_csv(rows, str(path))
    back = bench.read_csv(str(path))
    assert [(r["layout"], r["activation"], r["impl"]) for r in back] == \
           [(r["layout"], r["activation"], r["impl"]) for r in rows]
    assert back[0]["fwdbwd_ms"] == pytest.approx(rows[0]["fwdbwd_ms"])


@pytest.mark.parametrize("args,message", [
    (["--layouts", "nhwc"], "unknown layout 'nhwc'"),
    (["--activations", "relux"], "unknown activation 'relux'"),
    (["--impls", "fast"], "unknown implementation 'fast'"),
    (["--dtypes", "fp8"], "unknown dtype 'fp8'"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_usage_errors(args, message):
    r = subprocess.run([sys.executable, "-m", "rectifiers.bench", *args], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cold_inputs_evict_the_cache_before_each_call(monkeypatch):
    """cold=True (the default) passes over a last-level-cache-sized buffer before every timed
    call; cold=False never does."""
    calls = []
    monkeypatch.setattr(bench._Inputs, "flush", lambda self: calls.append(self.buf is not None))
    monkeypatch.setattr(bench.timing, "_l3_bytes", lambda: 1 << 20)
    rows = _rows(activations=["leaky_relu"], impls=["torch"], cold=True)
    assert rows[0]["cache"] == "cold"
    # per repetition: the clone twice, the timed step (fwd, bwd, fwd+bwd) and the timed no_grad
    # forward; the untimed steps before them need no eviction
    assert calls and all(calls) and len(calls) == 2 + 3 + 1
    calls.clear()
    rows = _rows(activations=["leaky_relu"], impls=["torch"], cold=False)
    assert rows[0]["cache"] == "warm" and calls and not any(calls)


def test_l3_bytes_is_positive():
    assert bench._l3_bytes() >= 1 << 20


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="layouts: expected each of contiguous, channels_last, strided; got 'nhwc'"):
        _rows(layouts=("nhwc",))


def test_case_ids_are_the_old_ones():
    # the CSV's activation column: these ids, in this order, as in the recorded results
    assert bench.ACTIVATIONS == ("relu", "leaky_relu", "prelu", "prelu_scalar", "frelu", "frelu_channel", "funnel")


@pytest.mark.parametrize("name,cases", [
    ("relu", ("relu",)), ("leaky_relu", ("leaky_relu",)), ("lrelu", ("leaky_relu",)),
    ("prelu", ("prelu",)), ("prelu_scalar", ("prelu_scalar",)),
    ("frelu", ("frelu",)), ("frelu_channel", ("frelu_channel",)),
    ("flexible_relu", ("frelu", "frelu_channel")), ("FlexibleReLU", ("frelu", "frelu_channel")),
    ("funnel", ("funnel",)), ("funnel_relu", ("funnel",)), ("FunnelReLU", ("funnel",)),
    ("relux", None), ("", None),
])
def test_bench_takes_canonical_names_and_old_case_ids(name, cases):
    assert bench.bench_cases(name) == cases


def test_cli_accepts_flexible_relu(tmp_path, capsys):
    from rectifiers.cli import main

    path = tmp_path / "rows.csv"
    rc = main(["bench", "--activations", "flexible_relu", "--impls", "torch", "eager", "--quick",
               "--shapes", "2x4x6x6", "--repeats", "1", "--warmup", "0", "--csv", str(path)])
    assert rc == 0, capsys.readouterr().err
    rows = bench.read_csv(str(path))
    large = [r for r in rows if r["table"] == "large"]
    # leaky_relu comes first: the FReLU goals are measured against torch.nn.LeakyReLU
    assert [(r["activation"], r["impl"]) for r in large] == [
        (a, i) for a in ("leaky_relu", "frelu", "frelu_channel") for i in ("torch", "eager")]
    # the tables of small tensors and training steps (by default too) take the cases asked for
    assert {(r["table"], r["activation"]) for r in rows if r["table"] != "large"} == {
        (t, a) for t in ("small", "step") for a in ("frelu", "frelu_channel")}
