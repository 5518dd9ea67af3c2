"""The steps of :func:`rectifiers.convert` that read and rewrite a module's own forward (through
``torch.fx``) and apply a planned conversion, and the check pass with a sample input."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from . import _convert_sites as S
from ._convert_base import (
    RELU_FUNCTIONS,
    RELU_METHODS,
    _RELU_CALLS,
    Change,
    ConversionSummary,
    _describe,
    _is_library_module,
    _OwnCode,
    _qualname,
    _run,
)


@dataclass
class _Site:
    """One planned change in an owner's own graph: a call site or a functional call."""

    node: str  # the fx node's name
    name: str  # the new module's attribute name in the owner
    kind: str  # "call site" or "functional"
    before: str
    decision: S.Decision
    note: str | None  # how a BatchNorm cancels a shift of its output (FReLU bias note)
    inplace: bool = False


def _relu_node(node: fx.Node) -> tuple[str, bool] | None:
    """(description, in place) when ``node`` computes a relu by a function or method call."""
    if node.op == "call_function" and node.target in RELU_FUNCTIONS:
        inplace = RELU_FUNCTIONS[node.target] or bool(
            node.kwargs.get("inplace", node.args[1] if len(node.args) > 1 else False)
        )
        return _qualname(node.target), inplace
    if node.op == "call_method" and node.target in RELU_METHODS:
        return f"Tensor.{node.target}", RELU_METHODS[node.target]
    return None


def _follows(caller: tuple[str, nn.Module, Any]) -> str | None:
    how, where, at = caller
    return S.bn_follows_node(at, where) if how == "node" else S.bn_follows_in_sequential(where, at)


def _apply(
    model: nn.Module,
    summary: ConversionSummary,
    graphs: dict[int, tuple[nn.Module, fx.Graph]],
    owners: dict[int, tuple[nn.Module, list[str]]],
    plans: dict[int, list[_Site]],
    modules: dict[str, tuple[S.Decision, str | None]],
    sources: tuple[type, ...],
    build: Callable[..., nn.Module],
    note_bias: bool,
    sample_input: Any,
    stateful: bool,
    traced: set[str],
) -> None:
    root = model
    # Step 1: call sites and functional calls, one owner module at a time.
    keep: set[int] = set()  # source-type copies that keep a skipped call site as it was
    for oid, sites in plans.items():
        owner, graph = graphs[oid]
        paths = owners[oid][1]
        new = _rewrite_owner(owner, paths[0], graph, sites, build, summary, note_bias, keep, modules)
        if new is None:
            continue
        summary.rewritten.append(paths[0])
        for p in paths:
            if p == "":
                root = new
                summary.in_place = False
            else:
                parent, _, name = p.rpartition(".")
                setattr(root.get_submodule(parent), name, new)

    # Step 2: the modules themselves, in place.
    for path, m in list(root.named_modules(remove_duplicate=False)):
        if path not in modules or not isinstance(m, sources) or id(m) in keep:
            continue
        decision, via = modules[path]
        if not decision.apply:
            continue
        parent, _, name = path.rpartition(".")
        new_m = build(bool(getattr(m, "inplace", False)), decision.dim)
        new_m.train(m.training)
        setattr(root.get_submodule(parent), name, new_m)
        summary.changed.append(Change(path, "module", _describe(m), _describe(new_m)))
        if note_bias and via:
            summary.notes.append((path, S.zero_grad_note(via)))
    summary.changed.sort(key=lambda c: c.path)
    summary.notes.sort()
    summary.model = root

    # Step 3: one pass with the sample input.
    if sample_input is not None:
        _check_with_sample(root, sample_input, summary, stateful, sources, traced)
        summary.checked = True
        mods = dict(root.named_modules())
        for c in summary.changed:  # lazily sized parameters now have their sizes
            if c.path in mods:
                c.after = _describe(mods[c.path])


