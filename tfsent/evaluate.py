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
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from tfsent.cli import TRAIN_MODULES, add_verbose_flag, configure_logging, require_extra
from tfsent.errors import OneLineArgumentParser, fail, run_cli
from tfsent.features import MODEL_INPUTS, Encoded, make_dataset
from tfsent.files import write_json_atomic

if TYPE_CHECKING:
    import tensorflow as tf
    from matplotlib.figure import Figure


def predict_logits(model, dataset: tf.data.Dataset,
                   progress: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and float32 logits of every example of ``dataset``, in the dataset's order.

    Bucketing reorders examples, so labels are collected from the same batches as the logits.
    ``progress``: Keras' progress bar (1, or 2 for one line at the end) over the dataset's
    batches, whose number the bar shows when the dataset knows it (``cardinality``).
    """
    import tensorflow as tf
    import tf_keras

    # One trace for every batch shape: bucketing feeds many widths. The inputs are the
    # dataset's, which are the model's (DistilBERT takes no token_type_ids).
    spec = {name: tf.TensorSpec([None, None], tf.int32) for name in dataset.element_spec[0]}

    @tf.function(input_signature=[spec])
    def logits_of(features):
        return tf.cast(model(features, training=False).logits, tf.float32)

    batches = int(dataset.cardinality())
    bar = tf_keras.utils.Progbar(batches if batches >= 0 else None, verbose=progress,
                                 unit_name="batch") if progress else None
    labels, logits = [], []
    for features, y in dataset:
        logits.append(logits_of(features).numpy())
        labels.append(y.numpy())
        if bar is not None:
            bar.add(1)
    if not logits:
        return np.zeros([0], np.int64), np.zeros([0, model.config.num_labels], np.float32)
    return np.concatenate(labels), np.concatenate(logits)


class SplitPredictions(NamedTuple):
    """A split's labels and logits in the split's own order, and the seconds the pass took."""

    labels: np.ndarray
    logits: np.ndarray
    seconds: float

    @property
    def reviews_per_second(self) -> float | None:
        return len(self.labels) / self.seconds if self.seconds > 0 else None


def predict_split(model, encoded: Encoded, batch_size: int, *, max_length: int | None = None,
                  bucketing: bool = True, inputs: Sequence[str] = MODEL_INPUTS,
                  progress: int = 0) -> SplitPredictions:
    """The logits of every row of ``encoded``, in its order, and the time the pass took.

    Rows are batched by length (``bucketing``: little padding, so fast) and their positions
    travel through the pipeline in place of the labels, which puts every logit back in its
    row's place: the output is the output of an unbucketed pass.
    """
    positions = Encoded(encoded.input_ids, np.arange(len(encoded)))
    dataset = make_dataset(positions, batch_size, shuffle=False, seed=0, bucketing=bucketing,
                           max_length=max_length, inputs=inputs)
    start = time.perf_counter()
    order, logits = predict_logits(model, dataset, progress=progress)
    seconds = time.perf_counter() - start
    in_order = np.empty_like(logits)
    in_order[order] = logits
    labels = (encoded.labels if encoded.labels is not None
              else np.zeros(len(encoded), np.int64))
    return SplitPredictions(labels, in_order, seconds)


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
                          path: str | Path | None = None,
                          title: str = "Confusion matrix") -> Figure:
    """Counts per (true, predicted) label, each with its percentage of the true label's row
    (so the diagonal reads as per-class recall); saved to ``path`` when given."""
    # A bare Figure draws without pyplot, so a notebook's inline backend is left alone.
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    counts = np.asarray(matrix, dtype=np.int64)
    size = 3.4 + 0.75 * len(label_names)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    display = ConfusionMatrixDisplay(counts, display_labels=list(label_names)).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45, values_format="d"
    )
    rows = counts.sum(axis=1)
    # sklearn picks each cell's text colour for contrast; only the text itself changes.
    for (i, j), text in np.ndenumerate(display.text_):
        share = f"\n{100 * counts[i, j] / rows[i]:.1f}%" if rows[i] else ""
        text.set_text(f"{counts[i, j]:,}{share}")
        text.set_fontsize(9 if len(label_names) > 4 else 10)
    ax.set_title(f"{title}\ncounts and % of the true label", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_training_curves(history_csv: str | Path, path: str | Path | None = None,
                         best_epoch: int | None = None) -> Figure:
    """Loss and accuracy per epoch, train and validation, from Keras' CSVLogger file; saved to
    ``path`` when given.

    ``best_epoch`` is the kept (best validation) epoch as Keras counts it, from 0 like
    ``history.csv``'s ``epoch`` column and ``checkpoints/best.json``; the plot numbers epochs
    from 1 and marks it.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig = Figure(figsize=(10, 4))
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "o-"), ("val_", "s--")):
            key = prefix + metric
            if rows and key in rows[0]:
                values = [float(r[key]) for r in rows]
                ax.plot(epochs, values, style, label=key)
                if prefix and best_epoch is not None and best_epoch + 1 in epochs:
                    ax.plot(best_epoch + 1, values[epochs.index(best_epoch + 1)], "*",
                            color="tab:red", markersize=14, zorder=3)
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="tab:red", linestyle=":", alpha=0.8,
                       label=f"best epoch ({best_epoch + 1})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if epochs:
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def evaluate_split(model, dataset, label_names: Sequence[str], run_dir: Path, split: str,
                   predictions: tuple[np.ndarray, np.ndarray] | SplitPredictions | None = None,
                   temperature: float | None = None) -> dict[str, Any]:
    """Metrics of one split, and its confusion matrix plotted into ``run_dir``.

    ``predictions`` (labels, logits) already made by this model skip the pass over ``dataset``.
    The metrics hold the pass's speed (``reviews_per_second``) when it was timed: a pass made
    here, or :func:`predict_split`'s. With the run's calibration ``temperature``, the metrics
    also hold the split's ECE and NLL before and after it (``calibration``), and its
    reliability diagram is plotted too.
    """
    if predictions is None:
        start = time.perf_counter()
        labels, logits = predict_logits(model, dataset)
        predictions = SplitPredictions(labels, logits, time.perf_counter() - start)
    labels, logits = predictions[0], predictions[1]
    metrics = compute_metrics(labels, logits, label_names)
    if isinstance(predictions, SplitPredictions):
        metrics["reviews_per_second"] = predictions.reviews_per_second
    suffix = "" if split == "validation" else f"_{split}"
    plot_confusion_matrix(metrics["confusion_matrix"], label_names,
                          run_dir / f"confusion_matrix{suffix}.png", f"Confusion matrix ({split})")
    if temperature is not None:
        from tfsent.calibration import (
            calibration_metrics,
            plot_reliability_diagram,
            reliability_diagram_path,
        )

        metrics["calibration"] = calibration_metrics(labels, logits, temperature)
        plot_reliability_diagram(labels, logits, temperature,
                                 reliability_diagram_path(run_dir, split), split)
    return metrics


