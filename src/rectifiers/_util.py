"""Floor 0 utilities shared by every writer: atomic files, figures, tables, "did you mean".

This module imports nothing of the package (and nothing heavy at import time).

Files are written whole or not at all.
Every file the library writes (reports, checkpoints, results, plots) goes through
:func:`atomic_write`: into a temporary file in the destination folder, flushed and synced, given
the mode of a normally created file, then moved over the destination with ``os.replace``. A
crash or an error leaves the old file (or none) and no temporary behind.
"""

from __future__ import annotations

import difflib
import functools
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["env_raw", "env_reader", "atomic_write", "atomic_write_bytes", "matplotlib_figure", "new_figure", "save_figure",
           "MissingExtraError", "optional_import", "DPI", "closest", "text_table", "markdown_table"]

#: The resolution of every PNG the library writes unless a caller asks for another.
DPI = 110


def env_raw(name: str) -> Callable[[], Any]:
    """A function that returns ``None`` exactly when ``name`` is not in ``os.environ``, else its
    value undecoded (bytes on POSIX): the cheapest per-call test that a variable is unset.

    On CPython it is a C-level ``functools.partial`` lookup in the mapping that ``os.environ``
    (and so ``monkeypatch.setenv``) changes; elsewhere ``os.environ.get``.
    """
    env = os.environ
    data = getattr(env, "_data", None)
    if not isinstance(data, dict) or not hasattr(env, "encodekey"):
        return functools.partial(env.get, name)
    return functools.partial(data.get, env.encodekey(name))


def env_reader(name: str) -> Callable[[], str | None]:
    """A function that returns ``os.environ.get(name)``, for the per-call paths.

    ``os.environ.get`` encodes the key on every lookup (about 1 us); the reader encodes it once
    (:func:`env_raw`) and decodes only a value that is there.
    """
    raw = env_raw(name)
    decode = getattr(os.environ, "decodevalue", None)
    if decode is None or getattr(raw, "func", None) == os.environ.get:
        return raw

    def read() -> str | None:
        value = raw()
        return None if value is None else decode(value)

    return read


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def optional_import(module: str, extra: str, purpose: str, package: str | None = None) -> Any:
    """Import ``module`` (an optional dependency), or raise :class:`MissingExtraError` in one line.

    The message names what needed it and the extra that installs it, for example "the progress
    bar of rectifiers compare needs tqdm, which is not installed: pip install
    'rectifiers[compare]'"; the command line prints it as one line and exits with status 2.
    ``package`` is the name to print when it is not the module's (``scikit-learn``).
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        if e.name is not None and e.name.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed: not a missing extra
        raise MissingExtraError(
            f"{purpose} needs {package or top}, which is not installed: pip install 'rectifiers[{extra}]'"
        ) from None


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


def new_figure(width: float, height: float, **kwargs: Any) -> Any:
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches with an Agg canvas attached."""
    Figure, Canvas = matplotlib_figure()
    fig = Figure(figsize=(width, height), **kwargs)
    Canvas(fig)
    return fig


def save_figure(fig: Any, path: str | os.PathLike[str], fmt: str | None = None, *, dpi: int = DPI) -> Path:
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


def closest(name: str, choices: Iterable[str]) -> str:
    """A hint naming the closest of ``choices`` to ``name`` ("; did you mean 'x'?"), or ``""``."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def text_table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(r: Sequence[object]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (``|`` in a cell escaped)."""
    def esc(s: object) -> str:
        return str(s).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
