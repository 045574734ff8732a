"""Accuracy: fine-tune MiniLM on real IMDB reviews with ``tfsent.fit``, next to the papers.

A thin wrapper around :func:`tfsent.fit.fit` with the recommended settings: the real IMDB train
split minus a stratified, seeded 5,000-review validation split; max length 256, head+tail
truncation; length bucketing; ``--mixed-precision auto``; one epoch at lr 5e-5 (MiniLM wants a
higher rate than BERT-base's 2e-5), batch 16; exported at the end to ``exported/tfsent/<N>``.
It records validation accuracy and macro F1, the temperature fitted on the validation split with
the expected calibration error (15 bins) before and after it, the time taken, the run and export
paths, and the published IMDB figures to read them against (those are on the 25,000-review test
set, which the train tarball does not hold; the validation split here is held out from train and
never trained on).

    python -m benchmarks.accuracy                        # hours per epoch on 2 CPU cores
    python -m benchmarks.accuracy --epochs 2 --learning-rate 3e-5
    python -m benchmarks.accuracy --quick                # demo reviews, tiny model, 1 epoch
    python -m benchmarks.accuracy --preset imdb-minilm   # fit's preset, as it ships

With ``--preset`` the run is ``python -m tfsent.fit --config <preset>`` with only the data, model,
output and export paths replaced (and, with ``--quick``, the tiny model's length, one epoch and
200 reviews); the options above that shape training are then ignored.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.record import (
    Skipped,
    make_parser,
    markdown_table,
    report_skip,
    start_run,
    write_result,
)
from benchmarks.sources import (
    DEMO,
    TINY,
    add_fine_tune_args,
    describe_model,
    resolve_data,
    resolve_model,
)
from tfsent.config import preset_names
from tfsent.errors import fail, run_cli

NAME = "accuracy"
QUICK_TRAIN_SAMPLES = 200
PUBLISHED = [
    {"model": "BERT-base, fine-tuned (head+tail truncation)", "imdb_test_accuracy": 0.946,
     "source": "Sun et al. 2019, How to Fine-Tune BERT for Text Classification? (~5.4% error)"},
    {"model": "DistilBERT", "imdb_test_accuracy": 0.928,
     "source": "Sanh et al. 2019, DistilBERT, a distilled version of BERT"},
]


def parse_args(argv: Sequence[str] | None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    add_fine_tune_args(parser)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--truncation", default="head+tail", choices=("head", "tail", "head+tail"))
    parser.add_argument("--validation-size", type=float, default=5000,
                        help="Reviews held out from train for validation (--quick: 0.2).")
    parser.add_argument("--max-train-samples", type=int,
                        help="Train on at most this many reviews (default: all; "
                        f"{QUICK_TRAIN_SAMPLES} with --quick).")
    parser.add_argument("--mixed-precision", default="auto",
                        choices=("auto", "no", "mixed_bfloat16", "mixed_float16"))
    parser.add_argument("--output-dir", default="runs/benchmark-accuracy",
                        help="Run directory (replaced if it holds a finished run; --quick: a "
                        "temporary one).")
    parser.add_argument("--export-dir", default="exported",
                        help="Export base path (--quick: a temporary one).")
    parser.add_argument("--model-name", default="tfsent")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--preset", choices=preset_names(),
                        help="Run this fit preset as it ships instead of the options above.")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        fail("--epochs and --batch-size must be at least 1")
    return args


def run_config(args, data: str, model: str, output_dir: str, export_dir: str):
    """The ``tfsent.fit`` run this benchmark is."""
    from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig, parse_args

    if args.preset:
        argv = ["--config", args.preset, "--dataset", data, "--model", model,
                "--output-dir", output_dir, "--overwrite-output-dir", "--export-dir", export_dir,
                "--model-name", args.model_name, "--progress", "2"]
        if args.quick:
            argv += ["--max-length", "64", "--epochs", "1", "--validation-size",
                     str(args.validation_size), "--max-train-samples",
                     str(args.max_train_samples), "--gradient-accumulation-steps", "1"]
        return RunConfig(*parse_args((DataConfig, ModelConfig, TrainConfig), "", argv))
    return RunConfig(
        DataConfig(dataset=data, validation_size=args.validation_size,
                   max_train_samples=args.max_train_samples),
        ModelConfig(model=model, max_length=args.max_length, truncation=args.truncation),
        TrainConfig(output_dir=output_dir, overwrite_output_dir=True, epochs=args.epochs,
                    batch_size=args.batch_size, learning_rate=args.learning_rate,
                    seed=args.seed, bucketing=True, mixed_precision=args.mixed_precision,
                    export_dir=export_dir, model_name=args.model_name, progress=2),
    )


def measure(args, data: str, model: str, output_dir: str, export_dir: str) -> dict[str, Any]:
    from tfsent.fit import fit

    cfg = run_config(args, data, model, output_dir, export_dir)
    started = time.perf_counter()
    metrics = fit(cfg)
    seconds = time.perf_counter() - started
    valid = metrics["validation"]
    return {
        "settings": {"data": data, "model": describe_model(model), "preset": args.preset,
                     "fit_config": cfg.to_dict()},
        "validation": {"examples": valid["examples"], "accuracy": valid["accuracy"],
                       "f1_macro": valid["f1_macro"], "loss": valid["loss"]},
        "test": ({k: metrics["test"][k] for k in ("examples", "accuracy", "f1_macro")}
                 if "test" in metrics else None),
        "train_seconds": metrics["train_seconds"],
        "train_examples_per_second": metrics["train_examples_per_second"],
        # The whole fit: data, training, validation, calibration and export.
        "fit_seconds": seconds,
        "precision_policy": metrics["precision_policy"],
        # The temperature fitted on the validation split and the ECE (15 bins) before/after it.
        "calibration": metrics.get("calibration"),
        "run_dir": output_dir,
        "export_path": metrics.get("export"),
        "published": PUBLISHED,
        "note": "validation is held out from the IMDB train split; the published figures are "
                "IMDB test-set accuracies",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_run()
    if args.quick:
        data, model = args.data or DEMO, args.model or TINY
        if args.validation_size == 5000:
            args.validation_size = 0.2  # demo holds 1,200 training reviews
        if args.max_train_samples is None:
            args.max_train_samples = QUICK_TRAIN_SAMPLES
    else:
        try:
            data, model = resolve_data(args.data, False), resolve_model(args.model, False)
        except Skipped as why:
            return report_skip(NAME, str(why))
    if args.quick:
        with tempfile.TemporaryDirectory(prefix="tfsent-accuracy-") as tmp:
            numbers = measure(args, data, model, str(Path(tmp) / "run"),
                              str(Path(tmp) / "exported"))
    else:
        numbers = measure(args, data, model, args.output_dir, args.export_dir)
    result = write_result(NAME, argv, args.quick, args.results_dir, numbers,
                          started=started)
    print(table(result))
    return 0


def table(result: dict[str, Any]) -> str:
    v = result["validation"]
    rows = [[f"{result['settings']['model']} (tfsent, this run)",
             f"{100 * v['accuracy']:.2f}% validation ({v['examples']:,} held out)",
             f"{v['f1_macro']:.4f}", f"{result['train_seconds'] / 60:.1f} min"]]
    rows += [[p["model"], f"{100 * p['imdb_test_accuracy']:.1f}% test (published)", "", p["source"]]
             for p in result["published"]]
    headers = ["model", "accuracy", "macro F1", "train time / source"]
    c = result.get("calibration")  # results recorded before calibration have none
    if c:
        headers.insert(3, "ECE raw -> at T (15 bins)")
        rows[0].insert(3, f"{100 * c['ece_before']:.2f}% -> {100 * c['ece_after']:.2f}% "
                          f"(T = {c['temperature']:.3f})")
        for row in rows[1:]:
            row.insert(3, "")
    return markdown_table(headers, rows)


if __name__ == "__main__":
    sys.exit(run_cli(main))
