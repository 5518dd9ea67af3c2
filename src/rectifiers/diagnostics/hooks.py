"""The hook base both monitors share: their handles, ``detach`` and the context manager."""

from __future__ import annotations

from typing import Any, TypeVar

_M = TypeVar("_M", bound="_Hooked")


class _Hooked:
    """What both monitors share: their hook handles, ``detach`` and the context manager."""

    _handles: list[Any]

    def attach(self: _M) -> _M:  # pragma: no cover - every monitor defines its own
        raise NotImplementedError

    def _detached(self) -> None:
        """A monitor's own clean-up once its hooks are removed."""

    def detach(self) -> None:
        """Remove every hook; what was recorded is kept for ``report()``."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._detached()

    def __enter__(self: _M) -> _M:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    @property
    def attached(self) -> bool:
        return bool(self._handles)


class _NoHandle:
    def remove(self) -> None:
        pass
