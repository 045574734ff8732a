"""Every option of a run, as typed dataclass fields with help text, in one place.

The CLIs build their parsers from these dataclasses (``transformers.HfArgumentParser``), so
``--help`` shows every option with its default, a YAML/JSON file given with ``--config`` can set
any of them, and the resolved values are written to ``<run_dir>/config.json``, which is enough to
reproduce the run::

    >>> from tfsent.config import DataConfig, ModelConfig, TrainConfig, RunConfig
    >>> cfg = RunConfig(DataConfig(dataset="demo"), ModelConfig(model="tiny"), TrainConfig())
    >>> RunConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tfsent.errors import OneLineArgumentParser, fail
from tfsent.files import write_json_atomic

PRESETS_DIR = Path(__file__).parent / "presets"
TRUNCATIONS: tuple[str, ...] = ("head", "tail", "head+tail")
# What the validation callback adds to each epoch's logs as ``val_<name>``.
EPOCH_METRICS: tuple[str, ...] = ("accuracy", "loss", "f1_macro")
MONITORS: tuple[str, ...] = (*(f"val_{m}" for m in EPOCH_METRICS), "accuracy", "loss")


def check_model_options(max_length: int, truncation: str, where: str = "") -> None:
    """The one check of ``max_length`` / ``truncation`` (fit, features, graph tokenizer, runs).

    >>> check_model_options(256, "head+tail")
    >>> check_model_options(2, "head")
    Traceback (most recent call last):
    ...
    tfsent.errors.UserError: max_length 2 leaves no room for text; use at least 3
    """
    prefix = f"{where}: " if where else ""
    if truncation not in TRUNCATIONS:
        fail(f"{prefix}unknown truncation strategy {truncation!r}; "
             f"use one of {', '.join(TRUNCATIONS)}")
    if max_length < 3:
        fail(f"{prefix}max_length {max_length} leaves no room for text; use at least 3")


def monitor_mode(monitor: str) -> str:
    """``"min"`` for losses, ``"max"`` for the rest: Keras' ``mode`` for ``--monitor``."""
    return "min" if monitor.endswith("loss") else "max"


