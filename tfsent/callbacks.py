"""The Keras callbacks of a fit, in the order fit lists them.

- :class:`ValidationScores` scores the validation split at each epoch's end (instead of
  ``fit(validation_data=...)``), adds ``val_loss`` / ``val_accuracy`` / ``val_f1_macro`` to the
  epoch's logs, keeps the best epoch (``--monitor``; ties broken by the lower ``val_loss``) with
  its weights and predictions, and stops early after ``--early-stopping-patience`` epochs
  without a new best.
- :class:`EpochSeconds` adds each epoch's wall time to the logs (after the progress bar, so the
  bar does not show it; ``history.csv`` and TensorBoard do).
- :class:`HistoryCSV` (Keras' ``CSVLogger``, with LF line ends) and Keras' ``TensorBoard``.
- :class:`Backup`, Keras' ``BackupAndRestore``, which also backs up at every epoch's end when
  it backs up every N steps, never counts a step backup as the end of an epoch, and leaves the
  backup in place when training ends (fit deletes it once ``trained.json`` is written).
- :class:`Prune` removes the files of a best epoch that a later one beat, once that later
  epoch's backup exists.
- :class:`ReseedDropout` sets every dropout layer's random state from ``(seed, epoch, step)``
  before each step, so a resumed run draws the dropout masks the uninterrupted run drew.

The order matters for a kill between two of them: everything an epoch writes before its
backup is either rewritten when the epoch is trained again (``history.csv`` rows are trimmed to
the backed-up epochs) or kept beside the state a rerun falls back to (the previous best).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tf_keras

from tfsent.config import EPOCH_METRICS, monitor_mode
from tfsent.files import write_json_atomic
from tfsent.rundir import RunDir

if TYPE_CHECKING:
    import tensorflow as tf


def epoch_entry(epoch: int, monitor: str, logs: dict[str, Any]) -> dict[str, Any] | None:
    """``best.json``'s record of ``epoch`` (from 1), or None when its monitored value is NaN."""
    value, val_loss = logs.get(monitor), logs.get("val_loss")
    if value is None or math.isnan(float(value)):
        return None
    return {"epoch": epoch, "monitor": monitor, "value": float(value),
            "val_loss": None if val_loss is None else float(val_loss)}


