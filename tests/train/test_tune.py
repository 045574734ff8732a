"""Hyperparameter search (Optuna) over tiny fit runs on the demo data: a search finishes and its
best config reproduces; a killed search resumes from its storage; pruning; bad input."""

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tfsent.errors import UserError, run_cli
from tfsent.fit import fit
from tfsent.rundir import RunDir
from tfsent.tune import TuneConfig, run_search
from tfsent.tune import main as tune_main

REPO = Path(__file__).resolve().parents[2]
SEARCHED = ("learning_rate", "batch_size", "epochs", "warmup_ratio", "weight_decay",
            "max_length")
# The options every trial shares: val_loss differs between trials (accuracy may tie).
BASE = {"dataset": "demo", "max_train_samples": 200, "max_eval_samples": 100, "model": "tiny",
        "tiny_vocab_size": 300, "monitor": "val_loss", "progress": 0, "seed": 1}
SPACE = {"learning_rate_range": [1e-3, 1e-2], "batch_size_choices": [16, 32],
         "epochs_range": [1, 2], "warmup_ratio_range": [0.0, 0.2],
         "weight_decay_range": [0.0, 0.1], "max_length_choices": [32, 48]}


def base_config(output_dir: Path, **train) -> RunConfig:
    return RunConfig(
        DataConfig(dataset="demo", max_train_samples=200, max_eval_samples=100),
        ModelConfig(model="tiny", tiny_vocab_size=300),
        TrainConfig(output_dir=str(output_dir), monitor="val_loss", progress=0, seed=1, **train),
    )


def load_study(out: Path, name: str = "tfsent") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    import matplotlib
    import matplotlib.pyplot as plt

    out = tmp_path_factory.mktemp("tune") / "search"
    rc_before, figs_before = dict(matplotlib.rcParams), plt.get_fignums()
    summary = run_search(base_config(out), TuneConfig(n_trials=3, pruner="none", sampler_seed=0,
                                                      **SPACE))
    leaks = {"rc_changed": {k for k, v in matplotlib.rcParams.items()
                            if repr(rc_before.get(k)) != repr(v)},
             "figures": sorted(set(plt.get_fignums()) - set(figs_before))}
    return out, summary, leaks


def test_search_runs_n_trials_on_validation_only(search):
    out, summary, _ = search
    study = load_study(out)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert summary["states"]["COMPLETE"] == 3
    for trial in trials:
        assert set(trial.params) == set(SEARCHED)
        assert 1e-3 <= trial.params["learning_rate"] <= 1e-2
        assert trial.params["max_length"] in (32, 48)
        run = RunDir(trial.user_attrs["run_dir"])
        assert run.path == out / f"trial-{trial.number:04d}"
        metrics = run.metrics
        assert "test" not in metrics, "trials never score the test split"
        assert not run.confusion_matrix_png("test").exists()
        assert trial.value == pytest.approx(metrics["validation"]["loss"])
        # One report per epoch, for the pruner.
        assert sorted(trial.intermediate_values) == list(range(trial.params["epochs"]))
        cfg = run.config
        assert (cfg.train.learning_rate, cfg.train.batch_size, cfg.model.max_length) == (
            trial.params["learning_rate"], trial.params["batch_size"],
            trial.params["max_length"])
        assert cfg.train.export_dir is None
    # Same data and seed for all: every trial validated on the same reviews.
    examples = {json.dumps(RunDir(t.user_attrs["run_dir"]).metrics["validation"]["examples"])
                 for t in trials}
    assert examples == {"100"}  # the demo's carved validation split, capped at 100
    assert study.best_trial.value == min(t.value for t in trials)  # val_loss: minimized


def test_search_writes_the_trials_table_and_the_plots_without_leaking_pyplot_state(search):
    out, summary, leaks = search
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    study = load_study(out)
    assert [int(r["trial"]) for r in rows] == [0, 1, 2]
    for row, trial in zip(rows, study.get_trials(), strict=True):
        assert row["state"] == "COMPLETE"
        assert float(row["val_loss"]) == pytest.approx(trial.value)
        assert float(row["learning_rate"]) == pytest.approx(trial.params["learning_rate"])
        assert int(row["epochs_run"]) == trial.params["epochs"]
    for name in ("optimization_history.png", "param_importances.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert sorted(summary["plots"]) == sorted(str(out / n) for n in (
        "optimization_history.png", "param_importances.png"))
    assert leaks == {"rc_changed": set(), "figures": []}


