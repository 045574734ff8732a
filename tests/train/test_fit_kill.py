"""A fit interrupted at any moment, then rerun, ends as the uninterrupted run ends.

Interrupts are raised in-process at the moments SIGKILL could hit (benchmarks/kill_runs.py does
the real SIGKILLs in subprocesses). Every rerun is compared with one uninterrupted reference
run: same epochs in history.csv, same metrics.json (timings and the export path aside).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import tf_keras

from benchmarks.kill_runs import comparable_metrics
from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tfsent.fit import fit


def config(output_dir: Path, **train) -> RunConfig:
    values = dict(output_dir=str(output_dir), epochs=3, batch_size=32, learning_rate=3e-3,
                  progress=0, seed=3, backup_every_steps=4)
    values.update(train)
    return RunConfig(
        DataConfig(dataset="demo", max_train_samples=300, max_eval_samples=120),
        ModelConfig(model="tiny", max_length=48, tiny_vocab_size=300),
        TrainConfig(**values),
    )


def history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def validation_columns(rows: list[dict[str, str]]) -> list[tuple]:
    return [(r["epoch"], r["val_accuracy"], r["val_loss"], r["val_f1_macro"]) for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    metrics = fit(config(run))
    return metrics, history(run)


class Steps(tf_keras.callbacks.Callback):
    """Records the (epoch, step) of every training step it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.seen.append((self._epoch, batch))

    def epochs(self) -> list[int]:
        return sorted({e for e, _ in self.seen})


class InterruptAt(tf_keras.callbacks.Callback):
    def __init__(self, epoch: int | None = None, step: int | None = None) -> None:
        super().__init__()
        self.at = (epoch, step)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self._epoch, batch) == self.at:
            raise KeyboardInterrupt

    def on_train_end(self, logs=None):
        if self.at == (None, None):  # after the last epoch, before fit writes trained.json
            raise KeyboardInterrupt


def test_kill_after_the_last_epoch_reruns_no_epoch_and_saves_evaluates_exports(
        tmp_path, reference):
    cfg = config(tmp_path / "run", export_dir=str(tmp_path / "exported"))
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, [InterruptAt()])
    run = tmp_path / "run"
    assert [int(r["epoch"]) for r in history(run)] == [0, 1, 2]
    assert not (run / "model").exists() and not (run / "metrics.json").exists()
    assert (run / "backup").is_dir()  # says: all three epochs are done

    steps = Steps()
    metrics = fit(cfg, [steps])
    assert steps.seen == [], "no epoch is trained again"
    assert (run / "model" / "tf_model.h5").is_file() and (run / "metrics.json").is_file()
    assert metrics["export"] == str(tmp_path / "exported" / "tfsent" / "1")
    assert (tmp_path / "exported" / "tfsent" / "1" / "saved_model.pb").is_file()
    rerun = json.loads((run / "metrics.json").read_text())
    assert comparable_metrics(rerun) == comparable_metrics(reference[0])
    assert validation_columns(history(run)) == validation_columns(reference[1])
    assert not (run / "backup").exists() and not (run / "checkpoints" / "export.json").exists()


def test_kill_during_evaluation_then_during_export_finishes_once(tmp_path, reference,
                                                                 monkeypatch):
    import tfsent.evaluate
    import tfsent.export

    cfg = config(tmp_path / "run", export_dir=str(tmp_path / "exported"))
    run, versions = tmp_path / "run", tmp_path / "exported" / "tfsent"
    evaluate_split = tfsent.evaluate.evaluate_split

    def killed_on_test(model, dataset, label_names, run_dir, split, *args, **kwargs):
        if split == "test":
            raise KeyboardInterrupt
        return evaluate_split(model, dataset, label_names, run_dir, split, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(tfsent.evaluate, "evaluate_split", killed_on_test)
        with pytest.raises(KeyboardInterrupt):
            fit(cfg)
    assert (run / "checkpoints" / "trained.json").is_file() and (run / "model").is_dir()
    assert not (run / "metrics.json").exists()

    def killed_export(*args, **kwargs):
        raise KeyboardInterrupt

    steps = Steps()
    with monkeypatch.context() as patch:
        patch.setattr(tfsent.export, "write_saved_model", killed_export)
        with pytest.raises(KeyboardInterrupt):
            fit(cfg, [steps])
    saved = json.loads((run / "metrics.json").read_text())
    assert "export" not in saved and (run / "checkpoints" / "export.json").is_file()
    assert not (versions / "1").exists()

    metrics = fit(cfg, [steps])
    assert steps.seen == []
    assert sorted(p.name for p in versions.iterdir()) == ["1"]
    assert metrics["export"] == str(versions / "1")
    assert comparable_metrics(metrics) == comparable_metrics(reference[0])

    # Killed after the version was renamed into place but before metrics.json recorded it:
    # the rerun records that version instead of exporting another.
    saved = json.loads((run / "metrics.json").read_text())
    del saved["export"]
    (run / "metrics.json").write_text(json.dumps(saved))
    (run / "checkpoints" / "export.json").write_text(
        json.dumps({"base": str(versions.resolve()), "version": 1}))
    assert fit(cfg)["export"] == str(versions / "1")
    assert sorted(p.name for p in versions.iterdir()) == ["1"]


def test_kill_mid_epoch_resumes_at_the_backed_up_step_with_the_same_result(
        tmp_path, reference):
    cfg = config(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, [InterruptAt(epoch=1, step=7)])
    steps = Steps()
    metrics = fit(cfg, [steps])
    # Backed up after steps 0-3 of epoch 1 (every 4 steps): it resumes at step 4 and never
    # trains epoch 0 again.
    assert steps.seen[0] == (1, 4) and steps.epochs() == [1, 2]
    rows = history(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    # Same examples in the same order, same dropout masks: the same model as without the kill.
    assert validation_columns(rows) == validation_columns(reference[1])
    assert comparable_metrics(metrics) == comparable_metrics(reference[0])


def test_kill_between_an_epochs_best_checkpoint_and_its_backup(tmp_path, reference,
                                                               monkeypatch):
    import tfsent.callbacks

    on_epoch_end = tfsent.callbacks.Backup.on_epoch_end

    def killed_before_epoch_2_backup(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt
        on_epoch_end(self, epoch, logs)

    cfg = config(tmp_path / "run")
    with monkeypatch.context() as patch:
        patch.setattr(tfsent.callbacks.Backup, "on_epoch_end", killed_before_epoch_2_backup)
        with pytest.raises(KeyboardInterrupt):
            fit(cfg)
    run = tmp_path / "run"
    # Epoch 2's row and (if it was the best) its checkpoint were written, its backup was not.
    assert [int(r["epoch"]) for r in history(run)] == [0, 1]
    steps = Steps()
    metrics = fit(cfg, [steps])
    # Epoch 2 resumes from its last step backup (every 4 steps, never at its last step).
    per_epoch = json.loads((run / "checkpoints" / "trained.json").read_text())["steps_per_epoch"]
    last_backup = max(b for b in range(per_epoch - 1) if (b + 1) % 4 == 0)
    assert steps.epochs() == [1, 2] and steps.seen[0] == (1, last_backup + 1)
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert validation_columns(rows) == validation_columns(reference[1])
    assert comparable_metrics(metrics) == comparable_metrics(reference[0])
    assert sorted(p.name for p in (run / "checkpoints").glob("epoch-*")) == [
        f"epoch-{metrics['best_epoch']:03d}.predictions.npz",
        f"epoch-{metrics['best_epoch']:03d}.weights.h5"]
