"""Calibration (temperature scaling, ECE, reliability diagram) and the evaluation plots."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tfsent.calibration import (
    BINS,
    TEMPERATURE_BOUNDS,
    calibrate,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    nll,
    plot_reliability_diagram,
    reliability_bins,
    softmax,
)
from tfsent.errors import UserError
from tfsent.evaluate import plot_confusion_matrix, plot_training_curves

CALIBRATION_KEYS = ["method", "temperature", "ece_before", "ece_after", "nll_before", "nll_after",
                    "bins"]


def overconfident(n: int, temperature: float, classes: int = 2, seed: int = 0):
    """Logits and labels drawn from ``softmax(logits / temperature)``: the logits are
    ``temperature`` times too confident, so the calibrating temperature is ``temperature``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, classes))
    probabilities = softmax(logits, temperature)
    labels = np.array([rng.choice(classes, p=p) for p in probabilities])
    return labels, logits


# --- ECE ------------------------------------------------------------------------------------


def test_ece_matches_a_hand_computed_example():
    # Three classes; the confidence is the top probability, correct when its class is the label.
    probabilities = np.array([
        [0.95, 0.03, 0.02],  # bin 14 (0.933, 1]: right
        [0.01, 0.97, 0.02],  # bin 14: right
        [0.02, 0.02, 0.96],  # bin 14: wrong (label 0)
        [0.62, 0.30, 0.08],  # bin 9 (0.6, 0.667]: right
        [0.20, 0.16, 0.64],  # bin 9: wrong (label 1)
        [0.25, 0.55, 0.20],  # bin 8 (0.533, 0.6]: right
    ])
    labels = np.array([0, 1, 0, 0, 1, 1])
    b = reliability_bins(labels, probabilities)
    assert b["count"].tolist() == [0] * 8 + [1, 2] + [0] * 4 + [3]
    assert b["accuracy"][[8, 9, 14]] == pytest.approx([1.0, 0.5, 2 / 3])
    assert b["confidence"][[8, 9, 14]] == pytest.approx([0.55, 0.63, 0.96])
    # sum over bins of (n_k / n) |acc_k - conf_k|
    hand = (1 * 0.45 + 2 * 0.13 + 3 * abs(2 / 3 - 0.96)) / 6
    assert hand == pytest.approx(0.265)
    assert expected_calibration_error(labels, probabilities) == pytest.approx(hand)


@pytest.mark.parametrize(("confidence", "bin_index"), [
    (1.0, BINS - 1),            # the top edge belongs to the last bin
    (0.5, 7),                   # a two-class tie: (7/15, 8/15]
    (0.5 + 1e-9, 7),
    (14 / 15 + 1e-9, BINS - 1),
    (14 / 15 - 1e-9, BINS - 2),
    (np.linspace(0, 1, BINS + 1)[12], 11),  # on an edge: the bin below, (k-1)/15 < c <= k/15
    (np.linspace(0, 1, BINS + 1)[8], 7),
])
def test_bins_are_right_closed_equal_width(confidence, bin_index):
    b = reliability_bins([0], np.array([[confidence, 1 - confidence]]))
    assert b["count"].tolist() == [int(k == bin_index) for k in range(BINS)]
    assert b["edges"] == pytest.approx(np.arange(BINS + 1) / BINS)


def test_ece_is_zero_when_confidence_matches_accuracy_and_nan_without_examples():
    # Four predictions at confidence 0.75, three of them right.
    probabilities = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error([0, 0, 0, 1], probabilities) == pytest.approx(0.0)
    assert math.isnan(expected_calibration_error([], np.zeros((0, 2))))


# --- temperature ----------------------------------------------------------------------------


@pytest.mark.parametrize("true_temperature", [0.5, 2.0, 4.0])
def test_fitted_temperature_recovers_the_one_the_labels_were_drawn_with(true_temperature):
    labels, logits = overconfident(20_000, true_temperature, classes=3)
    t = fit_temperature(labels, logits)
    assert t == pytest.approx(true_temperature, rel=0.05)
    # It is the NLL's minimum: a fine grid over log T finds nothing lower.
    grid = np.exp(np.linspace(np.log(t / 1.2), np.log(t * 1.2), 201))
    assert nll(labels, logits, t) <= min(nll(labels, logits, g) for g in grid) + 1e-9


