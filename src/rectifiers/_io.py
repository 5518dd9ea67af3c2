"""Files written whole or not at all, and the lazy matplotlib import, shared by every writer.

Every file the library writes (reports, checkpoints, results, plots) goes through
:func:`atomic_write`: into a temporary file in the destination folder, flushed and synced, given
the mode of a normally created file, then moved over the destination with ``os.replace``. A
crash or an error leaves the old file (or none) and no temporary behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_bytes", "matplotlib_figure", "save_figure", "MissingExtraError"]


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def _plain_mode(path: str) -> None:
    """Give a ``mkstemp`` file (mode 0600) the mode of a normally created file (0666 & ~umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a temporary binary file, then move it to ``path`` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _plain_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def matplotlib_figure() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``, imported on first use; no pyplot, no global state."""
    try:
        import matplotlib  # noqa: F401  (first: a missing package must fail here, submodules or not)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingExtraError(
            "plotting needs matplotlib, which is not installed: pip install 'rectifiers[plot]'"
        ) from e
    return Figure, FigureCanvasAgg


def save_figure(fig: Any, path: str | os.PathLike[str], fmt: str | None = None, *, dpi: int = 110) -> Path:
    """Write a matplotlib figure to ``path`` atomically as PNG or SVG (default: from the suffix).

    No date, version stamp or random ids are written, so an unchanged figure gives the same file.
    """
    import matplotlib  # present: fig is a matplotlib figure

    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "png").lower()
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be png or svg, got {fmt!r}")

    def write(f: IO[bytes]) -> None:
        with matplotlib.rc_context({"svg.hashsalt": "rectifiers"}):
            meta = {"Date": None} if fmt == "svg" else {"Software": None}
            fig.savefig(f, format=fmt, dpi=dpi, metadata=meta, facecolor="white")

    return atomic_write(path, write)
