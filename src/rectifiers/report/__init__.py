"""The report of ``rectifiers compare``: tables, plots and verdicts, as Markdown and HTML.

:func:`summarise` turns the per-run results of :mod:`rectifiers.compare` into per (model,
activation) statistics over seeds; :func:`verdicts` weighs the article's claims against them;
:func:`write_report` writes ``report.md``, ``report.html`` and the PNG plots.

The decision rule of every verdict (:func:`decide`): two groups of runs (one value per seed) differ
when the difference of their means exceeds ``t * se``, where
``se = sqrt(s_a^2 / n_a + s_b^2 / n_b)`` (sample standard deviations over seeds) and ``t`` is the
two-sided 95% Student-t critical value for ``df = n_a + n_b - 2`` (4.30 for 2 + 2 seeds, 2.78 for
3 + 3; :func:`t_critical`), so that two groups drawn from one normal distribution get a verdict
about 5% of the time; and also a minimum size that matters (stated per claim). With fewer than
2 seeds in a group there is no spread and no verdict: "cannot decide". A claim whose premise did not occur in the run (no dead
ReLU units to mitigate, no vanishing gradients, a bias b that did not grow) is also "cannot decide",
with the reason; a verdict is never given that the numbers do not carry.
"""

from .document import Doc, _command, _html_table, _inline, _md_table, _step_cell, _step_time_text, write_report
from .figures import (_figure, _label, _log_scale_if_positive, _mean_finite, _no_data, _save, _series,
                      plot_activations, plot_curves, plot_dead, plot_grads)
from .labels import COLORS, DISPLAY, _name
from .statistics import (_INF_SENTINEL, _T975, Group, Stat, _geomean_log10, _median, _share, _value,
                         decide, diverged, summarise, t_critical)
from .verdicts import (CONTRADICTS, SUPPORTS, UNDECIDED, Verdict, _compare, _pct, _relu_dies, verdicts)

from .claim_rules import RULES, findings, kink_facts
from .claims import PREMISES, Finding, Premise, weigh
from .claims_doc import write_claims_report

__all__ = ["Stat", "Verdict", "decide", "t_critical", "summarise", "verdicts", "write_report", "DISPLAY",
           "RULES", "PREMISES", "Finding", "Premise", "weigh", "findings", "kink_facts", "write_claims_report"]
