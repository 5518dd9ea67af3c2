"""The report as a document: blocks rendered to Markdown and HTML, and :func:`write_report`."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import Any

from .._util import markdown_table
from .figures import plot_activations, plot_curves, plot_dead, plot_grads
from .labels import LEARNABLE, _name
from .statistics import _median, diverged, summarise
from .verdicts import _pct, verdicts

__all__ = ["Doc", "write_report"]


#: A Markdown table (``|`` in a cell escaped): :func:`rectifiers._util.markdown_table`.
_md_table = markdown_table


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


class Doc:
    """Headings, paragraphs, tables, images and code, rendered to Markdown and HTML alike."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, head: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (head, rows)))

    def img(self, path: str, alt: str) -> None:
        self.blocks.append(("img", (path, alt)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def items(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def markdown(self) -> str:
        out = []
        for kind, v in self.blocks:
            if kind == "h":
                out.append("#" * v[0] + " " + v[1])
            elif kind == "p":
                out.append(v)
            elif kind == "table":
                out.append(_md_table(*v))
            elif kind == "img":
                out.append(f"![{v[1]}]({v[0]})")
            elif kind == "code":
                out.append("```\n" + v + "\n```")
            elif kind == "ul":
                out.append("\n".join(f"- {i}" for i in v))
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = []
        for kind, v in self.blocks:
            if kind == "h":
                out.append(f"<h{v[0]}>{html.escape(v[1])}</h{v[0]}>")
            elif kind == "p":
                out.append(f"<p>{_inline(v)}</p>")
            elif kind == "table":
                out.append(_html_table(*v))
            elif kind == "img":
                out.append(f'<p><img src="{html.escape(v[0])}" alt="{html.escape(v[1])}"></p>')
            elif kind == "code":
                out.append(f"<pre><code>{html.escape(v)}</code></pre>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in v) + "</ul>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
                 "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
                 "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f3f3f3}"
                 "img{max-width:100%}code{background:#f6f6f6}pre{background:#f6f6f6;padding:.6em}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def _inline(text: str) -> str:
    """Escape, then render `code` and **bold** spans."""
    import re

    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def _command(cfg: dict[str, Any]) -> str:
    """The command line that reproduces ``cfg``: :meth:`rectifiers.compare.Config.command_line`."""
    from ..compare.config import Config

    return Config.from_dict(cfg).command_line()


def write_report(out_dir: str, cfg: dict[str, Any], results: Sequence[dict[str, Any]],
                 meta: dict[str, Any]) -> dict[str, str]:
    """Write ``report.md``, ``report.html`` and the PNGs into ``out_dir``; return their paths.

    The report is written even when a plot cannot be drawn (matplotlib missing, or data no plot
    can show): the plot is then left out and the report says why. Diverged runs (NaN or infinite
    losses or gradient norms, :func:`diverged`) are named in the report and marked in the plots.
    ``meta["step_timing"]`` (from :func:`rectifiers.compare.interleaved_step_times`) gives the step
    times; without it, the median step time of each run is shown, and the report says so.
    """
    from .._util import atomic_write_bytes

    os.makedirs(out_dir, exist_ok=True)
    models = list(cfg["models"])
    acts = list(cfg["activations"])
    groups = summarise(results)
    chance = 1 / int(meta.get("num_classes", 10))

    files = {
        "curves": "training_curves.png",
        "dead": "dead_units.png",
        "grads": "gradient_norms.png",
        "acts": "activations.png",
    }
    drawers = {
        "curves": lambda p: plot_curves(groups, models, p),
        "dead": lambda p: plot_dead(groups, models, p),
        "grads": lambda p: plot_grads(groups, models, p),
        "acts": lambda p: plot_activations(acts, p),
    }
    failed: dict[str, str] = {}
    for key, draw in drawers.items():
        try:
            draw(os.path.join(out_dir, files[key]))
        except Exception as e:  # a missing plot must not cost the report
            failed[key] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    timing = meta.get("step_timing") or None

    doc = Doc()
    doc.h(1, "Rectifier comparison")
    seeds = ", ".join(map(str, cfg["seeds"]))
    doc.p(f"Data: {meta['data']}. Models: {', '.join(models)} with depth {cfg['depth']}; "
          f"{cfg['epochs']} epochs of SGD (lr {cfg['lr']:g}, momentum {cfg['momentum']:g}, global batch "
          f"{cfg['batch_size']}); initialisation `{cfg['init']}`"
          + (f"; provocation: every layer feeding an activation starts with bias {cfg['provoke']:g}"
             if cfg["provoke"] is not None else "")
          + f"; seeds {seeds}. Device {meta['device']}, {meta['world_size']} process(es), "
          f"{meta['threads']} thread(s), torch {meta['torch']}; wall time {meta['wall_s']:.0f} s"
          + (" (of the last, resumed invocation)." if meta.get("resumed") else "."))
    doc.p("Reproduce with:")
    doc.code(_command(cfg))

    doc.h(2, "Results")
    doc.p("Mean ± sample standard deviation over seeds. Dead: units whose derivative was 0 on every "
          "training image (they can no longer learn); never positive: units never in the positive region "
          "(for LeakyReLU and PReLU these still pass a gradient); both measured with "
          "`rectifiers.diagnostics.DeadUnitMonitor` on the training set (up to 2048 images, model in eval "
          "mode) before training and after the last epoch. Gradient ratio: log10 of the first layer's "
          "gradient norm over the last's (`GradientFlowMonitor`), geometric mean over epochs; 0 means equal, "
          "-1 a tenfold drop towards the input. " + _step_time_text(timing) + " Saved for backward: the bytes autograd keeps for the "
          "backward pass of one training step, counted once per distinct storage with "
          "`torch.autograd.graph.saved_tensors_hooks` (parameters excluded).")
    head = ["model", "activation", "test acc.", "dead start", "dead end", "never positive end",
            "grad ratio (log10)", "vanishing / exploding epochs",
            "step ms (x ReLU)" if timing else "step ms", "saved for backward MiB"]
    rows = []
    stalled = []
    diverged_runs = []
    for m in models:
        for a in acts:
            g = groups.get((m, a))
            if g is None:
                continue
            acc = g.acc
            if acc.n and acc.mean < 2 * chance:
                stalled.append(f"{m.upper()} {_name(a)} ({_pct(acc)})")
            div = [r["seed"] for r in g.runs if diverged(r)]
            if div:
                diverged_runs.append(f"{m.upper()} {_name(a)} (seed{'s' if len(div) > 1 else ''} "
                                     f"{', '.join(map(str, div))})")
            rows.append([
                m, _name(a), _pct(acc) + (f" **diverged {len(div)}/{len(g.runs)}**" if div else ""), _pct(g.dead_at("dead", 0)), _pct(g.dead_at("dead", -1)),
                _pct(g.dead_at("inactive", -1)), g.log_ratio.fmt(1, 2),
                f"{_pct(g.vanishing_share)} / {_pct(g.exploding_share)}",
                _step_cell(timing, m, a) if timing else g.step_ms.fmt(1, 2), g.saved_mib.fmt(1, 3),
            ])
    doc.table(head, rows)
    if diverged_runs:
        doc.p("**Diverged** (a training or test loss, or a gradient norm, became NaN or infinite; NaN "
              "values are gaps in the plots and left out of the means): " + "; ".join(diverged_runs)
              + ". Such runs say the setting is unstable (a smaller `--lr` is the usual remedy), not which "
              "activation is better.")
    if "cuda" in meta["device"]:
        peaks = [r.get("cuda_peak_bytes") for r in results if r.get("cuda_peak_bytes")]
        if peaks:
            doc.p(f"CUDA peak memory allocated in an epoch (`torch.cuda.max_memory_allocated`): "
                  f"{max(peaks) / 2**20:.1f} MiB at most over all runs.")
    doc.p(f"Process peak resident memory (`getrusage`): {meta['peak_rss_mib']:.0f} MiB "
          f"(grew by {meta['peak_rss_growth_mib']:.0f} MiB during the runs; it includes Python, torch and "
          f"the data, and is shared by all runs, so the per-run figure above is the comparable one).")
    if stalled:
        hint = ("" if cfg["init"] == "kaiming" else
                " With PyTorch's default initialisation every layer shrinks the signal (weights of variance "
                "1/(3 fan_in)), so a deep plain network barely moves from its start; `--init kaiming` "
                "(the activation's own gain) is the usual remedy.")
        doc.p("**Hardly trained** (final test accuracy under twice the chance level of "
              f"{100 * chance:.0f}%): " + "; ".join(stalled) + "." + hint)
    fparams = []
    for m in models:
        for a, which in LEARNABLE.items():
            g = groups.get((m, a))
            if g is None:
                continue
            fparams.append(f"{m.upper()} {_name(a)} {'slope a' if which == 'weight' else 'bias b'} "
                           f"(mean over layers): {g.act_param(which, 0, 'mean').fmt(1, 3)} at the start, "
                           f"{g.act_param(which, -1, 'mean').fmt(1, 3)} at the end")
    if fparams:
        doc.p("Learned activation parameters: " + "; ".join(fparams) + ".")
    if "mlp" in models and "funnel_relu" in acts:
        doc.p("In the MLP there is no spatial neighbourhood: there the funnel activation is "
              "max(x, BN(w x)) per feature (kernel size 1), a much weaker condition than the CNN's 3 x 3 one.")

    doc.h(2, "Plots")
    alts = {"curves": "test accuracy and training loss per epoch",
            "dead": "dead and never-positive units per epoch",
            "grads": "gradient norm per layer, and first/last ratio over training",
            "acts": "the activations and their derivatives"}
    for key, alt in alts.items():
        if key in failed:
            doc.p(f"Plot {files[key]} ({alt}) could not be drawn: {failed[key]}.")
        else:
            doc.img(files[key], alt)

    doc.h(2, "The article's claims")
    doc.p("Each claim is weighed on each model. Rule: two groups of runs differ when the difference of "
          "their means exceeds its standard error over seeds, sqrt(s_a^2/n_a + s_b^2/n_b), times the "
          "two-sided 95% Student-t critical value for n_a + n_b - 2 degrees of freedom (4.30 for 2 + 2 "
          "seeds, 2.78 for 3 + 3; so two groups from one distribution get a verdict about 5% of the "
          "time), and also a minimum effect (1 percentage "
          "point of dead units, 0.5 point of accuracy, 0.1 in log10 gradient norm); otherwise, or with "
          "fewer than 2 seeds, or when the claim's premise did not occur in the run, the verdict is "
          "'cannot decide'. Note that a LeakyReLU or PReLU unit with a slope other than 0 cannot be dead "
          "by definition (its derivative is the slope), and that FReLU's derivative in x is 0 for x <= 0 "
          "exactly as ReLU's: b shifts the output, not the gradient.")
    if "funnel_relu" in acts:
        doc.p("The funnel activation holds a BatchNorm in its condition T(x); none of the other models has "
              "any normalisation. Part of an accuracy or trainability advantage of Funnel can therefore come "
              "from the normalisation rather than from max(x, T(x)); this comparison cannot separate the two.")
    vs = verdicts(groups, models, chance)
    doc.table(["claim", "model", "measured", "verdict", "why"],
              [[v.claim, v.model, v.measured, f"**{v.verdict}**", v.reason] for v in vs])

    md = doc.markdown()
    atomic_write_bytes(os.path.join(out_dir, "report.md"), md.encode())
    atomic_write_bytes(os.path.join(out_dir, "report.html"), doc.html("Rectifier comparison").encode())
    return {"md": os.path.join(out_dir, "report.md"), "html": os.path.join(out_dir, "report.html"),
            **{k: os.path.join(out_dir, v) for k, v in files.items() if k not in failed}}


def _step_time_text(timing: dict[str, Any] | None) -> str:
    if not timing:
        return ("Step time: median wall-clock of a training step (forward, backward, optimizer, "
                "monitors included) of each run, mean over seeds; the runs were timed one after another, "
                "so machine noise during one run lands on that run alone.")
    rounds = ", ".join(f"{m.upper()} {n}" for m, n in timing["rounds"].items())
    return ("Step time: measured side by side after training: fresh models of every activation took "
            "one training step each in turn (forward, backward, optimizer; no monitors; batch "
            f"{timing['batch']}), round after round (rounds: {rounds}), so machine noise falls on every "
            "activation alike; median ms per step over the rounds, and in parentheses its ratio to "
            "ReLU's median. Each run's own step times (monitors included) are in its runs/*.json.")


def _step_cell(timing: dict[str, Any], model: str, act: str) -> str:
    ms = timing["ms"].get(model, {})
    if not ms.get(act):
        return "n/a"
    med = _median(ms[act])
    base = ms.get("relu")
    if not base:
        return f"{med:.2f}"
    return f"{med:.2f} ({med / _median(base):.2f}x)"
