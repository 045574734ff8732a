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

import csv
import math
import os
import shutil
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig, parse_args
from tfsent.errors import UserError, fail, run_cli

if TYPE_CHECKING:
    import optuna

# Where each searched option lives in RunConfig.
SEARCHED: dict[str, str] = {
    "learning_rate": "train",
    "batch_size": "train",
    "epochs": "train",
    "warmup_ratio": "train",
    "weight_decay": "train",
    "max_length": "model",
}
# Options that may differ between the workers of one study, or between a search and its rerun:
# where each machine writes, how much it prints, and what is done after training.
LOCAL_OPTIONS = ("train.output_dir", "train.overwrite_output_dir", "train.progress",
                 "train.verbose", "train.export_dir", "train.model_name", "model.license")
DEFAULT_TUNE_DIR = "runs/tune"
# A trial whose worker stopped sending heartbeats for GRACE_PERIOD seconds is failed and retried
# by the next worker that asks for a trial (another machine's crash or power loss).
HEARTBEAT_INTERVAL = 60
GRACE_PERIOD = 180
MAX_RETRIES = 2


@dataclass
class TuneConfig:
    n_trials: int = field(
        default=20,
        metadata={"help": "Finished trials (completed or pruned) the study should reach; a rerun "
                  "of the same search runs only the remaining ones."},
    )
    study_name: str = field(default="tfsent", metadata={"help": "Optuna study name."})
    storage: str | None = field(
        default=None,
        metadata={"help": "Optuna RDB storage URL. Default: sqlite:///<output-dir>/study.db. "
                  "postgresql://user:password@host/db lets several machines work on one study "
                  "(run the same command on each)."},
    )
    pruner: str = field(
        default="median",
        metadata={"help": "Stop trials early by their per-epoch validation metric: 'median' "
                  "(worse than the median of earlier trials at the same epoch), 'hyperband' "
                  "or 'none'.", "choices": ("median", "hyperband", "none")},
    )
    sampler_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of the TPE sampler (offset by the trials already in the study, "
                  "so a resumed search does not repeat its first suggestions). Default: random."},
    )
    learning_rate_range: list[float] = field(
        default_factory=lambda: [1e-5, 1e-4],
        metadata={"help": "Learning rate: low high (log scale)."},
    )
    batch_size_choices: list[int] = field(
        default_factory=lambda: [16, 32], metadata={"help": "Batch sizes to choose from."}
    )
    epochs_range: list[int] = field(
        default_factory=lambda: [2, 4], metadata={"help": "Epochs: low high (integers)."}
    )
    warmup_ratio_range: list[float] = field(
        default_factory=lambda: [0.0, 0.2], metadata={"help": "Warmup ratio: low high."}
    )
    weight_decay_range: list[float] = field(
        default_factory=lambda: [0.0, 0.1], metadata={"help": "Weight decay: low high."}
    )
    max_length_choices: list[int] = field(
        default_factory=lambda: [128, 256, 512],
        metadata={"help": "Max lengths (tokens per review) to choose from."},
    )

    def search_space(self) -> dict[str, Any]:
        return {name: list(getattr(self, name)) for name in (
            "learning_rate_range", "batch_size_choices", "epochs_range", "warmup_ratio_range",
            "weight_decay_range", "max_length_choices")}