def test_best_config_reproduces_the_best_trial(search, capsys):
    from tfsent.config import parse_args

    out, summary, _ = search
    study = load_study(out)
    best = study.best_trial
    path = out / "best_config.yaml"
    assert summary["best_config"] == str(path) and summary["best_trial"] == best.number
    assert "python -m tfsent.fit --config" in path.read_text()  # the header says how
    data, model, train = parse_args((DataConfig, ModelConfig, TrainConfig), "",
                                    ["--config", str(path)])
    cfg = RunConfig(data, model, train)
    trial_cfg = RunDir(best.user_attrs["run_dir"]).config
    for name in SEARCHED:
        section = "model" if name == "max_length" else "train"
        assert getattr(getattr(cfg, section), name) == best.params[name], name
    assert cfg.data == trial_cfg.data and cfg.model == trial_cfg.model
    assert cfg.train.output_dir == str(out / "best")
    metrics = fit(cfg)
    assert metrics["validation"]["loss"] == pytest.approx(best.value, rel=1e-4)
    assert metrics["validation"]["accuracy"] == pytest.approx(
        best.user_attrs["validation"]["accuracy"])
    assert "test" in metrics, "the refit scores the test split the trials never saw"


def test_rerun_of_a_finished_search_runs_no_trial(search, capsys):
    out, _, _ = search
    summary = run_search(base_config(out), TuneConfig(n_trials=3, pruner="none", **SPACE))
    assert len(load_study(out).trials) == 3
    assert summary["states"]["COMPLETE"] == 3
    assert "already has 3 finished trials" in capsys.readouterr().out


@pytest.mark.parametrize("change,where", [
    ({"data": {"max_train_samples": 300}}, "data.max_train_samples"),
    ({"space": {"max_length_choices": [64]}}, "max_length_choices"),
])
def test_resuming_with_other_options_is_refused(search, change, where):
    out, _, _ = search
    cfg = base_config(out)
    for key, value in change.get("data", {}).items():
        setattr(cfg.data, key, value)
    with pytest.raises(UserError, match=where):
        run_search(cfg, TuneConfig(n_trials=4, pruner="none", **(SPACE | change.get("space",
                                                                                      {}))))
    assert len(load_study(out).trials) == 3


def test_pruned_trial_stops_cleanly_after_the_epoch_the_pruner_rejects(tmp_path):
    out = tmp_path / "search"
    storage = tmp_path / "elsewhere.db"
    # val_loss is always above 0: this pruner rejects the first epoch of every trial.
    summary = run_search(
        base_config(out),
        TuneConfig(n_trials=1, storage=f"sqlite:///{storage}",
                   **(SPACE | {"epochs_range": [3, 3]})),
        pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    assert storage.is_file() and not (out / "study.db").exists(), "--storage is used"
    study = optuna.load_study(study_name="tfsent", storage=f"sqlite:///{storage}")
    (trial,) = study.get_trials()
    assert trial.state.name == "PRUNED"
    assert list(trial.intermediate_values) == [0]
    run = RunDir(out / "trial-0000")
    with open(run.history_csv) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0], "stopped after epoch 1"
    assert run.finished and run.has_model, "a pruned trial still ends as a saved run"
    assert "best_trial" not in summary and not (out / "best_config.yaml").exists()


