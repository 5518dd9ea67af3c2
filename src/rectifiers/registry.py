"""Activation names -> module factories: ``get``, ``create``, ``register``, ``names``.

Any model that takes an activation by name (``act_layer="prelu"``) or by class can use this::

    import rectifiers.registry as R
    act = R.create("frelu", inplace=True)          # FlexibleReLU(inplace=True)
    cls = R.get("LeakyReLU")                       # rectifiers.LeakyReLU
    R.get(torch.nn.GELU)                           # a class is returned as it is

Names are matched case-insensitively, with ``-`` read as ``_``. The built-in names are the
canonical names of the activation descriptions (:mod:`rectifiers._spec`: ``relu``, ``leaky_relu``, ``prelu``,
``flexible_relu``, ``funnel_relu``) plus the 1-D and 3-D funnels, and these aliases: the class
names (``leakyrelu``, ``flexiblerelu``, ``funnelrelu``, ...), ``lrelu``, ``leaky``, ``frelu``
(the article's name for the flexible ReLU), ``funnel`` (the funnel activation of Ma et al.,
which the article also calls FReLU: here ``frelu`` is the flexible ReLU, ``funnel`` the funnel).

Every built-in factory accepts ``inplace=`` (the parametric ones accept it and return a new
tensor), so ``create(name, inplace=True)`` works for all of them.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, Union

from torch import nn

from . import _spec as S
from . import modules as M
from ._util import closest

__all__ = ["get", "create", "register", "unregister", "names", "canonical_name", "ActivationSpec",
           "UnknownActivationError", "default_module"]

#: A registry name, or a class / callable that builds an ``nn.Module``.
ActivationSpec = Union[str, type, Callable[..., nn.Module]]

#: The built-in factories, generated from the activation descriptions (:mod:`rectifiers._spec`).
_BUILTIN: dict[str, Callable[..., nn.Module]] = {name: getattr(M, cls) for name, (cls, _) in S.REGISTRY.items()}

_BUILTIN_ALIASES: dict[str, str] = S.registry_aliases()

_factories: dict[str, Callable[..., nn.Module]] = dict(_BUILTIN)
_aliases: dict[str, str] = dict(_BUILTIN_ALIASES)


class UnknownActivationError(KeyError, ValueError):
    """An activation name that is not registered (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


_key = S.key


def _all_names() -> list[str]:
    return sorted(set(_factories) | set(_aliases))


def canonical_name(name: str) -> str:
    """The canonical registry name of ``name`` (any case, an alias or a class name).

    Raises :class:`UnknownActivationError` (a ``KeyError``) naming the closest known name when ``name`` is unknown.
    """
    if not isinstance(name, str):
        raise TypeError(f"canonical_name: name must be a str, got {type(name).__name__}")
    key = _key(name)
    key = _aliases.get(key, key)
    if key not in _factories:
        raise UnknownActivationError(_unknown(name))
    return key


def _unknown(name: str) -> str:
    hint = closest(_key(name), _all_names())
    return (
        f"unknown activation {name!r}{hint} (known: {', '.join(sorted(_factories))}; "
        "see rectifiers.registry.names(aliases=True) for every spelling)"
    )


def get(name: ActivationSpec) -> Callable[..., nn.Module]:
    """The factory (usually a class) registered under ``name``.

    ``name`` is a registry name or alias (case-insensitive), or a class / callable that builds
    a module, which is returned unchanged (so ``get`` can sit behind any ``act_layer=``
    argument). A module *instance* is refused: pass its class, or use it directly.
    """
    if isinstance(name, str):
        return _factories[canonical_name(name)]
    if isinstance(name, nn.Module):
        raise TypeError(
            f"get: name must be an activation name or a class, got the module instance "
            f"{name!r}; pass type(m) or use the instance directly"
        )
    if callable(name):
        return name
    raise TypeError(
        f"get: name must be an activation name (str) or a class / callable returning an "
        f"nn.Module, got {type(name).__name__}"
    )


def create(name: ActivationSpec, /, *args: Any, **kwargs: Any) -> nn.Module:
    """Build the activation ``name`` with ``args`` and ``kwargs``: ``create("prelu", 64)``.

    ``name`` as in :func:`get`. An argument the factory does not take raises ``TypeError`` naming
    the factory and its signature.
    """
    factory = get(name)
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        try:
            sig.bind(*args, **kwargs)
        except TypeError as e:
            what = getattr(factory, "__qualname__", repr(factory))
            raise TypeError(f"create({name!r}): {e}; {what} takes {sig}") from None
    module = factory(*args, **kwargs)
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"create({name!r}): the factory returned {type(module).__name__}, expected an nn.Module"
        )
    return module