def check_tune_config(t: TuneConfig) -> None:
    """One-line errors for a search space Optuna or fit would reject later, mid-search."""
    from tfsent.config import check_model_options

    if t.n_trials < 1:
        fail(f"--n-trials {t.n_trials} runs nothing; pass at least 1")
    for name, low_min, high_max in (("learning_rate_range", 0.0, None),
                                    ("epochs_range", 1, None),
                                    ("warmup_ratio_range", 0.0, 1.0),
                                    ("weight_decay_range", 0.0, None)):
        values = getattr(t, name)
        flag = "--" + name.replace("_", "-")
        if len(values) != 2 or values[0] > values[1]:
            fail(f"{flag} takes two values, low then high (got {values})")
        low, high = values
        if low < low_min or (name == "learning_rate_range" and low <= 0):
            fail(f"{flag} starts below {'0 (exclusive)' if low_min == 0.0 else low_min} "
                 f"(got {values})")
        if high_max is not None and high >= high_max:
            fail(f"{flag} must stay below {high_max} (got {values})")
    if not t.batch_size_choices or min(t.batch_size_choices) < 1:
        fail(f"--batch-size-choices needs positive sizes (got {t.batch_size_choices})")
    if not t.max_length_choices:
        fail("--max-length-choices needs at least one length")
    for length in t.max_length_choices:
        check_model_options(length, "head", where="--max-length-choices")


def suggest(trial: optuna.Trial, t: TuneConfig) -> dict[str, Any]:
    """One point of the search space, suggested (or fixed, for a retried trial) by ``trial``."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", *t.learning_rate_range, log=True),
        "batch_size": trial.suggest_categorical("batch_size", list(t.batch_size_choices)),
        "epochs": trial.suggest_int("epochs", *t.epochs_range),
        "warmup_ratio": trial.suggest_float("warmup_ratio", *t.warmup_ratio_range),
        "weight_decay": trial.suggest_float("weight_decay", *t.weight_decay_range),
        "max_length": trial.suggest_categorical("max_length", list(t.max_length_choices)),
    }


def trial_config(base: RunConfig, params: dict[str, Any], output_dir: str | Path) -> RunConfig:
    """``base`` with a trial's options, writing into ``output_dir``, exporting nothing."""
    cfg = RunConfig.from_dict(base.to_dict())
    for name, value in params.items():
        setattr(getattr(cfg, SEARCHED[name]), name, value)
    cfg.train.output_dir = str(output_dir)
    cfg.train.overwrite_output_dir = False
    cfg.train.export_dir = None
    return cfg


def best_config(base: RunConfig, params: dict[str, Any], output_dir: str | Path) -> RunConfig:
    """What ``python -m tfsent.fit`` reruns for the best trial: its options, the base export."""
    cfg = trial_config(base, params, output_dir)
    cfg.train.overwrite_output_dir = base.train.overwrite_output_dir
    cfg.train.export_dir = base.train.export_dir
    return cfg


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


# -- storage and study --------------------------------------------------------------------------
def _retry_callback():
    """Optuna's callback that re-queues a dead trial's options (renamed in Optuna 5)."""
    from optuna import storages

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning
        if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):
            cls, key = storages.RetryHeartbeatStaleTrialCallback, "heartbeat_stale_trial_callback"
        else:  # Optuna 4
            cls, key = storages.RetryFailedTrialCallback, "failed_trial_callback"
        return cls(max_retry=MAX_RETRIES, inherit_intermediate_values=True), key


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: show it, there is no password to hide in it
        return url


def open_storage(url: str):
    """An ``RDBStorage`` with heartbeats (dead workers' trials are retried), or a one-line error."""
    import optuna

    retry, key = _retry_callback()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # The heartbeat thread writes while a trial runs: wait for SQLite's lock, do not fail.
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    try:
        for attempt in range(3):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return optuna.storages.RDBStorage(
                        url, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD,
                        **{key: retry}, **kwargs)
            except Exception as err:
                # Workers started together race to create Optuna's tables in a new database:
                # the loser finds them made; opening again reads them.
                if "already exists" not in str(err) or attempt == 2:
                    raise
                time.sleep(1 + attempt)
    except Exception as err:  # SQLAlchemy: bad URL, missing driver, unreachable server, ...
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        fail(f"cannot open the Optuna storage {_safe_url(url)} ({reason}); check --storage, that "
             "the database server is reachable and that its driver is installed "
             "(e.g. pip install psycopg2-binary for postgresql://)")


