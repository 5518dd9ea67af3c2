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

from .. import _spec as S
from ..compare import (DEFAULT_OUT, DEFAULT_PROVOKE_BIAS, MAX_SEED, CompareError, Config, Plan,
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


#: The options of the grid comparison; giving any of them runs the grid instead of the experiments.
GRID_OPTIONS = ("activations", "models", "epochs", "depth", "width", "lr", "momentum", "batch_size", "init",
                "provoke")


def _grid_given(args: argparse.Namespace) -> list[str]:
    return ["--" + k.replace("_", "-") for k in GRID_OPTIONS if getattr(args, k) is not None]


def _config_from_args(args: argparse.Namespace) -> Config | Plan:
    """A :class:`Plan` of the claim experiments, or a grid :class:`Config` when a grid option is given."""
    def bad(opt: str, expected: str, got: Any) -> UsageError:
        return UsageError(f"rectifiers compare: {opt} must be {expected}, got {got}")

    seeds = list(dict.fromkeys(args.seeds)) if args.seeds is not None else None
    for s in seeds or ():
        if not 0 <= s < MAX_SEED:
            raise bad("--seeds", f"integers in 0..{MAX_SEED - 1}", s)
    for opt, v in (("--image-size", args.image_size), ("--limit", args.limit)):
        if v is not None and v < 1:
            raise bad(opt, "a positive int", v)
    grid = _grid_given(args)
    preset = "quick" if args.quick else "full" if args.full else "default"
    if not grid:
        claims = []
        known = S.claim_ids()
        for c in args.claims or ():
            for n in c.split(","):
                n = n.strip()
                if not n:
                    continue
                if n not in known:
                    raise UsageError(f"rectifiers compare: --claims: unknown claim id {n!r}{closest(n, known)} "
                                     f"(expected some of {', '.join(known)})")
                claims.append(n)
        if args.claims is not None and not claims:
            raise UsageError("rectifiers compare: --claims: expected claim ids, got none")
        return Plan(claims=list(dict.fromkeys(claims)), preset=preset, seeds=seeds, data=args.data,
                    image_size=args.image_size, limit=args.limit)
    if args.claims is not None or preset != "default":
        other = "--claims" if args.claims is not None else f"--{preset}"
        raise UsageError(f"rectifiers compare: {other} runs the claim experiments and does not combine with "
                         f"the grid options ({', '.join(grid)})")
    d = Config()
    acts = _activation_names(args.activations) if args.activations is not None else list(d.activations)
    models = list(dict.fromkeys(args.models)) if args.models is not None else list(d.models)
    pick = {k: getattr(args, k) if getattr(args, k) is not None else getattr(d, k)
            for k in ("epochs", "depth", "lr", "momentum", "batch_size", "init")}
    for opt, v in (("--epochs", pick["epochs"]), ("--depth", pick["depth"]),
                   ("--batch-size", pick["batch_size"])):
        if v < 1:
            raise bad(opt, "a positive int", v)
    if args.width is not None and args.width < 1:
        raise bad("--width", "a positive int", args.width)
    if not (math.isfinite(pick["lr"]) and pick["lr"] > 0):
        raise bad("--lr", "a positive finite number", pick["lr"])
    if not (math.isfinite(pick["momentum"]) and pick["momentum"] >= 0):
        raise bad("--momentum", "a finite number >= 0", pick["momentum"])
    if args.provoke is not None and not math.isfinite(args.provoke):
        raise bad("--provoke", "a finite bias", args.provoke)
    return Config(
        activations=acts, seeds=seeds if seeds is not None else list(d.seeds), models=models,
        width=args.width, provoke=args.provoke, data=args.data, image_size=args.image_size,
        limit=args.limit, **pick,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="test each of the article's claims with its own experiment; write a report",
        description="Run one designed experiment per claim of the source article (vanishing "
        "gradients in a deep plain MLP, dying units under a provoked negative bias, FReLU's b "
        "against the gradient norm, learnable parameters against their fixed twins, the funnel "
        "against ReLU and PReLU with BatchNorm for all, the kink, the funnel's cost) on a data set "
        "(default: scikit-learn's 8x8 digits), check each experiment's premise, and write report.md, "
        "report.html and PNG plots opening with a verdict on every claim. Any grid option "
        "(--activations, --models, --epochs, --depth, --width, --lr, --momentum, --batch-size, "
        "--init, --provoke) runs the older grid instead: the same small CNN and MLP once per "
        "activation and seed. Runs under torchrun for DistributedDataParallel.",
    )
    p.add_argument("--claims", nargs="+", default=None, metavar="ID",
                   help="run only the experiments testing these claim ids (default: all: "
                   f"{' '.join(S.claim_ids())}); ids may also be comma-separated")
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help="fewer seeds (3 per experiment; about 30 s): the same report, every verdict "
                        "marked as a quick run")
    preset.add_argument("--full", action="store_true",
                        help="more seeds (10 or 16 per experiment) than the default (5 or 8)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="N",
                   help="seeds, one run each, for every experiment (default: 0 .. n-1 with each "
                   "experiment's own n; in the grid: 0 1 2)")
    p.add_argument("--activations", nargs="+", default=None, metavar="NAME",
                   help=f"grid: activations to compare (default: all: {' '.join(ACTIVATIONS)}); "
                   "names may also be comma-separated")
    p.add_argument("--models", nargs="+", choices=MODELS, default=None,
                   help="grid: models (default: cnn mlp)")
    p.add_argument("--epochs", type=int, default=None, help="grid: epochs per run (default: 10)")
    p.add_argument("--depth", type=int, default=None,
                   help="grid: conv blocks of the CNN and hidden layers of the MLP (default: 4); "
                   "try 12 to see a deep plain network fail to train with --init torch")
    p.add_argument("--width", type=int, default=None,
                   help="grid: channels of the CNN's first block (default 16) / units per MLP layer (default 64)")
    p.add_argument("--lr", type=float, default=None, help="grid: SGD learning rate (default: 0.05)")
    p.add_argument("--momentum", type=float, default=None, help="grid: SGD momentum (default: 0.9)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="grid: global batch size, split across processes under torchrun (default: 64)")
    p.add_argument("--init", choices=("torch", "kaiming"), default=None,
                   help="grid: weight initialisation: PyTorch's default, or Kaiming normal with the "
                   "activation's own gain (default: torch)")
    p.add_argument("--provoke", type=float, nargs="?", const=DEFAULT_PROVOKE_BIAS, default=None,
                   metavar="BIAS",
                   help="grid: start every layer feeding an activation with this bias (default when given "
                   f"without a value: {DEFAULT_PROVOKE_BIAS:g}): ReLU units die and stay dead")
    p.add_argument("--data", default="digits", metavar="SPEC",
                   help="digits (default), cifar10:PATH (CIFAR-10 python batches) or folder:PATH "
                   "(one sub-folder of images per class)")
    p.add_argument("--image-size", type=int, default=32,
                   help="side images of a folder: data set are resized to (default: 32); the "
                   "experiments' models adapt to the data's shape")
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
        rep = out.get("findings")
        if rep:
            for pr in rep["premises"].values():
                if pr.checks:
                    print(pr.line())
            counts: dict[str, int] = {}
            for f in rep["findings"]:
                counts[f.verdict] = counts.get(f.verdict, 0) + 1
            print("verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items())
                  + (" (quick run: fewer seeds)" if isinstance(cfg, Plan) and cfg.preset == "quick" else ""))
        print(f"rectifiers compare: {len(out['results'])} runs in {out['meta']['wall_s']:.0f} s; "
              f"report in {os.path.join(args.out, 'report.md')} and report.html")
    return 0
