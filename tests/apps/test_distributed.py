"""Scale-out: ``rectifiers compare`` under ``torchrun --nproc_per_node=2`` (DDP, gloo on CPU).

Two processes, each on its half of every global batch, must end with the same weights and numbers
as one process on the whole batch. The funnel activation holds a BatchNorm, which under DDP
normalises each rank's shard with that shard's own statistics (and DDP broadcasts the running
statistics from rank 0), so funnel runs are checked to complete, not to match.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("sklearn")

if not torch.distributed.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available in this build", allow_module_level=True)

EXACT = ["relu", "prelu", "flexible_relu"]
ARGS = ["--models", "mlp", "cnn", "--activations", *EXACT, "funnel_relu", "--seeds", "0",
        "--epochs", "2", "--depth", "2", "--limit", "256", "--batch-size", "32", "--init", "kaiming",
        "--no-progress"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_two_processes_match_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    subprocess.run([sys.executable, "-m", "rectifiers.cli", "compare", *ARGS, "--out", one],
                   env=_env(), check=True, capture_output=True, timeout=300)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "rectifiers.cli", "compare", *ARGS, "--out", two],
                       env=_env(), capture_output=True, text=True, timeout=300)
    # On failure: the ranks' own messages come first in stderr, torchrun's summary last.
    assert p.returncode == 0, p.stderr[:6000] + ("\n[...]\n" + p.stderr[-2000:] if len(p.stderr) > 8000 else p.stderr[6000:])
    assert p.stdout.count("rectifiers compare:") == 1  # only rank 0 reports
    assert sorted(os.listdir(os.path.join(two, "runs"))) == sorted(os.listdir(os.path.join(one, "runs")))
    assert os.path.isfile(os.path.join(two, "report.md"))
    for model in ("mlp", "cnn"):
        for act in EXACT:
            name = f"{model}-{act}-s0"
            a = torch.load(os.path.join(one, "checkpoints", name + ".pt"), weights_only=True)
            b = torch.load(os.path.join(two, "checkpoints", name + ".pt"), weights_only=True)
            assert a["model"].keys() == b["model"].keys()
            for k in a["model"]:
                torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-4, atol=1e-5, msg=f"{name} {k}")
            with open(os.path.join(two, "runs", name + ".json")) as f:
                rb = json.load(f)
            with open(os.path.join(one, "runs", name + ".json")) as f:
                ra = json.load(f)
            assert rb["world_size"] == 2 and ra["world_size"] == 1
            assert rb["history"]["test_acc"] == ra["history"]["test_acc"], name
            assert rb["history"]["train_loss"][1:] == pytest.approx(ra["history"]["train_loss"][1:], rel=1e-5)
            assert rb["history"]["dead"] == ra["history"]["dead"], name
    for model in ("mlp", "cnn"):  # per-rank BatchNorm statistics: runs, not necessarily equal
        with open(os.path.join(two, "runs", f"{model}-funnel_relu-s0.json")) as f:
            r = json.load(f)
        assert r["finished"] and len(r["history"]["test_acc"]) == 3


def _world_of_one(tmp_path):  # type: ignore[no-untyped-def]
    """A real gloo group of one process (a file store: no port, no second rank to wait for)."""
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    real = torch.distributed.init_process_group  # taken before any monkeypatch replaces it
    return lambda backend: real(backend, store=store, rank=0, world_size=1)


def test_close_destroys_the_group_it_made(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each run destroys its process group before returning: a gloo group left for the interpreter's
    exit sometimes aborted a rank (SIGABRT, "terminate called without an active exception")."""
    from rectifiers.compare.distributed import init_dist

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.distributed, "init_process_group", _world_of_one(tmp_path))
    dist = init_dist("cpu")
    assert dist.enabled and dist.owns_group and torch.distributed.is_initialized()
    dist.close()
    assert not torch.distributed.is_initialized()
    dist.close()  # twice: nothing left to do


def test_close_leaves_the_callers_group(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from rectifiers.compare.distributed import init_dist

    _world_of_one(tmp_path)("gloo")
    try:
        monkeypatch.setenv("WORLD_SIZE", "2")
        dist = init_dist("cpu")
        assert dist.enabled and not dist.owns_group
        dist.close()
        assert torch.distributed.is_initialized()
    finally:
        torch.distributed.destroy_process_group()


def test_run_closes_its_group_on_error(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A run refused after the group exists (here: no such data file) still destroys the group."""
    from rectifiers.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.distributed, "init_process_group", _world_of_one(tmp_path))
    rc = main(["compare", "--models", "mlp", "--activations", "relu", "--seeds", "0", "--epochs", "1",
               "--data", str(tmp_path / "missing.npz"), "--batch-size", "32", "--no-progress",
               "--out", str(tmp_path / "o")])
    assert rc == 2
    assert not torch.distributed.is_initialized()


def test_batch_size_must_split_evenly(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from rectifiers.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")  # refused before any process group is made
    rc = main(["compare", "--models", "mlp", "--activations", "relu", "--seeds", "0", "--epochs", "1",
               "--limit", "64", "--batch-size", "31", "--no-progress", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "must be a multiple of the number of processes (2)" in capsys.readouterr().err


def test_claim_experiments_under_two_processes_match_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The claim experiments (here the b sweep and the dying units) under torchrun: the same numbers."""
    args = ["--claims", "frelu-exploding", "leaky-dying", "--seeds", "0", "--limit", "256", "--no-progress"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    subprocess.run([sys.executable, "-m", "rectifiers.cli", "compare", *args, "--out", one],
                   env=_env(), check=True, capture_output=True, timeout=300)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "rectifiers.cli", "compare", *args, "--out", two],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("rectifiers compare:") == 1 and "premise of exploding: met" in p.stdout
    names = sorted(os.listdir(os.path.join(one, "runs")))
    assert names == sorted(os.listdir(os.path.join(two, "runs"))) and len(names) == 11
    for name in names:
        with open(os.path.join(one, "runs", name)) as f:
            ra = json.load(f)
        with open(os.path.join(two, "runs", name)) as f:
            rb = json.load(f)
        assert rb["world_size"] == 2 and ra["world_size"] == 1
        assert rb["history"]["test_acc"] == ra["history"]["test_acc"], name
        assert rb["history"]["dead"] == ra["history"]["dead"], name
        flat_a = [v for row in ra["history"]["grad_norms"] for v in row]
        flat_b = [v for row in rb["history"]["grad_norms"] for v in row]
        assert flat_b == pytest.approx(flat_a, rel=1e-4, abs=1e-7), name
