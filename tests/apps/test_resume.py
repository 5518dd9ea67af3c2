"""Faults: a ``rectifiers compare`` run killed with SIGKILL and restarted with ``--resume``.

The killed run leaves its finished results and per-epoch checkpoints (written atomically); the
resumed run keeps the finished results untouched, continues the unfinished run from its last
checkpoint, and ends with the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rectifiers.compare import PAUSE_ENV

pytest.importorskip("sklearn")

ARGS = ["--models", "mlp", "--activations", "relu", "prelu", "--seeds", "0", "1", "--epochs", "8",
        "--depth", "3", "--limit", "512", "--batch-size", "32", "--no-progress"]
TIMING = {"step_time_s"}  # wall-clock measurements differ between any two runs


def _cmd(out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rectifiers.cli", "compare", *ARGS, "--out", out, *extra]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(PAUSE_ENV, None)
    env["OMP_NUM_THREADS"] = "1"  # the same thread count in every run: same float summation order
    env.update(extra)
    return env


def _results(out: str) -> dict[str, dict]:
    runs = os.path.join(out, "runs")
    res = {}
    for f in sorted(os.listdir(runs)):
        with open(os.path.join(runs, f)) as fh:
            r = json.load(fh)
        r["history"] = {k: v for k, v in r["history"].items() if k not in TIMING}
        r.pop("resumed_from_epoch")
        res[f] = r
    return res


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path) -> None:  # type: ignore[no-untyped-def]
    killed = str(tmp_path / "killed")
    ckpts = os.path.join(killed, "checkpoints")
    runs = os.path.join(killed, "runs")
    # The test hook pauses the run right after the second run's checkpoint of epoch 2 is in place
    # (the first run finished, the second part-way), so however loaded the machine, the kill
    # lands there and never after the run ended.
    proc = subprocess.Popen(_cmd(killed), env=_env(**{PAUSE_ENV: "mlp-relu-s1:2"}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = os.path.join(ckpts, "mlp-relu-s1.pt")
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.exists(ckpt) and torch.load(ckpt, weights_only=True)["epoch"] == 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-500:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = {f: os.stat(os.path.join(runs, f)).st_mtime_ns for f in os.listdir(runs) if f.endswith(".json")}
    assert "mlp-relu-s0.json" in done and "mlp-prelu-s1.json" not in done  # killed mid-way
    for f in os.listdir(ckpts):  # every checkpoint in place is whole (a torn write stays in a hidden .tmp)
        if not f.startswith("."):
            assert torch.load(os.path.join(ckpts, f), weights_only=True)["epoch"] >= 1
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2

    subprocess.run(_cmd(killed, "--resume"), env=_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300)
    # Finished results were kept, not recomputed.
    for f, mtime in done.items():
        assert os.stat(os.path.join(runs, f)).st_mtime_ns == mtime, f
    with open(os.path.join(runs, "mlp-relu-s1.json")) as fh:
        resumed = json.load(fh)
    assert resumed["resumed_from_epoch"] == 2

    clean = str(tmp_path / "clean")
    subprocess.run(_cmd(clean), env=_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300)
    a, b = _results(killed), _results(clean)
    assert sorted(a) == sorted(b) == ["mlp-prelu-s0.json", "mlp-prelu-s1.json", "mlp-relu-s0.json",
                                      "mlp-relu-s1.json"]
    for f in a:
        assert a[f] == b[f], f
    assert os.path.isfile(os.path.join(killed, "report.md"))
