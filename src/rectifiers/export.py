"""Inference and export: fold the funnel's BatchNorm into its conv, ``torch.export``, ONNX.

* :func:`fuse` turns every :class:`~rectifiers.FunnelReLU` (1-D, 2-D, 3-D) of a model in eval
  mode into a :class:`FusedFunnelReLU`, which computes ``max(x, conv'(x))`` with the BatchNorm
  folded into the depthwise conv (``w' = w * s``, ``b' = (b - mean) * s + beta``,
  ``s = gamma / sqrt(var + eps)``): one conv and one max at inference instead of conv, BN, max.
* :func:`export_program` wraps ``torch.export.export``; :func:`export_onnx` wraps
  ``torch.onnx.export`` (the dynamo exporter, torch's default since 2.9); :func:`verify_onnx`
  exports, runs the file in onnxruntime on CPU and compares with PyTorch.

In the ONNX graph: ``LeakyReLU`` becomes ``LeakyRelu``, ``PReLU`` (channels at dim 1, or one
slope) ``PRelu``, ``FlexibleReLU`` ``Relu`` + ``Add``, ``FunnelReLU`` ``Conv`` +
``BatchNormalization`` + ``Max`` (``Conv`` + ``Max`` after :func:`fuse`).

The exports run a copy of the model in eval mode under ``torch.no_grad()``; ``backend="torch"``
makes the copy's rectifiers modules use the plain PyTorch backend (default ``None``: each keeps
its own; both export, and are tested). A ``PReLU(dim=-1)`` with per-channel slopes exports as
``Transpose`` + ``PRelu`` + ``Transpose`` from the default backend, ``Greater`` + ``Mul`` +
``Where`` from the torch one. ``torch.onnx.export``'s optimizer (``optimize=True``, its
default) already folds the BatchNorm into the conv; with ``optimize=False`` the graph keeps
``BatchNormalization``.
ONNX needs the ``onnx`` extra: ``pip install 'rectifiers[onnx]'``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn

from . import modules as M
from .modules import FusedFunnelReLU

__all__ = ["FusedFunnelReLU", "fuse", "export_program", "export_onnx", "verify_onnx", "onnx_op_types"]

_FUNNELS = (M.FunnelReLU1d, M.FunnelReLU, M.FunnelReLU3d)


def fuse(module: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold every funnel activation's BatchNorm into its depthwise conv, for inference.

    ``module`` is a ``FunnelReLU`` / ``FunnelReLU1d`` / ``FunnelReLU3d`` (a
    :class:`FusedFunnelReLU` is returned) or any model containing them (each is replaced; the
    model is copied first unless ``inplace=True``). Modules must be in eval mode: the result
    computes the eval-mode function (running statistics), with the folding done in float64.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"fuse: module must be an nn.Module, got {type(module).__name__}")
    if isinstance(module, _FUNNELS):
        return M._fuse_funnel(module, "")
    root = module if inplace else copy.deepcopy(module)
    done: dict[int, nn.Module] = {}  # one fused module per funnel instance, wherever it is used
    for path, m in list(root.named_modules(remove_duplicate=False)):
        if isinstance(m, _FUNNELS):
            parent, _, attr = path.rpartition(".")
            if id(m) not in done:
                done[id(m)] = M._fuse_funnel(m, path).train(False)
            setattr(root.get_submodule(parent), attr, done[id(m)])
    return root


def _prepared(model: nn.Module, backend: str | None, fuse_funnel: bool) -> nn.Module:
    m = copy.deepcopy(model).eval()
    if backend is not None:
        for sub in m.modules():
            if type(sub).__module__ == M.__name__ and hasattr(sub, "backend"):
                sub.backend = backend
    if fuse_funnel:
        m = fuse(m, inplace=True)
    return m


def _as_tuple(args: Any) -> tuple[Any, ...]:
    return args if isinstance(args, tuple) else (args,)


def export_program(
    model: nn.Module,
    args: Any,
    *,
    backend: str | None = None,
    fuse_funnel: bool = False,
    **kwargs: Any,
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` in eval mode (on a copy; the model is untouched).

    ``args``: one input tensor or a tuple of positional inputs. ``backend``: the backend the
    copy's rectifiers modules use (default ``None``: keep theirs; ``"torch"``: plain PyTorch). ``fuse_funnel``:
    apply :func:`fuse` first. ``kwargs`` go to ``torch.export.export``.
    """
    m = _prepared(model, backend, fuse_funnel)
    with torch.no_grad():
        return torch.export.export(m, _as_tuple(args), **kwargs)