def register(
    name: str,
    factory: Callable[..., nn.Module] | None = None,
    *,
    aliases: tuple[str, ...] | list[str] = (),
) -> Any:
    """Register ``factory`` (a class or a callable returning an ``nn.Module``) under ``name``.

    A name (or alias) already taken is refused with ``ValueError``; :func:`unregister` frees a
    name registered earlier. Without ``factory`` it works as a decorator::

        @register("shifted_relu", aliases=("srelu",))
        class ShiftedReLU(nn.Module): ...

    The factory should accept ``inplace=`` so it fits ``act_layer=`` slots.
    """
    if not isinstance(name, str) or not _key(name):
        raise TypeError(f"register: name must be a non-empty str, got {name!r}")
    if isinstance(aliases, str):
        raise TypeError(f"register: aliases must be a tuple of str, got the str {aliases!r}")
    keys = [_key(name)] + [_key(a) for a in aliases]
    for a, k in zip([name, *aliases], keys):
        if not isinstance(a, str) or not k:
            raise TypeError(f"register: aliases must be non-empty strs, got {a!r}")
        if k in _factories or k in _aliases:
            owner = _aliases.get(k, k)
            raise ValueError(
                f"register: the name {a!r} is already taken (by {owner!r}: "
                f"{getattr(_factories[owner], '__qualname__', _factories[owner])}); "
                "choose another name, or unregister it first"
            )
    if len(set(keys)) != len(keys):
        raise ValueError(f"register: name and aliases repeat a name: {keys}")

    def do(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if isinstance(f, nn.Module) or not callable(f):
            raise TypeError(
                f"register: factory must be a class or callable returning an nn.Module, got {f!r}"
            )
        _factories[keys[0]] = f
        for k in keys[1:]:
            _aliases[k] = keys[0]
        return f

    return do if factory is None else do(factory)


def unregister(name: str) -> None:
    """Remove a name registered with :func:`register`, with its aliases. Built-ins stay."""
    key = canonical_name(name)
    if key in _BUILTIN:
        raise ValueError(f"unregister: {name!r} is a built-in activation and cannot be removed")
    del _factories[key]
    for a in [a for a, k in _aliases.items() if k == key]:
        del _aliases[a]


def names(aliases: bool = False) -> list[str]:
    """The registered names, sorted; with ``aliases=True`` every accepted spelling."""
    return _all_names() if aliases else sorted(_factories)


def default_module(name: str, channels: int | None = None, value: float | None = None) -> nn.Module:
    """The default instance of the built-in activation ``name``, as its description gives it.

    ``channels`` goes first to a constructor that takes a channel count (the funnel);
    ``value`` replaces the default of the swept parameter (LeakyReLU's slope, PReLU's initial
    slope, FReLU's initial bias). The one name-to-module factory of the model zoo and the graphs.
    """
    d = S.describe(name)
    kwargs = dict(d.ctor)
    if value is not None:
        if d.sweep.kwarg is None:
            raise ValueError(f"default_module({name!r}): this activation has no swept parameter to set")
        kwargs[d.sweep.kwarg] = value
    cls = _BUILTIN[canonical_name(name)]
    return cls(channels, **kwargs) if d.channels else cls(**kwargs)