def test_temperature_scaling_keeps_the_argmax_and_lowers_ece_and_nll():
    labels, logits = overconfident(5_000, 3.0)
    c = calibrate(labels, logits)
    assert list(c) == CALIBRATION_KEYS
    assert c["method"] == "temperature" and c["bins"] == 15
    t = c["temperature"]
    np.testing.assert_array_equal(softmax(logits, t).argmax(-1), logits.argmax(-1))
    assert c["ece_before"] > 0.1 and c["ece_after"] < 0.03
    assert c["nll_after"] < c["nll_before"]
    assert c["nll_before"] == pytest.approx(nll(labels, logits))
    assert c["ece_after"] == pytest.approx(expected_calibration_error(labels,
                                                                      softmax(logits, t)))
    assert json.loads(json.dumps(c)) == c  # metrics.json holds it as is


def _all_right(n=50):
    labels, logits = overconfident(n, 1.0)
    return logits.argmax(-1), logits


def _all_wrong(n=50):
    labels, logits = overconfident(n, 1.0)
    return 1 - logits.argmax(-1), logits


def _one_mistake_by_a_hair(n=50):
    # Right answers by a margin of 0.1 and one mistake by 1e-6: sharpening helps the right ones
    # far more than it hurts the mistake, down to T of about 0.002, so T stops at the bound.
    logits = np.tile([0.05, -0.05], (n, 1))
    logits[0] = [0.0, 1e-6]
    return np.zeros(n, np.int64), logits


@pytest.mark.parametrize(("case", "expected"), [
    # Only mistakes: the NLL keeps falling as T -> inf, so T stops at the upper bound.
    (_all_wrong, TEMPERATURE_BOUNDS[1]),
    (_one_mistake_by_a_hair, TEMPERATURE_BOUNDS[0]),
    (lambda: (np.zeros(0, np.int64), np.zeros((0, 2))), 1.0),             # no examples
    (lambda: (np.array([0, 1, 1]), np.zeros((3, 2))), 1.0),               # flat NLL
    (lambda: (np.array([0, 1]), np.array([[np.nan, 0.0], [0.0, 1.0]])), 1.0),  # diverged model
])
def test_degenerate_validation_sets_give_a_bounded_temperature(case, expected):
    labels, logits = case()
    assert fit_temperature(labels, logits) == expected


def test_a_validation_split_without_mistakes_keeps_temperature_1_with_a_warning():
    # The NLL keeps falling as T -> 0: no minimum, and sharpening would hurt unseen data.
    labels, logits = _all_right()
    assert nll(labels, logits, 0.05) < nll(labels, logits, 0.5) < nll(labels, logits, 1.0)
    with pytest.warns(UserWarning, match="all 50 validation examples are predicted right"):
        assert fit_temperature(labels, logits) == 1.0


def test_calibration_none_keeps_the_raw_softmax_and_still_reports_ece():
    labels, logits = overconfident(2_000, 3.0)
    c = calibrate(labels, logits, "none")
    assert list(c) == CALIBRATION_KEYS
    assert c["method"] == "none" and c["temperature"] == 1.0
    assert c["ece_before"] == c["ece_after"] > 0.1
    assert c["nll_before"] == c["nll_after"]
    with pytest.raises(UserError, match="unknown calibration method 'platt'"):
        calibrate(labels, logits, "platt")


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        fit_temperature([0, 1, 1], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="ids below 2"):
        nll([0, 2], np.zeros((2, 2)))


# --- plots ----------------------------------------------------------------------------------


