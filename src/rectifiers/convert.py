"""Swap the activations of an existing model: ``convert(model, to="prelu")``.

What it does, in order:

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from . import modules as M
from .registry import ActivationSpec, get

__all__ = ["convert", "ConversionSummary", "Change", "RELU_FUNCTIONS", "RELU_METHODS"]

#: Module-path patterns (``fnmatch`` globs against paths such as ``"layer1.0.relu"``), or a
#: predicate ``(path, module) -> bool``.
Selector = Union[None, str, Sequence[str], Callable[[str, nn.Module], bool]]

#: Functions that compute ReLU (``fx`` records these as ``call_function`` nodes).
RELU_FUNCTIONS: dict[Any, bool] = {  # function -> always in place
    F.relu: False,
    torch.relu: False,
    F.relu_: True,
    torch.relu_: True,
}
#: Tensor methods that compute ReLU -> in place.
RELU_METHODS: dict[str, bool] = {"relu": False, "relu_": True}

_RELU_SOURCES = (nn.ReLU, M.ReLU)


@dataclass
class Change:
    """One activation replaced: where, what kind of site, and what it was and became."""

    path: str  # module path of the new activation in the converted model
    kind: str  # "module", "call site" (an extra call of a shared module) or "functional"
    before: str
    after: str


@dataclass
class ConversionSummary:
    """What :func:`convert` did. ``print(summary)`` gives a readable report."""

    model: nn.Module
    target: str
    in_place: bool = True
    changed: list[Change] = field(default_factory=list)
    #: (path, reason): activations left alone on purpose (include / exclude).
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: (path, reason): what could not be converted (untraceable code, still shared parameters).
    not_converted: list[tuple[str, str]] = field(default_factory=list)
    #: Paths of modules whose own forward was rewritten into a ``torch.fx.GraphModule``.
    rewritten: list[str] = field(default_factory=list)
    #: (path, error): modules whose own forward torch.fx could not trace. Relu calls written
    #: there, and repeated calls of one activation module there, cannot be converted; a
    #: ``sample_input`` finds out whether there are any (they then appear in ``not_converted``).
    untraced: list[tuple[str, str]] = field(default_factory=list)
    #: Whether a sample input was run through the converted model.
    checked: bool = False

    @property
    def complete(self) -> bool:
        """True when nothing is known, or (without a sample input) suspected, to be left over."""
        return not self.not_converted and (self.checked or not self.untraced)

    def count(self, kind: str | None = None) -> int:
        """Number of changes, of one ``kind`` or in all."""
        return sum(1 for c in self.changed if kind is None or c.kind == kind)

    def __str__(self) -> str:
        kinds = ", ".join(
            f"{self.count(k)} {k}{'s' if self.count(k) != 1 else ''}"
            for k in ("module", "call site", "functional")
            if self.count(k)
        )
        lines = [f"convert -> {self.target}: {len(self.changed)} replaced ({kinds or 'none'})"]
        for c in self.changed:
            lines.append(f"  {c.path or '<root>'}: {c.before} -> {c.after}  [{c.kind}]")
        if self.rewritten:
            lines.append("rewritten with torch.fx: " + ", ".join(p or "<root>" for p in self.rewritten))
        if not self.in_place:
            lines.append("the root was rewritten: use summary.model (a torch.fx.GraphModule)")
        untraced = "could not trace (any relu calls there are unconverted" + (
            "; the sample input found none beyond those listed below)" if self.checked
            else "; pass sample_input to find out)"
        )
        for title, items in (
            ("skipped", self.skipped), (untraced, self.untraced), ("NOT converted", self.not_converted)
        ):
            if items:
                lines.append(f"{title}:")
                lines.extend(f"  {p or '<root>'}: {why}" for p, why in items)
        return "\n".join(lines)


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


def _describe(m: nn.Module) -> str:
    extra = m.extra_repr()
    return f"{type(m).__name__}({extra})"


def _qualname(f: Any) -> str:
    mod = getattr(f, "__module__", None) or ""
    short = {"torch.nn.functional": "F", "torch": "torch"}.get(mod, mod)
    return f"{short}.{getattr(f, '__name__', f)}" if short else str(f)


class _OwnCode(fx.Tracer):
    """Traces one module's own forward: every submodule call stays a single ``call_module``."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _is_library_module(m: nn.Module) -> bool:
    mod = type(m).__module__ or ""
    return mod.startswith("torch.") or mod.startswith("rectifiers.")


