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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tfsent.errors import OneLineArgumentParser, fail

Truncation = Literal["head", "tail", "head+tail"]
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
            "help": "Hugging Face Hub id, a local directory (TF or PyTorch safetensors weights), "
            "or 'tiny' (a small BERT built from a config, with a WordPiece vocabulary trained on "
            "the training texts; offline)."
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
        default=2000, metadata={"help": "WordPiece vocabulary size for --model tiny."}
    )


@dataclass
class TrainConfig:
    output_dir: str = field(
        default="runs/tfsent",
        metadata={"help": "Run directory: config, tokenizer, weights, logs, metrics, plots."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a finished run in --output-dir."}
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
    seed: int = field(default=42, metadata={"help": "Seed for splits, shuffling and init."})
    bucketing: bool = field(
        default=True,
        metadata={"help": "Batch reviews of similar length together (less padding, faster)."},
    )
    shuffle_buffer: int = field(
        default=10_000, metadata={"help": "tf.data shuffle buffer (examples)."}
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
    verbose: int = field(
        default=1, metadata={"help": "Keras verbosity: 1 progress bar, 2 a line per epoch."}
    )
    export_dir: str | None = field(
        default=None,
        metadata={"help": "After training, export a versioned SavedModel under this base path."},
    )
    model_name: str = field(
        default="tfsent", metadata={"help": "Model name in the export path and TF Serving."}
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
            TrainConfig(**values.get("train", {})),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def make_parser(dataclass_types: tuple[type, ...], description: str,
                prog: str | None = None) -> argparse.ArgumentParser:
    """An ``HfArgumentParser`` over ``dataclass_types`` whose errors are one line."""
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser, OneLineArgumentParser):
        pass

    parser = Parser(
        dataclass_types,
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config", default=None, help="YAML or JSON file of options; flags given override it."
    )
    return parser


def read_config_file(path: str) -> dict[str, Any]:
    """Options from a YAML/JSON file: flat ``{option: value}`` or nested by section."""
    import yaml

    file = Path(path)
    if not file.is_file():
        fail(f"config file {path} does not exist; pass an existing YAML or JSON file to --config")
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
    return {k.replace("-", "_"): v for k, v in flat.items()}


def parse_args(
    dataclass_types: tuple[type, ...], description: str, argv: list[str] | None,
    prog: str | None = None,
) -> tuple[Any, ...]:
    """Parse ``argv`` into ``dataclass_types``; ``--config FILE`` sets defaults flags override."""
    parser = make_parser(dataclass_types, description, prog)
    pre, _ = _pre_parse_config(argv)
    if pre:
        values = read_config_file(pre)
        known = {f.name for t in dataclass_types for f in dataclasses.fields(t)}
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


def _pre_parse_config(argv: list[str] | None) -> tuple[str | None, list[str]]:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    return known.config, rest