def _comparable(cfg: RunConfig) -> dict[str, Any]:
    flat = {f"{section}.{k}": v for section, values in cfg.to_dict().items()
            for k, v in values.items()}
    skip = set(LOCAL_OPTIONS) | {f"{section}.{name}" for name, section in SEARCHED.items()}
    return {k: v for k, v in flat.items() if k not in skip}


def _check_same_search(study: optuna.Study, base: RunConfig, t: TuneConfig, where: str) -> None:
    """A study resumed (or shared) with other options would compare trials of different runs."""
    import json

    mine = {"base_config": _comparable(base), "search_space": t.search_space()}
    mine = json.loads(json.dumps(mine))  # as the storage returns it (tuples -> lists)
    if "base_config" not in study.user_attrs:
        for key, value in mine.items():
            study.set_user_attr(key, value)
        return
    theirs = {key: study.user_attrs.get(key, {}) for key in mine}
    diff = [k for part in mine for k in sorted(set(mine[part]) | set(theirs[part]))
            if mine[part].get(k) != theirs[part].get(k)]
    if diff:
        first = diff[0]
        part = "base_config" if first in mine["base_config"] else "search_space"
        fail(f"study {study.study_name!r} in {where} was started with other options "
             f"({first}: {theirs[part].get(first)!r} there, {mine[part].get(first)!r} now"
             f"{f', and {len(diff) - 1} more' if len(diff) > 1 else ''}); pass the same options "
             "to resume it, or a new --study-name / --output-dir")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def retry_dead_trials(study: optuna.Study) -> list[int]:
    """Fail and re-queue trials left RUNNING by a killed process of this machine.

    Heartbeats catch dead workers on any machine, but only after ``GRACE_PERIOD``; a process of
    this host that is gone is known dead now, so its trial is retried at once. Returns the
    numbers of the trials retried.
    """
    from optuna.trial import TrialState

    retry, _ = _retry_callback()
    host, retried = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") != host or pid is None or _pid_alive(pid):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # finished meanwhile
            continue
        retry(study, next(t for t in study.get_trials(deepcopy=False)
                          if t.number == trial.number))
        retried.append(trial.number)
    return retried


def _make_pruner(name: str, epochs_high: int):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs_high)
    return optuna.pruners.NopPruner()


# -- the search ---------------------------------------------------------------------------------
FINISHED_STATES = ("COMPLETE", "PRUNED")


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED_STATES]


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def _format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in params.items())


def run_search(cfg: RunConfig, t: TuneConfig, pruner: Any = None) -> dict[str, Any]:
    """Run (or resume) the search; write its outputs; return a summary.

    ``cfg`` holds the options every trial shares (its searched values are ignored) and the search
    folder (``cfg.train.output_dir``); ``pruner`` overrides ``t.pruner`` (an Optuna pruner).
    """
    import optuna
    from optuna.trial import TrialState

    from tfsent.config import monitor_mode
    from tfsent.fit import fit
    from tfsent.rundir import RunDir

    check_tune_config(t)
    monitor = cfg.train.monitor
    if not monitor.startswith("val_"):
        fail(f"--monitor {monitor} is a training metric; a search must rank trials on the "
             "validation split: use val_accuracy, val_loss or val_f1_macro")
    metric = monitor.removeprefix("val_")
    out = Path(cfg.train.output_dir)
    if out.exists() and not out.is_dir():
        fail(f"--output-dir {out} is a file; pass a directory for the search")
    if RunDir(out).finished:
        fail(f"{out} holds a finished fit run; pass another --output-dir for the search")

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
            direction = "minimize" if monitor_mode(monitor) == "min" else "maximize"
            try:
                study = optuna.create_study(storage=storage, study_name=t.study_name,
                                            direction=direction, load_if_exists=True)
            except ValueError as err:
                fail(f"study {t.study_name!r} in {_safe_url(url)} cannot be resumed ({err}); "
                     "pass another --study-name")
            if study.direction.name.lower() != direction:
                fail(f"study {t.study_name!r} in {_safe_url(url)} was started to "
                     f"{study.direction.name.lower()} its metric, and --monitor {monitor} "
                     f"needs {direction}; pass the same --monitor or another --study-name")
            _check_same_search(study, cfg, t, _safe_url(url))
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
            if fresh and not _finished(study):
                if default_storage and created_dir:
                    shutil.rmtree(out, ignore_errors=True)
                elif default_storage:
                    (out / "study.db").unlink(missing_ok=True)
                else:
                    optuna.delete_study(study_name=t.study_name, storage=storage)
            raise
        summary = write_outputs(study, cfg, t, out)
    finally:
        optuna.logging.set_verbosity(verbosity)
    summary["retried"] = retried
    summary["states"] = {s.name: sum(1 for x in study.get_trials(deepcopy=False) if x.state == s)
                         for s in TrialState}
    return summary