def _run(model: nn.Module, sample_input: Any) -> Any:
    if isinstance(sample_input, dict):
        return model(**sample_input)
    if isinstance(sample_input, (tuple, list)):
        return model(*sample_input)
    return model(sample_input)


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
    **kwargs: Any,
) -> ConversionSummary:
    """Replace the activations of ``model`` by ``to`` (a registry name or a class), in place.

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
            keyword arguments) run once through the converted model in eval mode without grad:
            creates lazily sized parameters and checks for left-over sharing and ``relu`` calls.
        functional: convert ``F.relu`` / ``torch.relu`` / ``Tensor.relu`` calls (default True).
        split_shared: give every call site of a reused module its own learnable parameters
            (default True; ignored for targets without parameters or buffers).
        **kwargs: passed to the target's constructor. The value ``"channels"`` (for example
            ``num_parameters="channels"``) means one parameter per channel, counted lazily at
            the first call (it becomes ``None``). ``inplace`` defaults to the replaced module's.

    Returns:
        a :class:`ConversionSummary`; the converted model is ``summary.model``.

    Example: ``convert(net, "prelu", num_parameters="channels", sample_input=x)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert: model must be an nn.Module, got {type(model).__name__}")
    factory = get(to)
    sources = _sources(source)
    inc, exc = _selector(include, "include"), _selector(exclude, "exclude")
    kw = {k: (None if isinstance(v, str) and v == "channels" else v) for k, v in kwargs.items()}
    takes_inplace = _accepts(factory, "inplace")

    def build(inplace: bool) -> nn.Module:
        args = dict(kw)
        if takes_inplace and "inplace" not in args:
            args["inplace"] = inplace
        m = factory(**args)
        if not isinstance(m, nn.Module):
            raise TypeError(f"convert: the target {to!r} returned {type(m).__name__}, not an nn.Module")
        return m

    probe = build(False)
    stateful = any(True for _ in probe.parameters()) or any(True for _ in probe.buffers())
    target_name = to if isinstance(to, str) else getattr(to, "__name__", repr(to))
    summary = ConversionSummary(model=model, target=f"{target_name} ({_describe(probe)})")
    del probe

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
    root = model
    traced: set[str] = set()  # owners whose own forward fx traced (failures are removed below)
    # Step 1: call sites and functional calls, one owner module at a time.
    if convert_functional or (stateful and split_shared):
        owners: dict[int, tuple[nn.Module, list[str]]] = {}
        for path, m in model.named_modules(remove_duplicate=False):
            if isinstance(m, sources) or _is_library_module(m):
                # torch.nn / rectifiers code has no user relu calls to rewrite, and containers
                # such as nn.Sequential call each registered child once (step 2 handles them)
                continue
            if type(m).forward is nn.Module.forward:  # containers without a forward
                continue
            owners.setdefault(id(m), (m, []))[1].append(path)
        for owner, paths in owners.values():
            traced.update(paths)
            new = _rewrite_owner(
                owner, paths[0], sources, selected, build, summary,
                convert_functional, stateful and split_shared,
            )
            if new is False:
                traced.difference_update(paths)
                continue
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
        if not path or not isinstance(m, sources) or not selected(path, m):
            continue
        parent, _, name = path.rpartition(".")
        new_m = build(bool(getattr(m, "inplace", False)))
        new_m.train(m.training)
        setattr(root.get_submodule(parent), name, new_m)
        summary.changed.append(Change(path, "module", _describe(m), _describe(new_m)))
    summary.changed.sort(key=lambda c: c.path)
    summary.model = root

    # Step 3: one pass with the sample input.
    if sample_input is not None:
        _check_with_sample(root, sample_input, summary, stateful, sources, traced)
        summary.checked = True
        mods = dict(root.named_modules())
        for c in summary.changed:  # lazily sized parameters now have their sizes
            if c.path in mods:
                c.after = _describe(mods[c.path])
    return summary


def _rewrite_owner(
    owner: nn.Module,
    path: str,
    sources: tuple[type, ...],
    selected: Callable[..., bool],
    build: Callable[[bool], nn.Module],
    summary: ConversionSummary,
    convert_functional: bool,
    split: bool,
) -> nn.Module | None | bool:
    """The owner rewritten as a GraphModule; None when nothing in its own code needs it; False
    when its forward cannot be traced (reported in ``summary``)."""
    try:
        graph = _OwnCode().trace(owner)
    except Exception as e:  # noqa: BLE001 - any tracing failure is reported, not raised
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        has_sources = any(isinstance(c, sources) for c in owner.children())
        if convert_functional or has_sources:
            summary.untraced.append((path, f"{type(owner).__name__}.forward: {type(e).__name__}: {first[:160]}"))
        return False

    def full(rel: str) -> str:
        return f"{path}.{rel}" if path else rel

    used: set[str] = set(dict(owner.named_children())) | set(dir(owner))

    def fresh(base: str) -> str:
        name, i = base, 1
        while name in used:
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        return name

    changed = False
    seen: dict[str, int] = {}
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        if node.op == "call_module" and split:
            sub = owner.get_submodule(node.target)
            if not isinstance(sub, sources):
                continue
            seen[node.target] = seen.get(node.target, 0) + 1
            if seen[node.target] == 1:
                continue  # the first call keeps the original module (replaced in step 2)
            if not selected(full(node.target), sub, False):
                continue  # an excluded module keeps all its call sites (step 2 reports it)
            orig = node.target
            name = fresh(f"{orig.replace('.', '_')}_{seen[orig] - 1}")
            new_m = build(bool(getattr(sub, "inplace", False)))
            new_m.train(sub.training)
            owner.add_module(name, new_m)
            node.target = name
            summary.changed.append(Change(
                full(name), "call site", f"call {seen[orig]} of {full(orig)}", _describe(new_m)
            ))
            changed = True
        elif convert_functional and node.op in ("call_function", "call_method"):
            if node.op == "call_function":
                if node.target not in RELU_FUNCTIONS:
                    continue
                inplace = RELU_FUNCTIONS[node.target] or bool(
                    node.kwargs.get("inplace", node.args[1] if len(node.args) > 1 else False)
                )
                what = _qualname(node.target)
            else:
                if node.target not in RELU_METHODS:
                    continue
                inplace = RELU_METHODS[node.target]
                what = f"Tensor.{node.target}"
            x = node.args[0] if node.args else node.kwargs.get("input")
            if not isinstance(x, fx.Node):
                continue
            name = fresh(f"fn_{node.name}")
            new_m = build(False)
            if not selected(full(name), new_m):
                used.discard(name)
                continue
            new_m.train(owner.training)
            owner.add_module(name, new_m)
            with graph.inserting_after(node):
                call = graph.call_module(name, (x,))
            node.replace_all_uses_with(call)
            if inplace:
                # An in-place relu changed x itself: later readers of x must read the new value.
                for user in list(x.users):
                    if user is not node and user is not call and order.get(user, -1) > order[node]:
                        user.replace_input_with(x, call)
            graph.erase_node(node)
            summary.changed.append(Change(
                full(name), "functional", what + ("(inplace)" if inplace else ""), _describe(new_m)
            ))
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
    relu_funcs = set(RELU_FUNCTIONS) | {torch.Tensor.relu, torch.Tensor.relu_}

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
