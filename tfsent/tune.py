"""Tune: an Optuna hyperparameter search over tfsent fit runs, on the validation split only.

Each trial is one :func:`tfsent.fit.fit` run on the same train/validation split (same data options
and seed), with the learning rate, batch size, epochs, warmup ratio, weight decay and max length
suggested by Optuna's TPE sampler. The test split is never scored. A per-epoch Keras callback
reports the monitored validation metric so the pruner can stop hopeless trials early::

    python -m tfsent.tune --config tune-demo                          # the offline demo search
    python -m tfsent.tune --dataset reviews.csv --output-dir runs/tune --n-trials 30 \\
        --learning-rate-range 1e-5 1e-4 --max-length-choices 128 256
    python -m tfsent.fit --config runs/tune/best_config.yaml          # refit the best, with test

The study lives in an Optuna RDB storage: ``sqlite:///<output-dir>/study.db`` by default, so a
killed search resumes where it stopped when started again (finished trials are kept; the trial
that was running is retried from its last Keras backup). ``--storage postgresql://...`` lets
several machines work on one study at once: start the same command on each.

``--n-trials`` is the number of finished trials (completed or pruned) the study should reach, so
a rerun only runs the remaining ones. The search folder::

    runs/tune/
      study.db                  the Optuna storage (unless --storage)
      trial-0000/ ...           each trial's run folder (a fit run without test metrics)
      trials.csv                one row per trial: state, value, options, epochs, time, folder
      best_config.yaml          the best trial's options: python -m tfsent.fit --config it
      optimization_history.png  param_importances.png

The modules of the search: :mod:`tfsent.tune_space` (the space and each trial's options),
:mod:`tfsent.tune_storage` (the Optuna storage and retrying dead workers' trials),
:mod:`tfsent.tune_report` (the outputs above); this module runs the study and the CLI.

The search space, from :class:`TuneConfig` (each range can be set in the config file)::

    >>> import optuna
    >>> from tfsent.config import RunConfig
    >>> trial = optuna.trial.FixedTrial({"learning_rate": 3e-5, "batch_size": 32, "epochs": 3,
    ...                                  "warmup_ratio": 0.1, "weight_decay": 0.01,
    ...                                  "max_length": 256})
    >>> cfg = trial_config(RunConfig(), suggest(trial, TuneConfig()), "runs/tune/trial-0000")
    >>> cfg.train.learning_rate, cfg.train.batch_size, cfg.model.max_length, cfg.train.export_dir
    (3e-05, 32, 256, None)
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig, monitor_mode, parse_args
from tfsent.errors import UserError, fail, run_cli
from tfsent.tune_report import best_trial, finished_trials, format_params, write_outputs
from tfsent.tune_space import (
    TuneConfig,
    check_same_search,
    check_tune_config,
    suggest,
    trial_config,
)
from tfsent.tune_storage import open_storage, requeue, retry_dead_trials, safe_url

if TYPE_CHECKING:
    import optuna

DEFAULT_TUNE_DIR = "runs/tune"


def pruning_callback(trial: optuna.Trial, monitor: str):
    """A Keras callback that reports ``monitor`` to ``trial`` after each epoch and stops training
    cleanly (the run is still saved) when the pruner says so; the caller then raises
    ``optuna.TrialPruned``."""
    import tf_keras

    class ReportToOptuna(tf_keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.pruned_after: int | None = None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(monitor)
            if value is None or not math.isfinite(value):
                return
            with warnings.catch_warnings():  # a retried trial reports its resumed epochs again
                warnings.simplefilter("ignore")
                trial.report(float(value), epoch)
            if trial.should_prune():
                self.pruned_after = epoch
                self.model.stop_training = True

    return ReportToOptuna()


def make_pruner(name: str, epochs_high: int) -> optuna.pruners.BasePruner:
    """The pruner ``--pruner`` names; Hyperband's budget is the epochs of the longest trial."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs_high)
    return optuna.pruners.NopPruner()


