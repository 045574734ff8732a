"""Evaluate: loss, accuracy, precision/recall/F1, per-class accuracy, confusion matrix, plots.

Metrics come from scikit-learn on the model's logits::

    >>> import numpy as np
    >>> m = compute_metrics(np.array([0, 1, 1]), np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]),
    ...                     ["negative", "positive"])
    >>> m["accuracy"], m["confusion_matrix"]
    (0.6666666666666666, [[1, 0], [1, 1]])

Re-evaluate a saved run (its own validation split, or other labelled data)::

    python -m tfsent.evaluate --run-dir runs/tfsent [--data reviews.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsent.config import EPOCH_METRICS, monitor_mode
from tfsent.errors import OneLineArgumentParser, fail, run_cli

if TYPE_CHECKING:
    import tensorflow as tf


def predict_logits(model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Labels and float32 logits of every example of ``dataset``, in the dataset's order.

    Bucketing reorders examples, so labels are collected from the same batches as the logits.
    """
    import tensorflow as tf

    from tfsent.features import MODEL_INPUTS

    # One trace for every batch shape: bucketing feeds many widths.
    spec = {name: tf.TensorSpec([None, None], tf.int32) for name in MODEL_INPUTS}

    @tf.function(input_signature=[spec])
    def logits_of(features):
        return tf.cast(model(features, training=False).logits, tf.float32)

    labels, logits = [], []
    for features, y in dataset:
        logits.append(logits_of(features).numpy())
        labels.append(y.numpy())
    if not logits:
        return np.zeros([0], np.int64), np.zeros([0, model.config.num_labels], np.float32)
    return np.concatenate(labels), np.concatenate(logits)


