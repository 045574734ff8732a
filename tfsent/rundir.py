"""The run directory: one type owns the layout that fit writes and evaluate/export read.

::

    runs/demo/
      config.json            resolved options (RunConfig): reproduce with fit --config
      tokenizer/             the tokenizer (save_pretrained)
      checkpoints/           best.json (the best epoch by --monitor, ties by val_loss) and that
                             epoch's epoch-<N>.weights.h5 + epoch-<N>.predictions.npz;
                             trained.json once training is over; export.json while fit exports
      backup/                Keras BackupAndRestore state while a fit trains (gone once it ends)
      model/                 the trained weights (save_pretrained; best validation epoch)
      history.csv  logs/     per-epoch metrics (CSV) and TensorBoard logs
      metrics.json           validation (and test) metrics, best epoch, calibration, export
      confusion_matrix.png  confusion_matrix_test.png  training_curves.png  reliability_diagram.png
      README.md              the model card (tfsent.card)

Epochs are numbered from 1, as Keras prints them ("Epoch 3/4"), everywhere except
``history.csv``'s ``epoch`` column, which Keras' CSVLogger counts from 0.

Every file a rerun reads to decide where to continue is written atomically (a temporary file,
then ``os.replace``), so a run killed at any moment leaves the old version or the new one.

    >>> run = RunDir("runs/demo")
    >>> run.metrics_file.name, run.epoch_weights(3).relative_to(run.path).as_posix()
    ('metrics.json', 'checkpoints/epoch-003.weights.h5')
    >>> run.finished
    False
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.config import RunConfig, check_model_options
from tfsent.errors import fail
from tfsent.files import read_json, write_text_atomic
from tfsent.model import load_tokenizer, load_trained_model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast, TFPreTrainedModel

WEIGHT_FILES = ("tf_model.h5",)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
FIT_HINT = "pass the --output-dir of a finished python -m tfsent.fit run"
# What fit writes; clear() removes exactly these, never other files of the folder.
_RUN_ENTRIES = ("config.json", "tokenizer", "checkpoints", "backup", "model", "history.csv",
                "logs", "metrics.json", "README.md")
_RUN_PLOTS = ("confusion_matrix*.png", "training_curves.png", "reliability_diagram*.png")


class RunDir:
    """Paths, state and loaders of one run (see the module docstring for the layout)."""

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
    def best_file(self) -> Path:
        return self.checkpoints_dir / "best.json"

    def epoch_weights(self, epoch: int) -> Path:
        """The weights saved at the end of ``epoch`` (from 1), when it was the best so far."""
        return self.checkpoints_dir / f"epoch-{epoch:03d}.weights.h5"

    def epoch_predictions(self, epoch: int) -> Path:
        """Validation labels and logits of ``epoch`` (from 1): the final validation metrics and
        the calibration are computed from the best epoch's, with no second pass."""
        return self.checkpoints_dir / f"epoch-{epoch:03d}.predictions.npz"

    @property
    def trained_file(self) -> Path:
        """Written when training is over: a rerun goes straight to evaluate, save and export."""
        return self.checkpoints_dir / "trained.json"

    @property
    def export_marker(self) -> Path:
        """The version fit is exporting, so a rerun after a kill exports it once, not twice."""
        return self.checkpoints_dir / "export.json"

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

    def reliability_diagram_png(self, split: str = "validation") -> Path:
        suffix = "" if split == "validation" else f"_{split}"
        return self.path / f"reliability_diagram{suffix}.png"

    def plots(self) -> list[Path]:
        """The run's PNG plots, sorted by name."""
        return sorted(p for pattern in _RUN_PLOTS for p in self.path.glob(pattern))

    # -- state --------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """``config.json`` is written after the tokenizer: its presence marks a started run."""
        return self.config_file.is_file()

    @property
    def finished(self) -> bool:
        """Trained, saved and evaluated: ``metrics.json`` exists (an export may be pending)."""
        return self.metrics_file.is_file()

    @property
    def trained(self) -> dict[str, Any] | None:
        """``checkpoints/trained.json`` ({"epochs": N, ...}), or None while training is not over."""
        return read_json(self.trained_file)

    @property
    def best(self) -> dict[str, Any] | None:
        """``checkpoints/best.json``: ``{"epoch", "monitor", "value", "val_loss"}`` of the best
        epoch so far, and ``previous``, the best before it (kept until the backup of the
        epoch that beat it is written, so a rerun can fall back to it), or None."""
        return read_json(self.best_file)

    @property
    def has_model(self) -> bool:
        return (self.model_dir / "config.json").is_file() and any(
            (self.model_dir / f).is_file() for f in WEIGHT_FILES
        )

    @property
    def has_tokenizer(self) -> bool:
        return any((self.tokenizer_dir / f).is_file() for f in TOKENIZER_FILES)

    def backup_counters(self) -> tuple[int, int] | None:
        """``(epoch, batch)`` of the newest Keras ``BackupAndRestore`` checkpoint (epoch from 0,
        batch -1 when it was saved at an epoch's end in ``"epoch"`` mode), or None."""
        import tensorflow as tf

        chief = self.backup_dir / "chief"
        latest = tf.train.latest_checkpoint(str(chief)) if chief.is_dir() else None
        if latest is None:
            return None
        reader = tf.train.load_checkpoint(latest)
        value = "/.ATTRIBUTES/VARIABLE_VALUE"
        return (int(reader.get_tensor("ckpt_saved_epoch" + value)),
                int(reader.get_tensor("ckpt_saved_batch" + value)))

    def history_rows(self) -> list[dict[str, str]]:
        """``history.csv``'s complete rows (a row cut short by a kill is left out)."""
        try:
            text = self.history_csv.read_text(encoding="utf-8")
        except OSError:
            return []
        rows = list(csv.DictReader(io.StringIO(text)))
        return [r for r in rows if None not in r and all(v not in (None, "") for v in r.values())]

    def trim_history(self, epochs: int) -> None:
        """Keep the rows of the first ``epochs`` epochs of ``history.csv``: the rows of an epoch
        whose backup a kill prevented are written again when it is trained again."""
        rows = [r for r in self.history_rows() if int(float(r["epoch"])) < epochs]
        if not rows:
            self.history_csv.unlink(missing_ok=True)
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.history_csv, out.getvalue())

    def clear(self) -> None:
        """Remove everything fit writes (and nothing else the folder holds). Only for a folder
        that holds a run (``started``): ``README.md`` or ``logs/`` of another folder are not
        fit's to remove."""
        for name in _RUN_ENTRIES:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        for plot in self.plots():
            plot.unlink()
        for leftover in self.path.glob(".*.tmp-*"):  # of a kill during an atomic write
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()

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
        if not self.has_tokenizer:
            fail(f"run directory {self.path} has no tokenizer (tokenizer/vocab.txt); {FIT_HINT}")
        return load_tokenizer(str(self.tokenizer_dir))

    def load_model(self) -> TFPreTrainedModel:
        """The trained ``TF*ForSequenceClassification``, in float32 whatever it trained in
        (:func:`tfsent.model.load_trained_model`)."""
        return load_trained_model(self.model_dir)
