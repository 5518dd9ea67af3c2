"""What :func:`rectifiers.convert` learns about each activation site before it changes anything.

* **The feeding layer** (from the ``torch.fx`` graph of the module that calls the activation, or
  from the previous child of an ``nn.Sequential``): ``nn.Linear`` / ``LayerNorm`` /
  ``Embedding`` / ``MultiheadAttention`` put features in the last dim; ``ConvNd``,
  ``BatchNormNd``, ``InstanceNormNd`` and ``GroupNorm`` put channels at dim 1 (and a ConvNd or
  BatchNormNd fixes the number of dims). Elementwise operations (``+``, ``*``, dropout,
  pooling, other activations, ``torch.cat``) pass the layout of their first input through.
* **The input shapes** a sample input gives each site (one eval-mode pass of the *original*
  model, no grad).
* **The decision**: whether the target applies there (a funnel needs (N, C, H, W) maps with
  channels at dim 1), and which dim a lazily sized per-channel target counts.
* **FReLU sites whose bias cannot learn**: the rule is static, from the fx graph or the
  ``nn.Sequential`` order. Every consumer of the activation's output is a BatchNorm, or a conv
  without padding (any kernel, so every output position sees the same constant shift) or a
  ``Linear`` whose every consumer is a BatchNorm. In training mode BatchNorm subtracts the
  batch mean per channel, so ``max(0, x) + b`` and ``max(0, x)`` give the same output and the
  gradient of ``b`` is exactly zero. (A padded conv sees the shift everywhere but at the border,
  so the gradient there is small but not zero: not noted.)
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from . import modules as M

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Feeder:
    """The layer that feeds a site: its layout (``"first"``: channels at dim 1, ``"last"``:
    features in the last dim) and the numbers of dims its output can have (None: any)."""

    layout: str
    ndims: tuple[int, ...] | None
    name: str


@dataclass
class Decision:
    """Whether a site is converted, why not, and the channel dim to give a lazy target."""

    apply: bool = True
    reason: str = ""  # why the target does not apply (apply=False)
    dim: int | None = None  # dim= for a lazily sized per-channel target (None: leave as given)
    unchecked: str = ""  # why applicability could not be decided without a sample input
    refuse: str = ""  # an ambiguity convert refuses to guess (raised before any change)


# ---------------------------------------------------------------------------------------------
# the feeding layer

_LAST = (nn.Linear, nn.Bilinear, nn.LayerNorm, nn.Embedding, nn.MultiheadAttention) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)
_BN_NDIMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,),
             nn.InstanceNorm1d: (2, 3), nn.InstanceNorm2d: (3, 4), nn.InstanceNorm3d: (4, 5)}
#: Modules whose output keeps the layout of their input.
_PASS = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    M.ReLU, M.LeakyReLU, M.PReLU, M.FlexibleReLU, M._FunnelReLUNd,
)
#: Functions and methods whose output keeps the layout of their first tensor input.
_PASS_FUNCTIONS = {
    operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
    operator.truediv, operator.itruediv, operator.neg, torch.add, torch.mul, torch.sub,
    torch.cat, torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.clamp,
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.gelu, F.silu, F.hardswish, F.dropout,
    F.dropout2d, F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d,
    F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
}
_PASS_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "relu", "relu_",
                 "contiguous", "clone", "sigmoid", "tanh", "clamp", "clamp_", "float", "to"}


class Feeders:
    """Finds what feeds a site, following values through the fx graphs of the traced modules,
    ``nn.Sequential`` order, and up to the caller when the value is a module's own input."""

    def __init__(self, root: nn.Module, graphs: dict[int, tuple[nn.Module, fx.Graph]]) -> None:
        self.graphs = graphs  # id(owner) -> (owner, graph of its own forward)
        # id(module) -> where it is called: ("node", owner, node) or ("seq", sequential, index)
        self.callers: dict[int, list[tuple[str, nn.Module, Any]]] = {}
        for owner, graph in graphs.values():
            for node in graph.nodes:
                if node.op == "call_module":
                    try:
                        sub = owner.get_submodule(node.target)
                    except AttributeError:
                        continue
                    self.callers.setdefault(id(sub), []).append(("node", owner, node))
        for m in root.modules():
            if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward:
                for i, child in enumerate(m):
                    self.callers.setdefault(id(child), []).append(("seq", m, i))
        self._busy: set[tuple[str, int]] = set()

    def _guard(self, key: tuple[str, int], fn: Callable[[], Feeder | None]) -> Feeder | None:
        if key in self._busy or len(self._busy) > 64:
            return None
        self._busy.add(key)
        try:
            return fn()
        finally:
            self._busy.discard(key)

    def output(self, m: nn.Module) -> Feeder | None:
        """The layout of ``m``'s output, when its type or its traced graph tells."""
        name = type(m).__name__
        if isinstance(m, _LAST):
            return Feeder("last", None, name)
        if isinstance(m, nn.modules.conv._ConvNd):
            return Feeder("first", (len(m.kernel_size) + 2,), name)
        for cls, nd in _BN_NDIMS.items():
            if isinstance(m, cls):
                return Feeder("first", nd, name)
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LocalResponseNorm)):
            return Feeder("first", None, name)
        if isinstance(m, _PASS):
            return self.input(m)
        if isinstance(m, nn.Sequential) and len(m):
            return self.output(m[len(m) - 1])
        if id(m) in self.graphs:
            graph = self.graphs[id(m)][1]
            out = next((n for n in graph.nodes if n.op == "output"), None)
            if out is not None and out.args:
                res = out.args[0]
                return self._guard(("out", id(m)), lambda: self.node(res, m))
        return None

    def input(self, m: nn.Module) -> Feeder | None:
        """The layout of ``m``'s first input, from where ``m`` is called (the first place that
        tells)."""
        def find() -> Feeder | None:
            for how, where, at in self.callers.get(id(m), []):
                if how == "node":
                    f = self.node(_first_tensor(at), where)
                else:
                    f = self.sequential(where, at)
                if f is not None:
                    return f
            return None

        return self._guard(("in", id(m)), find)

    def sequential(self, seq: nn.Sequential, index: int) -> Feeder | None:
        """What feeds child ``index`` of ``seq``."""
        if index > 0:
            return self.output(seq[index - 1])
        return self.input(seq)

    def node(self, node: Any, owner: nn.Module, depth: int = 0) -> Feeder | None:
        """What feeds the fx value ``node`` in the graph of ``owner``'s own forward."""
        if not isinstance(node, fx.Node) or depth > 64:
            return None
        if node.op == "placeholder":
            first = next(n for n in node.graph.nodes if n.op == "placeholder")
            return self.input(owner) if node is first else None
        if node.op == "call_module":
            try:
                m = owner.get_submodule(node.target)
            except AttributeError:
                return None
            if isinstance(m, _PASS):
                return self.node(_first_tensor(node), owner, depth + 1)
            return self.output(m)
        if (node.op == "call_function" and node.target in _PASS_FUNCTIONS) or (
            node.op == "call_method" and node.target in _PASS_METHODS
        ):
            return self.node(_first_tensor(node), owner, depth + 1)
        return None


