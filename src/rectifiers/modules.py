"""``nn.Module`` versions of the activations: drop-in for ``torch.nn`` where torch has one.

``ReLU``, ``LeakyReLU`` and ``PReLU`` take the arguments of their ``torch.nn`` namesakes, keep
the same ``state_dict`` keys and shapes and give the same results. ``FlexibleReLU`` (alias
``FReLU``) and the funnel activations ``FunnelReLU`` / ``FunnelReLU1d`` / ``FunnelReLU3d`` have
no ``torch.nn`` counterpart.

Per-channel parameters may be inferred from the first input: ``PReLU(None)``,
``FlexibleReLU(None)`` and ``FunnelReLU(None)`` create them at the first call, like torch's lazy
modules (run one forward pass before building the optimizer). They count the size of one
dimension of that input and nothing else: ``PReLU`` / ``FlexibleReLU`` count dim ``dim``
(default 1, as ``torch.nn.PReLU``), the funnels always dim 1 of an (N, C, ...) input. On a
channels-last input, such as a transformer MLP's (N, L, C), the default dim 1 is the sequence
length: pass ``dim=-1`` to get one parameter per feature (``rectifiers.convert`` picks the dim
from the layer that feeds each activation).

Every module accepts ``inplace`` (so any of them fits an ``act_layer=`` slot) and a keyword-only
``backend`` (see :mod:`rectifiers.ops`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

from . import _checks as C
from . import functional as F
from .ops import BACKENDS, module_eager_cpu, module_operators

__all__ = [
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "FlexibleReLU",
    "FReLU",
    "FunnelReLU",
    "FunnelReLU1d",
    "FunnelReLU3d",
    "FusedFunnelReLU",
]


def _check_backend(cls: str, backend: object) -> str | None:
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"{cls}: backend must be None or one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend  # type: ignore[return-value]


def _check_bool(cls: str, value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{cls}: {name} must be a bool, got {value!r}")
    return value


class ReLU(nn.Module):
    """ReLU, the baseline: ``max(0, x)``. Drop-in for ``torch.nn.ReLU``.

    Shape: any. ``inplace=True`` overwrites the input, as torch.
    """

    __constants__ = ["inplace"]

    def __init__(self, inplace: bool = False, *, backend: str | None = None) -> None:
        super().__init__()
        self.inplace = _check_bool("ReLU", inplace, "inplace")
        self.backend = _check_backend("ReLU", backend)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.backend is None and self.inplace is False and module_eager_cpu(input):
            return torch.relu(input)  # the eager backend's ReLU, without the functional's call
        return F.relu(input, self.inplace, backend=self.backend)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(nn.Module):
    """Leaky ReLU: ``x if x > 0 else a*x``, ``a = negative_slope`` (default 0.01).

    Drop-in for ``torch.nn.LeakyReLU``, except that a bool slope (``LeakyReLU(True)``, which
    torch takes as slope 1.0) and a non-finite slope are refused.
    """

    __constants__ = ["inplace", "negative_slope"]

    def __init__(
        self, negative_slope: float = 0.01, inplace: bool = False, *, backend: str | None = None
    ) -> None:
        super().__init__()
        self.negative_slope = negative_slope  # checked by __setattr__
        self.inplace = _check_bool("LeakyReLU", inplace, "inplace")
        self.backend = _check_backend("LeakyReLU", backend)

    def __setattr__(self, name: str, value: Any) -> None:
        # The slope is checked whenever it is set, so that forward need not check it again.
        if name == "negative_slope":
            value = C.check_scalar("LeakyReLU", value, "negative_slope")
        super().__setattr__(name, value)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # The fast path (module_operators): straight to the C++ operator when nothing is left
        # to decide; anything else through the functional, which checks and dispatches.
        if self.backend is None and self.inplace is False:
            ops = module_operators(input)
            if ops is not None:
                return ops.leaky_relu(input, self.negative_slope)
        return F.leaky_relu(input, self.negative_slope, self.inplace, backend=self.backend)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class _ChannelParam(LazyModuleMixin, nn.Module):
    """Shared machinery of PReLU and FlexibleReLU: one learnable tensor, 1 element or per channel."""

    _param_name: str = ""
    _default_init: float = 0.0
    cls_to_become = None

    def __init__(
        self,
        num_parameters: int | None,
        init: float,
        dim: int,
        device: Any,
        dtype: Any,
        inplace: bool,
        backend: str | None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(dim, (str, torch.device)):
            raise TypeError(
                f"{name}: dim must be an int, got {dim!r}; pass the device by keyword (device=...)"
            )
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"{name}: dim must be an int, got {dim!r}")
        self.num_parameters = C.check_num_parameters(name, num_parameters)
        self.init = C.check_scalar(name, init, "init")
        self.dim = dim
        self.inplace = _check_bool(name, inplace, "inplace")
        self.backend = _check_backend(name, backend)
        factory = {"device": device, "dtype": dtype}
        if self.num_parameters is None:
            param: nn.Parameter = UninitializedParameter(**factory)
        else:
            param = nn.Parameter(torch.empty(self.num_parameters, **factory))
        self.register_parameter(self._param_name, param)
        self.reset_parameters()

    def _param(self) -> torch.Tensor:
        return getattr(self, self._param_name)

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params():
            with torch.no_grad():
                self._param().fill_(self.init)

    def initialize_parameters(self, input: torch.Tensor) -> None:  # type: ignore[override]
        if not self.has_uninitialized_params():
            return
        name = type(self).__name__
        C.check_input(name, input)
        d = C.channel_dim(name, input, self.dim)
        n = 1 if d is None else input.shape[d]
        with torch.no_grad():
            self._param().materialize((n,))
            self.num_parameters = n
            self.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if not self.has_uninitialized_params():
            self.num_parameters = self._param().numel()

    def extra_repr(self) -> str:
        s = f"num_parameters={self.num_parameters}"
        if self.dim != 1:
            s += f", dim={self.dim}"
        return s


class PReLU(_ChannelParam):
    """PReLU: ``x if x > 0 else a*x`` with a learnable slope ``a`` (He et al. 2015).

    Drop-in for ``torch.nn.PReLU``: same arguments and defaults, same ``state_dict``
    (``weight`` of shape ``(num_parameters,)``), same results. Additions:

    * ``dim``: the channel dimension of per-channel slopes (default 1; ``-1`` for (N, *, C)).
    * ``num_parameters=None``: one slope per channel, counted at the first call as the size of
      dim ``dim`` of that input (default 1: the C of (N, C, *); on an (N, L, C) sequence it
      would be L, so pass ``dim=-1`` there). A 0-D input, or a 1-D one with ``dim=1``, gives
      one slope.
    * ``inplace``: accepted so the module fits ``act_layer=`` slots; the output is always a new
      tensor (the slope's gradient needs the input).

    Shapes: input (N, C, *) or any shape with a 1-element slope; output the same.
    """

    _param_name = "weight"

    def __init__(
        self,
        num_parameters: int | None = 1,
        init: float = 0.25,
        dim: int = 1,
        device: Any = None,
        dtype: Any = None,
        *,
        inplace: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(num_parameters, init, dim, device, dtype, inplace, backend)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        w = self._parameters["weight"]
        if self.backend is None:  # the fast path, as LeakyReLU's
            ops = module_operators(input)
            if ops is not None:
                d = C.fast_channel_dim(input, w, self.dim)
                if d is not None:
                    return ops.prelu(input, w, d)
        return F.prelu(input, w, self.dim, backend=self.backend)


class FlexibleReLU(_ChannelParam):
    """FReLU, the flexible ReLU (Qiu et al. 2018): ``max(0, x) + b`` with a learnable bias ``b``.

    This is the article's "FReLU" formula, ReLU(x) + b. It is *not* the funnel activation
    (Ma et al. 2020, also abbreviated FReLU), which is :class:`FunnelReLU`.

    Args:
        num_parameters: 1 (default, the authors' advice), the number of channels along ``dim``,
            or ``None`` to count them at the first call: the size of dim ``dim`` of that input
            (default 1: the C of (N, C, *); pass ``dim=-1`` for an (N, L, C) sequence, where
            dim 1 is the length L).
        init: initial value of ``b`` (default -1.0, as the original implementation).
        dim: the channel dimension for per-channel biases (default 1; -1 for (N, *, C)).
        inplace: overwrite the input with the output.

    State: ``bias`` of shape ``(num_parameters,)``.
    """

    _param_name = "bias"

    def __init__(
        self,
        num_parameters: int | None = 1,
        init: float = -1.0,
        dim: int = 1,
        device: Any = None,
        dtype: Any = None,
        *,
        inplace: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(num_parameters, init, dim, device, dtype, inplace, backend)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        b = self._parameters["bias"]
        if self.backend is None and self.inplace is False:  # the fast path, as LeakyReLU's
            ops = module_operators(input)
            if ops is not None:
                d = C.fast_channel_dim(input, b, self.dim)
                if d is not None:
                    return ops.flexible_relu(input, b, d)
        return F.flexible_relu(input, b, self.dim, self.inplace, backend=self.backend)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", inplace=True" if self.inplace else "")


#: The article's name for :class:`FlexibleReLU`.
FReLU = FlexibleReLU


class _FunnelReLUNd(LazyModuleMixin, nn.Module):
    """Shared machinery of the funnel activations; subclasses fix the number of spatial dims."""

    _spatial: int = 2
    cls_to_become = None

    def __init__(
        self,
        channels: int | None = None,
        kernel_size: int = 3,
        *,
        bias: bool = False,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        inplace: bool = False,
        backend: str | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.channels = C.check_num_parameters(name, channels, "channels")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
            raise TypeError(f"{name}: kernel_size must be a positive odd int, got {kernel_size!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"{name}: kernel_size must be a positive odd int (padding k // 2 keeps the "
                f"spatial size), got {kernel_size}"
            )
        self.kernel_size = kernel_size
        self.eps = C.check_scalar(name, eps, "eps")
        if self.eps <= 0:
            raise ValueError(f"{name}: eps must be positive, got {self.eps}")
        self.momentum = None if momentum is None else C.check_scalar(name, momentum, "momentum")
        self.inplace = _check_bool(name, inplace, "inplace")
        self.backend = _check_backend(name, backend)
        fk = {"device": device, "dtype": dtype}
        c = self.channels
        kshape = (1,) + (kernel_size,) * self._spatial

        def param(*shape: int) -> nn.Parameter:
            if c is None:
                return UninitializedParameter(**fk)
            return nn.Parameter(torch.empty(c, *shape, **fk))

        def buffer() -> torch.Tensor:
            if c is None:
                return UninitializedBuffer(**fk)
            return torch.empty(c, **fk)

        self.weight = param(*kshape)
        if bias:
            self.bias = param()
        else:
            self.register_parameter("bias", None)
        self.bn_weight = param()
        self.bn_bias = param()
        self.register_buffer("running_mean", buffer())
        self.register_buffer("running_var", buffer())
        self.register_buffer(
            "num_batches_tracked",
            torch.tensor(0, dtype=torch.long, device=device),
        )
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.has_uninitialized_params():
            return
        self.running_mean.zero_()
        self.running_var.fill_(1)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """The defaults of ``nn.ConvNd`` for the conv, and of ``nn.BatchNormNd`` for the BN."""
        if self.has_uninitialized_params():
            return
        self.reset_running_stats()
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.kernel_size**self._spatial)
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.ones_(self.bn_weight)
        nn.init.zeros_(self.bn_bias)

    def _check_shape(self, input: torch.Tensor) -> None:
        name = type(self).__name__
        C.check_input(name, input)
        want = self._spatial + 2
        if input.dim() != want:
            layout = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[self._spatial]
            raise C.ShapeError(f"{name}: input must be {want}-D {layout}, got shape {tuple(input.shape)}")

    def _check_channels(self, input: torch.Tensor) -> None:
        c = self._parameters["weight"].shape[0]
        if input.shape[1] != c:
            raise C.ShapeError(
                f"{type(self).__name__}: expected an input with {c} channels (dim 1), got "
                f"{input.shape[1]} channels in shape {tuple(input.shape)}"
            )

    def initialize_parameters(self, input: torch.Tensor) -> None:  # type: ignore[override]
        if not self.has_uninitialized_params():
            return
        self._check_shape(input)
        # A call that forward would refuse leaves the module as it was (uninitialised).
        C.check_batch_stats(type(self).__name__, input, self.training)
        c = input.shape[1]
        with torch.no_grad():
            self.weight.materialize((c, 1) + (self.kernel_size,) * self._spatial)
            for t in (self.bias, self.bn_weight, self.bn_bias, self.running_mean, self.running_var):
                if t is not None:
                    t.materialize((c,))
            self.channels = c
            self.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if not self.has_uninitialized_params():
            self.channels = self.weight.shape[0]

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_shape(input)
        self._check_channels(input)
        # The registered tensors read from their dicts (what Module.__getattr__ does, a
        # microsecond a name slower): this forward runs per call.
        p, b = self._parameters, self._buffers
        training, momentum = self.training, self.momentum
        factor = 0.0 if momentum is None else momentum
        if training and momentum is None:  # cumulative moving average, as nn.BatchNorm
            factor = 1.0 / (float(b["num_batches_tracked"]) + 1.0)
        y = F.funnel_relu(
            input, p["weight"], p["bn_weight"], p["bn_bias"], b["running_mean"], b["running_var"], training,
            factor, self.eps, conv_bias=p["bias"], backend=self.backend,
        )
        if training:  # counted only once the call has succeeded: errors change nothing
            b["num_batches_tracked"].add_(1)
        return y

    @classmethod
    def from_modules(cls, conv: nn.Module, bn: nn.Module) -> "_FunnelReLUNd":
        """Build from the plain formula's depthwise ``nn.ConvNd`` and ``nn.BatchNormNd``, copying
        their weights and running statistics (the result computes the same function).

        The conv must be depthwise (``groups = C``, weight (C, 1, k, ...)) with odd ``k``,
        ``padding = k // 2`` (or ``padding="same"``, the same thing here), stride 1, dilation 1
        and zero padding, with or without a bias; the BatchNorm affine over C
        channels with running statistics. Anything else computes another function and is refused
        with a ``ValueError`` that names the attribute.
        """
        name = f"{cls.__name__}.from_modules"
        s = cls._spatial
        w = getattr(conv, "weight", None)
        if not isinstance(w, torch.Tensor) or w.dim() != s + 2 or w.shape[1] != 1:
            raise ValueError(f"{name}: conv must be a depthwise Conv{s}d (weight of shape (C, 1{', k' * s}))")
        c, k = w.shape[0], w.shape[-1]
        if k % 2 == 0 or tuple(w.shape[2:]) != (k,) * s:
            raise ValueError(f"{name}: the conv's kernel must be odd and square, got {tuple(w.shape[2:])}")
        padding = getattr(conv, "padding", ())
        if padding == "same" and getattr(conv, "dilation", None) == (1,) * s:
            padding = (k // 2,) * s  # what nn.ConvNd pads for an odd kernel, dilation 1
        elif padding == "valid":
            padding = (0,) * s
        elif not isinstance(padding, str):
            padding = tuple(padding)
        checks = {
            "groups": (getattr(conv, "groups", None), c),
            "padding": (padding, (k // 2,) * s),
            "stride": (tuple(getattr(conv, "stride", ())), (1,) * s),
            "dilation": (tuple(getattr(conv, "dilation", ())), (1,) * s),
            "padding_mode": (getattr(conv, "padding_mode", None), "zeros"),
        }
        for attr, (got, want) in checks.items():
            if got != want:
                raise ValueError(f"{name}: conv.{attr} must be {want!r} for a funnel over {c} channels, got {got!r}")
        if getattr(bn, "num_features", None) != c or not getattr(bn, "affine", False):
            raise ValueError(f"{name}: bn must be an affine BatchNorm over {c} channels")
        if not getattr(bn, "track_running_stats", False) or bn.running_mean is None:
            raise ValueError(f"{name}: bn must track running statistics (track_running_stats=True)")
        m = cls(c, k, bias=conv.bias is not None, eps=bn.eps, momentum=bn.momentum,
                device=w.device, dtype=w.dtype)
        with torch.no_grad():
            m.weight.copy_(w)
            if conv.bias is not None:
                m.bias.copy_(conv.bias)
            m.bn_weight.copy_(bn.weight)
            m.bn_bias.copy_(bn.bias)
            m.running_mean.copy_(bn.running_mean)
            m.running_var.copy_(bn.running_var)
            m.num_batches_tracked.copy_(bn.num_batches_tracked)
        m.train(bn.training)
        return m

    def fuse(self) -> nn.Module:
        """For inference: a module computing ``max(x, conv'(x))`` with the eval-mode BatchNorm
        folded into the depthwise conv (see :func:`rectifiers.export.fuse`)."""
        return _fuse_funnel(self, "")

    def extra_repr(self) -> str:
        s = f"{self.channels}, kernel_size={self.kernel_size}"
        if self.bias is not None:
            s += ", bias=True"
        if self.eps != 1e-5:
            s += f", eps={self.eps}"
        if self.momentum != 0.1:
            s += f", momentum={self.momentum}"
        return s


class FunnelReLU(_FunnelReLUNd):
    """Funnel activation (Ma et al. 2020) for (N, C, H, W): ``max(x, BN(depthwise conv k x k (x)))``.

    Args:
        channels: C, or ``None`` to count the channels at the first call: the size of dim 1
            of that (N, C, H, W) input (always dim 1; a channels-last map is not supported).
        kernel_size: odd k of the depthwise conv (default 3), padding ``k // 2``.
        bias: give the conv a bias (default False: BatchNorm follows and cancels it in training).
        eps, momentum: as ``nn.BatchNorm2d`` (``momentum=None`` for a cumulative average).
        inplace: accepted so the module fits ``act_layer=`` slots; the output is always a new
            tensor (the backward pass needs the input).

    State: ``weight`` (C, 1, k, k), ``bias`` (C,) if ``bias``, ``bn_weight``, ``bn_bias``,
    ``running_mean``, ``running_var`` (C,), ``num_batches_tracked``. Train and eval mode behave
    as ``nn.BatchNorm2d``. Not the flexible ReLU (:class:`FlexibleReLU`).
    """

    _spatial = 2


class FunnelReLU1d(_FunnelReLUNd):
    """Funnel activation for sequences (N, C, L): ``max(x, BN(depthwise conv k (x)))``.

    Arguments and state as :class:`FunnelReLU`, with a (C, 1, k) kernel.
    """

    _spatial = 1


class FunnelReLU3d(_FunnelReLUNd):
    """Funnel activation for volumes (N, C, D, H, W), with a (C, 1, k, k, k) kernel.

    Arguments and state as :class:`FunnelReLU`.
    """

    _spatial = 3


#: The depthwise conv of each number of spatial dims.
_CONV = {1: nn.functional.conv1d, 2: nn.functional.conv2d, 3: nn.functional.conv3d}


class FusedFunnelReLU(nn.Module):
    """A funnel activation for inference: ``max(x, conv'(x))``, BatchNorm folded into the conv.

    Shapes: ``x`` is (N, C, L), (N, C, H, W) or (N, C, D, H, W) by ``spatial`` (1, 2, 3);
    ``weight`` is (C, 1, k, ...), ``bias`` (C,); the conv is depthwise with padding ``k // 2``.
    Equal, up to rounding, to the original module in eval mode. Build it with
    :meth:`FunnelReLU.fuse` or :func:`rectifiers.export.fuse` (which also re-exports this class).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, spatial: int) -> None:
        super().__init__()
        if spatial not in _CONV:
            raise ValueError(f"FusedFunnelReLU: spatial must be 1, 2 or 3, got {spatial!r}")
        if weight.dim() != spatial + 2 or weight.shape[1] != 1 or tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(
                f"FusedFunnelReLU: weight must be (C, 1{', k' * spatial}) and bias (C,), got "
                f"{tuple(weight.shape)} and {tuple(bias.shape)}"
            )
        self.spatial = spatial
        self.channels = weight.shape[0]
        self.kernel_size = weight.shape[-1]
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial + 2 or x.shape[1] != self.channels:
            raise ValueError(
                f"FusedFunnelReLU: expected a {self.spatial + 2}-D input with {self.channels} "
                f"channels at dim 1, got shape {tuple(x.shape)}"
            )
        w, b = self.weight.to(x.dtype), self.bias.to(x.dtype)
        t = _CONV[self.spatial](x, w, b, 1, self.kernel_size // 2, 1, self.channels)
        return torch.maximum(x, t)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, spatial={self.spatial}"


def _fuse_funnel(m: _FunnelReLUNd, path: str) -> FusedFunnelReLU:
    """``m`` (in eval mode) with its BatchNorm folded into its conv, in float64; ``path`` names it
    in errors."""
    name = f"fuse: {type(m).__name__}{' at ' + repr(path) if path else ''}"
    if m.has_uninitialized_params():
        raise ValueError(f"{name} has lazy parameters: run one forward pass before fusing")
    if m.training:
        raise ValueError(
            f"{name} is in training mode, where BatchNorm uses batch statistics and cannot be "
            "folded; call model.eval() first"
        )
    with torch.no_grad():
        w = m.weight.double()
        s = m.bn_weight.double() / torch.sqrt(m.running_var.double() + m.eps)
        b = torch.zeros_like(s) if m.bias is None else m.bias.double()
        w2 = w * s.reshape((-1,) + (1,) * (w.dim() - 1))
        b2 = (b - m.running_mean.double()) * s + m.bn_bias.double()
    return FusedFunnelReLU(w2.to(m.weight.dtype), b2.to(m.weight.dtype), m._spatial).to(m.weight.device)
