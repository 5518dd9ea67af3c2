"""Make timm's activation factory know our names: ``act_layer="frelu"`` in ``timm.create_model``.

timm resolves a string ``act_layer`` in ``timm.layers.create_act.get_act_layer``: it lower-cases
the name and looks it up in the dicts ``_ACT_LAYER_ME`` (first, unless exporting or scripting)
and ``_ACT_LAYER_DEFAULT``. timm has no public function to add names, so
:func:`register_timm` adds entries to ``_ACT_LAYER_DEFAULT``::

    from rectifiers.integrations.timm import register_timm
    register_timm()
    model = timm.create_model("resnet18", act_layer="frelu")      # FlexibleReLU everywhere
    model = timm.create_model("resnet18", act_layer="funnel")     # FunnelReLU, channels lazy

Names registered: every name and alias of :mod:`rectifiers.registry` that timm does not already
use (``frelu``, ``flexible_relu``, ``funnel``, ``funnel_relu``, ``lrelu``, ...), and every
canonical name with a prefix (``rectifiers_relu``, ``rectifiers_leaky_relu``,
``rectifiers_prelu``, ...). Names timm already has (``relu``, ``leaky_relu``, ``prelu``) keep
timm's layers unless ``overwrite=True``. :func:`unregister_timm` undoes it all.

Models with lazy activations (``funnel``, or ``prelu`` with per-channel slopes) need one forward
pass before the optimizer is built.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .. import registry

__all__ = ["register_timm", "unregister_timm", "timm_names", "DEFAULT_PREFIX"]

DEFAULT_PREFIX = "rectifiers_"

#: What register_timm changed, per registry object: name -> (dict name, previous value or _NONE).
_undo: dict[int, list[tuple[dict[str, Any], str, Any]]] = {}
_NONE = object()


def _create_act_module() -> ModuleType:
    try:
        from timm.layers import create_act  # type: ignore[import-not-found]
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "timm":
            raise ImportError("register_timm needs timm: pip install timm") from e
        raise ImportError(
            f"timm is installed but cannot be imported: {e} (timm needs torchvision; install "
            "the torchvision build that matches your torch)"
        ) from e
    except RuntimeError as e:  # a torchvision whose compiled ops do not load on this torch
        if "torchvision::" not in str(e):
            raise
        raise ImportError(
            f"timm is installed but cannot be imported: torchvision fails at import ({e}); "
            "install the torchvision build that matches your torch"
        ) from e
    return create_act


def timm_names(prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """The names :func:`register_timm` offers to timm, each with its factory (a class).

    Every spelling of :func:`rectifiers.registry.names` (aliases included: timm lower-cases a
    name but does not turn ``-`` into ``_``), plus ``prefix + canonical_name``.
    """
    out: dict[str, Any] = {}
    for n in registry.names(aliases=True):
        out[n] = registry.get(n)
    if prefix:
        for n in registry.names():
            out[f"{prefix}{n}".lower()] = registry.get(n)
    return out


def register_timm(
    *,
    overwrite: bool = False,
    prefix: str = DEFAULT_PREFIX,
    create_act: Any = None,
) -> dict[str, Any]:
    """Add our activations to timm's ``act_layer`` name lookup. Safe to call twice.

    Args:
        overwrite: also replace timm's own layers for names both have (``relu``,
            ``leaky_relu``, ``prelu``). Default False: timm's stay, ours are reachable as
            ``rectifiers_relu`` etc.
        prefix: the prefix of the always-registered names (``""`` for none).
        create_act: the object holding timm's ``_ACT_LAYER_DEFAULT`` (and ``_ACT_LAYER_ME``)
            dicts; default ``timm.layers.create_act``.

    Returns:
        the names now resolving to our classes, each with its class.

    Raises:
        ImportError: timm is missing or cannot be imported (it needs torchvision).
    """
    mod = _create_act_module() if create_act is None else create_act
    default = getattr(mod, "_ACT_LAYER_DEFAULT", None)
    if not isinstance(default, dict):
        raise RuntimeError(
            "register_timm: this timm has no dict timm.layers.create_act._ACT_LAYER_DEFAULT "
            "(its activation factory changed); pass act_layer=<our class> instead"
        )
    me = getattr(mod, "_ACT_LAYER_ME", None)
    me = me if isinstance(me, dict) else {}
    undo = _undo.setdefault(id(mod), [])
    added: dict[str, Any] = {}
    for name, factory in timm_names(prefix).items():
        if default.get(name) is factory and (name not in me or me[name] is factory):
            added[name] = factory  # already ours (a second call)
            continue
        taken = name in default or name in me
        if taken and not overwrite:
            continue
        targets = [default] + ([me] if name in me else [])
        for d in targets:
            undo.append((d, name, d.get(name, _NONE)))
            d[name] = factory
        added[name] = factory
    return added


def unregister_timm(create_act: Any = None) -> None:
    """Undo :func:`register_timm`: remove our names, give timm's replaced layers back."""
    mod = _create_act_module() if create_act is None else create_act
    for d, name, old in reversed(_undo.pop(id(mod), [])):
        if old is _NONE:
            d.pop(name, None)
        else:
            d[name] = old
