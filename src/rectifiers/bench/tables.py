"""The benchmark's output: the text / Markdown table, the goals, and the CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from .. import _spec as S
from .._util import atomic_write, markdown_table

__all__ = ["COLUMNS", "GOALS", "TABLES", "format_table", "format_small_table", "format_step_table", "title",
           "goals_table", "write_csv", "read_csv"]

#: The tables of the benchmark: large tensors (time and memory per implementation), small
#: tensors (host cost per module call) and the small models' training step.
TABLES = ("large", "small", "step")


COLUMNS = (
    "device", "cpu", "threads", "torch", "cache", "dtype", "shape", "layout", "activation", "impl", "repeats",
    "fwd_ms", "bwd_ms", "fwdbwd_ms", "nograd_ms", "clone_ms",
    "fwd_vs_torch", "bwd_vs_torch", "fwdbwd_vs_torch", "nograd_vs_torch",
    "fwd_vs_clone", "bwd_vs_clone", "fwdbwd_vs_clone", "nograd_vs_clone",
    "fwdbwd_vs_nn_leaky", "extra_bytes_per_elem", "compiles_timed", "error",
    # the tables of small tensors and training steps (a large-tensor row has table "large")
    "table", "model", "mode", "twin", "calls", "us", "twin_us", "vs_twin",
)


def _fmt(v: object) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def format_table(rows: Sequence[dict[str, object]], markdown: bool = False) -> str:
    """The rows as a text (or Markdown) table of the main columns."""
    cols = ("dtype", "shape", "layout", "activation", "impl", "fwd_ms", "bwd_ms", "fwdbwd_ms", "nograd_ms",
            "fwdbwd_vs_torch", "nograd_vs_torch", "fwdbwd_vs_clone", "fwdbwd_vs_nn_leaky",
            "extra_bytes_per_elem")
    heads = ("dtype", "shape", "layout", "activation", "impl", "fwd ms", "bwd ms", "f+b ms", "no_grad ms",
             "f+b / torch", "no_grad / torch", "f+b / clone", "f+b / nn.Leaky", "extra B/elem")
    def cell(r: dict[str, object], c: str) -> str:
        if c == "impl" and r.get("error"):
            return f"{r['impl']} (failed)"
        if c == "impl" and r.get("compiles_timed"):  # its times include compilation
            return f"{r['impl']} (recompiled)"
        return _fmt(r.get(c))

    body = [[cell(r, c) for c in cols] for r in rows]
    if markdown:
        return markdown_table(heads, body)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


#: The goals of the benchmark's issue: (label, activation, metric, baseline, bound).
#: ``metric`` is a row column; the goal is met when the eager row's value is <= bound.
GOALS: tuple[tuple[str, str, str, float], ...] = (
    ("LeakyReLU f+b within 1.1x of torch.nn.LeakyReLU", "leaky_relu", "fwdbwd_vs_nn_leaky", 1.1),
    ("FReLU (1 bias) f+b within 1.1x of torch.nn.LeakyReLU", "frelu", "fwdbwd_vs_nn_leaky", 1.1),
    ("FReLU (per channel) f+b within 1.1x of torch.nn.LeakyReLU", "frelu_channel", "fwdbwd_vs_nn_leaky", 1.1),
    ("PReLU (per channel) f+b at least 2x faster than torch.nn.PReLU", "prelu", "fwdbwd_vs_torch", 0.5),
    ("PReLU (1 slope) f+b at least 2x faster than torch.nn.PReLU", "prelu_scalar", "fwdbwd_vs_torch", 0.5),
    ("Funnel f+b at least 1.5x faster than its plain formula (NCHW)", "funnel", "fwdbwd_vs_torch", 1 / 1.5),
)


def _memory_bounds() -> dict[str, float]:
    """Extra bytes per element each pointwise case may keep: 0, but 1 (a mask) for FReLU's cases;
    the funnel is bounded against its plain formula instead."""
    mask = set(S.DESCRIPTIONS["flexible_relu"].bench)
    spatial = set(S.DESCRIPTIONS["funnel_relu"].bench)
    return {c: (1.0 if c in mask else 0.0) for d in S.DESCRIPTIONS.values() for c in d.bench
            if c not in spatial}


def goals_table(rows: Sequence[dict[str, object]], noise: float = 0.05) -> str:
    """Markdown table of the issue's goals against the eager rows: value, bound, met or not.

    The no_grad goal ("no slower than torch.nn") counts as met within ``noise`` (5%), the
    run-to-run spread of a shared machine.
    """
    out = ["| goal | dtype | shape | layout | measured | bound | met |", "|---|---|---|---|---|---|---|"]
    eager = [r for r in rows if r.get("impl") == "eager" and not r.get("error")]
    for label, act, col, bound in GOALS:
        for r in eager:
            if r["activation"] != act or r.get(col) is None:
                continue
            v = float(r[col])  # type: ignore[arg-type]
            out.append(f"| {label} | {r['dtype']} | {r['shape']} | {r.get('layout', 'contiguous')} | {v:.2f} | <= {bound:.2f} | "
                       f"{'met' if v <= bound else 'not met'} |")
    for r in eager:
        v = r.get("nograd_vs_torch")
        if v is None:
            continue
        out.append(f"| {r['activation']}: no_grad forward no slower than torch | {r['dtype']} | "
                   f"{r['shape']} | {r.get('layout', 'contiguous')} | {float(v):.2f} | <= 1 (+{noise:.0%} noise) | "  # type: ignore[arg-type]
                   f"{'met' if float(v) <= 1 + noise else 'not met'} |")  # type: ignore[arg-type]
    mem_bound = _memory_bounds()
    plain = {(r["dtype"], r["shape"], r.get("layout", "contiguous")): r for r in rows
             if r.get("impl") == "torch" and r.get("activation") == "funnel"}
    for r in eager:
        eb = float(r["extra_bytes_per_elem"])  # type: ignore[arg-type]
        act = str(r["activation"])
        if act in mem_bound:
            bound = mem_bound[act]
            out.append(f"| {act}: extra bytes kept per element | {r['dtype']} | {r['shape']} | {r.get('layout', 'contiguous')} | "
                       f"{eb:.3f} | <= {bound:g} | {'met' if eb <= bound + 0.01 else 'not met'} |")
        elif act == "funnel" and (r["dtype"], r["shape"], r.get("layout", "contiguous")) in plain:
            pb = float(plain[(r["dtype"], r["shape"], r.get("layout", "contiguous"))]["extra_bytes_per_elem"])  # type: ignore[arg-type]
            out.append(f"| funnel: bytes kept vs the plain formula | {r['dtype']} | {r['shape']} | {r.get('layout', 'contiguous')} | "
                       f"{eb / pb:.0%} ({eb:.2f} of {pb:.2f} B) | <= 40% | "
                       f"{'met' if eb <= 0.4 * pb else 'not met'} |")
    return "\n".join(out)


def write_csv(rows: Sequence[dict[str, object]], path: str) -> None:
    """Every row under :data:`COLUMNS` (a row without ``table`` is a large-tensor row), written
    atomically (folders created)."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        cells = {k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS}
        cells["table"] = r.get("table") or "large"
        w.writerow(cells)
    data = buf.getvalue().encode()
    atomic_write(path, lambda f: f.write(data))