def test_reliability_diagram_draws_the_bins_before_and_after(tmp_path):
    labels, logits = overconfident(1_000, 2.5)
    t = fit_temperature(labels, logits)
    fig = plot_reliability_diagram(labels, logits, t, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")
    top_before, top_after, hist_before, hist_after = fig.axes
    for ax, temperature in ((top_before, 1.0), (top_after, t)):
        b = reliability_bins(labels, softmax(logits, temperature))
        filled = b["count"] > 0
        heights = [bar.get_height() for bar in ax.containers[0]]
        np.testing.assert_allclose(heights, b["accuracy"][filled])
        ece = expected_calibration_error(labels, softmax(logits, temperature))
        assert f"ECE {100 * ece:.2f}%" in ax.get_title()
        diagonal = ax.lines[0]
        assert list(diagonal.get_xdata()) == [0, 1] == list(diagonal.get_ydata())
    assert "T = 1)" in top_before.get_title() and f"T = {t:.3g})" in top_after.get_title()
    for ax, temperature in ((hist_before, 1.0), (hist_after, t)):
        counts = [bar.get_height() for bar in ax.containers[0]]
        assert counts == reliability_bins(labels, softmax(logits, temperature))["count"].tolist()
    # Uncalibrated (T = 1): one panel and its histogram.
    assert len(plot_reliability_diagram(labels, logits, 1.0).axes) == 2


def test_confusion_matrix_shows_counts_and_row_percentages(tmp_path):
    fig = plot_confusion_matrix([[5, 1, 0], [2, 6, 0], [0, 0, 0]], ["a", "b", "c"],
                                tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes().startswith(b"\x89PNG")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["5\n83.3%", "1\n16.7%", "0\n0.0%", "2\n25.0%", "6\n75.0%", "0\n0.0%",
                     "0", "0", "0"]  # a class without examples has no percentages


def _history(path: Path, epochs: int) -> Path:
    rows = ["epoch,accuracy,loss,val_accuracy,val_f1_macro,val_loss"]
    rows += [f"{e},{0.6 + e / 50},{0.7 - e / 20},{0.65 + e / 60},{0.6},{0.66 - e / 40}"
             for e in range(epochs)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(("epochs", "best_epoch"), [(1, 0), (3, 1), (12, 9)])
def test_training_curves_have_integer_epochs_and_the_best_epoch_marked(tmp_path, epochs,
                                                                       best_epoch):
    fig = plot_training_curves(_history(tmp_path / "h.csv", epochs), tmp_path / "c.png",
                               best_epoch=best_epoch)
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [x for x in ax.get_xticks() if low <= x <= high]
        assert ticks and all(float(x).is_integer() for x in ticks)
        assert min(ticks) >= 1 and max(ticks) <= epochs  # epochs are numbered from 1
        marked = [line for line in ax.lines if line.get_label().startswith("best epoch")]
        assert len(marked) == 1 and list(marked[0].get_xdata()) == [best_epoch + 1] * 2
        assert marked[0].get_label() == f"best epoch ({best_epoch + 1})"
        stars = [line for line in ax.lines if line.get_marker() == "*"]
        assert len(stars) == 1 and list(stars[0].get_xdata()) == [best_epoch + 1]
    unmarked = plot_training_curves(tmp_path / "h.csv")
    assert not any(line.get_label().startswith("best") for ax in unmarked.axes
                   for line in ax.lines)


# --- in a run -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from tfsent.fit import fit

    run = tmp_path_factory.mktemp("runs") / "calibrated"
    cfg = RunConfig(
        DataConfig(dataset="demo", max_train_samples=300, max_eval_samples=150),
        ModelConfig(model="tiny", max_length=48, tiny_vocab_size=400),
        TrainConfig(output_dir=str(run), epochs=2, batch_size=32, learning_rate=3e-3, progress=0,
                    seed=1),
    )
    return run, fit(cfg)


def test_fit_stores_the_temperature_and_the_ece_in_metrics_json(calibrated_run):
    from tfsent.rundir import RunDir

    run, metrics = calibrated_run
    saved = json.loads((run / "metrics.json").read_text())
    c = saved["calibration"]
    assert list(c) == CALIBRATION_KEYS and c == metrics["calibration"]
    assert c["method"] == "temperature" and c["bins"] == 15
    lo, hi = TEMPERATURE_BOUNDS
    assert lo <= c["temperature"] <= hi and c["temperature"] != 1.0
    assert RunDir(run).temperature == c["temperature"]  # what the export divides by
    assert c["nll_after"] < c["nll_before"]
    assert c["nll_before"] == pytest.approx(saved["validation"]["loss"], rel=1e-4)
    # The test split is scored at the validation split's temperature, not refitted on it.
    test = saved["test"]["calibration"]
    assert test["temperature"] == c["temperature"] and 0 <= test["ece_after"] <= 1
    for name in ("reliability_diagram.png", "reliability_diagram_test.png",
                 "confusion_matrix.png", "training_curves.png"):
        assert (run / name).read_bytes().startswith(b"\x89PNG"), name


def test_reevaluation_reports_ece_at_the_stored_temperature(calibrated_run, capsys):
    from tfsent.errors import run_cli
    from tfsent.evaluate import evaluate_run, main

    run, metrics = calibrated_run
    again = evaluate_run(run)
    c, fitted = again["validation"]["calibration"], metrics["calibration"]
    assert c["temperature"] == fitted["temperature"]
    for key in ("ece_before", "ece_after", "nll_before", "nll_after"):
        assert c[key] == pytest.approx(fitted[key], abs=1e-4), key
    assert again["test"]["calibration"]["ece_after"] == pytest.approx(
        metrics["test"]["calibration"]["ece_after"], abs=1e-4)
    assert run_cli(main, ["--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert (f"validation: ECE (15 bins) {fitted['ece_before']:.4f} raw, "
            f"{fitted['ece_after']:.4f} at temperature {fitted['temperature']:.4g}") in out


def test_calibration_none_from_the_command_line(tmp_path):
    from tfsent.errors import run_cli
    from tfsent.fit import main
    from tfsent.rundir import RunDir

    run = tmp_path / "run"
    argv = ["--dataset", "demo", "--model", "tiny", "--max-train-samples", "100",
            "--max-eval-samples", "60", "--max-length", "32", "--tiny-vocab-size", "300",
            "--epochs", "1", "--batch-size", "32", "--progress", "0", "--output-dir", str(run),
            "--calibration", "none"]
    assert run_cli(main, argv) == 0
    c = json.loads((run / "metrics.json").read_text())["calibration"]
    assert c["method"] == "none" and c["temperature"] == 1.0 == RunDir(run).temperature
    assert c["ece_before"] == c["ece_after"] and 0 <= c["ece_before"] <= 1
    assert json.loads((run / "config.json").read_text())["train"]["calibration"] == "none"
    assert len(calibration_metrics([0], np.array([[1.0, 0.0]]), 1.0)) == 6  # no method key


# --- benchmarks -----------------------------------------------------------------------------


def test_calibration_benchmark_quick_scores_unseen_reviews_at_the_fitted_temperature(tmp_path):
    import os
    import subprocess
    import sys

    from benchmarks.calibration import table
    from benchmarks.record import command_line

    argv = ["--quick", "--results-dir", str(tmp_path)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.calibration", *argv],
                          cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "calibration.quick.json").read_text())
    assert result["command"] == command_line("calibration", argv) and result["quick"] is True
    assert not (tmp_path / "calibration.json").exists()  # smoke runs never pose as results
    assert {"cpu_model", "cores", "tensorflow"} <= set(result["machine"])
    c, held_out = result["calibration"], result["test"]["calibration"]
    assert list(c) == CALIBRATION_KEYS and c["method"] == "temperature"
    assert held_out["temperature"] == c["temperature"]  # scored at T, not refitted
    assert result["validation"]["examples"] == 200 and result["test"]["examples"] == 200
    assert result["settings"]["fit_config"]["data"]["max_train_samples"] == 200
    assert result["settings"]["reduced"] is True
    assert table(result) in proc.stdout


def test_held_out_reviews_are_disjoint_from_the_run(tmp_path):
    from argparse import Namespace

    import pandas as pd

    from benchmarks.calibration import write_held_out
    from tfsent.config import DataConfig
    from tfsent.data import load_splits

    args = Namespace(validation_size=100, max_train_samples=300, test_size=250, seed=3)
    assert write_held_out("demo", args, tmp_path / "h.csv") == 250
    held_out = pd.read_csv(tmp_path / "h.csv")
    splits = load_splits(DataConfig(dataset="demo", validation_size=100, max_train_samples=300),
                         3)
    assert not set(held_out["text"]) & (set(splits.train.texts) | set(splits.validation.texts))
    assert set(held_out["label"]) == set(splits.label_names)
    args.test_size = 10_000
    with pytest.raises(UserError, match="reviews are left for --test-size 10000"):
        write_held_out("demo", args, tmp_path / "h.csv")


def _calibration_result():
    c = {"method": "temperature", "temperature": 1.42, "ece_before": 0.061, "ece_after": 0.012,
         "nll_before": 0.31, "nll_after": 0.27, "bins": 15}
    held_out = {k: v for k, v in c.items() if k != "method"} | {"ece_before": 0.055,
                                                                 "ece_after": 0.021}
    return {
        "settings": {"model": "all-MiniLM-L6-v2", "reduced": True, "fit_config": {
            "data": {"max_train_samples": 2000}, "model": {"max_length": 128},
            "train": {"epochs": 1}}},
        "validation": {"examples": 1000, "accuracy": 0.861, "f1_macro": 0.86, "loss": 0.31},
        "calibration": c,
        "test": {"examples": 1000, "accuracy": 0.853, "f1_macro": 0.85, "loss": 0.33,
                 "calibration": held_out},
        "train_seconds": 600.0,
        "precision_policy": "float32",
    }


def test_report_renders_the_calibration_and_the_accuracy_ece():
    from benchmarks import accuracy, calibration, report

    r = _calibration_result()
    assert report._calibration(r) == (
        "reduced run (2,000 training reviews): temperature **1.42** takes the ECE on 1,000 unseen "
        "reviews from 5.5% to **2.1%** (validation 6.1% to 1.2%), accuracy 85.3% unchanged")
    lines = calibration.table(r).splitlines()
    assert lines[0] == ("| split | reviews | accuracy | ECE raw | ECE at T = 1.420 | NLL raw | "
                        "NLL at T = 1.420 |")
    assert lines[2] == ("| validation (T fitted here) | 1,000 | 86.10% | 6.10% | 1.20% | 0.3100 "
                        "| 0.2700 |")
    assert lines[3].startswith("| held-out reviews | 1,000 | 85.30% | 5.50% | 2.10% |")
    assert "reduced run: 2,000 training reviews, 1 epoch(s), max length 128, 10.0 min of fit " \
        "(float32)" in lines[-1]

    acc = {"settings": {"model": "all-MiniLM-L6-v2", "fit_config": {"train": {"epochs": 1}}},
           "validation": {"examples": 5000, "accuracy": 0.9184, "f1_macro": 0.9184},
           "train_seconds": 5440.0, "published": accuracy.PUBLISHED}
    # Results recorded before calibration render as before.
    assert "ECE" not in report._accuracy(acc) and "ECE" not in accuracy.table(acc)
    acc["calibration"] = r["calibration"]
    assert "min; ECE 6.1% raw, 1.2% at T = 1.42; published" in report._accuracy(acc)
    header, _, ours, published, _ = accuracy.table(acc).splitlines()
    assert header.split(" | ")[3] == "ECE raw -> at T (15 bins)"
    assert ours.split(" | ")[3] == "6.10% -> 1.20% (T = 1.420)"
    assert published.split(" | ")[3] == ""
    # A preset's run names it, its precision and the whole fit's time next to training's.
    acc["settings"]["preset"] = "imdb-minilm"
    acc.update(precision_policy="mixed_bfloat16", fit_seconds=5700.0)
    assert ("all-MiniLM-L6-v2, preset imdb-minilm, mixed_bfloat16, trained in 91 min (95 min "
            "the whole fit); ECE") in report._accuracy(acc)