def compute_metrics(
    labels: np.ndarray, logits: np.ndarray, label_names: Sequence[str]
) -> dict[str, Any]:
    """Everything ``metrics.json`` holds for one split."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(label_names)))
    predictions = logits.argmax(axis=-1)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    loss = float(-log_probs[np.arange(len(labels)), labels].mean())
    cm = confusion_matrix(labels, predictions, labels=ids)
    metrics: dict[str, Any] = {
        "examples": int(len(labels)),
        "loss": loss,
        "accuracy": float(accuracy_score(labels, predictions)),
    }
    for average in ("weighted", "macro"):
        p, r, f, _ = precision_recall_fscore_support(
            labels, predictions, labels=ids, average=average, zero_division=0
        )
        metrics |= {f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f}
    row_totals = cm.sum(axis=1)
    metrics["per_class_accuracy"] = {
        name: float(cm[i, i] / row_totals[i]) if row_totals[i] else None
        for i, name in enumerate(label_names)
    }
    metrics["label_names"] = list(label_names)
    metrics["confusion_matrix"] = cm.tolist()
    return {k: float(v) if isinstance(v, np.floating) else v for k, v in metrics.items()}


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], label_names: Sequence[str],
                          path: str | Path, title: str = "Confusion matrix") -> None:
    # A bare Figure draws without pyplot, so a notebook's inline backend is left alone.
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    size = 3 + 0.6 * len(label_names)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(label_names)).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_training_curves(history_csv: str | Path, path: str | Path) -> None:
    """Loss and accuracy per epoch, train and validation, from Keras' CSVLogger file."""
    from matplotlib.figure import Figure

    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig = Figure(figsize=(10, 4))
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "o-"), ("val_", "s--")):
            key = prefix + metric
            if rows and key in rows[0]:
                ax.plot(epochs, [float(r[key]) for r in rows], style, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def validation_scores(dataset: tf.data.Dataset, label_names: Sequence[str], monitor: str,
                      best: float | None = None, best_file: Path | None = None):
    """A Keras callback that scores ``dataset`` at the end of every epoch, instead of
    ``fit(validation_data=...)``.

    It puts ``val_loss``, ``val_accuracy`` and ``val_f1_macro`` into the epoch's logs, so the
    callbacks after it (ModelCheckpoint, EarlyStopping, TensorBoard, CSVLogger, History) see them,
    and it keeps the labels and logits of the best epoch by ``monitor`` with ModelCheckpoint's
    rule (strictly better than ``best``). The final evaluation reuses them rather than making a
    second pass over the validation split. ``best_file`` records the best value so a resumed
    run starts from it.
    """
    import tf_keras

    better = np.less if monitor_mode(monitor) == "min" else np.greater

    class ValidationScores(tf_keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best = best
            self.best_predictions: tuple[np.ndarray, np.ndarray] | None = None

        def on_epoch_end(self, epoch, logs=None):
            labels, logits = predict_logits(self.model, dataset)
            metrics = compute_metrics(labels, logits, label_names)
            logs.update({f"val_{name}": metrics[name] for name in EPOCH_METRICS})
            current = logs.get(monitor)
            if current is None or np.isnan(current):  # ModelCheckpoint skips NaN too
                return
            if self.best is None or better(current, self.best):
                self.best, self.best_predictions = current, (labels, logits)
                if best_file is not None:
                    best_file.write_text(json.dumps({"monitor": monitor, "value": current,
                                                     "epoch": epoch}) + "\n")

    return ValidationScores()


def evaluate_split(model, dataset, label_names: Sequence[str], run_dir: Path, split: str,
                   predictions: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Metrics of one split, and its confusion matrix plotted into ``run_dir``.

    ``predictions`` (labels, logits) already made by this model skip the pass over ``dataset``.
    """
    labels, logits = predict_logits(model, dataset) if predictions is None else predictions
    metrics = compute_metrics(labels, logits, label_names)
    suffix = "" if split == "validation" else f"_{split}"
    plot_confusion_matrix(metrics["confusion_matrix"], label_names,
                          run_dir / f"confusion_matrix{suffix}.png", f"Confusion matrix ({split})")
    return metrics


def evaluate_run(run_dir: str | Path, data: str | None = None,
                 batch_size: int | None = None) -> dict[str, Any]:
    """Re-evaluate a finished run: on its own validation/test splits, or on ``data``.

    ``data`` is any source ``--dataset`` takes; its test split is used when it has one, else all
    of it. Labels must be among the run's label names.
    """
    from tfsent import data as data_stage
    from tfsent.config import RunConfig
    from tfsent.features import encode, make_dataset
    from tfsent.model import load_tokenizer

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        fail(f"{run_dir} is not a tfsent run directory (no config.json); "
             "pass the --output-dir of a fit run")
    if not (run_dir / "model" / "tf_model.h5").is_file():
        fail(f"{run_dir}/model has no trained weights; finish `python -m tfsent.fit` first")
    cfg = RunConfig.load(run_dir / "config.json")
    tokenizer = load_tokenizer(str(run_dir / "tokenizer"))
    model = _load_trained(run_dir / "model")
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if data is None:
        splits = data_stage.load_splits(cfg.data, cfg.train.seed)
        sets = {"validation": splits.validation, "test": splits.test}
    else:
        sets = {"evaluation": data_stage.load_evaluation_set(data, cfg.data, label_names)}
    results: dict[str, Any] = {}
    for split, texts in sets.items():
        if texts is None:
            continue
        encoded = encode(tokenizer, texts.texts, cfg.model.max_length, cfg.model.truncation,
                         texts.labels)
        dataset = make_dataset(encoded, batch_size or cfg.train.eval_batch_size, shuffle=False,
                               seed=cfg.train.seed, max_length=cfg.model.max_length)
        results[split] = evaluate_split(model, dataset, label_names, run_dir, split)
    return results


def _load_trained(model_dir: Path):
    import tf_keras
    from transformers import TFBertForSequenceClassification

    tf_keras.mixed_precision.set_global_policy("float32")
    return TFBertForSequenceClassification.from_pretrained(model_dir)


def format_report(results: dict[str, Any]) -> str:
    lines = []
    for split, m in results.items():
        lines.append(
            f"{split}: accuracy {m['accuracy']:.4f}  f1_macro {m['f1_macro']:.4f}  "
            f"f1_weighted {m['f1_weighted']:.4f}  loss {m['loss']:.4f}  ({m['examples']} examples)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(
        prog="python -m tfsent.evaluate",
        description="Re-evaluate a saved tfsent run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--run-dir", required=True, help="Run directory written by tfsent.fit.")
    parser.add_argument("--data", default=None,
                        help="Labelled data to evaluate (any --dataset source). "
                        "Default: the run's own validation and test splits.")
    parser.add_argument("--batch-size", type=int, default=None, help="Evaluation batch size.")
    parser.add_argument("--output", default=None, help="Write the metrics JSON here too.")
    args = parser.parse_args(argv)
    results = evaluate_run(args.run_dir, args.data, args.batch_size)
    print(format_report(results))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
