"""Fit: fine-tune ``TFBertForSequenceClassification`` with Keras ``fit``, end to end.

The run reads top to bottom in :func:`fit`: data, tokenizer, then :func:`train`: features
(:func:`make_datasets`), model (:func:`compile_model`, with its built-in loss: no ``loss=``),
callbacks (:func:`make_callbacks`), ``model.fit``; then :func:`finish`
(save the best epoch, evaluate, calibrate, plot, ``metrics.json``) and :func:`export`.

    python -m tfsent.fit --config demo                      # offline demo, about a minute on CPU
    python -m tfsent.fit --dataset stanfordnlp/imdb --model bert-base-uncased --mixed-precision auto
    python -m tfsent.fit --dataset reviews.csv --text-column review --label-column stars

**A killed run is rerun with the same command** and continues where it stopped, whatever the
moment of the kill; it never trains a finished epoch again, and ends with the epochs and the
``metrics.json`` of an uninterrupted run:

- during an epoch: Keras ``BackupAndRestore`` restarts at the last backup (the last epoch's end,
  or the last of every ``--backup-every-steps`` steps). Each epoch's example order and dropout
  masks are functions of ``(seed, epoch, step)``, so the resumed steps are those the
  uninterrupted run took (:func:`tfsent.features.make_train_dataset`,
  :class:`tfsent.callbacks.ReseedDropout`);
- after the last epoch (``checkpoints/trained.json``), during the save, evaluation, plots: the
  best epoch's weights and validation predictions are on disk (``checkpoints/``), and
  :func:`finish` runs again from them;
- during the export: :func:`export` finishes the version it had started (once), and
  ``metrics.json`` records it.

The run directory's layout is :class:`tfsent.rundir.RunDir`'s.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.cli import (
    SERVE_MODULES,
    TRAIN_MODULES,
    configure_logging,
    install_command,
    missing_module,
    require_extra,
)
from tfsent.config import (
    CliOptions,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    parse_args,
)
from tfsent.errors import fail, run_cli
from tfsent.files import read_json, write_json_atomic
from tfsent.rundir import RunDir

if TYPE_CHECKING:
    from tfsent.data import Splits
    from tfsent.features import Encoded

DESCRIPTION = (
    "Fine-tune BERT for sentiment (TFBertForSequenceClassification, Keras fit), evaluate it, "
    "and export it for TF Serving (--export-dir). A killed run continues where it stopped when "
    "rerun with the same command."
)
# What fit does in a run directory, decided before anything is read or written (plan_run).
NEW, RESUME, FINISH, EXPORT = "new", "resume", "finish", "export"


def plan_run(run: RunDir, cfg: RunConfig) -> str:
    """What :func:`fit` does in ``run``: start a ``new`` run, ``resume`` training, ``finish``
    a trained run, or ``export`` a finished one; or a one-line error.

    ``--overwrite-output-dir`` replaces a finished run, or an interrupted run that had other
    options; an interrupted run with the same options (``RunConfig.differences``) is always
    continued, so rerunning the command that was killed never starts over.
    """
    t = cfg.train
    if run.path.exists() and not run.path.is_dir():
        fail(f"--output-dir {run.path} is a file; pass a directory")
    if not (run.started and run.has_tokenizer):
        return NEW
    try:
        changed = cfg.differences(RunConfig.load(run.config_file))
    except (OSError, ValueError, TypeError):
        changed = ["config.json"]
    if run.finished:
        if not changed and t.export_dir and not run.metrics.get("export"):
            return EXPORT
        if t.overwrite_output_dir:
            return NEW
        fail(f"{run.path} holds a finished run; pass --overwrite-output-dir or another "
             "--output-dir")
    if changed:
        if t.overwrite_output_dir:
            return NEW
        fail(f"{run.path} holds an interrupted run with other options ({', '.join(changed[:4])});"
             f" resume it with python -m tfsent.fit --config {run.config_file}, or pass "
             "--overwrite-output-dir to start over")
    return FINISH if run.trained else RESUME


def fit(cfg: RunConfig, extra_callbacks: list | None = None,
        evaluate_test: bool = True, splits: Splits | None = None) -> dict[str, Any]:
    """Train, evaluate and save one run (or continue an interrupted one); return its metrics
    (also in ``metrics.json``).

    ``extra_callbacks`` are Keras callbacks added to tfsent's own (e.g. to watch or stop a run).
    ``evaluate_test=False`` never scores the test split (tune's trials rank on validation only).
    ``splits``: ``cfg.data``'s splits, when the caller loaded them already (default: loaded here).
    """
    import tf_keras

    from tfsent.data import load_splits
    from tfsent.distribute import is_chief, make_multi_worker_strategy
    from tfsent.model import build_tiny_tokenizer, load_tokenizer, model_family, tiny_family

    cfg.check()
    run = RunDir(cfg.train.output_dir)
    action = plan_run(run, cfg)
    strategy = None
    if cfg.train.strategy == "multi_worker":
        # Before any other TensorFlow op: TensorFlow sets collective ops up as its runtime starts.
        strategy = make_multi_worker_strategy()
        if not is_chief(strategy) and action in (FINISH, EXPORT):
            return worker_result(strategy)  # nothing left to train: the rest is the chief's
    if action == EXPORT:
        return export(run, cfg, run.metrics)

    tf_keras.utils.set_random_seed(cfg.train.seed)
    # Data and tokenizer first: bad input fails here, before anything is written.
    if splits is None:
        splits = load_splits(cfg.data, cfg.train.seed)
    m = cfg.model
    model_family(m.model)  # another family than the supported ones fails here, in one line
    if action != NEW:
        tokenizer = run.load_tokenizer()  # a trained tiny vocabulary is not trained again
    elif tiny_family(m.model) and m.tokenizer is None:
        tokenizer = build_tiny_tokenizer(splits.train.texts, m.tiny_vocab_size,
                                         tiny_family(m.model))
    else:
        tokenizer = load_tokenizer(m.tokenizer or m.model)
    if action in (NEW, RESUME):
        train(run, cfg, splits, tokenizer, new=action == NEW, extra_callbacks=extra_callbacks,
              strategy=strategy)
    if strategy is not None and not is_chief(strategy):
        return worker_result(strategy)  # saving, evaluating and exporting are the chief's
    metrics = finish(run, cfg, splits, tokenizer, evaluate_test)
    return export(run, cfg, metrics)


def start_run(run: RunDir, cfg: RunConfig, tokenizer) -> None:
    """Write a new run's ``config.json`` (which marks the folder as a tfsent run), then its
    tokenizer (whose presence marks a started run: see :func:`plan_run`)."""
    if run.started:
        run.clear()  # a finished run being replaced, or a run killed before its tokenizer
    for name in ("tokenizer", "checkpoints"):
        if (run.path / name).exists():  # a folder that is not a tfsent run: leave it alone
            fail(f"--output-dir {run.path} holds a {name}/ folder but no tfsent run; pass a "
                 "new or empty folder")
    run.path.mkdir(parents=True, exist_ok=True)
    cfg.save(run.config_file)
    run.checkpoints_dir.mkdir()
    staging = run.path / f".tokenizer.tmp-{os.getpid()}"
    tokenizer.save_pretrained(staging)
    os.replace(staging, run.tokenizer_dir)


def resume_point(run: RunDir, steps_per_epoch: int, every_steps: int | None) -> tuple[int, int]:
    """``(epoch, step)``, from 0, where Keras' ``BackupAndRestore`` will resume (its rule in
    ``WorkerTrainingState.maybe_load_initial_counters_from_ckpt``), read from the backup."""
    counters = run.backup_counters()
    if counters is None:
        return 0, 0
    epoch, batch = counters
    if not every_steps:
        return (epoch + 1, 0) if epoch >= 0 else (0, 0)
    if batch < 0:
        return 0, 0
    return (epoch + 1, 0) if batch == steps_per_epoch - 1 else (epoch, batch + 1)


def train(run: RunDir, cfg: RunConfig, splits: Splits, tokenizer, *, new: bool,
          extra_callbacks: list | None = None, strategy: Any = None) -> None:
    """Train (or go on training) until every epoch is done or early stopping ends it; then
    ``checkpoints/trained.json`` says so and the backup goes.

    ``strategy``: the ``tf.distribute`` strategy made already (default: ``--strategy``'s).
    Under a multi-worker strategy every worker trains and only the chief writes the run.
    """
    import tf_keras

    from tfsent.callbacks import keep_best_files_of
    from tfsent.distribute import is_chief, make_strategy, private_run, wait_for_all
    from tfsent.model import generator_dropout, precision_policy, resolve_precision

    t = cfg.train
    train_rows, valid_ds, steps = make_datasets(cfg, splits, tokenizer)
    policy = resolve_precision(t.mixed_precision)
    if strategy is None:
        strategy = make_strategy(t.strategy)
    chief = is_chief(strategy)
    # Saves are collective, so the other workers save what the chief saves, in a folder of
    # their own: the run folder is the chief's.
    own, remove_own = (run, None) if chief else private_run(run)
    # Seeded dropout needs one generator per layer: fine on one device; under several
    # replicas Keras' own dropout stays (a resumed run is then not bit for bit the same).
    seeded = strategy.num_replicas_in_sync == 1
    with precision_policy(policy), strategy.scope(), (
            generator_dropout() if seeded else nullcontext()):
        model = compile_model(cfg, splits.label_names, tokenizer, steps, strategy)
        # The model loaded, so the input is good: only now is anything written.
        if chief:
            if new:
                start_run(run, cfg, tokenizer)
            run.checkpoints_dir.mkdir(exist_ok=True)
        wait_for_all(strategy)  # the other workers read the run once the chief cleared it
        start_epoch, start_step = resume_point(run, steps, t.backup_every_steps)
        # What an epoch wrote before a kill kept its backup from being written is redone.
        best = keep_best_files_of(run, start_epoch, write=chief)
        if chief:
            run.trim_history(start_epoch)
        if chief and start_epoch == 0 and start_step == 0:
            shutil.rmtree(run.logs_dir, ignore_errors=True)
        stop = t.early_stopping_patience
        over = start_epoch >= t.epochs or bool(best and best.get("averaged_epochs")) or (
            stop is not None and best is not None and start_epoch - best["epoch"] >= stop)
        if not over:
            if start_epoch or start_step:
                _say(t, f"resuming at epoch {start_epoch + 1} of {t.epochs}"
                     + (f", step {start_step + 1} of {steps}" if start_step else ""))
            train_ds = train_dataset(cfg, train_rows, start_epoch, start_step, strategy)
            scores, callbacks = make_callbacks(
                run, own, cfg, valid_ds, splits.label_names, best, (start_epoch, start_step),
                chief=chief, seeded=seeded, extra=extra_callbacks)
            model.fit(train_ds, epochs=t.epochs, steps_per_epoch=steps,
                      initial_epoch=start_epoch, callbacks=callbacks, verbose=t.progress)
            best = scores.best
            start_epoch = scores.last_epoch or start_epoch
        if best is None:  # every epoch's monitored value was NaN: keep the last weights
            keep_last_epoch(model, own, valid_ds, start_epoch, t.monitor)
        if t.average_last:
            from tfsent.callbacks import average_last_epochs

            average_last_epochs(model, own, t.average_last, start_epoch, valid_ds,
                                splits.label_names, t.monitor)
    if chief:
        write_json_atomic(run.trained_file, {"epochs": start_epoch, "planned_epochs": t.epochs,
                                             "steps_per_epoch": steps,
                                             "precision_policy": policy,
                                             "train_examples": len(splits.train)})
        shutil.rmtree(run.backup_dir, ignore_errors=True)
    else:
        remove_own()
    del model
    tf_keras.backend.clear_session()


def make_datasets(cfg: RunConfig, splits: Splits, tokenizer) -> tuple[Encoded, Any, int]:
    """The training split encoded (its batches depend on where training resumes:
    :func:`train_dataset`), the validation batches, and the number of steps of one epoch."""
    from tfsent.features import count_batches, encode, make_dataset
    from tfsent.model import model_family

    m, t = cfg.model, cfg.train
    train_rows = encode(tokenizer, splits.train.texts, m.max_length, m.truncation,
                        splits.train.labels)
    valid_rows = encode(tokenizer, splits.validation.texts, m.max_length, m.truncation,
                        splits.validation.labels)
    valid_ds = make_dataset(valid_rows, t.eval_batch_size, shuffle=False, seed=t.seed,
                            bucketing=t.bucketing, pad_to_bucket_boundary=t.jit_compile,
                            max_length=m.max_length, inputs=model_family(m.model).inputs)
    steps = count_batches(train_rows.lengths, t.batch_size, bucketing=t.bucketing,
                          max_length=m.max_length)
    return train_rows, valid_ds, steps


def train_dataset(cfg: RunConfig, train_rows: Encoded, start_epoch: int, start_step: int,
                  strategy: Any) -> Any:
    """The training batches from ``(start_epoch, start_step)`` to the last epoch, in the order
    an uninterrupted run takes them; under several workers, each worker's share of them."""
    from tfsent.distribute import is_multi_worker, shard_by_examples
    from tfsent.features import make_train_dataset
    from tfsent.model import model_family

    m, t = cfg.model, cfg.train
    train_ds, _ = make_train_dataset(
        train_rows, t.batch_size, seed=t.seed, epochs=t.epochs,
        start_epoch=start_epoch, start_step=start_step, bucketing=t.bucketing,
        pad_to_bucket_boundary=t.jit_compile, max_length=m.max_length,
        inputs=model_family(m.model).inputs)
    if is_multi_worker(strategy):  # each worker gets its share of every global batch
        train_ds = shard_by_examples(train_ds)
    return train_ds


def compile_model(cfg: RunConfig, label_names: list[str], tokenizer, steps: int,
                  strategy: Any) -> Any:
    """The model to train, compiled, in the caller's strategy scope and precision policy."""
    import tf_keras

    from tfsent.distribute import is_multi_worker
    from tfsent.model import build_model, make_optimizer

    t = cfg.train
    k = t.gradient_accumulation_steps
    if k > 1 and strategy.num_replicas_in_sync > 1:
        fail(f"--gradient-accumulation-steps {k} runs on one device, not "
             f"{strategy.num_replicas_in_sync} replicas; pass --strategy default")
    model = build_model(cfg.model.model, label_names, tokenizer)
    # The schedule counts optimizer steps: one per K batches and one at each epoch's end.
    optimizer = make_optimizer(t.learning_rate, -(-steps // k) * t.epochs, t.warmup_ratio,
                               t.weight_decay, layerwise_lr_decay=t.layerwise_lr_decay,
                               num_layers=model.config.num_hidden_layers, accumulation_steps=k)
    # No loss= : the model's built-in loss (hf_compute_loss) trains it.
    model.compile(
        optimizer=optimizer,
        metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=t.jit_compile,
    )
    if is_multi_worker(strategy):  # Keras sums the replicas' running means in the bars
        model.distribute_reduction_method = "first"
    return model


def make_callbacks(run: RunDir, own: RunDir, cfg: RunConfig, valid_ds: Any,
                   label_names: list[str], best: dict[str, Any] | None, start: tuple[int, int],
                   *, chief: bool, seeded: bool, extra: list | None) -> tuple[Any, list]:
    """tfsent's Keras callbacks, in the order they must run, then ``extra``; and the
    ``ValidationScores`` among them, which knows the best epoch once ``fit`` returns.

    ``own`` is where this worker saves (the run itself on the chief); ``start`` the
    ``(epoch, step)`` training resumes at; ``seeded``: dropout is reseeded every step.
    """
    import tf_keras

    from tfsent.callbacks import (
        AccumulationBoundary,
        Backup,
        EpochSeconds,
        ExpectStart,
        HistoryCSV,
        Prune,
        ReseedDropout,
        SnapshotLastEpochs,
        ValidationScores,
    )

    t = cfg.train
    scores = ValidationScores(own, valid_ds, label_names, t.monitor, best,
                              patience=t.early_stopping_patience)
    callbacks = [scores]  # first: it adds the val_ metrics the callbacks after it read
    if t.progress:  # after scores: the bar's epoch line shows the val_ metrics
        callbacks.append(tf_keras.callbacks.ProgbarLogger(count_mode="steps"))
    callbacks.append(EpochSeconds())
    if chief:  # the run's history and logs are the chief's to write
        callbacks += [HistoryCSV(str(run.history_csv), append=True),
                      tf_keras.callbacks.TensorBoard(str(run.logs_dir))]
    if t.average_last:  # before the backup, as the epoch's other files
        callbacks.append(SnapshotLastEpochs(own, t.average_last))
    callbacks += [
        Backup(str(own.backup_dir), t.backup_every_steps),
        Prune(own),  # after the backup: only then may the previous best go
        ExpectStart(*start),
    ]
    if seeded:
        callbacks.append(ReseedDropout(t.seed))
    if t.gradient_accumulation_steps > 1:
        callbacks.append(AccumulationBoundary())
    return scores, callbacks + (extra or [])


def keep_last_epoch(model: Any, own: RunDir, valid_ds: Any, epoch: int, monitor: str) -> None:
    """Save the last epoch as the best one: what is kept when every epoch's monitored value
    was NaN (no epoch was better than another)."""
    from tfsent.callbacks import save_epoch_files
    from tfsent.evaluate import predict_logits

    labels, logits = predict_logits(model, valid_ds)
    save_epoch_files(model, own, epoch, labels, logits)
    best = {"epoch": epoch, "monitor": monitor, "value": float("nan"), "val_loss": None}
    write_json_atomic(own.best_file, {**best, "previous": None})


def finish(run: RunDir, cfg: RunConfig, splits: Splits, tokenizer,
           evaluate_test: bool = True) -> dict[str, Any]:
    """Save the best epoch as ``model/``, evaluate it, calibrate, plot, write ``metrics.json``.

    Every step works from files (the best epoch's weights and validation predictions in
    ``checkpoints/``), so a rerun after a kill anywhere in here gives the same metrics.json.
    """
    import tf_keras

    from tfsent.callbacks import load_predictions
    from tfsent.evaluate import evaluate_split, plot_training_curves, predict_split
    from tfsent.features import encode
    from tfsent.model import build_model, family_of, float32_policy

    m, t = cfg.model, cfg.train
    trained, best = run.trained, run.best
    if not run.has_model:
        with float32_policy():
            model = build_model(m.model, splits.label_names, tokenizer)
            model.load_weights(str(run.epoch_weights(best["epoch"])))
            staging = run.path / f".model.tmp-{os.getpid()}"
            model.save_pretrained(staging)
            shutil.rmtree(run.model_dir, ignore_errors=True)
            os.replace(staging, run.model_dir)
        del model
        tf_keras.backend.clear_session()
    _say(t, f"restored epoch {best['epoch']} of {trained['epochs']} "
         f"({best['monitor']} {best['value']:.4f}"
         + (f", val_loss {best['val_loss']:.4f})" if best["monitor"] != "val_loss"
            and best["val_loss"] is not None else ")"))

    model = run.load_model()  # float32: the model that evaluate and export load
    history = run.history_rows()
    seconds = sum(float(r.get("seconds") or 0) for r in history)
    metrics: dict[str, Any] = {
        "best_epoch": best["epoch"],  # from 1, as Keras prints "Epoch 3/4"
        "epochs": trained["epochs"],
        "monitor": best["monitor"],
        "train_seconds": seconds,
        "train_examples_per_second": (trained["train_examples"] * len(history) / seconds
                                      if seconds else None),
        "precision_policy": trained["precision_policy"],
    }
    if best.get("averaged_epochs"):  # --average-last: the mean of these epochs' weights
        metrics["averaged_epochs"] = best["averaged_epochs"]
    # The best epoch's validation predictions, made while it trained: no second pass.
    labels, logits = load_predictions(run, best["epoch"])
    metrics["validation"] = evaluate_split(model, None, splits.label_names, run.path,
                                           "validation", (labels, logits))
    # Calibration plugs in here, on the best epoch's validation predictions: temperature
    # scaling (T = 1 with --calibration none); the export divides the serving graph's logits
    # by it.
    from tfsent.calibration import calibrate_run

    metrics["calibration"] = calibrate_run(run.path, labels, logits, t.calibration)
    temperature = metrics["calibration"]["temperature"]
    if evaluate_test and splits.test is not None:
        test = encode(tokenizer, splits.test.texts, m.max_length, m.truncation, splits.test.labels)
        predictions = predict_split(model, test, t.eval_batch_size, bucketing=t.bucketing,
                                    max_length=m.max_length,
                                    inputs=family_of(model.config.model_type).inputs,
                                    progress=t.progress)
        metrics["test"] = evaluate_split(model, None, splits.label_names, run.path, "test",
                                         predictions, temperature=temperature)
    plot_training_curves(run.history_csv, run.training_curves_png,
                         best_epoch=best["epoch"] - 1)  # it counts from 0, as history.csv
    write_json_atomic(run.metrics_file, metrics)
    _write_card(run)
    del model
    tf_keras.backend.clear_session()
    return metrics


def export(run: RunDir, cfg: RunConfig, metrics: dict[str, Any]) -> dict[str, Any]:
    """Export the finished run to ``--export-dir`` once: a rerun after a kill during the export
    finishes the version it had started (``checkpoints/export.json``) instead of adding one."""
    t = cfg.train
    if not t.export_dir or metrics.get("export"):
        return metrics
    from tfsent.export import export_run
    from tfsent.versions import existing_versions, next_version

    base = Path(t.export_dir) / t.model_name
    marker = read_json(run.export_marker) or {}
    version = marker.get("version") if marker.get("base") == str(base.resolve()) else None
    path = None
    if version is not None and (base / str(version) / "saved_model.pb").is_file():
        path = base / str(version)  # renamed into place just before the kill
    if path is None:  # (export_run removes the staging folder a killed export left)
        if version is None or version in existing_versions(base):
            version = next_version(base)
        write_json_atomic(run.export_marker, {"base": str(base.resolve()), "version": version})
        path = export_run(run.path, t.export_dir, t.model_name, version)
    metrics["export"] = str(path)
    write_json_atomic(run.metrics_file, metrics)
    run.export_marker.unlink(missing_ok=True)
    _write_card(run)
    return metrics


def worker_result(strategy: Any) -> dict[str, Any]:
    """What :func:`fit` returns on a multi-worker worker other than the chief: the chief
    alone saves, evaluates and exports the run."""
    from tfsent.distribute import worker_name

    return {"worker": worker_name(strategy)}


def _write_card(run: RunDir) -> None:
    from tfsent.card import write_model_card

    write_model_card(run)  # README.md: the folder is a Hub model repo


def _say(t: TrainConfig, line: str) -> None:
    if t.progress:
        print(line, flush=True)


def summary(cfg: RunConfig, metrics: dict[str, Any]) -> str:
    """The lines a finished ``python -m tfsent.fit`` ends with: results, files, next commands."""
    run = RunDir(cfg.train.output_dir)
    if "worker" in metrics:
        return (f"{'worker:':12}{metrics['worker']} done; the chief writes the run to "
                f"{run.path}/")
    lines = []
    for split in ("validation", "test"):
        if split in metrics:
            s = metrics[split]
            lines.append(f"{split + ':':12}accuracy {s['accuracy']:.4f}, macro F1 "
                         f"{s['f1_macro']:.4f} ({s['examples']:,} reviews)")
    plots = ", ".join(p.name for p in run.plots())
    lines.append(f"{'run:':12}{run.path}/  metrics.json; {plots}")
    export_path = metrics.get("export")
    if export_path:
        base = Path(export_path).parent
        lines.append(f"{'export:':12}{export_path}")
        lines.append(f"{'next:':12}python -m tfsent.predict --saved-model {base} "
                     '"a wonderful, moving film"')
        if missing_module(SERVE_MODULES):  # e.g. after the Quickstart's [train] install
            lines.append(f"{'':12}{install_command('serve')}")
        lines.append(f"{'':12}python -m tfsent.serve --model_name={base.name} "
                     f"--model_base_path={base}")
    else:
        lines.append(f"{'next:':12}python -m tfsent.export --run-dir {run.path} "
                     f"--export-dir exported --model-name {cfg.train.model_name}")
        lines.append(f"{'':12}python -m tfsent.evaluate --run-dir {run.path}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    require_extra("train", TRAIN_MODULES, "training")
    from tfsent.config import HubConfig, chosen_options
    from tfsent.data import load_splits
    from tfsent.push import check_repo_id, push_run

    argv = list(sys.argv[1:] if argv is None else argv)
    types = (DataConfig, ModelConfig, TrainConfig, HubConfig, CliOptions)
    data_cfg, model_cfg, train_cfg, hub_cfg, options = parse_args(
        types, DESCRIPTION, argv, prog="python -m tfsent.fit")
    configure_logging(options.verbose)
    if "progress" not in chosen_options(types, argv) and not sys.stdout.isatty():
        train_cfg.progress = 2  # a log file gets one line per epoch, not bars redrawn with \b
    cfg = RunConfig(data_cfg, model_cfg, train_cfg).check()
    if hub_cfg.push_to_hub:
        check_repo_id(hub_cfg.push_to_hub)  # before training, not after
    # The run folder and the data are checked before TensorFlow loads (10 s and more), so that
    # a wrong path or column is said at once.
    action = plan_run(RunDir(cfg.train.output_dir), cfg)
    splits = None if action == EXPORT else load_splits(cfg.data, cfg.train.seed)
    metrics = fit(cfg, splits=splits)
    print(summary(cfg, metrics))
    if hub_cfg.push_to_hub and "worker" not in metrics:  # the chief pushes
        url = push_run(cfg.train.output_dir, hub_cfg.push_to_hub, token=hub_cfg.hub_token,
                       private=hub_cfg.hub_private, saved_model=metrics.get("export"))
        print(f"{'pushed:':12}{url}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