def read_csv(path: str) -> list[dict[str, object]]:
    """Rows of a CSV written by :func:`write_csv` (numbers as floats, empty cells as None)."""
    rows: list[dict[str, object]] = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, object] = {}
            for k, v in r.items():
                if v == "":
                    row[k] = None if k != "error" else ""
                elif k.endswith(("_ms", "_vs_torch", "_vs_clone", "_vs_nn_leaky", "_per_elem")) or \
                        k in ("us", "twin_us", "vs_twin"):
                    row[k] = float(v)
                elif k in ("compiles_timed", "calls"):
                    row[k] = int(float(v))
                else:
                    row[k] = v
            row.setdefault("table", "large")  # written before the other tables existed
            rows.append(row)
    return rows


def title(table: str, threads: int, default: bool = False) -> str:
    """The heading of a table: what it measures and at how many threads."""
    what = {"large": "Large tensors: time and memory against torch.nn",
            "small": "Small tensors: microseconds per module call, rectifiers against its twin",
            "step": "Training step of the digits models (batch of synthetic 1x8x8 images), "
                    "rectifiers against its twin"}[table]
    return f"{what} ({threads} thread{'s' if threads != 1 else ''}{', the default' if default else ''})"


def _render(heads: Sequence[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        return markdown_table(heads, body)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def _ratio(r: dict[str, object]) -> str:
    return "failed" if r.get("error") else _fmt(r.get("vs_twin"))


def format_small_table(rows: Sequence[dict[str, object]], markdown: bool = False) -> str:
    """The small-tensor rows, one line per shape and activation: per mode, the microseconds of
    rectifiers' module and of its twin and their ratio (below 1: rectifiers is faster)."""
    modes = [m for m in ("fwd", "fwdbwd") if any(r.get("mode") == m for r in rows)]
    label = {"fwd": "fwd", "fwdbwd": "f+b"}
    heads = ["shape", "activation", "twin"]
    for m in modes:
        heads += [f"{label[m]} us", f"twin {label[m]} us", f"{label[m]} ratio"]
    lines: dict[tuple[object, object], dict[str, dict[str, object]]] = {}
    for r in rows:
        lines.setdefault((r["shape"], r["activation"]), {})[str(r.get("mode"))] = r
    body = []
    for (shape, act), by_mode in lines.items():
        first = next(iter(by_mode.values()))
        line = [str(shape), str(act), str(first.get("twin") or "-")]
        for m in modes:
            r = by_mode.get(m, {})
            line += [_fmt(r.get("us")), _fmt(r.get("twin_us")), _ratio(r) if r else "-"]
        body.append(line)
    return _render(heads, body, markdown)


def format_step_table(rows: Sequence[dict[str, object]], markdown: bool = False) -> str:
    """The training-step rows: milliseconds per step of the rectifiers model and of its twin's,
    and their ratio (below 1: rectifiers is faster)."""
    heads = ("model", "activation", "twin", "step ms", "twin step ms", "ratio")

    def ms(v: object) -> str:
        return "-" if v is None else f"{float(v) / 1000:.3g}"  # type: ignore[arg-type]

    body = [[str(r.get("model")), str(r["activation"]), str(r.get("twin") or "-"), ms(r.get("us")),
             ms(r.get("twin_us")), _ratio(r)] for r in rows]
    return _render(heads, body, markdown)