def is_better(entry: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Whether ``entry`` beats ``best``: strictly better on the monitored metric, or equal and
    with a lower ``val_loss`` (a validation accuracy that ties, as on an easy split where every
    epoch scores 1.0, then keeps the epoch that fits the data best, not the first).

    >>> a = {"monitor": "val_accuracy", "value": 0.9, "val_loss": 0.30}
    >>> is_better(a, None), is_better({**a, "value": 0.8}, a), is_better({**a, "val_loss": 0.2}, a)
    (True, False, True)
    """
    if best is None:
        return True
    better = np.less if monitor_mode(entry["monitor"]) == "min" else np.greater
    if better(entry["value"], best["value"]):
        return True
    if entry["value"] != best["value"] or entry["monitor"] == "val_loss":
        return False
    return (entry["val_loss"] is not None and best["val_loss"] is not None
            and entry["val_loss"] < best["val_loss"])


def save_epoch_files(model, run: RunDir, epoch: int, labels: np.ndarray,
                     logits: np.ndarray) -> None:
    """``epoch``'s weights and validation predictions, each written whole or not at all."""
    weights = run.epoch_weights(epoch)
    # The temporary name keeps the ".weights.h5" ending: Keras picks the format by it.
    tmp = weights.with_name(f".tmp-{os.getpid()}-{weights.name}")
    model.save_weights(str(tmp))
    os.replace(tmp, weights)
    predictions = run.epoch_predictions(epoch)
    tmp = predictions.with_name(f".tmp-{os.getpid()}-{predictions.name}")
    with open(tmp, "wb") as f:
        np.savez(f, labels=labels, logits=logits)
    os.replace(tmp, predictions)


def load_predictions(run: RunDir, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(run.epoch_predictions(epoch)) as saved:
        return saved["labels"], saved["logits"]


class ValidationScores(tf_keras.callbacks.Callback):
    """Validation metrics into each epoch's logs; the best epoch kept on disk; early stopping.

    ``best`` is the best epoch of the epochs before a resume (``best.json``'s record), so a
    resumed run keeps comparing with it and ``patience`` counts from it.
    """

    def __init__(self, run: RunDir, dataset: tf.data.Dataset, label_names: Sequence[str],
                 monitor: str, best: dict[str, Any] | None = None,
                 patience: int | None = None) -> None:
        super().__init__()
        self.run, self.dataset, self.label_names = run, dataset, list(label_names)
        self.monitor, self.best, self.patience = monitor, best, patience
        self.last_epoch: int | None = None  # from 1, the last epoch scored in this process

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        from tfsent.evaluate import compute_metrics, predict_logits

        logs = logs if logs is not None else {}
        labels, logits = predict_logits(self.model, self.dataset)
        metrics = compute_metrics(labels, logits, self.label_names)
        logs.update({f"val_{name}": metrics[name] for name in EPOCH_METRICS})
        self.last_epoch = epoch + 1
        entry = epoch_entry(epoch + 1, self.monitor, logs)
        if entry is not None and is_better(entry, self.best):
            save_epoch_files(self.model, self.run, epoch + 1, labels, logits)
            previous = None if self.best is None else {
                k: v for k, v in self.best.items() if k != "previous"}
            # The commit point: best.json names the new files only once they are whole.
            write_json_atomic(self.run.best_file, {**entry, "previous": previous})
            self.best = entry
        if (self.patience is not None and self.best is not None
                and epoch + 1 - self.best["epoch"] >= self.patience):
            self.model.stop_training = True


class EpochSeconds(tf_keras.callbacks.Callback):
    """``seconds``: each epoch's wall time, validation included, in the logs."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self._started


class HistoryCSV(tf_keras.callbacks.CSVLogger):
    """Keras' ``CSVLogger`` with LF line ends, as :meth:`tfsent.rundir.RunDir.trim_history`
    writes them: Keras' rows end in CRLF (csv's excel dialect, through a ``GFile``), so the
    ``history.csv`` of a resumed run mixed the two."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self.csv_file = _LineFeeds(self.csv_file)


class _LineFeeds:
    """A text file whose lines end in LF whatever its writer ends them with."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def write(self, text: str) -> Any:
        return self._file.write(text.replace("\r\n", "\n"))

    def __getattr__(self, name: str) -> Any:  # flush, close, ...
        return getattr(self._file, name)


class Backup(tf_keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose backups always mark what is finished.

    With ``every_steps``, Keras backs up every N steps only: a step backup that happens to
    fall on an epoch's last step would make a rerun skip that epoch's end (its validation,
    best checkpoint and history row), and a kill after an epoch's end would repeat steps of a
    finished epoch. Here a step backup never falls on an epoch's last step, and every epoch's
    end is backed up too, after the callbacks before this one wrote the epoch's results.
    The backup stays when training ends: fit deletes it once ``trained.json`` says so.
    """

    def __init__(self, backup_dir: str, every_steps: int | None = None) -> None:
        super().__init__(backup_dir, save_freq=every_steps or "epoch", delete_checkpoint=False)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_begin(epoch, logs)
        self._batches_count = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._training_state.backup_if_preempted()
        if self.save_freq == "epoch":
            return
        self._batches_count += 1
        if self._batches_count >= self.save_freq and batch < self.params["steps"] - 1:
            self._batches_count = 0
            self._backup(epoch=self._current_epoch, batch=batch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # In steps mode the saved batch is now the epoch's last: Keras resumes at the next epoch.
        self._backup(epoch=epoch)


class Prune(tf_keras.callbacks.Callback):
    """After an epoch's backup: forget the best epoch it superseded, and that epoch's files."""

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        keep_best_files_of(self.run, epoch + 1)


def keep_best_files_of(run: RunDir, completed: int, write: bool = True) -> dict[str, Any] | None:
    """The best epoch among the first ``completed`` (``best.json``'s record, or the one before
    it when the record is of an epoch a kill kept from being backed up), with every other
    epoch's files removed and ``best.json`` rewritten to it alone (unless ``write`` is False);
    None if there is none."""
    best = run.best
    chosen = None
    for entry in (best, (best or {}).get("previous")):
        if (entry and entry["epoch"] <= completed and run.epoch_weights(entry["epoch"]).is_file()
                and run.epoch_predictions(entry["epoch"]).is_file()):
            chosen = {k: v for k, v in entry.items() if k != "previous"}
            break
    if not write:
        return chosen
    if chosen is None:
        run.best_file.unlink(missing_ok=True)
    elif best != {**chosen, "previous": None}:
        write_json_atomic(run.best_file, {**chosen, "previous": None})
    keep = {run.epoch_weights(chosen["epoch"]).name,
            run.epoch_predictions(chosen["epoch"]).name} if chosen else set()
    for file in [*run.checkpoints_dir.glob("epoch-*"), *run.checkpoints_dir.glob(".tmp-*")]:
        if file.name not in keep:
            file.unlink()
    return chosen


def dropout_generators(model) -> list:
    """The ``tf.random.Generator`` of every Keras dropout layer of ``model`` (there are none
    unless the model was built under :func:`tfsent.model.generator_dropout`)."""
    generators = []
    for layer in model.submodules:
        if isinstance(layer, tf_keras.layers.Dropout):
            generator = getattr(getattr(layer, "_random_generator", None), "_generator", None)
            if generator is not None:
                generators.append(generator)
    return generators


class ReseedDropout(tf_keras.callbacks.Callback):
    """Before every training step, each dropout layer's generator restarts from a state made of
    ``(seed, layer, epoch, step)``: the masks of step ``s`` of epoch ``e`` do not depend on
    what ran before in this process, so a resumed run draws what the uninterrupted run drew.

    Keras' own random state lives inside the TF ops of the train function (or, with
    ``tf.random.Generator``, outside its checkpoints): a process that resumes from a backup
    would start it afresh.
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        import tensorflow as tf

        generators = dropout_generators(self.model)
        keys = [int(self.seed) * 1_000_003 + i for i in range(len(generators))]

        @tf.function(input_signature=[tf.TensorSpec([], tf.int64)])
        def reseed(position):
            # Philox: key per layer; the step in the counter's high word leaves the low word
            # (advanced by every number drawn) to the step itself, so no two steps overlap.
            for generator, key in zip(generators, keys, strict=True):
                generator.reset_from_key_counter(key, tf.stack([tf.constant(0, tf.int64),
                                                                position]))

        self._reseed = reseed if generators else None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._reseed is not None:
            self._reseed((self._epoch << 32) + batch)


class ExpectStart(tf_keras.callbacks.Callback):
    """Fails loudly if Keras resumes elsewhere than where the data stream starts: a guard on
    the one assumption that makes resumed training see the batches it should."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__()
        self.expected: tuple[int, int] | None = (epoch, step)
        self._epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.expected is not None:
            if (self._epoch, batch) != self.expected:
                raise RuntimeError(
                    f"Keras resumed at epoch {self._epoch}, step {batch} but the data at "
                    f"epoch {self.expected[0]}, step {self.expected[1]}; delete the run's "
                    "backup/ folder to restart its last epoch")
            self.expected = None


class AccumulationBoundary(tf_keras.callbacks.Callback):
    """Before each batch, tells a :class:`tfsent.optimization.RecipeAdamW` that accumulates
    gradients whether to apply them after it: after every ``accumulation_steps`` batches of an
    epoch and after its last, so each epoch ends with nothing accumulated (its backup holds all
    there is) and a resumed run, told its batch index by Keras, groups batches as before."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        optimizer = self.model.optimizer
        # Under mixed_float16 Keras wraps it in a LossScaleOptimizer.
        self.optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        self.optimizer.create_accumulators(self.model.trainable_variables)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        k, steps = self.optimizer.accumulation_steps, self.params["steps"]
        self.optimizer.apply_now.assign((batch + 1) % k == 0 or batch + 1 == steps)


def snapshot_weights(run: RunDir, epoch: int):
    """Where :class:`SnapshotLastEpochs` keeps ``epoch``'s weights (from 1)."""
    return run.checkpoints_dir / f"average-{epoch:03d}.weights.h5"


class SnapshotLastEpochs(tf_keras.callbacks.Callback):
    """``--average-last N``: each epoch's weights, kept for the last ``n`` epochs, for
    :func:`average_last_epochs`. Placed before the backup: a snapshot written before a kill
    is rewritten when its epoch is trained again, and the one it drops is outside the window
    of any epoch still to be (re)trained."""

    def __init__(self, run: RunDir, n: int) -> None:
        super().__init__()
        self.run, self.n = run, n

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        path = snapshot_weights(self.run, epoch + 1)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # Prune clears a stray one
        self.model.save_weights(str(tmp))
        os.replace(tmp, path)
        snapshot_weights(self.run, epoch + 1 - self.n).unlink(missing_ok=True)


def average_last_epochs(model, run: RunDir, n: int, last_epoch: int, dataset: tf.data.Dataset,
                        label_names: Sequence[str], monitor: str) -> dict[str, Any]:
    """Set ``model`` to the mean of the weights of epochs ``last_epoch - n + 1 .. last_epoch``
    (those trained), score it on ``dataset`` (the validation split), and make it the run's kept
    model: ``last_epoch``'s files in ``checkpoints/`` and ``best.json``, whose record gains
    ``averaged_epochs``. Returns that record. Run again after a kill, it redoes the average
    from the snapshots, or finds it done (the snapshots go once ``best.json`` names it)."""
    from tfsent.evaluate import compute_metrics, predict_logits

    best = run.best
    if best and best.get("averaged_epochs") and best["epoch"] == last_epoch:
        return best
    epochs = list(range(max(last_epoch - n + 1, 1), last_epoch + 1))
    missing = [e for e in epochs if not snapshot_weights(run, e).is_file()]
    if missing:
        raise RuntimeError(f"the weights of epoch(s) {missing} to average are gone from "
                           f"{run.checkpoints_dir}; train again with --overwrite-output-dir")
    total = None
    for epoch in epochs:
        model.load_weights(str(snapshot_weights(run, epoch)))
        weights = [w.astype(np.float64) for w in model.get_weights()]
        total = weights if total is None else [t + w for t, w in zip(total, weights, strict=True)]
    model.set_weights([t / len(epochs) for t in total])
    labels, logits = predict_logits(model, dataset)
    scores = compute_metrics(labels, logits, label_names)
    logs = {f"val_{name}": scores[name] for name in EPOCH_METRICS}
    entry = epoch_entry(last_epoch, monitor, logs) or {
        "epoch": last_epoch, "monitor": monitor, "value": float("nan"),
        "val_loss": logs["val_loss"]}
    entry["averaged_epochs"] = epochs
    save_epoch_files(model, run, last_epoch, labels, logits)
    write_json_atomic(run.best_file, {**entry, "previous": None})
    keep_best_files_of(run, last_epoch)
    for epoch in epochs:
        snapshot_weights(run, epoch).unlink(missing_ok=True)
    return entry
