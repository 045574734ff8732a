"""End-to-end training runs on generated data with tiny config-built BERTs."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import tf_keras

from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tfsent.errors import run_cli
from tfsent.fit import fit, main
from tfsent.synthetic import generate_reviews


def tiny_config(output_dir, **train) -> RunConfig:
    values = dict(output_dir=str(output_dir), epochs=3, batch_size=32, learning_rate=3e-3,
                  verbose=0, seed=1)
    values.update(train)
    return RunConfig(
        DataConfig(dataset="demo", max_train_samples=400, max_eval_samples=200),
        ModelConfig(model="tiny", max_length=64, tiny_vocab_size=400),
        TrainConfig(**values),
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    import tfsent.evaluate

    cfg = tiny_config(tmp_path_factory.mktemp("runs") / "demo")
    passes = []
    predict = tfsent.evaluate.predict_logits
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tfsent.evaluate, "predict_logits",
                   lambda model, ds: passes.append(1) or predict(model, ds))
        metrics = fit(cfg)
    metrics["_prediction_passes"] = len(passes)
    return cfg, metrics


def test_validation_is_scored_once_per_epoch_and_reused_for_the_final_metrics(finished_run):
    cfg, metrics = finished_run
    # 3 epochs + the test split: the best epoch's validation predictions are not made again.
    assert metrics["_prediction_passes"] == 3 + 1
    with open(Path(cfg.train.output_dir) / "history.csv") as f:
        rows = list(csv.DictReader(f))
    val_accuracy = [float(r["val_accuracy"]) for r in rows]
    best_epoch = val_accuracy.index(max(val_accuracy))  # the first of equals, as Keras keeps
    assert metrics["validation"]["accuracy"] == pytest.approx(max(val_accuracy))
    assert metrics["validation"]["loss"] == pytest.approx(float(rows[best_epoch]["val_loss"]))
    assert metrics["validation"]["f1_macro"] == pytest.approx(
        float(rows[best_epoch]["val_f1_macro"]))
    best = json.loads((Path(cfg.train.output_dir) / "checkpoints/best.json").read_text())
    assert best == {"monitor": "val_accuracy", "value": pytest.approx(max(val_accuracy)),
                    "epoch": best_epoch}


def test_run_directory_holds_everything_of_the_run(finished_run):
    cfg, metrics = finished_run
    run = Path(cfg.train.output_dir)
    for name in ("config.json", "tokenizer/vocab.txt", "model/tf_model.h5", "model/config.json",
                 "history.csv", "metrics.json", "confusion_matrix.png", "training_curves.png",
                 "checkpoints/best.weights.h5"):
        assert (run / name).is_file(), name
    assert list((run / "logs").rglob("events.out.tfevents*")), "TensorBoard logs"
    assert not (run / "backup").exists(), "the backup is removed once training ends"
    assert RunConfig.load(run / "config.json") == cfg
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["validation"]["accuracy"] == pytest.approx(metrics["validation"]["accuracy"])
    assert saved["validation"]["examples"] == 120  # 10% of the demo's 1,200 training reviews
    assert saved["test"]["examples"] == 200  # the demo's test split, capped by max_eval_samples
    assert metrics["validation"]["accuracy"] > 0.85  # generated reviews are learnable
    model_config = json.loads((run / "model/config.json").read_text())
    assert model_config["id2label"] == {"0": "negative", "1": "positive"}


def test_evaluate_cli_reproduces_the_saved_metrics(finished_run, capsys, tmp_path):
    from tfsent.evaluate import main as evaluate_main

    cfg, metrics = finished_run
    out = tmp_path / "m.json"
    assert run_cli(evaluate_main, ["--run-dir", cfg.train.output_dir, "--output", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again["validation"]["accuracy"] == pytest.approx(metrics["validation"]["accuracy"])
    assert again["validation"]["confusion_matrix"] == metrics["validation"]["confusion_matrix"]
    assert "validation: accuracy" in capsys.readouterr().out


def test_monitor_val_loss_keeps_the_epoch_of_lowest_validation_loss(tmp_path):
    cfg = tiny_config(tmp_path / "run", monitor="val_loss", epochs=5)
    metrics = fit(cfg)
    with open(tmp_path / "run" / "history.csv") as f:
        val_loss = [float(r["val_loss"]) for r in csv.DictReader(f)]
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert best["monitor"] == "val_loss"
    assert best["epoch"] == val_loss.index(min(val_loss))
    assert metrics["validation"]["loss"] == pytest.approx(min(val_loss))


class Interrupt(tf_keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt


class Epochs(tf_keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)


def test_interrupted_run_resumes_where_it_stopped(tmp_path):
    cfg = tiny_config(tmp_path / "run", epochs=4)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, [Interrupt()])
    assert (tmp_path / "run" / "backup").is_dir()
    assert not (tmp_path / "run" / "metrics.json").exists()
    before = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert before["epoch"] in (0, 1)
    epochs = Epochs()
    metrics = fit(cfg, [epochs])
    assert epochs.seen == [2, 3]
    with open(tmp_path / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    # The best checkpoint is the best of all four epochs, not only of those after the resume.
    val_accuracy = [float(r["val_accuracy"]) for r in rows]
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert best["epoch"] == val_accuracy.index(max(val_accuracy))
    assert metrics["validation"]["accuracy"] == pytest.approx(max(val_accuracy))


def test_multiclass_csv_with_string_labels(tmp_path):
    names = ("anger", "fear", "joy", "sadness")
    texts, labels = generate_reviews(480, seed=3, label_names=names)
    csv_path = tmp_path / "emotions.csv"
    pd.DataFrame({"sentence": texts, "emotion": [names[y] for y in labels]}).to_csv(
        csv_path, index=False)
    cfg = tiny_config(tmp_path / "run", epochs=4)
    cfg.data = DataConfig(dataset=str(csv_path), text_column="sentence", label_column="emotion",
                          validation_size=0.25)
    metrics = fit(cfg)["validation"]
    assert metrics["label_names"] == list(names)
    assert len(metrics["confusion_matrix"]) == 4
    assert set(metrics["per_class_accuracy"]) == set(names)
    assert metrics["examples"] == 120
    assert metrics["accuracy"] > 0.5  # well above the 0.25 of chance


def test_help_documents_every_option_with_its_default():
    out = subprocess.run([sys.executable, "-m", "tfsent.fit", "--help"], capture_output=True,
                         text=True, check=True).stdout
    import dataclasses

    for dtype in (DataConfig, ModelConfig, TrainConfig):
        for field in dataclasses.fields(dtype):
            assert f"--{field.name}" in out, field.name
    assert "(default: head+tail)" in out and "(default: 2e-05)" in out


def test_config_file_sets_options_and_flags_override(tmp_path):
    from tfsent.config import parse_args

    config = tmp_path / "run.yaml"
    config.write_text("dataset: demo\nmodel: tiny\nepochs: 7\ntrain:\n  batch_size: 8\n")
    data, model, train = parse_args((DataConfig, ModelConfig, TrainConfig), "",
                                    ["--config", str(config), "--epochs", "2"])
    assert (data.dataset, model.model, train.epochs, train.batch_size) == ("demo", "tiny", 2, 8)


BAD_INPUTS = [
    (["--dataset", "/no/such/file.csv"], "does not exist"),
    (["--dataset", "demo", "--model", "/no/such/model"], "does not exist"),
    (["--dataset", "demo", "--epochs", "many"], "invalid int value"),
    (["--dataset", "demo", "--truncation", "middle"], "invalid choice"),
    (["--dataset", "demo", "--monitor", "val_f1"], "invalid choice"),
    (["--config", "/no/such.yaml"], "config file"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(main, [*argv, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not out.exists(), "nothing half-written"


def test_bad_data_file_is_one_line_and_nothing_written(tmp_path, capsys):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("text,label\ncaf\xe9 ok,pos\nbad,neg\n".encode("latin-1"))
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\ngood,pos\n   ,neg\n")
    one_class = tmp_path / "one.csv"
    one_class.write_text("text,label\ngood,pos\ngreat,pos\n")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "bert"}')
    (model_dir / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ngood\n")
    cases = [
        ([str(bad)], "UTF-8"),
        ([str(empty)], "empty"),
        ([str(one_class)], "class"),
        ([str(empty), "--text-column", "review"], "review"),
        (["demo", "--model", str(model_dir)], "no weights"),
    ]
    for dataset_args, message in cases:
        out = tmp_path / "run"
        argv = ["--dataset", *dataset_args, "--output-dir", str(out)]
        assert run_cli(main, argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and message in err, (argv, err)
        assert not out.exists()


def test_finished_run_is_not_overwritten_by_accident(finished_run, capsys):
    cfg, _ = finished_run
    assert run_cli(main, ["--dataset", "demo", "--model", "tiny",
                          "--output-dir", cfg.train.output_dir]) == 2
    assert "finished run" in capsys.readouterr().err


def test_mixed_bfloat16_trains_and_leaves_the_policy_float32(tmp_path):
    from transformers import TFBertForSequenceClassification

    metrics = fit(tiny_config(tmp_path / "run", mixed_precision="mixed_bfloat16"))
    assert metrics["precision_policy"] == "mixed_bfloat16"
    assert metrics["validation"]["accuracy"] > 0.85
    assert tf_keras.mixed_precision.global_policy().name == "float32"
    saved = TFBertForSequenceClassification.from_pretrained(tmp_path / "run" / "model")
    assert {w.dtype.name for w in saved.weights} == {"float32"}
