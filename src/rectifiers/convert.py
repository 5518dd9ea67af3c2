"""Swap the activations of an existing model: ``convert(model, to="prelu")``.

What it does, in order. First it **plans**, changing nothing: it traces each module's own
forward, finds the layer that feeds every site and (with a sample input) the shape each site
sees in the original model, and decides per site (see :mod:`rectifiers._convert_sites`): a
target that does not apply there (a funnel, which needs (N, C, H, W) maps, after a ``Linear``)
is skipped and listed with the reason, or, with ``on_inapplicable="error"``, refused with the
module paths; a lazily sized per-channel target gets the feeding layer's channel dim, or is
refused where nothing tells. Then it applies the plan, all or nothing (an error on the way puts
every module back):

1. **Call sites and functional calls** (through ``torch.fx``, one module at a time). Each
   module's *own* ``forward`` is traced with every child kept as a leaf. When a learnable target
   would otherwise be shared (one ``nn.ReLU`` instance called twice, as torchvision's ResNet
   blocks do), every extra call site gets its own new module; ``F.relu``, ``torch.relu``,
   ``torch.relu_``, ``F.relu_`` and ``Tensor.relu`` / ``relu_`` calls (in-place ones included)
   become calls of new modules. That module is then replaced, in its parent, by the rewritten
   ``torch.fx.GraphModule`` (same parameters, same state-dict keys for what it keeps). A module
   whose forward cannot be traced is left as it was and reported.
2. **Modules**: every module of a ``source`` type selected by ``include`` / ``exclude`` is
   replaced, in place, by a new target module built with ``kwargs`` (``inplace`` inherited).
3. **Sample input** (optional): one forward pass in eval mode without grad, which creates the
   per-channel parameters of lazy targets (``num_parameters="channels"``, ``channels=None``),
   counts how often each new learnable module runs (one still shared by several call sites is
   reported), and finds ``relu`` calls left in code that could not be traced.

Conversion is in place: the returned :class:`ConversionSummary` says what changed and holds the
converted model as ``.model``, which is ``model`` itself unless the root's own ``forward``
had to be rewritten (then ``.model`` is a new ``GraphModule`` and ``.in_place`` is False).
Build the optimizer after converting (and after a first forward pass for lazy targets).
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import Any

from torch import fx, nn

from . import _convert_sites as S
from . import modules as M
from ._convert_base import (
    _RELU_CALLS,
    _RELU_SOURCES,
    RELU_FUNCTIONS,
    RELU_METHODS,
    Change,
    ConversionSummary,
    Selector,
    _describe,
    _is_library_module,
    _run,
)
from ._convert_rewrite import _apply, _follows, _plan_owner, _Site, _trace_own
from .registry import ActivationSpec, get

__all__ = ["convert", "ConversionSummary", "Change", "RELU_FUNCTIONS", "RELU_METHODS"]


# --------------------------------------------------------------------------------------------
# arguments


def _selector(arg: Selector, what: str) -> Callable[[str, nn.Module], bool] | None:
    if arg is None:
        return None
    if callable(arg):
        return arg  # type: ignore[return-value]
    pats = [arg] if isinstance(arg, str) else list(arg)
    if not all(isinstance(p, str) for p in pats):
        raise TypeError(
            f"convert: {what} must be a glob pattern, a list of them, or a predicate "
            f"(path, module) -> bool; got {arg!r}"
        )
    return lambda path, _m: any(fnmatch.fnmatchcase(path, p) for p in pats)


def _sources(source: Any) -> tuple[type, ...]:
    if source is None:
        return _RELU_SOURCES
    items = [source] if isinstance(source, (str, type)) else list(source)
    out = []
    for s in items:
        cls = get(s) if isinstance(s, str) else s
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(
                f"convert: source must be nn.Module classes or activation names, got {s!r}"
            )
        out.append(cls)
    return tuple(out)


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


# --------------------------------------------------------------------------------------------
# the conversion




def convert(
    model: nn.Module,
    to: ActivationSpec = "prelu",
    source: Any = None,
    include: Selector = None,
    exclude: Selector = None,
    sample_input: Any = None,
    *,
    functional: bool = True,
    split_shared: bool = True,
    on_inapplicable: str = "skip",
    **kwargs: Any,
) -> ConversionSummary:
    """Replace the activations of ``model`` by ``to`` (a registry name or a class), in place.

    All or nothing: every site is checked before any is changed, and an error on the way (a
    refusal, or anything raised by the sample pass) leaves the model exactly as it was.

    Args:
        model: any ``nn.Module``.
        to: the target: a registry name (``"prelu"``, ``"frelu"``, ``"funnel"``, ...) or a class
            / callable building a module. Default ``"prelu"``.
        source: the module types to replace (classes or registry names). Default:
            ``torch.nn.ReLU`` and ``rectifiers.ReLU``. Functional calls are converted when a ReLU
            type is among them.
        include, exclude: which sites to convert, by module path: a glob (``"layer*.relu"``), a
            list of globs, or a predicate ``(path, module) -> bool``. A functional call's path is
            the path of the module it will become (``"block.mlp.fn_relu"``).
        sample_input: optional input (a tensor, a tuple of positional arguments, or a dict of
            keyword arguments). It is run once through the original model (to learn each site's
            input shape) and once through the converted one (to create lazily sized parameters
            and check for left-over sharing and ``relu`` calls), in eval mode without grad.
        functional: convert ``F.relu`` / ``torch.relu`` / ``Tensor.relu`` calls (default True).
        split_shared: give every call site of a reused module its own learnable parameters
            (default True; ignored for targets without parameters or buffers).
        on_inapplicable: what to do at a site where the target does not apply (a funnel,
            which needs (N, C, H, W) maps, after a ``Linear``): ``"skip"`` (default: leave it,
            and list it in ``summary.skipped`` with the reason) or ``"error"`` (a ``ValueError``
            naming every such module path; the model is left unchanged).
        **kwargs: passed to the target's constructor. The value ``"channels"`` (for example
            ``num_parameters="channels"``) means one parameter per channel, counted lazily at
            the first call (it becomes ``None``). Unless ``dim`` is given too, each site's
            channel dim comes from the layer that feeds it: the last dim after ``Linear`` /
            ``LayerNorm`` / ``Embedding`` / attention, dim 1 after ``ConvNd`` / ``BatchNormNd``
            / ``GroupNorm``; where nothing tells and the input may have more than 2 dims,
            ``convert`` refuses (``ValueError`` naming the site; pass ``dim=-1`` or ``dim=1``).
            ``inplace`` defaults to the replaced module's.

    Returns:
        a :class:`ConversionSummary`; the converted model is ``summary.model``. For ``"frelu"``
        its ``notes`` name the sites whose bias cannot learn (a BatchNorm follows; see
        :mod:`rectifiers._convert_sites` for the rule).

    Example: ``convert(net, "prelu", num_parameters="channels", sample_input=x)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert: model must be an nn.Module, got {type(model).__name__}")
    if on_inapplicable not in ("skip", "error"):
        raise ValueError(f"convert: on_inapplicable must be 'skip' or 'error', got {on_inapplicable!r}")
    factory = get(to)
    sources = _sources(source)
    inc, exc = _selector(include, "include"), _selector(exclude, "exclude")
    kw = {k: (None if isinstance(v, str) and v == "channels" else v) for k, v in kwargs.items()}
    takes_inplace = _accepts(factory, "inplace")

    def build(inplace: bool, dim: int | None = None) -> nn.Module:
        args = dict(kw)
        if takes_inplace and "inplace" not in args:
            args["inplace"] = inplace
        if dim is not None:
            args["dim"] = dim
        m = factory(**args)
        if not isinstance(m, nn.Module):
            raise TypeError(f"convert: the target {to!r} returned {type(m).__name__}, not an nn.Module")
        return m

    probe = build(False)
    stateful = any(True for _ in probe.parameters()) or any(True for _ in probe.buffers())
    kind = S.target_kind(probe, "dim" in kw)
    note_bias = isinstance(probe, M.FlexibleReLU)
    target_name = to if isinstance(to, str) else getattr(to, "__name__", repr(to))
    summary = ConversionSummary(model=model, target=f"{target_name} ({_describe(probe)})")

    def selected(path: str, m: nn.Module, record: bool = True) -> bool:
        if inc is not None and not inc(path, m):
            if record:
                summary.skipped.append((path, "not matched by include"))
            return False
        if exc is not None and exc(path, m):
            if record:
                summary.skipped.append((path, "matched by exclude"))
            return False
        return True

    convert_functional = functional and any(issubclass(s, _RELU_SOURCES) for s in sources)
    split = stateful and split_shared
    rewrite = convert_functional or split
    sampled = sample_input is not None and kind != "plain"

    # ---- Plan: nothing below changes the model until every site is decided. ----
    # The owners: user modules with a forward of their own (torch.nn / rectifiers code has no
    # user relu calls to rewrite, and containers such as nn.Sequential call each registered
    # child once: the module step handles them).
    owners: dict[int, tuple[nn.Module, list[str]]] = {}
    if rewrite or kind != "plain" or note_bias:
        for path, m in model.named_modules(remove_duplicate=False):
            if isinstance(m, sources) or _is_library_module(m) or type(m).forward is nn.Module.forward:
                continue
            owners.setdefault(id(m), (m, []))[1].append(path)
    graphs: dict[int, tuple[nn.Module, fx.Graph]] = {}
    traced: set[str] = set()  # paths of owners whose own forward fx traced
    for oid, (owner, paths) in owners.items():
        graph = _trace_own(owner, paths[0], sources, summary if rewrite else None, convert_functional)
        if graph is not None:
            graphs[oid] = (owner, graph)
            traced.update(paths)
    feeders = S.Feeders(model, graphs)
    shapes = S.SampleShapes({}, {})
    if sampled:
        watched = {id(m) for m in model.modules() if isinstance(m, sources)}
        shapes = S.sample_shapes(model, sample_input, _run, watched, set(graphs), _RELU_CALLS)

    def decide(feeder: S.Feeder | None, seen: set[S.Shape]) -> S.Decision:
        return S.decide(kind, probe, feeder, seen, sampled)

    checks: list[tuple[str, S.Decision]] = []  # (path, decision) of every selected site
    plans: dict[int, list[_Site]] = {}
    if rewrite:
        for oid, (owner, graph) in graphs.items():
            plans[oid] = _plan_owner(owner, owners[oid][1][0], graph, sources, selected, build, feeders,
                                     shapes, decide, checks, convert_functional, split)
    # The modules themselves (and the first call of a shared one).
    modules: dict[str, tuple[S.Decision, str | None]] = {}
    by_instance: dict[int, tuple[S.Decision, str | None]] = {}
    for path, m in model.named_modules(remove_duplicate=False):
        if not path or not isinstance(m, sources) or not selected(path, m):
            continue
        if id(m) not in by_instance:
            callers = feeders.callers.get(id(m), [])
            if split and callers:  # the original module keeps the first call only
                how, where, at = callers[0]
                feeder = feeders.node(S._first_tensor(at), where) if how == "node" else feeders.sequential(where, at)
                seen = shapes.calls.get((id(m), 1), set())
                via = _follows(callers[0])
            else:
                feeder = feeders.input(m)
                seen = set().union(*[v for (i, _k), v in shapes.calls.items() if i == id(m)])
                vias = [_follows(c) for c in callers]
                via = vias[0] if vias and all(vias) else None
            by_instance[id(m)] = (decide(feeder, seen), via)
        modules[path] = by_instance[id(m)]
        checks.append((path, by_instance[id(m)][0]))

    refusals = [(p, d.refuse) for p, d in checks if d.refuse]
    if refusals:
        raise ValueError(f"convert -> {target_name}: the model was left unchanged; " + "; ".join(
            f"at {p or '<root>'!r}: {why}" for p, why in refusals))
    bad = [(p, d.reason) for p, d in checks if not d.apply]
    if bad and on_inapplicable == "error":
        raise ValueError(
            f"convert -> {target_name} does not apply at {len(bad)} site(s) (on_inapplicable="
            f"'error'; the model was left unchanged): "
            + "; ".join(f"{p or '<root>'!r}: {why}" for p, why in bad)
            + ". Exclude them (exclude=[...]) or pass on_inapplicable='skip'."
        )
    summary.skipped.extend((p, f"{target_name} does not apply: {why}") for p, why in bad)
    if sample_input is None:
        summary.unchecked.extend((p, d.unchecked) for p, d in checks if d.apply and d.unchecked)
    del probe

    # ---- Apply, all or nothing: any error puts every module tree back as it was. ----
    snapshot = [(m, dict(m._modules)) for m in model.modules()]
    try:
        _apply(model, summary, graphs, owners, plans, modules, sources, build, note_bias,
               sample_input, stateful, traced)
    except BaseException as e:
        for m, children in snapshot:
            m._modules.clear()
            m._modules.update(children)
        e.add_note(f"convert -> {target_name}: rolled back, the model is unchanged")
        raise
    return summary
