"""The run directory: one type owns the layout that fit writes and evaluate/export read.

::

    runs/demo/
      config.json            resolved options (RunConfig): reproduce with fit --config
      tokenizer/             the tokenizer (save_pretrained)
      checkpoints/           best.weights.h5 + best.json (the monitored best epoch)
      backup/                Keras BackupAndRestore state while a fit runs (gone once it ends)
      model/                 the trained weights (save_pretrained; best validation epoch)
      history.csv  logs/     per-epoch metrics (CSV) and TensorBoard logs
      metrics.json           validation (and test) metrics; written last, so it marks a finished run
      confusion_matrix.png  training_curves.png

    >>> run = RunDir("runs/demo")
    >>> run.metrics_file.name, run.best_weights.relative_to(run.path).as_posix()
    ('metrics.json', 'checkpoints/best.weights.h5')
    >>> run.finished
    False
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.errors import fail

if TYPE_CHECKING:
    from collections.abc import Iterator

    from transformers import PreTrainedTokenizerFast

    from tfsent.config import RunConfig

WEIGHT_FILES = ("tf_model.h5",)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
FIT_HINT = "pass the --output-dir of a finished python -m tfsent.fit run"


class RunDir:
    """Paths and loaders of one run (see the module docstring for the layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- layout -------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best_weights(self) -> Path:
        return self.checkpoints_dir / "best.weights.h5"

    @property
    def best_file(self) -> Path:
        return self.checkpoints_dir / "best.json"

    @property
    def backup_dir(self) -> Path:
        return self.path / "backup"

    @property
    def history_csv(self) -> Path:
        return self.path / "history.csv"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def training_curves_png(self) -> Path:
        return self.path / "training_curves.png"

    def confusion_matrix_png(self, split: str = "validation") -> Path:
        suffix = "" if split == "validation" else f"_{split}"
        return self.path / f"confusion_matrix{suffix}.png"

    # -- state --------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """``metrics.json`` is written last: its presence marks a finished run."""
        return self.metrics_file.is_file()

    @property
    def has_model(self) -> bool:
        return (self.model_dir / "config.json").is_file() and any(
            (self.model_dir / f).is_file() for f in WEIGHT_FILES
        )

    @property
    def has_tokenizer(self) -> bool:
        return any((self.tokenizer_dir / f).is_file() for f in TOKENIZER_FILES)

    def check(self) -> RunDir:
        """``self`` if it holds a trained run (config, model, tokenizer), else a one-line error."""
        if not self.path.is_dir():
            fail(f"run directory {self.path} does not exist; {FIT_HINT}")
        if not self.config_file.is_file():
            fail(f"run directory {self.path} has no config.json; {FIT_HINT}")
        if not self.has_model:
            fail(f"run directory {self.path} has no model weights (model/{WEIGHT_FILES[0]} and "
                 f"model/config.json); {FIT_HINT}")
        if not self.has_tokenizer:
            fail(f"run directory {self.path} has no tokenizer (tokenizer/vocab.txt); {FIT_HINT}")
        return self

    # -- contents -----------------------------------------------------------------------------
    @property
    def config(self) -> RunConfig:
        """The run's resolved options, checked (max_length, truncation)."""
        from tfsent.config import RunConfig, check_model_options

        try:
            cfg = RunConfig.load(self.config_file)
        except (OSError, ValueError, TypeError) as err:
            fail(f"{self.config_file} is not a tfsent run config ({type(err).__name__}); "
                 "re-run python -m tfsent.fit")
        check_model_options(cfg.model.max_length, cfg.model.truncation,
                            where=str(self.config_file))
        return cfg

    @property
    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` ({} before the run finished)."""
        if not self.finished:
            return {}
        return json.loads(self.metrics_file.read_text())

    @property
    def temperature(self) -> float:
        """The calibration temperature fitted after training (1.0: uncalibrated)."""
        return float(self.metrics.get("calibration", {}).get("temperature", 1.0))

    def load_tokenizer(self) -> PreTrainedTokenizerFast:
        from tfsent.model import load_tokenizer

        if not self.has_tokenizer:
            fail(f"run directory {self.path} has no tokenizer (tokenizer/vocab.txt); {FIT_HINT}")
        return load_tokenizer(str(self.tokenizer_dir))

    def load_model(self):
        """The trained ``TF*ForSequenceClassification``, in float32 whatever it trained in.

        Runs may train under a mixed-precision Keras policy; evaluation and export compute in
        float32 so their outputs match on every server (CPU kernels for fp16/bf16 are slow or
        missing). The global policy is restored afterwards.
        """
        from transformers import TFAutoModelForSequenceClassification

        with float32_policy():
            try:
                return TFAutoModelForSequenceClassification.from_pretrained(str(self.model_dir))
            except (OSError, ValueError) as err:
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                fail(f"could not load the model in {self.model_dir} ({reason}); "
                     "re-run python -m tfsent.fit")


@contextmanager
def float32_policy() -> Iterator[None]:
    """Keras' global precision policy set to float32 inside the block, restored after it.

    Also quiets transformers' "All model checkpoint layers were used..." notice.
    """
    import tf_keras
    from transformers.utils import logging as hf_logging

    previous, verbosity = tf_keras.mixed_precision.global_policy(), hf_logging.get_verbosity()
    tf_keras.mixed_precision.set_global_policy("float32")
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
        hf_logging.set_verbosity(verbosity)
