"""Host cost on small tensors: microseconds per module call, rectifiers' module against its twin.

On small tensors the arithmetic takes a few microseconds and what a call costs is mostly the way
there (Python, argument checks, autograd's bookkeeping). :func:`run_small` times one module call
of each case, forward alone and forward + backward, for the rectifiers module (its default
backend, as a user's ``R.ReLU()`` runs) and for its twin (``torch.nn`` or the plain formula,
:func:`~rectifiers.bench.cases.twin_name`), the two side by side: in every round each side makes
``calls`` calls in a row, and the side that goes first alternates from round to round, so that
drift and noise fall on both alike. A round's figure is its mean per call; the table gives the
median over rounds of each side and their ratio (rectifiers over twin: below 1 is faster).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .cases import ACTIVATIONS, make_module, twin_name
from .timing import _cpu_name, _now, _zero

__all__ = ["SMALL_SHAPES", "SMALL_MODES", "interleaved", "record_ratio", "record_failure", "run_small"]

#: Shapes of the small-tensor table: a tiny feature map, a CNN's on 8 x 8 images, an MLP's layer.
SMALL_SHAPES: tuple[tuple[int, ...], ...] = ((4, 8, 4, 4), (64, 64, 8, 8), (64, 64))
#: What one timed call is: ``fwd``, ``y = m(x)`` with autograd recording; ``fwdbwd``,
#: ``m(x).backward(g)`` with a fixed gradient ``g`` (the gradients are set to None, untimed, first).
SMALL_MODES = ("fwd", "fwdbwd")


def interleaved(sides: Sequence[Callable[[int], float]], rounds: int, calls: int,
                warmup: int = 1) -> list[list[float]]:
    """Seconds per call of each side, one figure per round, the sides taken in turn.

    ``sides[i](n)`` makes ``n`` calls and returns the seconds they took (what it leaves out of
    its clock, such as setting gradients to None, is not counted). ``warmup`` untimed rounds
    first. In round ``r`` the sides go in their order when ``r`` is even and in reverse when it
    is odd, so that neither always follows the other.
    """
    for _ in range(warmup):
        for side in sides:
            side(calls)
    out: list[list[float]] = [[] for _ in sides]
    order = list(range(len(sides)))
    for r in range(rounds):
        for i in (order if r % 2 == 0 else order[::-1]):
            out[i].append(sides[i](calls) / calls)
    return out


def record_ratio(row: dict[str, object], ours: Sequence[float], twin: Sequence[float], digits: int) -> None:
    """Put the median microseconds of each side (seconds per call, one figure per round) and
    their ratio into ``row`` (``us``, ``twin_us``, ``vs_twin``)."""
    us, twin_us = statistics.median(ours) * 1e6, statistics.median(twin) * 1e6
    row.update(us=round(us, digits), twin_us=round(twin_us, digits), vs_twin=round(us / twin_us, 3))


def record_failure(row: dict[str, object], e: Exception, what: str, log: Callable[[str], None]) -> None:
    """A failing case, reported in ``row`` (``error``, no figures) and on the log, not fatal."""
    row.update(us=None, twin_us=None, vs_twin=None, error=f"{type(e).__name__}: {e}"[:200])
    log(f"[bench] {what} failed: {row['error']}")


def _forward(m: nn.Module, x: torch.Tensor) -> Callable[[int], float]:
    def run(n: int) -> float:
        total = 0.0
        for _ in range(n):
            t0 = _now()
            y = m(x)
            total += _now() - t0
            del y  # the graph is freed outside the clock
        return total
    return run


def _forward_backward(m: nn.Module, x: torch.Tensor, g: torch.Tensor) -> Callable[[int], float]:
    def run(n: int) -> float:
        total = 0.0
        for _ in range(n):
            _zero(m, x)
            t0 = _now()
            m(x).backward(g)
            total += _now() - t0
        _zero(m, x)
        return total
    return run


def _meta(table: str) -> dict[str, object]:
    return {"device": "cpu", "cpu": _cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cache": "warm", "table": table, "dtype": "fp32", "layout": "contiguous", "impl": "default"}


def run_small(
    activations: Sequence[str] = ACTIVATIONS,
    shapes: Sequence[Sequence[int]] = SMALL_SHAPES,
    rounds: int = 100,
    calls: int = 10,
    warmup: int = 2,
    seed: int = 0,
    modes: Sequence[str] = SMALL_MODES,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> list[dict[str, object]]:
    """The small-tensor table: one row per shape, activation and mode (fp32, contiguous).

    Each row has ``us`` (the rectifiers module's median microseconds per call), ``twin_us`` (its
    twin's, timed in the same rounds), ``vs_twin`` (their ratio), ``twin``, ``repeats`` (rounds)
    and ``calls`` (timed calls of each side). The funnel needs a 3-D to 5-D shape and is skipped
    on others. A case that fails is a row with ``error`` set, not an exception.
    """
    for mode in modes:
        if mode not in SMALL_MODES:
            raise ValueError(f"modes: expected each of {', '.join(SMALL_MODES)}; got {mode!r}")
    rows: list[dict[str, object]] = []
    meta = _meta("small")
    for shape in [tuple(int(s) for s in sh) for sh in shapes]:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(shape, generator=gen).requires_grad_()
        g = torch.randn(shape, generator=gen)
        for act in activations:
            if act == "funnel" and len(shape) not in (3, 4, 5):
                continue
            for mode in modes:
                row: dict[str, object] = dict(meta)
                row.update(shape="x".join(map(str, shape)), activation=act, mode=mode, twin=twin_name(act),
                           repeats=rounds, calls=rounds * calls, error="")
                try:
                    torch.manual_seed(seed)
                    ours = make_module(act, "default", shape, torch.float32)
                    torch.manual_seed(seed)
                    twin = make_module(act, "torch", shape, torch.float32)
                    sides = [_forward(m, x) if mode == "fwd" else _forward_backward(m, x, g) for m in (ours, twin)]
                    record_ratio(row, *interleaved(sides, rounds, calls, warmup), digits=3)
                except Exception as e:  # noqa: BLE001 - a failing case is reported, not fatal
                    record_failure(row, e, f"small {shape} {act} {mode}", log)
                rows.append(row)
        log(f"[bench] small {shape}: done")
    return rows
