"""A training step of the comparison's small models: each activation against its twin.

The models are those ``rectifiers compare`` trains on scikit-learn's 8 x 8 digits
(:class:`rectifiers.zoo.SmallCNN` and :class:`rectifiers.zoo.MLP`, the comparison's default depth
and widths, batch 64, SGD with its learning rate and momentum). Each case is built twice from the
same seed: with the rectifiers activation (its default backend) and with its twin (``torch.nn``
or the plain formula; on the MLP's flat features the funnel is the zoo's
:class:`~rectifiers.zoo.FeatureFunnel` against the plain formula with a 1-wide depthwise conv).

One timed call is one whole step: ``zero_grad``, forward, cross-entropy, backward, ``opt.step``.
The inputs are synthetic, of the digits' shape (N(0, 1) images, labels drawn from 0-9, fixed by
the seed): the time of a step does not depend on the pixels, and the table needs no scikit-learn.
The two models are timed side by side as in :func:`rectifiers.bench.host.interleaved`; before
every round each model gets back the parameters, buffers and momentum it had after its warm-up,
so that thousands of steps on one batch never drift it to other numbers (tiny gradients, say).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..compare.config import Config
from ..zoo import MLP, FeatureFunnel, SmallCNN
from .cases import ACTIVATIONS, _PlainFeatureFunnel, make_module, twin_name
from .host import _meta, interleaved, record_failure, record_ratio
from .timing import _now

__all__ = ["STEP_MODELS", "DIGITS_SHAPE", "build_step_model", "run_steps"]

#: The comparison's models.
STEP_MODELS = ("cnn", "mlp")
#: One image of scikit-learn's digits (channels, height, width), and their classes.
DIGITS_SHAPE = (1, 8, 8)
_CLASSES = 10


def _act_layer(act: str, impl: str, flat: bool) -> Callable[[int], nn.Module]:
    """``f(channels) -> module`` of case ``act`` for implementation ``default`` or ``torch``."""
    if act == "funnel" and flat:
        return (lambda c: FeatureFunnel(c)) if impl == "default" else (lambda c: _PlainFeatureFunnel(c))
    return lambda c: make_module(act, impl, (1, c) if flat else (1, c, 1, 1), torch.float32)


def build_step_model(model: str, act: str, impl: str, seed: int = 0) -> nn.Module:
    """The comparison's ``model`` (``cnn`` or ``mlp``) with case ``act`` of implementation ``impl``
    (``default``: rectifiers; ``torch``: the twin), built after ``torch.manual_seed(seed)``."""
    cfg = Config()
    torch.manual_seed(seed)
    c, h, w = DIGITS_SHAPE
    if model == "cnn":
        m: nn.Module = SmallCNN(c, _CLASSES, _act_layer(act, impl, False), depth=cfg.depth,
                                width=cfg.width or 16, image_size=min(h, w))
    elif model == "mlp":
        m = MLP(c * h * w, _CLASSES, _act_layer(act, impl, True), depth=cfg.depth, width=cfg.width or 64)
    else:
        raise ValueError(f"models: expected each of {', '.join(STEP_MODELS)}; got {model!r}")
    return m.train()


class _Stepper:
    """One model, its optimizer and batch; ``self(n)`` takes ``n`` timed steps from the state
    saved by :meth:`save` (restored untimed first)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        cfg = Config()
        self.model, self.x, self.y = model, x, y
        self.opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()

    def save(self) -> None:
        live = [*self.model.parameters(), *self.model.buffers(),
                *(v for s in self.opt.state.values() for v in s.values() if isinstance(v, torch.Tensor))]
        self.saved = [(t, t.detach().clone()) for t in live]

    def __call__(self, n: int) -> float:
        with torch.no_grad():
            for t, t0 in self.saved:
                t.copy_(t0)
        start = _now()
        for _ in range(n):
            self.step()
        return _now() - start


def run_steps(
    activations: Sequence[str] = ACTIVATIONS,
    models: Sequence[str] = STEP_MODELS,
    rounds: int = 50,
    steps: int = 4,
    warmup: int = 2,
    batch: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> list[dict[str, object]]:
    """The training-step table: one row per model and activation (fp32).

    ``us`` is the median microseconds of a step of the rectifiers model, ``twin_us`` its twin's
    (timed in the same rounds), ``vs_twin`` their ratio; ``repeats`` the rounds and ``calls`` the
    timed steps of each side (``steps`` per round). ``batch``: the comparison's (64) by default.
    """
    for model in models:
        if model not in STEP_MODELS:
            raise ValueError(f"models: expected each of {', '.join(STEP_MODELS)}; got {model!r}")
    batch = batch or Config().batch_size
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *DIGITS_SHAPE), generator=gen)
    y = torch.randint(0, _CLASSES, (batch,), generator=gen)
    meta = _meta("step")
    rows: list[dict[str, object]] = []
    for model in models:
        for act in activations:
            row: dict[str, object] = dict(meta)
            row.update(shape="x".join(map(str, x.shape)), activation=act, model=model, mode="step",
                       twin=twin_name(act), repeats=rounds, calls=rounds * steps, error="")
            try:
                sides = [_Stepper(build_step_model(model, act, impl, seed), x, y) for impl in ("default", "torch")]
                for s in sides:
                    for _ in range(max(warmup, 1)):  # lazy state (momentum buffers) exists before saving
                        s.step()
                    s.save()
                record_ratio(row, *interleaved(sides, rounds, steps, warmup=0), digits=2)
            except Exception as e:  # noqa: BLE001 - a failing case is reported, not fatal
                record_failure(row, e, f"step {model} {act}", log)
            rows.append(row)
        log(f"[bench] step {model}: done")
    return rows