def _trace_own(
    owner: nn.Module,
    path: str,
    sources: tuple[type, ...],
    summary: ConversionSummary | None,
    convert_functional: bool,
) -> fx.Graph | None:
    """The graph of ``owner``'s own forward; None when fx cannot trace it (reported in
    ``summary`` when given and when the owner could hold something to convert)."""
    try:
        return _OwnCode().trace(owner)
    except Exception as e:  # noqa: BLE001 - any tracing failure is reported, not raised
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        has_sources = any(isinstance(c, sources) for c in owner.children())
        if summary is not None and (convert_functional or has_sources):
            summary.untraced.append((path, f"{type(owner).__name__}.forward: {type(e).__name__}: {first[:160]}"))
        return None


def _plan_owner(
    owner: nn.Module,
    path: str,
    graph: fx.Graph,
    sources: tuple[type, ...],
    selected: Callable[..., bool],
    build: Callable[..., nn.Module],
    feeders: S.Feeders,
    shapes: S.SampleShapes,
    decide: Callable[..., S.Decision],
    checks: list[tuple[str, S.Decision]],
    convert_functional: bool,
    split: bool,
) -> list[_Site]:
    """The call sites and functional calls to rewrite in ``owner``'s own graph, with the names
    their new modules will get and each one's decision (nothing is changed here)."""

    def full(rel: str) -> str:
        return f"{path}.{rel}" if path else rel

    used: set[str] = set(dict(owner.named_children())) | set(dir(owner))

    def fresh(base: str) -> str:
        name, i = base, 1
        while name in used:
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        return name

    sites: list[_Site] = []
    seen: dict[str, int] = {}
    calls = 0  # relu function calls so far, in graph order (= the order they run)
    for node in graph.nodes:
        if node.op == "call_module" and split:
            sub = owner.get_submodule(node.target)
            if not isinstance(sub, sources):
                continue
            seen[node.target] = seen.get(node.target, 0) + 1
            k = seen[node.target]
            if k == 1:
                continue  # the first call keeps the original module (the module step)
            if not selected(full(node.target), sub, False):
                continue  # an excluded module keeps all its call sites (the module step reports it)
            name = fresh(f"{node.target.replace('.', '_')}_{k - 1}")
            d = decide(feeders.node(S._first_tensor(node), owner), shapes.calls.get((id(sub), k), set()))
            checks.append((f"{full(node.target)} (call {k})", d))
            sites.append(_Site(node.name, name, "call site", f"call {k} of {full(node.target)}", d,
                               S.bn_follows_node(node, owner), bool(getattr(sub, "inplace", False))))
        elif convert_functional and node.op in ("call_function", "call_method"):
            relu = _relu_node(node)
            if relu is None:
                continue
            calls += 1
            x = node.args[0] if node.args else node.kwargs.get("input")
            if not isinstance(x, fx.Node):
                continue
            what, inplace = relu
            name = fresh(f"fn_{node.name}")
            if not selected(full(name), build(False)):
                used.discard(name)
                continue
            d = decide(feeders.node(x, owner), shapes.functional.get((id(owner), calls), set()))
            checks.append((full(name), d))
            sites.append(_Site(node.name, name, "functional", what + ("(inplace)" if inplace else ""),
                               d, S.bn_follows_node(node, owner), inplace))
    return sites