def _optimize(study, cfg: RunConfig, t: TuneConfig, metric: str, pruner: Any, out: Path,
              fit) -> None:
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from tfsent.rundir import RunDir

    remaining = t.n_trials - len(_finished(study))
    if remaining <= 0:
        print(f"study {t.study_name!r} already has {len(_finished(study))} finished trials "
              f"(--n-trials {t.n_trials}); writing its results", flush=True)
        return
    study.pruner = pruner or _make_pruner(t.pruner, t.epochs_range[1])
    seed = None if t.sampler_seed is None else t.sampler_seed + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    monitor = cfg.train.monitor
    retry, _ = _retry_callback()

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, t)
        # A retried trial inherits the folder of the trial it retries: fit resumes its backup.
        run_dir = trial.user_attrs.get("run_dir") or str(out / f"trial-{trial.number:04d}")
        trial.set_user_attr("run_dir", run_dir)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        n = len(_finished(study)) + 1
        print(f"trial {n} of {t.n_trials} (#{trial.number}): {_format_params(params)}", flush=True)
        run = RunDir(run_dir)
        reporter = pruning_callback(trial, monitor)
        try:
            if run.finished:  # trained to the end before its process was killed
                metrics = run.metrics
            else:
                metrics = fit(trial_config(cfg, params, run_dir), [reporter],
                              evaluate_test=False)
        except KeyboardInterrupt:
            # Ctrl-C: re-queue these options, so a rerun resumes this trial from its backup.
            frozen = next(x for x in study.get_trials(deepcopy=False) if x.number == trial.number)
            retry(study, frozen)
            raise
        if reporter.pruned_after is not None:
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_after + 1}")
        value = float(metrics["validation"][metric])
        trial.set_user_attr("validation", {k: metrics["validation"][k]
                                           for k in ("accuracy", "f1_macro", "loss")})
        return value

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = len(_finished(study))
        value = (f"{monitor} {trial.value:.4f}" if trial.value is not None
                 else "no value")
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        best = _best(study)
        best_text = (f"best {best.value:.4f} (#{best.number})" if best is not None
                     else "no completed trial yet")
        print(f"trial #{trial.number} {trial.state.name.lower()}: {value}, {seconds:.0f}s | "
              f"{best_text} | {done} of {t.n_trials} done", flush=True)

    import tensorflow as tf

    study.optimize(
        objective,
        n_trials=None,  # until MaxTrialsCallback sees n_trials finished, counting earlier runs
        catch=(tf.errors.ResourceExhaustedError,),  # a batch size too large: try another
        callbacks=[MaxTrialsCallback(t.n_trials, states=(TrialState.COMPLETE,
                                                          TrialState.PRUNED)),
                   progress, _stop_after_failures(t.n_trials)],
        gc_after_trial=True,
    )