def _first_tensor(node: fx.Node) -> Any:
    for a in list(node.args) + list(node.kwargs.values()):
        if isinstance(a, (list, tuple)):  # torch.cat's list
            a = next((b for b in a if isinstance(b, fx.Node)), None)
        if isinstance(a, fx.Node):
            return a
    return None


# ---------------------------------------------------------------------------------------------
# the decision


def target_kind(probe: nn.Module, dim_given: bool) -> str:
    """``"funnel"``, ``"channels"`` (a lazily sized per-channel PReLU / FReLU whose ``dim`` the
    caller left to convert) or ``"plain"`` (applies anywhere, nothing to decide)."""
    if isinstance(probe, M._FunnelReLUNd):
        return "funnel"
    if isinstance(probe, M._ChannelParam) and probe.num_parameters is None and not dim_given:
        return "channels"
    return "plain"


def decide(kind: str, probe: nn.Module, feeder: Feeder | None, shapes: Iterable[Shape],
           sampled: bool) -> Decision:
    """The decision for one site; ``shapes``: the inputs the sample gave it (``sampled``: a
    sample input was run, so an empty ``shapes`` means the site did not run)."""
    shapes = sorted(set(shapes))
    fed = f" (fed by {feeder.name})" if feeder else ""
    if kind == "funnel":
        want = probe._spatial + 2
        layout = {3: "(N, C, L)", 4: "(N, C, H, W)", 5: "(N, C, D, H, W)"}[want]
        cls = type(probe).__name__
        bad = [s for s in shapes if len(s) != want]
        if bad:
            return Decision(False, f"{cls} needs {want}-D {layout} input; the sample gives {list(bad[0])}{fed}")
        if feeder is not None and feeder.layout == "last":
            return Decision(False, f"fed by {feeder.name}: features in the last dim, and {cls} "
                                   f"needs {layout} maps with channels at dim 1")
        if feeder is not None and feeder.ndims is not None and want not in feeder.ndims:
            return Decision(False, f"fed by {feeder.name} ({'/'.join(map(str, feeder.ndims))}-D "
                                   f"output), and {cls} needs {want}-D {layout} input")
        if feeder is None and not shapes:
            return Decision(unchecked="input layout unknown (no layer that tells feeds it)")
        return Decision()
    if kind == "channels":
        if feeder is not None:
            return Decision(dim=-1 if feeder.layout == "last" else 1)
        if shapes and all(len(s) <= 2 for s in shapes):
            return Decision(dim=1)  # (N, C): dim 1 is the last dim too
        if sampled and not shapes:
            return Decision()  # never runs: nothing to size
        seen = f"; the sample gives {list(shapes[0])}" if shapes else ""
        return Decision(refuse=(
            f"cannot tell which dim holds the channels (no Linear, ConvNd or norm layer feeds it"
            f"{seen}): pass dim=-1 for channels-last (N, *, C) inputs such as a transformer "
            f"MLP's, or dim=1 for (N, C, *)"
        ))
    return Decision()


