"""What a user meets around ``python -m tfsent.fit``: its ``--help``, its output in a log file,
how fast bad data is reported, the summary's next commands, ``history.csv``'s line ends, and the
install commands the CLIs name."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfsent.cli import install_command, require_extra
from tfsent.config import (
    CliOptions,
    DataConfig,
    HubConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    parse_args,
)
from tfsent.errors import UserError

REPO = Path(__file__).resolve().parents[2]
FIT_TYPES = (DataConfig, ModelConfig, TrainConfig, HubConfig, CliOptions)
GROUPS = ["options", "data", "model", "training", "output and Hub"]


@pytest.fixture(scope="module")
def fit_help() -> str:
    return subprocess.run([sys.executable, "-m", "tfsent.fit", "--help"], capture_output=True,
                          text=True, check=True, env={**os.environ, "COLUMNS": "100"}).stdout


def help_sections(text: str) -> dict[str, str]:
    """``--help``'s option groups: title -> the text under it."""
    parts = re.split(r"^(\S[^\n]*):\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def help_entries(text: str) -> dict[str, str]:
    """Each option's first flag -> its whole entry."""
    pieces = re.split(r"^  (?=-)", text, flags=re.M)[1:]
    return {re.match(r"(?:-h, )?(--[\w-]+)", piece).group(1): piece for piece in pieces}


def test_help_groups_the_options(fit_help):
    sections = help_sections(fit_help)
    assert list(sections) == GROUPS
    where = {flag: title for title, body in sections.items() for flag in help_entries(body)}
    assert {flag: where[flag] for flag in (
        "--config", "--verbose", "--dataset", "--text-column", "--max-eval-samples", "--model",
        "--max-length", "--learning-rate", "--no-bucketing", "--progress", "--output-dir",
        "--export-dir", "--model-name", "--push-to-hub",
    )} == {
        "--config": "options", "--verbose": "options", "--dataset": "data",
        "--text-column": "data", "--max-eval-samples": "data", "--model": "model",
        "--max-length": "model", "--learning-rate": "training", "--no-bucketing": "training",
        "--progress": "training", "--output-dir": "output and Hub",
        "--export-dir": "output and Hub", "--model-name": "output and Hub",
        "--push-to-hub": "output and Hub",
    }


def test_help_shows_each_option_once_with_dashes(fit_help):
    usage, _ = fit_help.split("\n\n", 1)
    assert usage == ("usage: python -m tfsent.fit [-h] [--config FILE|PRESET] [--verbose] "
                     "[--OPTION VALUE ...]")
    listed = [line.split()[0].rstrip(",") for line in fit_help.splitlines()
              if re.match(r"  -", line)]
    names = [f.name for t in FIT_TYPES for f in dataclasses.fields(t)]
    expected = ["-h", *(f"--{n.replace('_', '-')}" for n in names), "--no-bucketing"]
    assert sorted(listed) == sorted(expected)  # each once, none with an underscore
    assert "--text_column" not in fit_help and "--no_bucketing" not in fit_help


def test_the_negation_has_help_of_its_own(fit_help):
    entries = {flag: " ".join(entry.split()) for flag, entry in help_entries(fit_help).items()}
    bucketing, flat = entries["--bucketing"], entries["--no-bucketing"]
    assert "less padding, faster" in bucketing and "(default: True)" in bucketing
    assert flat.startswith("--no-bucketing Turn --bucketing off: batch reviews in their shuffled "
                           "order"), flat
    assert "faster" not in flat and "default" not in flat


def test_underscore_spellings_are_still_accepted():
    data, model, train, _, options = parse_args(
        FIT_TYPES, "", ["--text_column", "review", "--max_length", "64", "--no_bucketing",
                        "--data", "demo", "--verbose"])
    assert (data.text_column, model.max_length, train.bucketing, data.dataset, options.verbose) \
        == ("review", 64, False, "demo", True)
    _, _, train, _, _ = parse_args(FIT_TYPES, "", ["--bucketing", "no"])
    assert train.bucketing is False
    _, _, train, _, _ = parse_args(FIT_TYPES, "", ["--config", "demo", "--no-bucketing"])
    assert (train.bucketing, train.epochs) == (False, 4)  # the flag over the preset


def test_fit_writing_to_a_file_prints_one_line_per_epoch(tmp_path):
    """No --progress given, output to a file: Keras' one line per epoch, not 14 KB of bars
    redrawn with backspaces; and history.csv ends its lines in LF."""
    log = tmp_path / "fit.log"
    argv = [sys.executable, "-m", "tfsent.fit", "--config", "demo", "--epochs", "2",
            "--max-train-samples", "200", "--max-eval-samples", "100", "--max-length", "32",
            "--tiny-vocab-size", "300", "--output-dir", "run", "--export-dir", ""]
    with open(log, "wb") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              timeout=900)
    assert done.returncode == 0, done.stderr
    data = log.read_bytes()
    assert b"\b" not in data and b"\r" not in data
    lines = data.decode().splitlines()
    steps = json.loads((tmp_path / "run/checkpoints/trained.json").read_text())["steps_per_epoch"]
    epoch_lines = [line for line in lines if line.startswith(f"{steps}/{steps} - ")]
    assert len(epoch_lines) == 2 and all("val_accuracy: " in line for line in epoch_lines)
    assert [line for line in lines if line.startswith("Epoch ")] == ["Epoch 1/2", "Epoch 2/2"]
    assert len(data) < 3000, data.decode()
    assert b"\r" not in (tmp_path / "run/history.csv").read_bytes()