@dataclass
class DataConfig:
    dataset: str = field(
        default="stanfordnlp/imdb",
        metadata={
            "help": "Training data: a Hugging Face datasets id, an aclImdb/ folder or "
            "aclImdb_v1.tar.gz, a .csv/.jsonl/.parquet file, or 'demo' (generated reviews, "
            "offline)."
        },
    )
    validation_data: str | None = field(
        default=None,
        metadata={"help": "Validation data (same kinds as --dataset). Default: carved from train."},
    )
    test_data: str | None = field(
        default=None,
        metadata={"help": "Test data (same kinds as --dataset). Default: the source's test split."},
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    label_column: str = field(
        default="label", metadata={"help": "Column holding the label (strings or integers)."}
    )
    validation_size: float = field(
        default=0.1,
        metadata={
            "help": "Validation split carved from train when none is given (stratified, seeded): "
            "a fraction below 1, or a number of examples."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep at most this many training examples (quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Keep at most this many validation and test examples (quick runs)."},
    )


@dataclass
class ModelConfig:
    model: str = field(
        default="bert-base-uncased",
        metadata={
            "help": "Hugging Face Hub id or local directory (TF or PyTorch safetensors weights) "
            "of a WordPiece encoder: BERT (TFBertForSequenceClassification), DistilBERT, ELECTRA, "
            "MobileBERT or ConvBERT (TFAutoModelForSequenceClassification). Or 'tiny' (a small "
            "BERT built from a config, with a WordPiece vocabulary made from the training texts; "
            "offline), or 'tiny-distilbert', 'tiny-electra', ... for the other families."
        },
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "Tokenizer id or directory. Default: the model's."}
    )
    max_length: int = field(
        default=256, metadata={"help": "Tokens per review, [CLS] and [SEP] included."}
    )
    truncation: str = field(
        default="head+tail",
        metadata={
            "help": "What to keep of a long review: 'head', 'tail', or 'head+tail' (the first "
            "quarter and the last three quarters of the budget; best on IMDB, Sun et al. 2019).",
            "choices": TRUNCATIONS,
        },
    )
    tiny_vocab_size: int = field(
        default=2000, metadata={"help": "WordPiece vocabulary size of tiny models."}
    )
    license: str = field(
        default="apache-2.0",
        metadata={"help": "License of the trained model in its model card (a Hub license id: "
                  "apache-2.0, mit, other, ...); heed the base model's and the data's terms."},
    )


@dataclass
class TrainConfig:
    output_dir: str = field(
        default="runs/tfsent",
        metadata={"help": "Run directory: config, tokenizer, weights, logs, metrics, plots."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a finished run in --output-dir, or an interrupted one that had "
            "other options. (An interrupted run with the same options is always resumed.)"
        },
    )
    epochs: int = field(default=3, metadata={"help": "Training epochs."})
    batch_size: int = field(default=16, metadata={"help": "Training batch size (global)."})
    eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay (not on LayerNorm and biases)."}
    )
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "Fraction of steps with linear warmup, then linear decay."}
    )
    layerwise_lr_decay: float = field(
        default=1.0,
        metadata={
            "help": "Layer-wise learning-rate decay FACTOR (Sun et al. 2019 use 0.95): encoder "
            "layer l of L (from 0 at the bottom) learns at lr * FACTOR**(L - l), the embeddings "
            "at lr * FACTOR**(L + 1), the pooler and head at lr. 1 turns it off."
        },
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata={
            "help": "Apply the mean gradient of K batches in one optimizer step (and at each "
            "epoch's end): an effective batch of K x --batch-size in the memory of one; the "
            "learning-rate schedule counts optimizer steps. One device only."
        },
    )
    average_last: int | None = field(
        default=None,
        metadata={
            "help": "Keep the mean of the weights of the last N epochs (checkpoint averaging) "
            "instead of the best epoch; it is evaluated, calibrated and exported as the model."
        },
    )
    seed: int = field(
        default=42,
        metadata={
            "help": "Seed for splits, init, each epoch's example order and dropout: a run "
            "resumed after an interrupt continues as the uninterrupted run would have."
        },
    )
    bucketing: bool = field(
        default=True,
        metadata={"help": "Batch reviews of similar length together (less padding, faster)."},
    )
    monitor: str = field(
        default="val_accuracy",
        metadata={
            "help": "Metric that picks the best checkpoint and early stopping.",
            "choices": MONITORS,
        },
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many epochs without improvement."}
    )
    backup_every_steps: int | None = field(
        default=None,
        metadata={"help": "Back up for resumption every N steps as well as every epoch."},
    )
    strategy: str = field(
        default="auto",
        metadata={
            "help": "Distribution: 'auto' (MirroredStrategy over all GPUs when there are "
            "several, else the default strategy), 'default', 'mirrored', 'multi_worker' "
            "(reads TF_CONFIG) or 'tpu'.",
            "choices": ("auto", "default", "mirrored", "multi_worker", "tpu"),
        },
    )
    mixed_precision: str = field(
        default="no",
        metadata={
            "help": "'no', 'auto' (mixed_float16 on GPU, mixed_bfloat16 on CPUs with bf16), "
            "'mixed_float16' or 'mixed_bfloat16'.",
            "choices": ("no", "auto", "mixed_float16", "mixed_bfloat16"),
        },
    )
    jit_compile: bool = field(
        default=False,
        metadata={"help": "Compile the train step with XLA (pads to bucket boundaries)."},
    )
    progress: int = field(
        default=1,
        metadata={
            "help": "Keras' training output: 1 a progress bar, 2 one line per epoch, 0 none. "
            "Unless set, fit uses 2 when its output is not a terminal (a log file: no bars "
            "redrawn with backspaces). (Library log messages are a separate switch: --verbose.)",
            "choices": (0, 1, 2),
        },
    )
    calibration: Literal["temperature", "none"] = field(
        default="temperature",
        metadata={
            "help": "After training, 'temperature' fits one temperature T on the validation "
            "split (temperature scaling, Guo et al. 2017; T within [0.05, 20]) that the export "
            "divides the logits by: confidences calibrated, argmax and accuracy unchanged. "
            "'none' keeps the raw softmax (T = 1). The ECE before and after is in metrics.json."
        },
    )
    export_dir: str | None = field(
        default=None,
        metadata={"help": "After training, export a versioned SavedModel under this base path."},
    )
    model_name: str = field(
        default="tfsent", metadata={"help": "Model name in the export path and TF Serving."}
    )

    def __post_init__(self) -> None:
        # The recipe options' ranges, checked wherever a TrainConfig is made.
        if not 0 < self.layerwise_lr_decay <= 1:
            fail(f"--layerwise-lr-decay {self.layerwise_lr_decay} must be in (0, 1]; 1 is off")
        for flag, value in (("--gradient-accumulation-steps", self.gradient_accumulation_steps),
                            ("--average-last", self.average_last)):
            if value is not None and value < 1:
                fail(f"{flag} {value} must be at least 1")
        k, every = self.gradient_accumulation_steps, self.backup_every_steps
        if k > 1 and every and every % k:
            # A step backup then always falls between two optimizer steps, with nothing
            # accumulated that a resumed run would lack.
            fail(f"--backup-every-steps {every} must be a multiple of "
                 f"--gradient-accumulation-steps {k}")


