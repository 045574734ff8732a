"""Fit: fine-tune ``TFBertForSequenceClassification`` with Keras ``fit``, end to end.

The whole run reads top to bottom in :func:`fit`: data, tokenizer, features, model (compiled with
its built-in loss: no ``loss=``), callbacks, ``model.fit``, evaluation, save, optional export.

    python -m tfsent.fit --config demo                      # offline demo, about a minute on CPU
    python -m tfsent.fit --dataset stanfordnlp/imdb --model bert-base-uncased --mixed-precision auto
    python -m tfsent.fit --dataset reviews.csv --text-column review --label-column stars

A killed run resumes where it stopped when started again with the same ``--output-dir``
(Keras ``BackupAndRestore``).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tfsent.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    monitor_mode,
    parse_args,
)
from tfsent.errors import fail, run_cli

PRESETS = Path(__file__).parent / "presets"


def prepare_run_dir(cfg: RunConfig) -> tuple[Path, bool]:
    """The run directory, and whether an interrupted run in it is to be resumed."""
    run_dir = Path(cfg.train.output_dir)
    finished = (run_dir / "metrics.json").exists()
    if finished and not cfg.train.overwrite_output_dir:
        fail(f"{run_dir} holds a finished run; pass --overwrite-output-dir or another --output-dir")
    if run_dir.exists() and not run_dir.is_dir():
        fail(f"--output-dir {run_dir} is a file; pass a directory")
    backup = run_dir / "backup"
    return run_dir, not finished and backup.is_dir() and any(backup.iterdir())


def fit(cfg: RunConfig, extra_callbacks: list | None = None) -> dict[str, Any]:
    """Train, evaluate and save one run; return its metrics (also in ``metrics.json``).

    ``extra_callbacks`` are Keras callbacks added to tfsent's own (e.g. to watch or stop a run).
    """
    import tf_keras

    from tfsent.data import load_splits
    from tfsent.evaluate import evaluate_split, plot_training_curves, validation_scores
    from tfsent.features import encode, make_dataset
    from tfsent.model import (
        TINY,
        build_model,
        build_tiny_tokenizer,
        load_tokenizer,
        make_optimizer,
        make_strategy,
        precision_policy,
        resolve_precision,
    )

    run_dir, resuming = prepare_run_dir(cfg)
    tf_keras.utils.set_random_seed(cfg.train.seed)

    # Data and tokenizer first: bad input fails here, before anything is written.
    splits = load_splits(cfg.data, cfg.train.seed)
    if resuming and (run_dir / "tokenizer").is_dir():
        tokenizer = load_tokenizer(str(run_dir / "tokenizer"))  # a tiny vocab is not retrained
    elif cfg.model.model == TINY and cfg.model.tokenizer is None:
        tokenizer = build_tiny_tokenizer(splits.train.texts, cfg.model.tiny_vocab_size)
    else:
        tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.model)

    m = cfg.model
    train = encode(tokenizer, splits.train.texts, m.max_length, m.truncation, splits.train.labels)
    valid = encode(tokenizer, splits.validation.texts, m.max_length, m.truncation,
                   splits.validation.labels)
    t = cfg.train
    train_ds = make_dataset(train, t.batch_size, shuffle=True, seed=t.seed, bucketing=t.bucketing,
                            pad_to_bucket_boundary=t.jit_compile, max_length=m.max_length,
                            shuffle_buffer=t.shuffle_buffer)
    valid_ds = make_dataset(valid, t.eval_batch_size, shuffle=False, seed=t.seed,
                            bucketing=t.bucketing, pad_to_bucket_boundary=t.jit_compile,
                            max_length=m.max_length)

    policy = resolve_precision(t.mixed_precision)
    with precision_policy(policy), make_strategy(t.strategy).scope():
        model = build_model(m.model, splits.label_names, tokenizer)
        steps = math.ceil(len(train) / t.batch_size) * t.epochs
        optimizer = make_optimizer(t.learning_rate, steps, t.warmup_ratio, t.weight_decay)
        # No loss= : the model's built-in loss (hf_compute_loss) trains it.
        model.compile(
            optimizer=optimizer,
            metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=t.jit_compile,
        )
        # The model loaded, so the input is good: only now is anything written.
        if (run_dir / "metrics.json").exists():  # --overwrite-output-dir
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.json")
        tokenizer.save_pretrained(run_dir / "tokenizer")
        best_weights = run_dir / "checkpoints" / "best.weights.h5"
        best_weights.parent.mkdir(exist_ok=True)
        best_file = run_dir / "checkpoints" / "best.json"
        # A resumed run keeps the best score of the epochs before the interrupt (Keras'
        # ModelCheckpoint would start again from nothing and overwrite the best weights).
        best = (json.loads(best_file.read_text())["value"]
                if resuming and best_weights.exists() and best_file.exists() else None)
        mode = monitor_mode(t.monitor)
        scores = validation_scores(valid_ds, splits.label_names, t.monitor, best, best_file)
        callbacks = [
            scores,  # first: it adds the val_ metrics the callbacks after it read
            tf_keras.callbacks.BackupAndRestore(
                str(run_dir / "backup"), save_freq=t.backup_every_steps or "epoch"
            ),
            tf_keras.callbacks.ModelCheckpoint(str(best_weights), monitor=t.monitor, mode=mode,
                                               save_best_only=True, save_weights_only=True,
                                               initial_value_threshold=best),
            tf_keras.callbacks.TensorBoard(str(run_dir / "logs")),
            tf_keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resuming),
        ]
        if t.early_stopping_patience is not None:
            callbacks.append(tf_keras.callbacks.EarlyStopping(
                monitor=t.monitor, mode=mode, patience=t.early_stopping_patience))
        callbacks += extra_callbacks or []
        if t.verbose:  # Keras would put its progress bar first, before the val_ metrics exist
            callbacks.append(tf_keras.callbacks.ProgbarLogger(count_mode="steps"))

        started = time.perf_counter()
        history = model.fit(train_ds, epochs=t.epochs, callbacks=callbacks, verbose=t.verbose)
        seconds = time.perf_counter() - started
    shutil.rmtree(run_dir / "backup", ignore_errors=True)  # Keras leaves the empty folder

    if best_weights.exists():
        model.load_weights(str(best_weights))
    model.save_pretrained(run_dir / "model")

    # The best epoch's predictions are those of the weights just loaded. None when no epoch
    # since a resume beat the best before it: then the validation split is scored again.
    predictions = scores.best_predictions
    metrics: dict[str, Any] = {
        "validation": evaluate_split(model, valid_ds, splits.label_names, run_dir, "validation",
                                     predictions),
        "train_seconds": seconds,
        "train_examples_per_second": len(train) * len(history.epoch) / seconds,
        "precision_policy": policy,
    }
    if splits.test is not None:
        test = encode(tokenizer, splits.test.texts, m.max_length, m.truncation, splits.test.labels)
        test_ds = make_dataset(test, t.eval_batch_size, shuffle=False, seed=t.seed,
                               bucketing=t.bucketing, max_length=m.max_length)
        metrics["test"] = evaluate_split(model, test_ds, splits.label_names, run_dir, "test")
    plot_training_curves(run_dir / "history.csv", run_dir / "training_curves.png")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    tf_keras.backend.clear_session()

    if t.export_dir:
        from tfsent.export import export_run

        metrics["export"] = str(export_run(run_dir, t.export_dir, t.model_name))
    return metrics


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = _expand_preset(argv)
    data_cfg, model_cfg, train_cfg = parse_args(
        (DataConfig, ModelConfig, TrainConfig),
        "Fine-tune BERT for sentiment (TFBertForSequenceClassification, Keras fit).",
        argv,
        prog="python -m tfsent.fit",
    )
    cfg = RunConfig(data_cfg, model_cfg, train_cfg)
    metrics = fit(cfg)
    v = metrics["validation"]
    print(f"validation accuracy {v['accuracy']:.4f}, macro F1 {v['f1_macro']:.4f} "
          f"({v['examples']} examples); run saved in {cfg.train.output_dir}")
    if "test" in metrics:
        print(f"test accuracy {metrics['test']['accuracy']:.4f}")
    if "export" in metrics:
        print(f"exported {metrics['export']}")
    return 0


def _expand_preset(argv: list[str]) -> list[str]:
    """``--config demo`` names a preset shipped in ``tfsent/presets/``."""
    for i, arg in enumerate(argv):
        value = None
        if arg == "--config" and i + 1 < len(argv):
            value, where = argv[i + 1], i + 1
        elif arg.startswith("--config="):
            value, where = arg.split("=", 1)[1], i
        if value is not None and not Path(value).exists() and (PRESETS / f"{value}.yaml").is_file():
            argv[where] = ("--config=" if where == i else "") + str(PRESETS / f"{value}.yaml")
    return argv


if __name__ == "__main__":
    sys.exit(run_cli(main))