def _rewrite_owner(
    owner: nn.Module,
    path: str,
    graph: fx.Graph,
    sites: list[_Site],
    build: Callable[..., nn.Module],
    summary: ConversionSummary,
    note_bias: bool,
    keep: set[int],
    modules: dict[str, tuple[S.Decision, str | None]],
) -> nn.Module | None:
    """The owner rewritten as a GraphModule by its planned ``sites``; None when nothing in its
    own code changes."""

    def full(rel: str) -> str:
        return f"{path}.{rel}" if path else rel

    plan = {s.node: s for s in sites}
    changed = False
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        site = plan.get(node.name)
        if site is None:
            continue
        d = site.decision
        if site.kind == "call site":
            orig = node.target
            sub = owner.get_submodule(orig)
            first = modules.get(full(orig))
            if not d.apply and not (first and first[0].apply):
                continue  # the module itself stays too: this call is left as it is
            if d.apply:
                new_m = build(site.inplace, d.dim)
            else:
                # Skipped: this call keeps the source module's behaviour, in its own copy so that
                # converting the module itself (its first call) does not reach it.
                new_m = copy.deepcopy(sub)
                keep.add(id(new_m))
            new_m.train(sub.training)
            owner.add_module(site.name, new_m)
            node.target = site.name
            changed = True
            if d.apply:
                summary.changed.append(Change(full(site.name), "call site", site.before, _describe(new_m)))
                if note_bias and site.note:
                    summary.notes.append((full(site.name), S.zero_grad_note(site.note)))
            continue
        if not d.apply:
            continue
        x = node.args[0] if node.args else node.kwargs.get("input")
        new_m = build(False, d.dim)
        new_m.train(owner.training)
        owner.add_module(site.name, new_m)
        with graph.inserting_after(node):
            call = graph.call_module(site.name, (x,))
        node.replace_all_uses_with(call)
        if site.inplace:
            # An in-place relu changed x itself: later readers of x must read the new value.
            for user in list(x.users):
                if user is not node and user is not call and order.get(user, -1) > order[node]:
                    user.replace_input_with(x, call)
        graph.erase_node(node)
        summary.changed.append(Change(full(site.name), "functional", site.before, _describe(new_m)))
        if note_bias and site.note:
            summary.notes.append((full(site.name), S.zero_grad_note(site.note)))
        changed = True
    if not changed:
        return None
    graph.lint()
    gm = fx.GraphModule(owner, graph, class_name=type(owner).__name__)
    gm.training = owner.training  # not gm.train(): that would reset every child's mode
    return gm


def _check_with_sample(
    root: nn.Module,
    sample_input: Any,
    summary: ConversionSummary,
    stateful: bool,
    sources: tuple[type, ...],
    traced: set[str],
) -> None:
    """Run ``sample_input`` once (eval, no grad): materialise lazy parameters, count the calls of
    each new learnable module, and find relu calls that are still there."""
    changed_paths = {c.path for c in summary.changed}
    new_modules = {id(m): p for p, m in root.named_modules() if p in changed_paths}
    names = {id(m): p for p, m in root.named_modules()}
    calls: dict[int, int] = {}
    stack: list[nn.Module] = []
    handles = []

    def pre(m: nn.Module, _args: Any) -> None:
        stack.append(m)
        if id(m) in new_modules:
            calls[id(m)] = calls.get(id(m), 0) + 1

    def post(m: nn.Module, _args: Any, _out: Any) -> None:
        stack.pop()

    for m in root.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    leftovers: dict[str, int] = {}
    relu_funcs = _RELU_CALLS

    def is_activation(m: nn.Module) -> bool:
        # relu computed inside an activation module (a new one, an excluded source, a library
        # leaf such as nn.ReLU) is that module's business, not a functional call site.
        return (
            id(m) in new_modules
            or isinstance(m, sources)
            or (_is_library_module(m) and not any(True for _ in m.children()))
        )

    class _Spy(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func in relu_funcs and not (stack and is_activation(stack[-1])):
                where = names.get(id(stack[-1]), "?") if stack else ""
                leftovers[where] = leftovers.get(where, 0) + 1
            return func(*args, **(kwargs or {}))

    modes = {m: m.training for m in root.modules()}
    root.eval()
    try:
        with torch.no_grad(), _Spy():
            _run(root, sample_input)
    finally:
        for h in handles:
            h.remove()
        for m, t in modes.items():
            m.training = t
    if stateful:
        for i, n in calls.items():
            if n > 1:
                summary.not_converted.append((
                    new_modules[i],
                    f"runs {n} times per forward: its parameters are shared by {n} call sites",
                ))
    untraced = {p for p, _ in summary.untraced}
    for where, n in leftovers.items():
        if where in traced:
            why = "left as they are (excluded, or a form convert does not rewrite)"
        elif where in untraced:
            why = "not converted (its forward could not be traced)"
        else:
            why = "not converted (convert does not rewrite torch.nn or rectifiers code)"
        summary.not_converted.append((where, f"{n} relu call(s) per forward in its code {why}"))