@dataclass
class HubConfig:
    """Where ``fit`` pushes the run; not part of ``RunConfig``, so the token is never saved."""

    push_to_hub: str | None = field(
        default=None,
        metadata={"help": "After training, upload the run (model card, model/, tokenizer/, "
                  "metrics, and the SavedModel when --export-dir is given) to this Hugging Face "
                  "Hub repo id (python -m tfsent.push does it later)."},
    )
    hub_token: str | None = field(
        default=None,
        metadata={"help": "Hub token (default: HF_TOKEN, else the huggingface-cli login); "
                  "never written to the run folder."},
    )
    hub_private: bool = field(
        default=False, metadata={"help": "Create the Hub repository private."}
    )


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        return cls(
            DataConfig(**values.get("data", {})),
            ModelConfig(**values.get("model", {})),
            TrainConfig(**upgrade_options(values.get("train", {}))),
        )

    def save(self, path: str | Path) -> None:
        # Atomic: a run killed while saving leaves the previous file or the new one, never half.
        write_json_atomic(path, self.to_dict())

    def check(self) -> RunConfig:
        """``self`` if every option is in range, else a one-line ``UserError`` naming it.

        Called before anything is read or written, so ``--epochs 0`` costs nothing.

        >>> RunConfig(train=TrainConfig(epochs=0)).check()
        Traceback (most recent call last):
        ...
        tfsent.errors.UserError: --epochs 0 must be at least 1
        """
        check_run_options(self)
        return self

    def differences(self, other: RunConfig) -> list[str]:
        """The options that differ from ``other``'s and change what training computes (not
        where it is written, how it reports, or what is done after it): a run interrupted
        with ``other`` resumes with ``self`` only when this is empty.

        >>> a = RunConfig(train=TrainConfig(epochs=3, progress=1))
        >>> a.differences(RunConfig(train=TrainConfig(epochs=4, progress=0)))
        ['epochs']
        """
        mine, theirs = self.to_dict(), other.to_dict()
        return [name for section in mine for name in mine[section]
                if name not in RESUMABLE_OPTIONS
                and mine[section][name] != theirs.get(section, {}).get(name)]

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


# Options that may change between an interrupted run and its resumption: where things are
# written, how the run reports, and what happens after training.
RESUMABLE_OPTIONS = frozenset({
    "output_dir", "overwrite_output_dir", "progress", "export_dir", "model_name", "calibration",
    "license",
})
# Options of older config files: renamed (old name -> new name) or gone.
_RENAMED_OPTIONS = {"verbose": "progress"}  # verbose was Keras' verbosity before --verbose
_REMOVED_OPTIONS = frozenset({"shuffle_buffer"})  # each epoch is now a full seeded permutation


