"""What a search is: its space (:class:`TuneConfig`), the run options of each trial, and the
check that a resumed or shared study is still the same search.

A leaf of the search (``tfsent.tune``): it imports neither Optuna nor TensorFlow, so the search
space is read and checked before either loads.

    >>> import optuna
    >>> trial = optuna.trial.FixedTrial({"learning_rate": 3e-5, "batch_size": 32, "epochs": 3,
    ...                                  "warmup_ratio": 0.1, "weight_decay": 0.01,
    ...                                  "max_length": 256})
    >>> params = suggest(trial, TuneConfig())
    >>> cfg = trial_config(RunConfig(), params, "runs/tune/trial-0000")
    >>> cfg.train.learning_rate, cfg.train.batch_size, cfg.model.max_length, cfg.train.output_dir
    (3e-05, 32, 256, 'runs/tune/trial-0000')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.config import RESUMABLE_OPTIONS, RunConfig, check_model_options
from tfsent.errors import fail

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
    """One-line errors for a search space Optuna or fit would reject later, mid-search.

    >>> check_tune_config(TuneConfig(epochs_range=[3, 1]))
    Traceback (most recent call last):
    ...
    tfsent.errors.UserError: --epochs-range takes two values, low then high (got [3, 1])
    """
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


def _shared(option: str) -> bool:
    """Whether ``option`` (``section.name``) must be the same for every trial of a study.

    Not the searched options, and not those a fit run may change when it resumes
    (``RESUMABLE_OPTIONS``: where it writes, how it reports, what it does after training):
    each machine of a shared study, or the rerun of a killed search, sets those for itself.
    They leave the validation metric the trials are ranked on as it is.

    >>> _shared("train.seed"), _shared("train.learning_rate"), _shared("train.output_dir")
    (True, False, False)
    """
    name = option.split(".", 1)[-1]
    return name not in SEARCHED and name not in RESUMABLE_OPTIONS


def check_same_search(study: optuna.Study, base: RunConfig, t: TuneConfig, where: str) -> None:
    """Record the search's options in a new study, or refuse (one line) to resume one that was
    started with others: its trials would be runs of another experiment."""
    options = {f"{section}.{k}": v for section, values in base.to_dict().items()
               for k, v in values.items()}
    mine = {"base_config": {k: v for k, v in options.items() if _shared(k)},
            "search_space": t.search_space()}
    mine = json.loads(json.dumps(mine))  # as the storage returns it (tuples -> lists)
    if "base_config" not in study.user_attrs:
        for key, value in mine.items():
            study.set_user_attr(key, value)
        return
    theirs = {key: study.user_attrs.get(key, {}) for key in mine}
    # A study started by an older tfsent may hold options it did not yet know to be local.
    theirs["base_config"] = {k: v for k, v in theirs["base_config"].items() if _shared(k)}
    diff = [k for part in mine for k in sorted(set(mine[part]) | set(theirs[part]))
            if mine[part].get(k) != theirs[part].get(k)]
    if diff:
        first = diff[0]
        part = "base_config" if first in mine["base_config"] else "search_space"
        fail(f"study {study.study_name!r} in {where} was started with other options "
             f"({first}: {theirs[part].get(first)!r} there, {mine[part].get(first)!r} now"
             f"{f', and {len(diff) - 1} more' if len(diff) > 1 else ''}); pass the same options "
             "to resume it, or a new --study-name / --output-dir")
