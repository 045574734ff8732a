"""End-to-end training runs on generated data with tiny config-built BERTs."""

import csv
import json
import os
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
                  progress=0, seed=1)
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
                   lambda model, ds, **kw: passes.append(1) or predict(model, ds, **kw))
        metrics = fit(cfg)
    metrics["_prediction_passes"] = len(passes)
    return cfg, metrics


def test_validation_is_scored_once_per_epoch_and_reused_for_the_final_metrics(finished_run):
    cfg, metrics = finished_run
    # 3 epochs + the test split: the best epoch's validation predictions are not made again.
    assert metrics["_prediction_passes"] == 3 + 1
    with open(Path(cfg.train.output_dir) / "history.csv") as f:
        rows = list(csv.DictReader(f))
    best_epoch = best_by_rule(rows, "val_accuracy")
    row = rows[best_epoch - 1]
    assert metrics["best_epoch"] == best_epoch and metrics["epochs"] == 3
    assert metrics["validation"]["accuracy"] == pytest.approx(float(row["val_accuracy"]))
    assert metrics["validation"]["loss"] == pytest.approx(float(row["val_loss"]))
    assert metrics["validation"]["f1_macro"] == pytest.approx(float(row["val_f1_macro"]))
    best = json.loads((Path(cfg.train.output_dir) / "checkpoints/best.json").read_text())
    assert best == {"monitor": "val_accuracy", "value": pytest.approx(float(row["val_accuracy"])),
                    "val_loss": pytest.approx(float(row["val_loss"])), "epoch": best_epoch,
                    "previous": None}


def best_by_rule(rows: list[dict], monitor: str) -> int:
    """The epoch (from 1) tfsent keeps: best on ``monitor``, ties to the lower val_loss."""
    sign = 1 if monitor.endswith("loss") else -1
    keys = [(sign * float(r[monitor]), float(r["val_loss"])) for r in rows]
    return keys.index(min(keys)) + 1


def test_a_tie_on_the_monitor_keeps_the_epoch_with_the_lower_validation_loss(finished_run):
    cfg, metrics = finished_run
    with open(Path(cfg.train.output_dir) / "history.csv") as f:
        rows = list(csv.DictReader(f))
    val_accuracy = [float(r["val_accuracy"]) for r in rows]
    tied = [i + 1 for i, v in enumerate(val_accuracy) if v == max(val_accuracy)]
    # The generated reviews are easy: several epochs reach the same validation accuracy.
    assert len(tied) > 1, val_accuracy
    assert metrics["best_epoch"] == min(tied, key=lambda e: float(rows[e - 1]["val_loss"]))
    assert metrics["best_epoch"] != tied[0]  # Keras' ModelCheckpoint would keep the first