def run_search(cfg: RunConfig, t: TuneConfig, pruner: Any = None) -> dict[str, Any]:
    """Run (or resume) the search; write its outputs; return a summary.

    ``cfg`` holds the options every trial shares (its searched values are ignored) and the search
    folder (``cfg.train.output_dir``); ``pruner`` overrides ``t.pruner`` (an Optuna pruner).
    """
    import optuna
    from optuna.trial import TrialState

    from tfsent.fit import fit

    check_tune_config(t)
    out, metric = _search_folder(cfg)
    created_dir = not out.exists()
    default_storage = t.storage is None
    if default_storage:
        out.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(out / 'study.db').resolve()}"
    else:
        url = t.storage
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tfsent prints its own progress
    try:
        try:
            storage = open_storage(url)
            study = open_study(storage, url, cfg, t)
        except UserError:
            if created_dir:
                shutil.rmtree(out, ignore_errors=True)
            raise
        fresh = not study.get_trials(deepcopy=False)
        retried = retry_dead_trials(study)
        if retried:
            print(f"retrying trial(s) {', '.join(map(str, retried))} of a killed search",
                  flush=True)
        try:
            _optimize(study, cfg, t, metric, pruner, out, fit)
        except UserError:
            # Bad input fails the first trial before it writes anything: leave nothing behind.
            if fresh and not finished_trials(study):
                if default_storage and created_dir:
                    shutil.rmtree(out, ignore_errors=True)
                elif default_storage:
                    (out / "study.db").unlink(missing_ok=True)
                else:
                    optuna.delete_study(study_name=t.study_name, storage=storage)
            raise
        summary = write_outputs(study, cfg, out)
    finally:
        optuna.logging.set_verbosity(verbosity)
    summary["retried"] = retried
    summary["states"] = {s.name: sum(1 for x in study.get_trials(deepcopy=False) if x.state == s)
                         for s in TrialState}
    return summary


def _search_folder(cfg: RunConfig) -> tuple[Path, str]:
    """The search folder and the validation metric trials are ranked on, or a one-line error."""
    from tfsent.rundir import RunDir

    monitor = cfg.train.monitor
    if not monitor.startswith("val_"):
        fail(f"--monitor {monitor} is a training metric; a search must rank trials on the "
             "validation split: use val_accuracy, val_loss or val_f1_macro")
    out = Path(cfg.train.output_dir)
    if out.exists() and not out.is_dir():
        fail(f"--output-dir {out} is a file; pass a directory for the search")
    if RunDir(out).finished:
        fail(f"{out} holds a finished fit run; pass another --output-dir for the search")
    return out, monitor.removeprefix("val_")


def open_study(storage: optuna.storages.BaseStorage, url: str, cfg: RunConfig,
               t: TuneConfig) -> optuna.Study:
    """The study ``t`` names in ``storage`` (opened from ``url``), new or resumed; a one-line
    error when it was started for another metric direction or with other options."""
    import optuna

    monitor = cfg.train.monitor
    direction = "minimize" if monitor_mode(monitor) == "min" else "maximize"
    try:
        study = optuna.create_study(storage=storage, study_name=t.study_name,
                                    direction=direction, load_if_exists=True)
    except ValueError as err:
        fail(f"study {t.study_name!r} in {safe_url(url)} cannot be resumed ({err}); "
             "pass another --study-name")
    if study.direction.name.lower() != direction:
        fail(f"study {t.study_name!r} in {safe_url(url)} was started to "
             f"{study.direction.name.lower()} its metric, and --monitor {monitor} "
             f"needs {direction}; pass the same --monitor or another --study-name")
    check_same_search(study, cfg, t, safe_url(url))
    return study


def _optimize(study: optuna.Study, cfg: RunConfig, t: TuneConfig, metric: str, pruner: Any,
              out: Path, fit: Callable[..., dict[str, Any]]) -> None:
    import optuna
    import tensorflow as tf
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    remaining = t.n_trials - len(finished_trials(study))
    if remaining <= 0:
        print(f"study {t.study_name!r} already has {len(finished_trials(study))} finished "
              f"trials (--n-trials {t.n_trials}); writing its results", flush=True)
        return
    study.pruner = pruner or make_pruner(t.pruner, t.epochs_range[1])
    seed = None if t.sampler_seed is None else t.sampler_seed + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    study.optimize(
        _objective(study, cfg, t, metric, out, fit),
        n_trials=None,  # until MaxTrialsCallback sees n_trials finished, counting earlier runs
        catch=(tf.errors.ResourceExhaustedError,),  # a batch size too large: try another
        callbacks=[MaxTrialsCallback(t.n_trials, states=(TrialState.COMPLETE,
                                                          TrialState.PRUNED)),
                   _progress(t, cfg.train.monitor), _stop_after_failures(t.n_trials)],
        gc_after_trial=True,
    )