def evaluate_run(run_dir: str | Path, data: str | None = None,
                 batch_size: int | None = None, progress: int = 0) -> dict[str, Any]:
    """Re-evaluate a finished run: on its own validation/test splits, or on ``data``.

    ``data`` is any source ``--dataset`` takes; its test split is used when it has one, else all
    of it. Labels must be among the run's label names. The model computes in float32, and
    Keras' global precision policy is left as it was. ``progress``: Keras' progress bar per
    split (1), one line per split (2), or none (0).
    """
    from tfsent import data as data_stage
    from tfsent.features import encode
    from tfsent.model import family_of
    from tfsent.rundir import RunDir

    if batch_size is not None and batch_size < 1:
        fail(f"--batch-size {batch_size} must be at least 1")
    run = RunDir(run_dir).check()
    cfg = run.config
    tokenizer = run.load_tokenizer()
    model = run.load_model()
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
        predictions = predict_split(model, encoded, batch_size or cfg.train.eval_batch_size,
                                    bucketing=cfg.train.bucketing,
                                    max_length=cfg.model.max_length,
                                    inputs=family_of(model.config.model_type).inputs,
                                    progress=progress)
        results[split] = evaluate_split(model, None, label_names, run.path, split, predictions,
                                        temperature=run.temperature)
    return results


def format_report(results: dict[str, Any]) -> str:
    lines = []
    for split, m in results.items():
        lines.append(
            f"{split}: accuracy {m['accuracy']:.4f}  f1_macro {m['f1_macro']:.4f}  "
            f"f1_weighted {m['f1_weighted']:.4f}  loss {m['loss']:.4f}  ({m['examples']} examples"
            + (f", {m['reviews_per_second']:,.1f} reviews/s)" if m.get("reviews_per_second")
               else ")")
        )
        if "calibration" in m:
            c = m["calibration"]
            lines.append(f"{split}: ECE ({c['bins']} bins) {c['ece_before']:.4f} raw, "
                         f"{c['ece_after']:.4f} at temperature {c['temperature']:.4g}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    require_extra("train", TRAIN_MODULES, "evaluation")
    parser = OneLineArgumentParser(
        prog="python -m tfsent.evaluate",
        description="Re-evaluate a saved tfsent run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--run-dir", required=True,
                        help="Run directory written by python -m tfsent.fit (its --output-dir).")
    parser.add_argument("--data", default=None,
                        help="Labelled data to evaluate (any --dataset source). "
                        "Default: the run's own validation and test splits.")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="Evaluation batch size. Default: the run's --eval-batch-size.")
    parser.add_argument("--output", default=None, help="Write the metrics JSON here too.")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    # A bar on a terminal; in a log file one line per split, not a bar redrawn per batch.
    results = evaluate_run(args.run_dir, args.data, args.batch_size,
                           progress=1 if sys.stdout.isatty() else 2)
    print(format_report(results))
    if args.output:
        write_json_atomic(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
