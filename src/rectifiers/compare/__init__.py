"""``rectifiers compare``: the claim experiments, or a grid of models, activations and seeds.

The main job. By default (a :class:`Plan`) it runs one designed experiment per claim of the
article (:mod:`rectifiers.compare.experiments`: settings fixed in code, seeds ``0 .. n-1``), and
:mod:`rectifiers.report.claims_doc` writes a report that opens with a verdict on every claim,
after checking each experiment's premise (:mod:`rectifiers.report.claims`,
:mod:`rectifiers.report.claim_rules`). Each run goes through the same harness as the grid below.

The grid (a :class:`Config`, or any grid option on the command line): for every model (a small CNN and a plain MLP, :mod:`rectifiers.zoo`), activation and
seed it trains from the same start (``torch.manual_seed(seed)`` before the model is built, a fixed
data split, a per-epoch shuffle drawn from ``(seed, epoch)``), measures

* test accuracy and loss after every epoch,
* dead / inactive / near-dead unit fractions on the training set before training and after every
  epoch (:class:`rectifiers.diagnostics.DeadUnitMonitor`, model in eval mode),
* per-layer gradient norms at every step and the activations' parameters
  (:class:`rectifiers.diagnostics.GradientFlowMonitor`),
* the time of a training step: after all runs, steps of fresh models are timed round-robin across
  activations (:func:`interleaved_step_times`, a second or two per model), so machine noise falls
  on every activation alike (each run also records its own step times, monitors included, in
  ``history["step_time_s"]``), and the memory of a step:
  the bytes autograd keeps for backward, counted per distinct storage with
  ``torch.autograd.graph.saved_tensors_hooks`` (parameters excluded), plus
  ``torch.cuda.max_memory_allocated`` on CUDA,

and writes ``report.md``, ``report.html`` and PNG plots (:mod:`rectifiers.report`).

Faults: every result (``runs/<model>-<activation>-s<seed>.json``) and checkpoint
(``checkpoints/<...>.pt``, written after every epoch) goes to a temporary file first and is moved
into place with ``os.replace``, so a killed run leaves either the old file or the new one. With
``--resume`` finished runs are read back, unfinished ones continue from their last checkpoint, and
the results equal an uninterrupted run's (the shuffle of an epoch depends only on seed and epoch).

Scale-out: under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1) the models are wrapped in
``DistributedDataParallel`` (gloo on CPU, nccl on CUDA); each global batch of ``--batch-size``
samples is split into N equal shards by rank, so N processes compute the same gradient as one
(the mean over the same global batch). Only rank 0 evaluates, writes checkpoints and the report.
The funnel activation holds a BatchNorm: under DDP each rank normalises with its own shard's
statistics (as ``nn.BatchNorm2d`` without ``SyncBatchNorm``; the funnel's functional BatchNorm
cannot be converted by ``SyncBatchNorm.convert_sync_batchnorm``), and running statistics are
broadcast from rank 0, so funnel runs under DDP are close to, not equal to, a 1-process run.
"""

from .._util import atomic_write_bytes
from .config import (DEFAULT_OUT, DEFAULT_PROVOKE_BIAS, MAX_SEED, PRESETS, PROBE_LIMIT, CompareError, Config,
                     Plan, RunSpec, run_name)
from .experiments import EXPERIMENTS, Arm, Experiment, experiment_of, experiments_for, run_specs
from .distributed import Dist, _init_dist, init_dist
from .run import run_compare
from .session import _resolve_device
from .timing import (STEP_TIMING_BUDGET_S, STEP_TIMING_MIN_ROUNDS, STEP_TIMING_ROUNDS, SavedBytes,
                     _peak_rss_mib, interleaved_step_times, peak_rss_mib, step_times_side_by_side)
from .training import (PAUSE_ENV, _act_params, _batches, _dead_summary, _pause_hook, _read_json,
                       _to_jsonable, atomic_write_json, evaluate, probe_dead, train_one, train_spec)
from .experiments_run import run_experiments

__all__ = ["CompareError", "Config", "Plan", "RunSpec", "run_compare", "run_experiments", "train_one",
           "train_spec", "EXPERIMENTS", "Experiment", "Arm", "experiment_of", "atomic_write_bytes", "atomic_write_json",
           "DEFAULT_OUT", "DEFAULT_PROVOKE_BIAS"]