def upgrade_options(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the option names of older tfsent versions brought up to date.

    >>> upgrade_options({"verbose": 2, "shuffle_buffer": 100, "epochs": 1})
    {'progress': 2, 'epochs': 1}
    """
    out = {}
    for key, value in values.items():
        if key in _REMOVED_OPTIONS:
            continue
        if key in _RENAMED_OPTIONS and not isinstance(value, bool):
            key = _RENAMED_OPTIONS[key]
        out[key] = value
    return out


def check_run_options(cfg: RunConfig) -> None:
    """Every numeric option of ``cfg`` in its range and every choice known; one line if not."""
    d, m, t = cfg.data, cfg.model, cfg.train

    def at_least(name: str, value: Any, low: int | float, flag: str | None = None) -> None:
        if value is not None and not value >= low:
            fail(f"--{flag or name.replace('_', '-')} {value} must be at least {low}")

    def positive(name: str, value: float) -> None:
        if not (value > 0 and math.isfinite(value)):
            fail(f"--{name.replace('_', '-')} {value} must be a positive number")

    def choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
        if value not in choices:
            fail(f"--{name.replace('_', '-')} {value!r} is not one of "
                 f"{', '.join(str(c) for c in choices)}")

    for name in ("epochs", "batch_size", "eval_batch_size"):
        at_least(name, getattr(t, name), 1)
    positive("learning_rate", t.learning_rate)
    if not 0 <= t.weight_decay < 1:
        fail(f"--weight-decay {t.weight_decay} must be in [0, 1)")
    if not 0 <= t.warmup_ratio < 1:
        fail(f"--warmup-ratio {t.warmup_ratio} must be a fraction in [0, 1)")
    at_least("early_stopping_patience", t.early_stopping_patience, 1)
    at_least("backup_every_steps", t.backup_every_steps, 1)
    choice("monitor", t.monitor, MONITORS)
    choice("progress", t.progress, (0, 1, 2))
    choice("strategy", t.strategy, _choices(TrainConfig, "strategy"))
    choice("mixed_precision", t.mixed_precision, _choices(TrainConfig, "mixed_precision"))
    if not t.output_dir:
        fail("--output-dir is empty; pass a folder for the run")
    if not t.model_name or t.model_name in (".", "..") or any(c in t.model_name for c in "/\\"):
        fail(f"--model-name {t.model_name!r} is not a folder name; pass e.g. --model-name tfsent")
    vs = d.validation_size
    if not (vs > 0 and math.isfinite(vs)) or (vs >= 1 and not float(vs).is_integer()):
        fail(f"--validation-size {vs} must be a fraction between 0 and 1 or a whole number of "
             "examples")
    at_least("max_train_samples", d.max_train_samples, 1)
    at_least("max_eval_samples", d.max_eval_samples, 1)
    check_model_options(m.max_length, m.truncation)
    # [PAD] [UNK] [CLS] [SEP] [MASK] and at least a few pieces of text.
    at_least("tiny_vocab_size", m.tiny_vocab_size, 10)


def _choices(dtype: type, name: str) -> tuple[Any, ...]:
    return next(f.metadata["choices"] for f in dataclasses.fields(dtype) if f.name == name)


def preset_names() -> list[str]:
    """The presets ``--config`` takes by name (``tfsent/presets/<name>.yaml``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _preset_summary(name: str) -> str:
    """The first sentence of a preset's opening comment, for ``--help``."""
    lines = []
    for line in (PRESETS_DIR / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = ""
    for i, line in enumerate(lines):
        text = f"{text} {line}".strip()
        if ". " in text:
            return text.split(". ")[0]
        if text.endswith(".") or i + 1 == len(lines) or lines[i + 1][:1].isupper():
            break
    return text.rstrip(".") or name


def resolve_config_file(value: str) -> Path:
    """``--config``'s file: an existing path, else the preset of that name.

    >>> resolve_config_file("demo").name
    'demo.yaml'
    """
    path = Path(value).expanduser()
    if path.is_file():
        return path
    preset = PRESETS_DIR / f"{value}.yaml"
    if "/" not in value and preset.is_file():
        return preset
    fail(f"config file {value} does not exist; pass an existing YAML or JSON file to --config, "
         f"or a preset: {', '.join(preset_names())}")


def _config_help() -> str:
    presets = "; ".join(f"'{n}' ({_preset_summary(n)})" for n in preset_names())
    return ("YAML or JSON file of options (flat, or nested like a run's config.json); flags "
            f"given override it. Or a preset by name: {presets}.")


@dataclass
class CliOptions:
    """Options of the command line itself: not part of a run, never saved in ``config.json``."""

    config: str | None = field(
        default=None, metadata={"help": _config_help(), "metavar": "FILE|PRESET"})
    verbose: bool = field(
        default=False,
        metadata={"help": "Show the log messages of TensorFlow, absl, Hugging Face and Keras "
                  "(hidden by default)."},
    )


# --help lists the options in these groups, in this order: each dataclass's own (a dataclass
# not named here gets a group named after it), except the options that say where a run's
# results go, which join the Hub's. CliOptions' (--config, --verbose) head the list.
OUTPUT_GROUP = "output and Hub"
_GROUPS: dict[type, str] = {DataConfig: "data", ModelConfig: "model", TrainConfig: "training",
                            HubConfig: OUTPUT_GROUP}
_GROUP_HELP = {
    "data": "What to train on, and how it is split.",
    "model": "The encoder, its tokenizer, and how much of a review it reads.",
    "training": "Keras fit: the optimizer, epochs and batches, devices, and what fit prints.",
    OUTPUT_GROUP: "Where the run, its SavedModel for TF Serving and its Hub upload go.",
    "output": "Where the results and the SavedModels for TF Serving go.",  # without HubConfig
}
_OUTPUT_OPTIONS = frozenset({"output_dir", "overwrite_output_dir", "export_dir", "model_name",
                             "license"})
# The help of the --no-X flag of a boolean option X that is on by default.
_NEGATION_HELP = {
    "bucketing": "Turn --bucketing off: batch reviews in their shuffled order, whatever their "
                 "length (more padding, slower; as the usual recipe does).",
}
_USAGE = "%(prog)s [-h] [--config FILE|PRESET] [--verbose] [--OPTION VALUE ...]"


def _group_title(dtype: type, name: str) -> str | None:
    if dtype is CliOptions:
        return None
    if name in _OUTPUT_OPTIONS:
        return OUTPUT_GROUP
    return _GROUPS.get(dtype) or getattr(dtype, "_argument_group_name", None) or (
        dtype.__name__.removesuffix("Config").lower())


class _OneSpelling:
    """Where ``HfArgumentParser`` adds a field's flags: ``--help`` and the usage show each once,
    with dashes (``--text-column``); the underscore spelling HF adds too (``--text_column``)
    stays accepted, unlisted; ``--no-X`` gets help of its own."""

    def __init__(self, group: Any, name: str) -> None:
        self.group, self.name = group, name

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        shown = list(dict.fromkeys(flag.replace("_", "-") for flag in flags))
        hidden = [flag for flag in flags if flag not in shown]
        if kwargs.get("action") == "store_false":  # --no-X
            kwargs["help"] = _NEGATION_HELP.get(
                self.name, f"Turn --{self.name.replace('_', '-')} off (it is on by default).")
            kwargs["default"] = argparse.SUPPRESS  # --X's default holds
        elif kwargs.get("nargs") == "?" and kwargs.get("const") is True:  # a boolean: --X [no]
            kwargs.setdefault("metavar", "yes|no")
        self.group.add_argument(*shown, **kwargs)
        if hidden:
            self.group.add_argument(*hidden, **{**kwargs, "help": argparse.SUPPRESS})


def make_parser(dataclass_types: tuple[type, ...], description: str,
                prog: str | None = None) -> argparse.ArgumentParser:
    """An ``HfArgumentParser`` over ``dataclass_types`` (and :class:`CliOptions`: ``--config``,
    ``--verbose``) whose errors are one line, with its options grouped in ``--help``, each
    shown once, with dashes.

    >>> print(make_parser((DataConfig,), "", prog="x").format_usage().strip())
    usage: x [-h] [--config FILE|PRESET] [--verbose] [--OPTION VALUE ...]
    """
    from transformers import HfArgumentParser

    types = tuple(dataclass_types) + (() if CliOptions in dataclass_types else (CliOptions,))
    titles = {f.name: _group_title(t, f.name) for t in types for f in dataclasses.fields(t)}
    if HubConfig not in types:
        titles = {name: "output" if t == OUTPUT_GROUP else t for name, t in titles.items()}
    order = [*_GROUP_HELP, *titles.values()]

    class Parser(HfArgumentParser, OneLineArgumentParser):
        groups: dict[str, Any] | None = None

        def _parse_dataclass_field(self, parser: Any, field: dataclasses.Field) -> None:
            if self.groups is None:  # every group now, so that --help lists them in order
                self.groups = {title: self.add_argument_group(title, _GROUP_HELP.get(title))
                               for title in dict.fromkeys(order) if title in titles.values()}
            title = titles[field.name]
            target = self.groups[title] if title else parser
            HfArgumentParser._parse_dataclass_field(_OneSpelling(target, field.name), field)

    return Parser(
        types,
        prog=prog,
        usage=_USAGE,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def read_config_file(path: str) -> dict[str, Any]:
    """Options from a YAML/JSON file or a preset: flat ``{option: value}`` or nested by section."""
    import yaml

    file = resolve_config_file(path)
    try:
        values = yaml.safe_load(file.read_text())  # YAML is a superset of JSON
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        fail(f"config file {path} is not valid YAML/JSON ({type(err).__name__}); fix its syntax")
    if values is None:
        return {}
    if not isinstance(values, dict):
        fail(f"config file {path} must hold a mapping of option: value")
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("data", "model", "train") and isinstance(value, dict):
            flat.update(value)  # the nested layout of a run's config.json
        else:
            flat[key] = value
    return upgrade_options({str(k).replace("-", "_"): v for k, v in flat.items()})


def parse_args(
    dataclass_types: tuple[type, ...], description: str, argv: list[str] | None,
    prog: str | None = None,
) -> tuple[Any, ...]:
    """Parse ``argv`` into ``dataclass_types``; ``--config FILE|PRESET`` sets defaults that
    flags override. Include :class:`CliOptions` in ``dataclass_types`` to get ``--config`` and
    ``--verbose`` back (they are always accepted)."""
    parser = make_parser(dataclass_types, description, prog)
    pre = _pre_parse_config(argv)
    if pre:
        values = read_config_file(pre)
        known = {f.name for t in dataclass_types if t is not CliOptions
                 for f in dataclasses.fields(t)}
        unknown = sorted(set(values) - known)
        if unknown:
            fail(f"config file {pre} has unknown option(s) {', '.join(unknown)}; see --help")
        parser.set_defaults(**values)
    namespace = parser.parse_args(argv)
    outputs = []
    for dtype in dataclass_types:
        names = {f.name for f in dataclasses.fields(dtype) if f.init}
        outputs.append(dtype(**{k: v for k, v in vars(namespace).items() if k in names}))
    return tuple(outputs)


def _pre_parse_config(argv: list[str] | None) -> str | None:
    # Only --config, before the full parse: its file's values become the parser's defaults.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    return known.config


def chosen_options(dataclass_types: tuple[type, ...], argv: list[str] | None) -> set[str]:
    """The options ``argv`` sets, with a flag or in its ``--config`` file, rather than leaving
    them at their defaults: for defaults that depend on where the command runs.

    >>> sorted(chosen_options((TrainConfig,), ["--epochs", "3", "--no-bucketing"]))
    ['bucketing', 'epochs']
    """
    unset = object()
    parser = make_parser(dataclass_types, "")
    names = {f.name for t in (*dataclass_types, CliOptions) for f in dataclasses.fields(t)}
    parser.set_defaults(**dict.fromkeys(names, unset))
    chosen = {name for name, value in vars(parser.parse_args(argv)).items()
              if value is not unset}
    config = _pre_parse_config(argv)
    return chosen | (set(read_config_file(config)) if config else set())