def test_killed_search_resumes_from_its_storage_without_redoing_finished_trials(tmp_path,
                                                                               capsys):
    out = tmp_path / "search"
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(BASE | SPACE | {
        "epochs_range": [2, 2], "n_trials": 3, "pruner": "none", "sampler_seed": 0,
        "output_dir": str(out)}))
    log = open(tmp_path / "tune.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "tfsent.tune", "--config", str(config)],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.3)
            if not (out / "study.db").exists():
                continue
            # Read-only: the test must not create Optuna's tables while the search does.
            try:
                with sqlite3.connect(f"file:{out / 'study.db'}?mode=ro", uri=True) as db:
                    states = [s for (s,) in db.execute("SELECT state FROM trials ORDER BY number")]
            except sqlite3.Error:  # the tables are being created
                continue
            # The first trial is finished and the second one is in its second epoch (its
            # first is backed up): kill it mid-trial.
            backup = out / "trial-0001" / "backup"
            if (states.count("COMPLETE") == 1 and "RUNNING" in states and backup.is_dir()
                    and any(backup.rglob("*"))):
                break
        assert proc.poll() is None, (tmp_path / "tune.log").read_text()[-3000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    study = load_study(out)
    killed = study.get_trials()
    assert [t.state.name for t in killed] == ["COMPLETE", "RUNNING"]
    first = killed[0]
    first_metrics = RunDir(first.user_attrs["run_dir"]).metrics_file
    first_mtime = first_metrics.stat().st_mtime_ns

    fits = []
    import tfsent.fit

    real_fit = tfsent.fit.fit
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tfsent.fit, "fit", lambda cfg, *a, **k: fits.append(cfg.train.output_dir)
                   or real_fit(cfg, *a, **k))
        assert run_cli(tune_main, ["--config", str(config)]) == 0
    out_text = capsys.readouterr().out
    assert "retrying trial(s) 1 of a killed search" in out_text
    assert "trial 2 of 3 (#2)" in out_text and "3 of 3 done" in out_text

    trials = load_study(out).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[0].value == first.value and first_metrics.stat().st_mtime_ns == first_mtime
    # The killed trial is retried with its options, in its own folder (resumed from its
    # Keras backup when it had one); then one new trial makes three finished.
    retry = trials[2]
    assert retry.system_attrs["failed_trial"] == 1
    assert retry.params == trials[1].params
    assert retry.user_attrs["run_dir"] == trials[1].user_attrs["run_dir"] == str(
        out / "trial-0001")
    assert fits == [str(out / "trial-0001"), str(out / "trial-0003")]
    with open(out / "trial-0001" / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    assert (out / "best_config.yaml").is_file()


def test_trial_of_a_worker_that_stopped_sending_heartbeats_is_retried(tmp_path, monkeypatch):
    import tfsent.tune
    import tfsent.tune_storage

    out = tmp_path / "search"
    out.mkdir()
    # Another machine's worker took a trial, then died (power loss): its heartbeat stops.
    monkeypatch.setattr(tfsent.tune_storage, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(tfsent.tune_storage, "GRACE_PERIOD", 2)
    space = TuneConfig(**(SPACE | {"epochs_range": [1, 1]}))
    storage = tfsent.tune_storage.open_storage(f"sqlite:///{out / 'study.db'}")
    study = optuna.create_study(storage=storage, study_name="tfsent", direction="minimize")
    with pytest.warns(UserWarning, match="Heartbeat"):  # ask() outside optimize(), as a test
        trial = study.ask()
    params = tfsent.tune.suggest(trial, space)
    trial.set_user_attr("host", "another-machine")
    trial.set_user_attr("pid", 1)
    storage.record_heartbeat(trial._trial_id)
    time.sleep(3)

    run_search(base_config(out), TuneConfig(n_trials=1, pruner="none",
                                            **(SPACE | {"epochs_range": [1, 1]})))
    dead, retry = load_study(out).get_trials()
    assert dead.state.name == "FAIL"
    assert retry.state.name == "COMPLETE" and retry.system_attrs["failed_trial"] == 0
    assert retry.params == params
    assert retry.user_attrs["host"] != "another-machine"


def test_unreachable_storage_is_one_line_and_hides_the_password(tmp_path, capsys):
    out = tmp_path / "search"
    argv = ["--dataset", "demo", "--model", "tiny", "--output-dir", str(out),
            "--storage", "postgresql://tfsent:s3cret@127.0.0.1:1/optuna"]
    assert run_cli(tune_main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot open the Optuna storage postgresql://tfsent:***@")
    assert "\n" not in err and "s3cret" not in err
    assert not out.exists(), "nothing written"


@pytest.mark.parametrize("argv,message", [
    (["--learning-rate-range", "1e-3"], "two values, low then high"),
    (["--epochs-range", "3", "1"], "two values, low then high"),
    (["--learning-rate-range", "0", "1e-3"], "below 0"),
    (["--warmup-ratio-range", "0", "1.5"], "below 1.0"),
    (["--max-length-choices", "2", "64"], "max_length 2"),
    (["--batch-size-choices", "0"], "positive"),
    (["--n-trials", "0"], "at least 1"),
    (["--monitor", "accuracy"], "validation split"),
    (["--dataset", "/no/such/reviews.csv"], "does not exist"),
    (["--pruner", "sometimes"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, argv, message):
    out = tmp_path / "search"
    base = ["--dataset", "demo", "--model", "tiny", "--output-dir", str(out)]
    assert run_cli(tune_main, [*base, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not out.exists(), "nothing half-written"


def test_help_lists_the_search_options():
    out = subprocess.run([sys.executable, "-m", "tfsent.tune", "--help"], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    for flag in ("--n-trials", "--storage", "--study-name", "--pruner", "--learning-rate-range",
                 "--batch-size-choices", "--epochs-range", "--warmup-ratio-range",
                 "--weight-decay-range", "--max-length-choices", "--dataset", "--monitor"):
        assert flag in out, flag
    assert "1e-05" in out and "median" in out