def _objective(study: optuna.Study, cfg: RunConfig, t: TuneConfig, metric: str, out: Path,
               fit: Callable[..., dict[str, Any]]) -> Callable[[optuna.Trial], float]:
    """One trial: a fit run of the suggested options, scored on the validation split."""
    import optuna

    from tfsent.rundir import RunDir

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, t)
        # A retried trial inherits the folder of the trial it retries: fit resumes its backup.
        run_dir = trial.user_attrs.get("run_dir") or str(out / f"trial-{trial.number:04d}")
        trial.set_user_attr("run_dir", run_dir)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        n = len(finished_trials(study)) + 1
        print(f"trial {n} of {t.n_trials} (#{trial.number}): {format_params(params)}",
              flush=True)
        run = RunDir(run_dir)
        reporter = pruning_callback(trial, cfg.train.monitor)
        try:
            if run.finished:  # trained to the end before its process was killed
                metrics = run.metrics
            else:
                metrics = fit(trial_config(cfg, params, run_dir), [reporter],
                              evaluate_test=False)
        except KeyboardInterrupt:
            # Ctrl-C: re-queue these options, so a rerun resumes this trial from its backup.
            requeue(study, trial.number)
            raise
        if reporter.pruned_after is not None:
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_after + 1}")
        trial.set_user_attr("validation", {k: metrics["validation"][k]
                                           for k in ("accuracy", "f1_macro", "loss")})
        return float(metrics["validation"][metric])

    return objective


def _progress(t: TuneConfig, monitor: str) -> Callable[..., None]:
    """A study callback printing each finished trial, the best so far, and how many are done."""

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = len(finished_trials(study))
        value = f"{monitor} {trial.value:.4f}" if trial.value is not None else "no value"
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        best = best_trial(study)
        best_text = (f"best {best.value:.4f} (#{best.number})" if best is not None
                     else "no completed trial yet")
        print(f"trial #{trial.number} {trial.state.name.lower()}: {value}, {seconds:.0f}s | "
              f"{best_text} | {done} of {t.n_trials} done", flush=True)

    return progress


def _stop_after_failures(limit: int) -> Callable[..., None]:
    """Failed trials (out of memory) do not count toward n_trials: stop rather than loop."""
    failures = []

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state.name == "FAIL":
            failures.append(trial.number)
            if len(failures) >= limit:
                print(f"stopping: {len(failures)} trials failed in this run", file=sys.stderr)
                study.stop()

    return callback


def main(argv: list[str] | None = None) -> int:
    from tfsent.cli import TRAIN_MODULES, configure_logging, require_extra
    from tfsent.config import CliOptions

    require_extra("train", TRAIN_MODULES, "the search")
    require_extra("tune", ("optuna",), "the search")
    data_cfg, model_cfg, train_cfg, tune_cfg, options = parse_args(
        (DataConfig, ModelConfig, TrainConfig, TuneConfig, CliOptions),
        "Hyperparameter search (Optuna) over tfsent fit runs, on the validation split. "
        "--output-dir is the search folder (default runs/tune); the searched options "
        "(learning rate, batch size, epochs, warmup ratio, weight decay, max length) take their "
        "values from the *-range / *-choices options.",
        list(sys.argv[1:] if argv is None else argv),
        prog="python -m tfsent.tune",
    )
    configure_logging(options.verbose)
    if train_cfg.output_dir == TrainConfig().output_dir:
        train_cfg.output_dir = DEFAULT_TUNE_DIR
    cfg = RunConfig(data_cfg, model_cfg, train_cfg).check()
    started = time.perf_counter()
    summary = run_search(cfg, tune_cfg)
    print(f"search done in {time.perf_counter() - started:.0f}s", flush=True)
    return 0 if "best_trial" in summary else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