def _stop_after_failures(limit: int):
    """Failed trials (out of memory) do not count toward n_trials: stop rather than loop."""
    failures = []

    def callback(study, trial) -> None:
        if trial.state.name == "FAIL":
            failures.append(trial.number)
            if len(failures) >= limit:
                print(f"stopping: {len(failures)} trials failed in this run", file=sys.stderr)
                study.stop()

    return callback


# -- outputs ------------------------------------------------------------------------------------
def write_outputs(study: optuna.Study, cfg: RunConfig, t: TuneConfig, out: Path) -> dict[str, Any]:
    """trials.csv, best_config.yaml and the plots, from every trial of the study."""
    import yaml

    from tfsent.rundir import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    monitor = cfg.train.monitor
    summary: dict[str, Any] = {"trials_csv": str(write_trials_table(study, monitor,
                                                                     out / "trials.csv"))}
    best = _best(study)
    if best is None:
        print("no trial completed: no best config", flush=True)
        return summary
    best_cfg = best_config(cfg, best.params, out / "best")
    path = out / "best_config.yaml"
    header = (f"# Best trial #{best.number} of study {study.study_name!r}: {monitor} "
              f"{best.value:.6g} (validation split; trials never scored the test split).\n"
              f"# Refit it, scoring the test split too: python -m tfsent.fit --config {path}\n")
    write_text_atomic(path, header + yaml.safe_dump(best_cfg.to_dict(), sort_keys=False))
    summary |= {"best_trial": best.number, "best_value": best.value, "best_params": best.params,
                "best_run_dir": best.user_attrs.get("run_dir"), "best_config": str(path),
                "plots": [str(p) for p in save_plots(study, monitor, out)]}
    print(f"best: trial #{best.number}, {monitor} {best.value:.4f}: "
          f"{_format_params(best.params)}", flush=True)
    print(f"wrote {path}, {out / 'trials.csv'} and {len(summary['plots'])} plot(s); "
          f"refit with: python -m tfsent.fit --config {path}", flush=True)
    return summary


def write_trials_table(study: optuna.Study, monitor: str, path: Path) -> Path:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name,
                               monitor: "" if trial.value is None else trial.value}
        row |= {name: trial.params.get(name, "") for name in SEARCHED}
        row |= {
            "epochs_run": len(trial.intermediate_values),
            "seconds": round(trial.duration.total_seconds(), 1) if trial.duration else "",
            "retry_of": trial.system_attrs.get("failed_trial", ""),
            "run_dir": trial.user_attrs.get("run_dir", ""),
        }
        rows.append(row)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def save_plots(study: optuna.Study, monitor: str, out: Path) -> list[Path]:
    """Optimization history and parameter importances (optuna.visualization.matplotlib).

    Optuna draws through pyplot and switches its style to ggplot: ``rc_context`` restores the
    rcParams and every figure is closed, so a notebook's pyplot state is left as it was.
    """
    import matplotlib
    import optuna
    from optuna.visualization.matplotlib import (
        plot_optimization_history,
        plot_param_importances,
    )

    completed = [x for x in study.get_trials(deepcopy=False) if x.state.name == "COMPLETE"]
    varied = any(len({repr(x.params.get(name)) for x in completed}) > 1 for name in SEARCHED)
    plots = [("optimization_history.png", lambda: plot_optimization_history(
        study, target_name=monitor))]
    if len(completed) >= 2 and varied:
        plots.append(("param_importances.png", lambda: plot_param_importances(
            study, target_name=monitor)))
    written = []
    import matplotlib.pyplot as plt

    for name, draw in plots:
        with warnings.catch_warnings(), matplotlib.rc_context():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            before = set(plt.get_fignums())
            try:
                ax = draw()
                fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                fig.savefig(out / name, dpi=120, bbox_inches="tight")
                written.append(out / name)
            except (ValueError, RuntimeError) as err:  # e.g. importances of constant params
                print(f"skipped {name} ({err})", flush=True)
            finally:
                for num in set(plt.get_fignums()) - before:
                    plt.close(num)
    return written


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