# ---------------------------------------------------------------------------------------------
# FReLU sites whose bias a following BatchNorm cancels


def _is_bn(m: Any) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def _unpadded_linear(m: Any) -> bool:
    """A conv without padding (the same shift at every output position) or a Linear."""
    if isinstance(m, nn.Linear):
        return True
    if not isinstance(m, nn.modules.conv._ConvNd) or isinstance(m, nn.modules.conv._ConvTransposeNd):
        return False
    pad = m.padding
    if isinstance(pad, str):
        return pad == "valid" or all(k == 1 for k in m.kernel_size)
    return all(p == 0 for p in pad)


def bn_follows_node(node: fx.Node, owner: nn.Module) -> str | None:
    """How a BatchNorm cancels a constant shift of ``node``'s output; None if it does not."""

    def mod(n: fx.Node) -> Any:
        if n.op != "call_module":
            return None
        try:
            return owner.get_submodule(n.target)
        except AttributeError:
            return None

    users = list(node.users)
    if not users:
        return None
    via = set()
    for u in users:
        m = mod(u)
        if _is_bn(m):
            via.add(type(m).__name__)
            continue
        if not _unpadded_linear(m) or not u.users:
            return None
        for u2 in u.users:
            m2 = mod(u2)
            if not _is_bn(m2):
                return None
            via.add(f"{type(m).__name__} then {type(m2).__name__}")
    return " / ".join(sorted(via))


def bn_follows_in_sequential(seq: nn.Sequential, index: int) -> str | None:
    children = list(seq)
    nxt = children[index + 1: index + 3]
    if nxt and _is_bn(nxt[0]):
        return type(nxt[0]).__name__
    if len(nxt) == 2 and _unpadded_linear(nxt[0]) and _is_bn(nxt[1]):
        return f"{type(nxt[0]).__name__} then {type(nxt[1]).__name__}"
    return None


def zero_grad_note(via: str) -> str:
    return (f"its bias gets a zero gradient in training: {via} follows, and BatchNorm removes any "
            "constant shift (the bias cannot learn there)")


# ---------------------------------------------------------------------------------------------
# the input shapes a sample gives each site, from the original model


@dataclass
class SampleShapes:
    #: (id(module), k): input shapes of the k-th call (from 1) of a module within one call of
    #: the module that calls it.
    calls: dict[tuple[int, int], set[Shape]]
    #: (id(owner), k): input shapes of the k-th relu function call within one call of ``owner``.
    functional: dict[tuple[int, int], set[Shape]]


def sample_shapes(
    root: nn.Module,
    sample_input: Any,
    run: Callable[[nn.Module, Any], Any],
    watched: set[int],
    owners: set[int],
    relu_funcs: set[Any],
) -> SampleShapes:
    """Run ``sample_input`` through ``root`` once (eval, no grad, modes restored) and record the
    input shapes of the ``watched`` modules' calls and of the relu calls in ``owners``' code."""
    out = SampleShapes({}, {})
    frames: list[tuple[nn.Module, dict[Any, int]]] = []
    handles = []

    def shape_of(args: Any) -> Shape | None:
        x = args[0] if args else None
        return tuple(x.shape) if isinstance(x, torch.Tensor) else None

    def pre(m: nn.Module, args: Any) -> None:
        if id(m) in watched and frames:
            counter = frames[-1][1]
            k = counter[id(m)] = counter.get(id(m), 0) + 1
            s = shape_of(args)
            if s is not None:
                out.calls.setdefault((id(m), k), set()).add(s)
        frames.append((m, {}))

    def post(m: nn.Module, _args: Any, _out: Any) -> None:
        frames.pop()

    for m in root.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post, always_call=True))

    class _Spy(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func in relu_funcs and frames and id(frames[-1][0]) in owners:
                owner, counter = frames[-1]
                k = counter["fn"] = counter.get("fn", 0) + 1
                s = shape_of(args)
                if s is not None:
                    out.functional.setdefault((id(owner), k), set()).add(s)
            return func(*args, **(kwargs or {}))

    modes = {m: m.training for m in root.modules()}
    root.eval()
    try:
        with torch.no_grad(), _Spy():
            run(root, sample_input)
    finally:
        for h in handles:
            h.remove()
        for m, t in modes.items():
            m.training = t
    return out
