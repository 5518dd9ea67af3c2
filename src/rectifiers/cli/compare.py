"""``rectifiers compare``: the options of :func:`rectifiers.compare.run_compare`, checked.

Bad options are a :class:`~rectifiers.cli.UsageError` (one line, exit 2); the library's own
errors (:class:`~rectifiers.compare.CompareError`, :class:`~rectifiers.data.DataError`) become
one too, prefixed with ``rectifiers compare:``.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from typing import Any

from ..compare import (DEFAULT_OUT, DEFAULT_PROVOKE_BIAS, MAX_SEED, CompareError, Config,
                       run_compare)
from ..data import DataError
from ..registry import canonical_name
from ..zoo import ACTIVATIONS, MODELS
from ._base import UsageError, closest

__all__ = ["register"]


def _activation_names(values: Sequence[str]) -> list[str]:
    """``--activations`` values (space- or comma-separated, aliases allowed) as canonical names.

    Each name goes through :func:`rectifiers.registry.canonical_name` (``frelu``, ``FReLU``,
    ``leaky``, ``funnel``, class names, ...) and must then be one of :data:`rectifiers.zoo.ACTIVATIONS`;
    ``all`` stands for all of them.
    """
    expected = f"expected some of {', '.join(ACTIVATIONS)} or all"
    acts: list[str] = []
    for a in values:
        for n in a.split(","):
            n = n.strip()
            if not n:
                continue
            if n.lower() == "all":
                acts.extend(ACTIVATIONS)
                continue
            try:
                canon = canonical_name(n)
            except KeyError:
                raise UsageError(f"rectifiers compare: --activations: unknown activation {n!r}"
                                 f"{closest(n.lower(), ACTIVATIONS)} ({expected})") from None
            if canon not in ACTIVATIONS:
                raise UsageError(f"rectifiers compare: --activations: {n!r} ({canon}) is not one of the "
                                 f"compared activations ({expected})")
            acts.append(canon)
    acts = list(dict.fromkeys(acts))
    if not acts:
        raise UsageError(f"rectifiers compare: --activations: {expected}, got none")
    return acts


def _config_from_args(args: argparse.Namespace) -> Config:
    def bad(opt: str, expected: str, got: Any) -> UsageError:
        return UsageError(f"rectifiers compare: {opt} must be {expected}, got {got}")

    acts = _activation_names(args.activations)
    models = list(dict.fromkeys(args.models))
    seeds = list(dict.fromkeys(args.seeds))
    for s in seeds:
        if not 0 <= s < MAX_SEED:
            raise bad("--seeds", f"integers in 0..{MAX_SEED - 1}", s)
    for opt, v in (("--epochs", args.epochs), ("--depth", args.depth), ("--batch-size", args.batch_size),
                   ("--image-size", args.image_size)):
        if v < 1:
            raise bad(opt, "a positive int", v)
    for opt, v in (("--width", args.width), ("--limit", args.limit)):
        if v is not None and v < 1:
            raise bad(opt, "a positive int", v)
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise bad("--lr", "a positive finite number", args.lr)
    if not (math.isfinite(args.momentum) and args.momentum >= 0):
        raise bad("--momentum", "a finite number >= 0", args.momentum)
    if args.provoke is not None and not math.isfinite(args.provoke):
        raise bad("--provoke", "a finite bias", args.provoke)
    return Config(
        activations=acts, seeds=seeds, models=models, epochs=args.epochs, depth=args.depth,
        width=args.width, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
        init=args.init, provoke=args.provoke, data=args.data, image_size=args.image_size,
        limit=args.limit,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="train a small CNN and an MLP once per activation and seed; write a report",
        description="Train the same small CNN and plain MLP on a data set (default: scikit-learn's "
        "8x8 digits) once per activation and seed, measure accuracy, dead units, gradient flow, "
        "time and memory, and write report.md, report.html and PNG plots, closing with a verdict "
        "on each of the article's claims. Runs under torchrun for DistributedDataParallel.",
    )
    p.add_argument("--activations", nargs="+", default=list(ACTIVATIONS), metavar="NAME",
                   help=f"activations to compare (default: all: {' '.join(ACTIVATIONS)}); "
                   "names may also be comma-separated")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="N",
                   help="seeds, one run each (default: 0 1 2)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                   help="models (default: cnn mlp)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per run (default: 10)")
    p.add_argument("--depth", type=int, default=4,
                   help="conv blocks of the CNN and hidden layers of the MLP (default: 4); "
                   "try 12 to see a deep plain network fail to train with --init torch")
    p.add_argument("--width", type=int, default=None,
                   help="channels of the CNN's first block (default 16) / units per MLP layer (default 64)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default: 0.05)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="global batch size, split across processes under torchrun (default: 64)")
    p.add_argument("--init", choices=("torch", "kaiming"), default="torch",
                   help="weight initialisation: PyTorch's default, or Kaiming normal with the "
                   "activation's own gain (default: torch)")
    p.add_argument("--provoke", type=float, nargs="?", const=DEFAULT_PROVOKE_BIAS, default=None,
                   metavar="BIAS",
                   help="start every layer feeding an activation with this bias (default when given "
                   f"without a value: {DEFAULT_PROVOKE_BIAS:g}): ReLU units die and stay dead")
    p.add_argument("--data", default="digits", metavar="SPEC",
                   help="digits (default), cifar10:PATH (CIFAR-10 python batches) or folder:PATH "
                   "(one sub-folder of images per class)")
    p.add_argument("--image-size", type=int, default=32,
                   help="side images of a folder: data set are resized to (default: 32)")
    p.add_argument("--limit", type=int, default=None,
                   help="use at most this many images of each split, a fixed random subset (default: all)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"report directory (default: ./{DEFAULT_OUT})")
    p.add_argument("--resume", action="store_true",
                   help="keep finished runs in --out and continue unfinished ones from their checkpoints")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = _config_from_args(args)
    try:
        out = run_compare(cfg, args.out, resume=args.resume, device=args.device, progress=args.progress)
    except (DataError, CompareError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"rectifiers compare: {msg}") from e
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"rectifiers compare: {len(out['results'])} runs in {out['meta']['wall_s']:.0f} s; "
              f"report in {os.path.join(args.out, 'report.md')} and report.html")
    return 0
