import json

import numpy as np
import pandas as pd
import pytest

from tfsent.evaluate import (
    compute_metrics,
    evaluate_run,
    plot_confusion_matrix,
    plot_training_curves,
)
from tfsent.synthetic import generate_reviews
from tfsent.testing import make_tiny_run_dir


def test_metrics_match_hand_computed_values():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    logits = np.full((6, 3), -2.0)
    logits[np.arange(6), predicted] = 2.0
    m = compute_metrics(labels, logits, ["anger", "joy", "sadness"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["per_class_accuracy"] == {"anger": pytest.approx(2 / 3), "joy": 0.5, "sadness": 1.0}
    # Precision per class: anger 2/2, joy 1/2, sadness 1/2; recall: 2/3, 1/2, 1.
    precision, recall = np.array([1, 0.5, 0.5]), np.array([2 / 3, 0.5, 1.0])
    f1 = 2 * precision * recall / (precision + recall)
    support = np.array([3, 2, 1]) / 6
    assert m["precision_macro"] == pytest.approx(precision.mean())
    assert m["recall_macro"] == pytest.approx(recall.mean())
    assert m["f1_macro"] == pytest.approx(f1.mean())
    assert m["precision_weighted"] == pytest.approx((precision * support).sum())
    assert m["f1_weighted"] == pytest.approx((f1 * support).sum())
    # Cross-entropy of a logit margin of 4 over two other classes.
    right = -np.log(np.exp(2) / (np.exp(2) + 2 * np.exp(-2)))
    wrong = -np.log(np.exp(-2) / (np.exp(2) + 2 * np.exp(-2)))
    assert m["loss"] == pytest.approx((4 * right + 2 * wrong) / 6)
    json.dumps(m)  # metrics.json must be able to hold it


def test_plots_are_written(tmp_path):
    plot_confusion_matrix([[5, 1], [2, 7]], ["negative", "positive"], tmp_path / "cm.png")
    (tmp_path / "history.csv").write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.6,0.7,0.65,0.66\n1,0.8,0.4,0.78,0.5\n")
    plot_training_curves(tmp_path / "history.csv", tmp_path / "curves.png")
    for name in ("cm.png", "curves.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_evaluate_cli_bad_run_dir_is_one_line(tmp_path, capsys):
    from tfsent.errors import run_cli
    from tfsent.evaluate import main

    assert run_cli(main, ["--run-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: run directory {tmp_path / 'nowhere'} does not exist; pass the "
                   "--output-dir of a finished python -m tfsent.fit run")
    assert run_cli(main, ["--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "has no config.json" in err
    (tmp_path / "config.json").write_text("{}")
    assert run_cli(main, ["--run-dir", str(tmp_path)]) == 2
    assert "has no model weights" in capsys.readouterr().err
    assert run_cli(main, ["--run-dir", str(tmp_path), "--batch-size", "0"]) == 2
    assert "--batch-size 0 must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "float32"])
def test_evaluate_computes_in_float32_and_leaves_the_global_policy_as_it_was(policy, tmp_path):
    import tf_keras

    from tfsent.evaluate import evaluate_run
    from tfsent.synthetic import generate_reviews
    from tfsent.testing import make_tiny_run_dir

    run = make_tiny_run_dir(tmp_path / "run")
    texts, labels = generate_reviews(40, seed=0, label_names=("negative", "positive"))
    data = tmp_path / "reviews.csv"
    pd.DataFrame({"text": texts, "label": [("negative", "positive")[y] for y in labels]}
                 ).to_csv(data, index=False)
    tf_keras.mixed_precision.set_global_policy(policy)
    try:
        results = evaluate_run(run, str(data))
        assert tf_keras.mixed_precision.global_policy().name == policy
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    assert results["evaluation"]["examples"] == 40
    assert sum(map(sum, results["evaluation"]["confusion_matrix"])) == 40
    # Under a mixed policy the model would compute in bfloat16: float32 gives the same numbers.
    if policy != "float32":
        again = evaluate_run(run, str(data))["evaluation"]
        assert again["loss"] == results["evaluation"]["loss"]


def test_bucketed_prediction_comes_back_in_the_splits_order(tmp_path):
    from tfsent.evaluate import predict_logits, predict_split
    from tfsent.features import encode, make_dataset
    from tfsent.rundir import RunDir
    from tfsent.synthetic import generate_reviews

    run = RunDir(make_tiny_run_dir(tmp_path / "run", max_length=64))
    model, tokenizer = run.load_model(), run.load_tokenizer()
    texts, labels = generate_reviews(50, seed=3, label_names=("negative", "positive"))
    # Lengths from 3 to 64 tokens: several buckets, so bucketing reorders the rows.
    texts = [" ".join([text] * (1 + i % 7)) for i, text in enumerate(texts)]
    encoded = encode(tokenizer, texts, 64, "head+tail", labels)
    bucketed = predict_split(model, encoded, 8, max_length=64, bucketing=True)
    plain = predict_split(model, encoded, 8, max_length=64, bucketing=False)
    positions, _ = predict_logits(model, make_dataset(
        type(encoded)(encoded.input_ids, np.arange(50)), 8, shuffle=False, seed=0,
        max_length=64))
    assert positions.tolist() != list(range(50))  # the pass itself ran out of order
    np.testing.assert_array_equal(bucketed.labels, labels)
    np.testing.assert_allclose(bucketed.logits, plain.logits, atol=1e-5)
    np.testing.assert_array_equal(bucketed.logits.argmax(-1), plain.logits.argmax(-1))
    # One by one, unpadded: the reference each row's logits must match.
    one = predict_split(model, encode(tokenizer, texts[17:18], 64, "head+tail", labels[17:18]),
                        1, max_length=64)
    np.testing.assert_allclose(bucketed.logits[17], one.logits[0], atol=1e-5)
    assert bucketed.seconds > 0 and bucketed.reviews_per_second == 50 / bucketed.seconds


def test_evaluation_reports_its_speed_and_shows_progress(tmp_path, capsys):
    from tfsent.evaluate import format_report

    run = make_tiny_run_dir(tmp_path / "run")
    texts, labels = generate_reviews(30, seed=0, label_names=("negative", "positive"))
    data = tmp_path / "reviews.csv"
    pd.DataFrame({"text": texts, "label": [("negative", "positive")[y] for y in labels]}
                 ).to_csv(data, index=False)
    results = evaluate_run(run, str(data), batch_size=4, progress=1)
    out = capsys.readouterr().out
    speed = results["evaluation"]["reviews_per_second"]
    assert speed > 0
    assert f"{speed:,.1f} reviews/s" in format_report(results)
    # Keras' bar knows its total: 30 reviews in batches of 4 per length bucket.
    from tfsent.features import count_batches, encode
    from tfsent.rundir import RunDir

    lengths = encode(RunDir(run).load_tokenizer(), texts, 32, "head+tail").lengths
    total = count_batches(lengths, 4, max_length=32)
    assert f"{total}/{total}" in out