def test_data_errors_come_before_tensorflow_loads(tmp_path):
    (tmp_path / "reviews.txt").write_text("great film\n")
    (tmp_path / "reviews.csv").write_text("text,label\ngreat,pos\ndull,neg\n")
    cases = [
        (["--dataset", "missing/reviews.csv"], "missing/reviews.csv does not exist"),
        (["--dataset", "reviews.txt"], "unsupported file type '.txt'"),
        (["--dataset", "reviews.csv", "--text-column", "review"], "'review'"),
    ]
    code = ("import json, sys\n"
            "from tfsent.errors import run_cli\n"
            "from tfsent.fit import main\n"
            "codes = [run_cli(main, [*argv, '--output-dir', 'run'])\n"
            "         for argv in json.loads(sys.argv[1])]\n"
            "loaded = [m for m in ('tensorflow', 'tf_keras') if m in sys.modules]\n"
            "print(json.dumps([codes, loaded]))\n")
    done = subprocess.run([sys.executable, "-c", code, json.dumps([c[0] for c in cases])],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[2, 2, 2], []]
    errors = done.stderr.splitlines()
    assert len(errors) == len(cases), done.stderr
    for line, (_, message) in zip(errors, cases, strict=True):
        assert line.startswith("error: ") and message in line, line
    assert not (tmp_path / "run").exists()


def test_summary_names_the_serve_install_when_serving_is_not_installed(tmp_path, monkeypatch):
    import tfsent.fit

    cfg = RunConfig(train=TrainConfig(output_dir=str(tmp_path / "run")))
    metrics = {"validation": {"accuracy": 0.9, "f1_macro": 0.9, "examples": 10},
               "export": "exported/tfsent/3"}
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(tfsent.fit, "missing_module", lambda modules: "fastapi")
    assert tfsent.fit.summary(cfg, metrics).splitlines()[-3:] == [
        'next:       python -m tfsent.predict --saved-model exported/tfsent '
        '"a wonderful, moving film"',
        "            pip install -e '.[serve]'",
        "            python -m tfsent.serve --model_name=tfsent --model_base_path=exported/tfsent",
    ]
    monkeypatch.setattr(tfsent.fit, "missing_module", lambda modules: None)
    assert "pip install" not in tfsent.fit.summary(cfg, metrics)


def test_install_commands_name_what_works_for_this_copy(tmp_path, monkeypatch):
    # This checkout: an editable install of the clone (tests/test_packaging.py checks a wheel).
    monkeypatch.chdir(REPO)
    assert install_command("serve") == "pip install -e '.[serve]'"
    monkeypatch.chdir(tmp_path)
    assert install_command("train") == f"pip install -e '{REPO}[train]'"
    with pytest.raises(UserError) as err:
        require_extra("train", ["no_such_module_xyz"], "training")
    assert str(err.value) == f"training needs the train extra: pip install -e '{REPO}[train]'"


def test_history_csv_keeps_lf_line_ends_across_a_resume(tmp_path):
    from tfsent.callbacks import HistoryCSV
    from tfsent.rundir import RunDir

    run = RunDir(tmp_path)

    def log_epochs(epochs: list[int]) -> None:
        logger = HistoryCSV(str(run.history_csv), append=True)
        logger.on_train_begin()
        for epoch in epochs:
            logger.on_epoch_end(epoch, {"loss": 0.5 / (epoch + 1), "val_loss": 0.6})
        logger.on_train_end()

    log_epochs([0, 1])  # killed after epoch 2's row, before its backup
    run.trim_history(1)  # the resumed run drops the row of the epoch it trains again
    log_epochs([1, 2])
    data = run.history_csv.read_bytes()
    assert b"\r" not in data
    assert data.decode().splitlines()[0] == "epoch,loss,val_loss"
    assert [(r["epoch"], r["loss"]) for r in run.history_rows()] == [
        ("0", "0.5"), ("1", "0.25"), ("2", str(0.5 / 3))]
