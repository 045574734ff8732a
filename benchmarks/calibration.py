"""Calibration: ECE before and after temperature scaling, on a reduced real MiniLM run.

``tfsent.fit`` on real IMDB reviews (all-MiniLM-L6-v2, max length 128, one epoch over 2,000
training reviews) fits the temperature on a 1,000-review validation split; the run then scores
1,000 further reviews held out from the same tarball (never trained on, not used to fit the
temperature) at that temperature. It records accuracy, the temperature, and the expected
calibration error (15 bins) and NLL before and after, on both. This is a REDUCED run, sized to
take about 20 minutes on 2 CPU cores; ``benchmarks.accuracy`` records the same figures for the
full run (its validation split only).

    python -m benchmarks.calibration
    python -m benchmarks.calibration --max-train-samples 4000 --max-length 256
    python -m benchmarks.calibration --quick             # demo reviews, tiny model
"""

from __future__ import annotations

import csv
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
from tfsent.errors import fail, run_cli

NAME = "calibration"
QUICK = {"max_train_samples": 200, "validation_size": 200, "test_size": 200, "max_length": 64}
FULL = {"max_train_samples": 2000, "validation_size": 1000, "test_size": 1000, "max_length": 128}


def parse_args(argv: Sequence[str] | None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    add_fine_tune_args(parser)
    parser.add_argument("--max-length", type=int,
                        help=f"Tokens per review (default {FULL['max_length']}; "
                        f"--quick {QUICK['max_length']}).")
    parser.add_argument("--max-train-samples", type=int,
                        help=f"Training reviews (default {FULL['max_train_samples']:,}; "
                        f"--quick {QUICK['max_train_samples']}).")
    parser.add_argument("--validation-size", type=int,
                        help="Reviews held out from train to fit the temperature on (default "
                        f"{FULL['validation_size']:,}; --quick {QUICK['validation_size']}).")
    parser.add_argument("--test-size", type=int,
                        help="Further held-out reviews scored at the fitted temperature "
                        f"(default {FULL['test_size']:,}; --quick {QUICK['test_size']}).")
    parser.add_argument("--mixed-precision", default="auto",
                        choices=("auto", "no", "mixed_bfloat16", "mixed_float16"))
    parser.add_argument("--output-dir", default="runs/benchmark-calibration",
                        help="Run directory (replaced if it holds a finished run; --quick: a "
                        "temporary one).")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("epochs", "batch_size", "max_train_samples", "validation_size", "test_size"):
        if getattr(args, key) < 1:
            fail(f"--{key.replace('_', '-')} must be at least 1")
    return args


def write_held_out(data: str, args, path: Path) -> int:
    """Write ``args.test_size`` reviews of ``data``'s train split that the run neither trains
    on nor validates on (compared by text) to the CSV ``path``; return how many."""
    from tfsent.config import DataConfig
    from tfsent.data import load_splits, read_source, subsample, to_dataset

    cfg = DataConfig(dataset=data, validation_size=args.validation_size,
                     max_train_samples=args.max_train_samples)
    splits = load_splits(cfg, args.seed)  # exactly the run's own train and validation reviews
    used = set(splits.train.texts) | set(splits.validation.texts)
    every = to_dataset(read_source(data, cfg)["train"])
    rest = every.select([i for i, text in enumerate(every.texts) if text not in used])
    if len(rest) < args.test_size:
        fail(f"only {len(rest)} reviews are left for --test-size {args.test_size}; lower it or "
             "--max-train-samples / --validation-size")
    held_out = subsample(rest, args.test_size, args.seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((text, held_out.label_names[label])
                         for text, label in zip(held_out.texts, held_out.labels, strict=True))
    return len(held_out)


def run_config(args, data: str, model: str, output_dir: str, test_csv: str):
    """The ``tfsent.fit`` run this benchmark is."""
    from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    return RunConfig(
        DataConfig(dataset=data, validation_size=args.validation_size,
                   max_train_samples=args.max_train_samples, test_data=test_csv),
        ModelConfig(model=model, max_length=args.max_length, truncation="head+tail"),
        TrainConfig(output_dir=output_dir, overwrite_output_dir=True, epochs=args.epochs,
                    batch_size=args.batch_size, learning_rate=args.learning_rate,
                    seed=args.seed, mixed_precision=args.mixed_precision,
                    calibration="temperature", progress=2),
    )


def measure(args, data: str, model: str, output_dir: str, test_csv: Path) -> dict[str, Any]:
    from tfsent.fit import fit

    test_csv.parent.mkdir(parents=True, exist_ok=True)
    write_held_out(data, args, test_csv)
    cfg = run_config(args, data, model, output_dir, str(test_csv))
    started = time.perf_counter()
    metrics = fit(cfg)
    seconds = time.perf_counter() - started

    def split(m: dict[str, Any]) -> dict[str, Any]:
        return {k: m[k] for k in ("examples", "accuracy", "f1_macro", "loss")}

    return {
        "settings": {"data": data, "model": describe_model(model), "reduced": True,
                     "test_size": args.test_size, "fit_config": cfg.to_dict()},
        "validation": split(metrics["validation"]),
        "calibration": metrics["calibration"],
        "test": split(metrics["test"]) | {"calibration": metrics["test"]["calibration"]},
        "train_seconds": metrics["train_seconds"],
        "total_seconds": seconds,
        "precision_policy": metrics["precision_policy"],
        "run_dir": output_dir,
        "note": "reduced run (not the full accuracy run): the temperature is fitted on the "
                "validation split; 'test' is further reviews of the same train tarball, held out "
                "from training and from the temperature fit",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_run()
    if args.quick:  # a smoke run: seconds, not the real tarball's minutes
        data, model = resolve_data(args.data or DEMO, True), resolve_model(args.model or TINY, True)
    else:
        try:
            data, model = resolve_data(args.data, False), resolve_model(args.model, False)
        except Skipped as why:
            return report_skip(NAME, str(why))
    if args.quick:
        with tempfile.TemporaryDirectory(prefix="tfsent-calibration-") as tmp:
            numbers = measure(args, data, model, str(Path(tmp) / "run"),
                              Path(tmp) / "held_out.csv")
    else:
        # Beside the run, not in it (fit replaces a finished run's folder), so that the run's
        # config.json keeps pointing at its test data: python -m tfsent.evaluate works on it.
        output = Path(args.output_dir)
        numbers = measure(args, data, model, args.output_dir,
                          output.with_name(f"{output.name}-held-out.csv"))
    result = write_result(NAME, argv, args.quick, args.results_dir, numbers,
                          started=started)
    print(table(result))
    return 0


def table(result: dict[str, Any]) -> str:
    """Accuracy, ECE and NLL before and after the temperature, on each split."""
    t = result["calibration"]["temperature"]
    rows = []
    for name, split, c in (
        ("validation (T fitted here)", result["validation"], result["calibration"]),
        ("held-out reviews", result["test"], result["test"]["calibration"]),
    ):
        rows.append([name, f"{split['examples']:,}", f"{100 * split['accuracy']:.2f}%",
                     f"{100 * c['ece_before']:.2f}%", f"{100 * c['ece_after']:.2f}%",
                     f"{c['nll_before']:.4f}", f"{c['nll_after']:.4f}"])
    fit_cfg = result["settings"]["fit_config"]
    return "\n".join([
        markdown_table(["split", "reviews", "accuracy", "ECE raw", f"ECE at T = {t:.3f}",
                        "NLL raw", f"NLL at T = {t:.3f}"], rows),
        "",
        f"{result['settings']['model']}, reduced run: {fit_cfg['data']['max_train_samples']:,} "
        f"training reviews, {fit_cfg['train']['epochs']} epoch(s), max length "
        f"{fit_cfg['model']['max_length']}, {result['train_seconds'] / 60:.1f} min of fit "
        f"({result['precision_policy']}); ECE over {result['calibration']['bins']} equal-width "
        "confidence bins.",
    ])


if __name__ == "__main__":
    sys.exit(run_cli(main))