def _need_onnx() -> None:
    missing = []
    for mod in ("onnx", "onnxscript"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ImportError(
            f"ONNX export needs {' and '.join(missing)}: pip install 'rectifiers[onnx]'"
        )


def export_onnx(
    model: nn.Module,
    args: Any,
    f: str | os.PathLike[str] | None = None,
    *,
    backend: str | None = None,
    fuse_funnel: bool = False,
    opset_version: int | None = None,
    **kwargs: Any,
) -> Any:
    """Export ``model`` to ONNX with ``torch.onnx.export(..., dynamo=True)``, in eval mode.

    ``args`` as :func:`export_program`; ``f``: the ``.onnx`` path to write (``None``: write
    nothing). Returns the ``torch.onnx.ONNXProgram`` (its ``.model_proto`` is the ONNX model).
    ``kwargs`` go to ``torch.onnx.export`` (``dynamic_shapes=...``, ``input_names=...``).
    """
    _need_onnx()
    kwargs.setdefault("verbose", False)  # the dynamo exporter prints its progress otherwise
    m = _prepared(model, backend, fuse_funnel)
    with torch.no_grad():
        prog = torch.onnx.export(
            m, _as_tuple(args), f, dynamo=True, opset_version=opset_version, **kwargs
        )
    return prog


def onnx_op_types(model_proto: Any) -> list[str]:
    """The op types of the main graph's nodes, in order (``["Conv", "Max"]``)."""
    return [n.op_type for n in model_proto.graph.node]


def verify_onnx(
    model: nn.Module,
    args: Any,
    f: str | os.PathLike[str],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    **export_kwargs: Any,
) -> dict[str, Any]:
    """Export to ``f``, run it in onnxruntime on CPU, compare with the model in eval mode.

    Returns ``{"op_types": [...], "max_abs_err": float, "ok": bool}``; ``ok`` is
    ``allclose(onnx, torch, rtol, atol)`` for every output. ``export_kwargs`` go to
    :func:`export_onnx`.
    """
    _need_onnx()
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("verify_onnx needs onnxruntime: pip install 'rectifiers[onnx]'") from e
    prog = export_onnx(model, args, f, **export_kwargs)
    inputs = [a for a in _as_tuple(args) if isinstance(a, torch.Tensor)]
    sess = ort.InferenceSession(os.fspath(f), providers=["CPUExecutionProvider"])
    feed = {i.name: t.detach().cpu().numpy() for i, t in zip(sess.get_inputs(), inputs)}
    got = sess.run(None, feed)
    ref_model = _prepared(model, export_kwargs.get("backend"), False)
    with torch.no_grad():
        want = ref_model(*_as_tuple(args))
    wants = list(want) if isinstance(want, (tuple, list)) else [want]
    err, ok = 0.0, len(got) == len(wants)
    for g, w in zip(got, wants):
        g_t = torch.from_numpy(g)
        w_t = w.detach().cpu()
        if g_t.shape != w_t.shape:
            ok = False
            continue
        err = max(err, (g_t.double() - w_t.double()).abs().max().item() if w_t.numel() else 0.0)
        ok = ok and torch.allclose(g_t, w_t.to(g_t.dtype), rtol=rtol, atol=atol)
    return {"op_types": onnx_op_types(prog.model_proto), "max_abs_err": err, "ok": bool(ok)}
