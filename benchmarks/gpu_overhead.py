"""Where the Triton backend's time goes on a GPU, beyond its kernels: host-side cost per call.

One command, installs nothing, under a minute::

    python benchmarks/gpu_overhead.py

On a tiny tensor (the kernels take a few microseconds) the wall time of many calls in a row,
then one synchronisation, is the host's cost per call. It is measured for torch's function and,
layer by layer, for rectifiers' Triton path: the bare kernel launch (pre-bound, and through Triton's generic dispatch), the forward function
without autograd, the whole forward with autograd, forward + backward (with autograd's device
threads on and off), and then a cProfile of forward + backward, top entries by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

try:  # run from a checkout without `pip install -e .`: use the source tree beside this script
    import rectifiers  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import rectifiers.functional as RF  # noqa: E402


def per_call_us(fn, n: int = 300) -> float:
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--numel", type=int, default=4096, help="elements of the tiny tensor (default 4096)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_overhead: no CUDA device here", file=sys.stderr)
        return 2
    from rectifiers.ops import triton as T

    dev = torch.device("cuda")
    c = 16
    x = torch.randn(4, c, args.numel // (4 * c), device=dev).requires_grad_()
    w = torch.full((c,), 0.25, device=dev, requires_grad=True)
    b = torch.full((c,), -0.5, device=dev, requires_grad=True)
    g = torch.randn_like(x)
    y = torch.empty_like(x)
    mask = torch.empty((x.numel() + 31) // 32, dtype=torch.int32, device=dev)
    rows = []

    def row(name, fn):
        us = per_call_us(fn)
        rows.append((name, us))
        print(f"{name:60s} {us:8.1f} us", flush=True)

    print(f"# {torch.cuda.get_device_name(dev)}  torch {torch.__version__}  tensor {tuple(x.shape)}\n")
    row("torch: F.leaky_relu forward (no autograd)", lambda: F.leaky_relu(x.detach(), 0.01))
    row("torch: F.leaky_relu forward (autograd)", lambda: F.leaky_relu(x, 0.01))
    row("torch: F.leaky_relu forward + backward", lambda: torch.autograd.grad(F.leaky_relu(x, 0.01), x, g))
    row("torch: F.prelu forward + backward", lambda: torch.autograd.grad(F.prelu(x, w), (x, w), g))
    row("triton: bare kernel launch (act_fwd)",
        lambda: T._launch_fwd(x.detach(), y, mask, None, T.LEAKY, 0.01, -1, True))
    from rectifiers.ops.triton import kernels as K

    K.PREBOUND = False  # Triton's generic dispatch, for comparison with the pre-bound launcher
    K._LAUNCH.clear()
    row("triton: bare kernel launch, generic JIT dispatch",
        lambda: T._launch_fwd(x.detach(), y, mask, None, T.LEAKY, 0.01, -1, True))
    K.PREBOUND = True
    K._LAUNCH.clear()
    row("triton: _act_fwd_impl (allocations + launch)",
        lambda: T._act_fwd_impl(x.detach(), None, T.LEAKY, 0.01, -1, True, False))
    row("triton: leaky_relu forward (autograd)", lambda: RF.leaky_relu(x, 0.01, backend="triton"))
    fb = lambda: torch.autograd.grad(RF.leaky_relu(x, 0.01, backend="triton"), x, g)  # noqa: E731
    row("triton: leaky_relu forward + backward", fb)
    torch.autograd.set_multithreading_enabled(False)
    row("triton: leaky_relu forward + backward, autograd threads off", fb)
    row("torch: F.leaky_relu forward + backward, autograd threads off",
        lambda: torch.autograd.grad(F.leaky_relu(x, 0.01), x, g))
    torch.autograd.set_multithreading_enabled(True)
    row("auto (default backend): leaky_relu forward + backward",
        lambda: torch.autograd.grad(RF.leaky_relu(x, 0.01), x, g))
    row("auto (default backend): prelu forward + backward",
        lambda: torch.autograd.grad(RF.prelu(x, w, 1), (x, w), g))
    row("triton: prelu forward + backward",
        lambda: torch.autograd.grad(RF.prelu(x, w, 1, backend="triton"), (x, w), g))
    row("triton: flexible_relu forward + backward",
        lambda: torch.autograd.grad(RF.flexible_relu(x, b, 1, backend="triton"), (x, b), g))

    torch.autograd.set_multithreading_enabled(False)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(300):
        torch.autograd.grad(RF.prelu(x, w, 1, backend="triton"), (x, w), g)
    torch.cuda.synchronize()
    prof.disable()
    torch.autograd.set_multithreading_enabled(True)
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(30)
    print("\n## cProfile: 300 x prelu forward + backward (triton), autograd threads off\n")
    print(s.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
