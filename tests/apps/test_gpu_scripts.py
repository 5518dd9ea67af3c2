"""The GPU scripts under benchmarks/ run end to end on CPU (Triton's interpreter), and refuse
clearly without a GPU. Their figures need a GPU; these tests only keep the scripts working."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="the GPU scripts need the 'triton' package")

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, interpret: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_gpu_check_quick_on_cpu(tmp_path):
    r = _run("gpu_check.py", "--device", "cpu", "--quick", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "gpu-check.csv")))
    assert len(rows) > 300 and all(row["ok"] == "True" for row in rows)
    impls = {row["impl"] for row in rows}
    assert {"triton", "eager", "compiled"} <= impls
    assert "checks pass" in r.stdout


def test_gpu_bench_dry_run_on_cpu(tmp_path):
    r = _run("gpu_bench.py", "--device", "cpu", "--dry-run", "--acts", "leaky_relu,funnel_relu",
             "--dtypes", "fp32", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    times = list(csv.DictReader(open(next(tmp_path.glob("gpu-*-time.csv")))))
    assert {row["act"] for row in times} == {"leaky_relu", "funnel_relu"}
    mem = list(csv.DictReader(open(next(tmp_path.glob("gpu-*-memory.csv")))))
    leaky = next(row for row in mem if row["act"] == "leaky_relu")
    assert float(leaky["saved_B_per_elem_torch"]) == 4.0 and float(leaky["saved_B_per_elem_triton"]) == 0.125
    # the three backends side by side, timed three ways
    assert {row["impl"] for row in times} == {"torch.nn", "plain formula", "triton", "auto"}
    for col in ("fwdbwd_ms", "async_ms", "graph_ms", "speedup_async", "speedup_graph", "copy_frac_graph_fwd"):
        assert col in times[0], col
    assert all(float(row["async_ms"]) > 0 for row in times)
    # the size sweep, and the thresholds re-derived from it in the form the variable takes
    sweep = list(csv.DictReader(open(next(tmp_path.glob("gpu-*-sweep.csv")))))
    assert {row["act"] for row in sweep} == {"leaky_relu", "funnel_relu"} and len(sweep) >= 2 * 2 * 3
    assert 'RECTIFIERS_TRITON_MIN_NUMEL="' in r.stdout and "DEFAULTS = " in r.stdout
    for key in ("peak8_MiB_auto", "step8_speedup_auto", "saved_B_per_elem_auto"):
        assert key in mem[0], key
    assert "## goals" in r.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("script", ["gpu_check.py", "gpu_bench.py", "gpu_overhead.py"])
def test_refuses_without_cuda(script):
    r = _run(script, interpret=False)
    assert r.returncode == 2 and "no CUDA device" in r.stderr, r.stderr


def test_gpu_check_refuses_bad_impls():
    r = _run("gpu_check.py", "--device", "cpu", "--impls", "cuda")
    assert r.returncode == 2 and "--impls" in r.stderr