def test_run_directory_holds_everything_of_the_run(finished_run):
    cfg, metrics = finished_run
    run = Path(cfg.train.output_dir)
    best = metrics["best_epoch"]
    for name in ("config.json", "tokenizer/vocab.txt", "model/tf_model.h5", "model/config.json",
                 "history.csv", "metrics.json", "confusion_matrix.png", "training_curves.png",
                 "confusion_matrix_test.png", f"checkpoints/epoch-{best:03d}.weights.h5",
                 f"checkpoints/epoch-{best:03d}.predictions.npz", "checkpoints/best.json",
                 "checkpoints/trained.json"):
        assert (run / name).is_file(), name
    # Only the best epoch's files stay; nothing temporary is left.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        ["best.json", "trained.json", f"epoch-{best:03d}.weights.h5",
         f"epoch-{best:03d}.predictions.npz"])
    assert not list(run.rglob(".*tmp*"))
    assert list((run / "logs").rglob("events.out.tfevents*")), "TensorBoard logs"
    assert not (run / "backup").exists(), "the backup is removed once training ends"
    assert RunConfig.load(run / "config.json") == cfg
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert all(float(r["seconds"]) > 0 for r in rows)
    assert metrics["train_seconds"] == pytest.approx(sum(float(r["seconds"]) for r in rows))
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
    assert best["epoch"] == val_loss.index(min(val_loss)) + 1 == metrics["best_epoch"]
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
    assert before["epoch"] in (1, 2)
    epochs = Epochs()
    metrics = fit(cfg, [epochs])
    assert epochs.seen == [2, 3]
    with open(tmp_path / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    # The best checkpoint is the best of all four epochs, not only of those after the resume.
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert best["epoch"] == best_by_rule(rows, "val_accuracy") == metrics["best_epoch"]
    assert metrics["validation"]["accuracy"] == pytest.approx(
        max(float(r["val_accuracy"]) for r in rows))


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
            assert f"--{field.name.replace('_', '-')}" in out, field.name
    assert "(default: head+tail)" in out and "(default: 2e-05)" in out
    assert "'demo' (The offline demo" in " ".join(out.split())  # --config names the presets
    assert "--verbose" in out and "--progress {0,1,2}" in out


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
    (["--config", "no-such-preset"], "or a preset: demo"),
    (["--config", "demo", "--epochs", "0"], "--epochs 0 must be at least 1"),
    (["--dataset", "demo", "--batch-size", "0"], "--batch-size 0 must be at least 1"),
    (["--dataset", "demo", "--eval-batch-size", "-1"], "--eval-batch-size -1 must be at least 1"),
    (["--dataset", "demo", "--learning-rate", "0"], "--learning-rate 0.0 must be a positive"),
    (["--dataset", "demo", "--learning-rate", "nan"], "must be a positive number"),
    (["--dataset", "demo", "--warmup-ratio", "1.5"], "--warmup-ratio 1.5 must be a fraction"),
    (["--dataset", "demo", "--weight-decay", "-0.1"], "--weight-decay -0.1 must be in [0, 1)"),
    (["--dataset", "demo", "--validation-size", "0"], "--validation-size 0.0 must be"),
    (["--dataset", "demo", "--validation-size", "2.5"], "whole number"),
    (["--dataset", "demo", "--max-train-samples", "0"], "--max-train-samples 0 must be"),
    (["--dataset", "demo", "--max-length", "2"], "max_length 2 leaves no room"),
    (["--dataset", "demo", "--early-stopping-patience", "0"], "patience 0 must be at least 1"),
    (["--dataset", "demo", "--backup-every-steps", "0"], "steps 0 must be at least 1"),
    (["--dataset", "demo", "--tiny-vocab-size", "3"], "--tiny-vocab-size 3 must be"),
    (["--dataset", "demo", "--model-name", "a/b"], "not a folder name"),
    (["--dataset", "demo", "--progress", "3"], "invalid choice"),
    (["--dataset", "demo", "--verbose", "maybe"], "expected one of yes/no"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(main, [*argv, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not out.exists(), "nothing half-written"


def test_header_only_csv_is_one_line_and_nothing_written(tmp_path, capsys):
    header_only = tmp_path / "reviews.csv"
    header_only.write_text("text,label\n")
    out = tmp_path / "run"
    assert run_cli(main, ["--dataset", str(header_only), "--model", "tiny",
                          "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {header_only} has no examples (a header and no rows?); add labelled "
                   "rows or pass other data")
    assert not out.exists()


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


def test_a_folder_that_is_not_a_run_is_left_alone(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "tokenizer").mkdir(parents=True)
    (out / "README.md").write_text("my notes")
    argv = ["--dataset", "demo", "--model", "tiny", "--max-train-samples", "100",
            "--tiny-vocab-size", "200", "--output-dir", str(out)]
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --output-dir {out} holds a tokenizer/ folder but no tfsent run; "
                   "pass a new or empty folder")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "tokenizer"]
    assert (out / "README.md").read_text() == "my notes"


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


# --- presets, config files, the command line ------------------------------------------------


def test_presets_are_found_by_name_and_old_option_names_still_load(tmp_path):
    from tfsent.config import parse_args, preset_names, resolve_config_file

    assert "demo" in preset_names()
    assert resolve_config_file("demo").name == "demo.yaml"
    data, model, train = parse_args((DataConfig, ModelConfig, TrainConfig), "",
                                    ["--config", "demo", "--epochs", "2"])
    assert (data.dataset, model.model, train.epochs, train.export_dir) == (
        "demo", "tiny", 2, "exported")
    # A file of the preset's name wins over the preset.
    (tmp_path / "demo").write_text("epochs: 9\n")
    assert resolve_config_file(str(tmp_path / "demo")) == tmp_path / "demo"
    # config.json of runs from before --progress and the per-epoch permutation.
    legacy = {"data": {"dataset": "demo"}, "model": {"model": "tiny"},
              "train": {"verbose": 2, "shuffle_buffer": 100, "epochs": 1}}
    cfg = RunConfig.from_dict(legacy)
    assert (cfg.train.progress, cfg.train.epochs) == (2, 1)


def test_options_that_change_training_block_a_resume_others_do_not():
    a = RunConfig(DataConfig(dataset="demo"), ModelConfig(model="tiny"), TrainConfig())
    b = RunConfig(DataConfig(dataset="demo"), ModelConfig(model="tiny"),
                  TrainConfig(output_dir="elsewhere", progress=0, export_dir="exported",
                              overwrite_output_dir=True, calibration="none"))
    assert a.differences(b) == []
    c = RunConfig(DataConfig(dataset="demo", max_train_samples=5), ModelConfig(model="tiny"),
                  TrainConfig(learning_rate=1e-3))
    assert a.differences(c) == ["max_train_samples", "learning_rate"]


def test_interrupted_run_with_other_options_is_not_resumed_by_accident(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", epochs=4)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, [Interrupt()])
    argv = ["--dataset", "demo", "--model", "tiny", "--max-train-samples", "400",
            "--max-eval-samples", "200", "--max-length", "64", "--tiny-vocab-size", "400",
            "--epochs", "5", "--batch-size", "32", "--learning-rate", "3e-3", "--seed", "1",
            "--output-dir", str(tmp_path / "run")]
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "interrupted run with other options (epochs)" in err
    assert f"--config {tmp_path / 'run' / 'config.json'}" in err
    assert (tmp_path / "run" / "backup").is_dir(), "left as it was"


NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "oneDNN supports DT_INT64",
    "TensorFlow and JAX classes are deprecated",
    "All model checkpoint layers were used",
    "seed_generator",
)


def run_fit_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    # The environment a user has: none of the test session's quieting variables.
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS")}
    argv = [sys.executable, "-m", "tfsent.fit", "--config", "demo", "--epochs", "1",
            "--max-train-samples", "200", "--max-eval-samples", "100", "--max-length", "32",
            "--tiny-vocab-size", "300", *extra]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)


def test_cli_is_quiet_by_default_shows_totals_and_ends_with_a_summary(tmp_path):
    # --progress 1 chosen: bars even though the output is a pipe, not a terminal.
    done = run_fit_cli(tmp_path, "--output-dir", "run", "--export-dir", "exported",
                       "--progress", "1")
    assert done.returncode == 0, done.stderr
    for line in NOISE:
        assert line not in done.stderr, line
    out = done.stdout.replace("\r", "\n")
    steps = json.loads((tmp_path / "run/checkpoints/trained.json").read_text())["steps_per_epoch"]
    assert f"{steps}/{steps} [" in out and "Unknown" not in out  # every bar knows its total
    assert "restored epoch 1 of 1 (val_accuracy " in out
    tail = out.strip().splitlines()[-6:]
    assert tail[0].startswith("validation: accuracy ")
    assert tail[2].startswith("run:        run/  metrics.json; confusion_matrix.png")
    assert tail[3] == "export:     exported/tfsent/1"
    assert tail[4] == 'next:       python -m tfsent.predict --saved-model exported/tfsent ' \
                      '"a wonderful, moving film"'
    assert tail[5].strip() == ("python -m tfsent.serve --model_name=tfsent "
                               "--model_base_path=exported/tfsent")
    assert (tmp_path / "exported/tfsent/1/saved_model.pb").is_file()


def test_cli_verbose_shows_the_libraries_logs(tmp_path):
    done = run_fit_cli(tmp_path, "--output-dir", "run", "--export-dir", "", "--verbose",
                       "--progress", "0")
    assert done.returncode == 0, done.stderr
    assert "TensorFlow and JAX classes are deprecated" in done.stderr
    assert "next:       python -m tfsent.export --run-dir run" in done.stdout


@pytest.mark.parametrize("module,args,what", [
    ("fit", ["--config", "demo"], "training"),
    ("evaluate", ["--run-dir", "runs/demo"], "evaluation"),
])
def test_without_tensorflow_the_cli_names_the_extra(module, args, what, tmp_path):
    # A client-only install: TensorFlow, tf-keras and transformers cannot be imported.
    code = (
        "import importlib.abc, runpy, sys\n"
        "class Absent(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'transformers'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Absent())\n"
        f"sys.argv = ['python -m tfsent.{module}', *{args!r}]\n"
        f"runpy.run_module('tfsent.{module}', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    clone = Path(__file__).resolve().parents[2]  # the install that works: this clone's
    assert done.stderr == f"error: {what} needs the train extra: pip install -e '{clone}[train]'\n"
    assert list(tmp_path.iterdir()) == []
