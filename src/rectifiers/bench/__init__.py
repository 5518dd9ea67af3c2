"""Time and memory of every activation (``rectifiers bench`` / ``python -m rectifiers.bench``).

For each activation x implementation x shape x dtype it measures, as medians over repetitions:

* ``fwd``: forward with autograd recording (training), ``bwd``: backward alone,
  ``fwdbwd``: forward + backward, ``nograd``: forward under ``torch.no_grad()``;
* the same figures for ``torch.nn`` (or the plain formula where torch has no such module) and
  for a plain copy ``x.clone()``, timed in the same repetitions, and the ratios to both;
* the extra bytes kept for backward per activation element, as in a conv -> act -> conv block:
  distinct storages saved by the activation, except its output (the next layer keeps that).

Implementations: ``torch`` (``torch.nn.ReLU`` / ``LeakyReLU`` / ``PReLU``; FReLU as
``relu(x) + b``; the funnel as ``nn.Conv2d`` + ``nn.BatchNorm2d`` + ``torch.maximum``),
``eager`` (rectifiers' eager backend), ``compiled`` (the rectifiers module under
``torch.compile(fullgraph=True)``) and, on request, ``torch_compiled`` (the ``torch`` module
compiled the same way: what the compiler makes of torch's own formula, the yardstick of
``compiled``). Within each repetition every implementation runs in turn, so that the noise of a
shared machine hits all of them alike; each runs an untimed step just before its timed one, so
that it meets the allocator in the state its own steps leave (as in a training loop). Without
that, glibc's malloc hands a large buffer back to the system at one implementation's free and
page-faults it in again at the next one's allocation, and which implementation pays for that
changed from run to run (ratios between identical kernels moved by up to 2x). Each timed call
also starts with the CPU's caches evicted, as a network's layers find them (``--warm-cache``
turns that off; see ``_Inputs``).

Compiled implementations are compiled during the warm-up (a training graph and a no_grad graph
each); the column ``compiles_timed`` counts the graphs Dynamo compiled during the timed
repetitions, which must stay 0 for the times to mean anything (a nonzero count is also logged).

Two more tables weigh what a call costs where tensors are small (:mod:`.host`: microseconds per
module call, forward and forward + backward, rectifiers' module against its twin) and a whole
training step of the comparison's digits CNN and MLP (:mod:`.steps`), each side by side with its
twin, rounds alternating. Every table can be run at several thread counts (``threads`` column).
"""

from .cases import (ACTIVATIONS, DEFAULT_IMPLS, DEFAULT_SHAPES, DTYPES, IMPLEMENTATIONS, LAYOUTS,
                    QUICK_SHAPES, _laid_out, _PlainFeatureFunnel, _PlainFReLU, _PlainFunnel, bench_cases,
                    make_module, twin_name)
from .host import SMALL_MODES, SMALL_SHAPES, interleaved, run_small
from .memory import _extra_bytes_of, block_extra_bytes_per_element, extra_bytes_per_element, saved_bytes
from .steps import DIGITS_SHAPE, STEP_MODELS, build_step_model, run_steps
from .tables import (COLUMNS, GOALS, TABLES, _fmt, format_small_table, format_step_table, format_table,
                     goals_table, read_csv, title, write_csv)
from .timing import (_METRICS, _Case, _clone_times, _cpu_name, _graphs_compiled, _Inputs, _l3_bytes,
                     _measure_nograd, _measure_once, _now, _zero, run_benchmark)

__all__ = [
    "ACTIVATIONS",
    "IMPLEMENTATIONS",
    "DEFAULT_IMPLS",
    "DEFAULT_SHAPES",
    "QUICK_SHAPES",
    "saved_bytes",
    "extra_bytes_per_element",
    "block_extra_bytes_per_element",
    "make_module",
    "bench_cases",
    "run_benchmark",
    "goals_table",
    "read_csv",
    "write_csv",
    "format_table",
    "TABLES",
    "twin_name",
    "SMALL_SHAPES",
    "SMALL_MODES",
    "STEP_MODELS",
    "run_small",
    "run_steps",
    "build_step_model",
    "interleaved",
    "format_small_table",
    "format_step_table",
    "title",
]
