"""Model card (README.md in the Hub format) and the push to the Hub, which is unreachable here:
the card is held to huggingface_hub's own parsing, the upload to the exact files sent through
HfApi.upload_folder (network calls faked at the HTTP boundary), and a dead Hub to one line."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import CommitInfo, HfApi, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from tfsent.card import (
    base_model_id,
    check_model_card,
    dataset_metadata,
    write_model_card,
)
from tfsent.config import DataConfig, RunConfig
from tfsent.errors import UserError, run_cli
from tfsent.evaluate import compute_metrics, plot_confusion_matrix
from tfsent.push import main as push_main
from tfsent.push import push_run, upload_plan
from tfsent.rundir import RunDir
from tfsent.testing import make_tiny_run_dir

REPO = Path(__file__).resolve().parents[2]
LABELS = ["negative", "positive"]
CALIBRATION = {"temperature": 1.7, "ece_before": 0.125, "ece_after": 0.031}


def finish_run(run: Path, calibration: dict | None = CALIBRATION, seed: int = 0) -> dict:
    """Give a tiny run dir the metrics.json and plots of a finished fit (scores of made-up
    logits: the card only reads them)."""
    rng = np.random.default_rng(seed)
    metrics = {}
    for split, n in (("validation", 40), ("test", 60)):
        labels = rng.integers(0, 2, n)
        logits = rng.normal(size=(n, 2)) + 1.5 * np.eye(2)[labels]
        metrics[split] = compute_metrics(labels, logits, LABELS)
        plot_confusion_matrix(metrics[split]["confusion_matrix"], LABELS,
                              RunDir(run).confusion_matrix_png(split))
    if calibration:
        metrics["calibration"] = calibration
        (run / "reliability_diagram.png").write_bytes(b"\x89PNG")
    metrics |= {"train_seconds": 12.5, "train_examples_per_second": 30.1,
                "precision_policy": "float32"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return metrics


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = make_tiny_run_dir(tmp_path_factory.mktemp("card") / "run")
    return run, finish_run(run)


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    import shutil

    run, metrics = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy, metrics


def test_card_metadata_passes_huggingface_hubs_parsing_and_holds_the_metrics(run_copy):
    run, metrics = run_copy
    path = write_model_card(RunDir(run))
    assert path == run / "README.md"
    card = check_model_card(path)  # ModelCard.load(ignore_metadata_errors=False)
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "text-classification"
    assert "base_model" not in data, "a tiny run has no base model on the Hub"
    assert "datasets" not in data, "the demo data is not a Hub dataset"
    # model-index -> EvalResult objects and back, with huggingface_hub's own converters.
    name, results = model_index_to_eval_results(data["model-index"])
    assert name == "tfsent"
    got = {(r.dataset_split, r.metric_name): r.metric_value for r in results}
    for split in ("validation", "test"):
        assert got[(split, "Accuracy")] == pytest.approx(metrics[split]["accuracy"])
        assert got[(split, "F1 (macro)")] == pytest.approx(metrics[split]["f1_macro"])
        assert got[(split, "Precision (weighted)")] == pytest.approx(
            metrics[split]["precision_weighted"])
        assert got[(split, "Recall (macro)")] == pytest.approx(metrics[split]["recall_macro"])
    assert got[("validation", "ECE (after temperature scaling)")] == 0.031
    assert got[("validation", "ECE (before temperature scaling)")] == 0.125
    assert {r.task_type for r in results} == {"text-classification"}
    assert len(results) == 2 * 7 + 2


def test_card_body_has_use_limitations_options_evaluation_images_and_serving(run_copy):
    run, metrics = run_copy
    text = write_model_card(RunDir(run)).read_text()
    body = ModelCard(text).text
    for heading in ("## Intended use and limitations", "## Training", "## Evaluation",
                    "## How to use", "## Serve with TF Serving"):
        assert heading in body, heading
    assert "| `model.max_length` | 32 |" in body
    assert "| `train.learning_rate` | 2e-05 |" in body
    assert "| `data.validation_data` | - |" in body
    accuracy_row = next(line for line in body.splitlines() if line.startswith("| Accuracy |"))
    assert accuracy_row == (f"| Accuracy | {metrics['validation']['accuracy']:.4f} | "
                            f"{metrics['test']['accuracy']:.4f} |")
    assert "T = 1.7000" in body and "0.1250 before, 0.0310 after" in body
    assert "![Confusion matrix (validation)](confusion_matrix.png)" in body
    assert "![Confusion matrix (test)](confusion_matrix_test.png)" in body
    assert "![Reliability diagram (validation)](reliability_diagram.png)" in body
    assert "temperature = 1.7\n" in body
    assert "tensorflow/serving:" in body and "-e MODEL_NAME=tfsent" in body
    assert "python -m tfsent.export --run-dir ." in body
    assert ":predict" in body


def test_card_of_an_uncalibrated_run_has_no_ece(tmp_path):
    run = make_tiny_run_dir(tmp_path / "run")
    finish_run(run, calibration=None)
    card = check_model_card(write_model_card(RunDir(run)))
    assert not [r for r in card.data.eval_results if r.metric_type == "ece"]
    assert "Calibration" not in card.text


@pytest.mark.parametrize("dataset,hub_id,kind", [
    ("stanfordnlp/imdb", "stanfordnlp/imdb", "stanfordnlp/imdb"),
    ("data/aclImdb_v1.tar.gz", "stanfordnlp/imdb", "stanfordnlp/imdb"),
    ("reviews.csv", None, "csv"),
    ("reviews.jsonl", None, "json"),
    ("demo", None, "tfsent-demo"),
])
def test_dataset_metadata(dataset, hub_id, kind):
    meta = dataset_metadata(DataConfig(dataset=dataset))
    assert (meta["hub_id"], meta["type"]) == (hub_id, kind)


def test_base_model_is_a_hub_id_only(tmp_path):
    assert base_model_id("bert-base-uncased") == "bert-base-uncased"
    assert base_model_id("sentence-transformers/all-MiniLM-L6-v2") == (
        "sentence-transformers/all-MiniLM-L6-v2")
    assert base_model_id("tiny") is None
    assert base_model_id(str(tmp_path)) is None  # a local folder has no Hub id


def test_card_names_base_model_and_dataset_for_hub_runs(run_copy):
    run, _ = run_copy
    cfg = RunConfig.load(run / "config.json")
    cfg.model.model, cfg.data.dataset, cfg.model.license = "bert-base-uncased", \
        "stanfordnlp/imdb", "mit"
    cfg.save(run / "config.json")
    data = check_model_card(write_model_card(RunDir(run))).data.to_dict()
    assert data["base_model"] == "bert-base-uncased"
    assert data["datasets"] == ["stanfordnlp/imdb"]
    assert data["license"] == "mit"
    assert data["language"] == "en"


@pytest.mark.parametrize("metadata,message", [
    ("license: mit\nmodel-index:\n- name: x\n  results:\n  - task: {}\n", "model card"),
    ("license: mit\n", "lacks"),
    ("license: [unclosed\n", "model card"),
])
def test_invalid_card_is_a_one_line_error(tmp_path, metadata, message):
    path = tmp_path / "README.md"
    path.write_text(f"---\n{metadata}---\n# x\n")
    with pytest.raises(UserError, match=message) as err:
        check_model_card(path)
    assert "\n" not in str(err.value)


# -- push ---------------------------------------------------------------------------------------
def add_clutter(run: Path) -> None:
    """What a run folder holds besides the repo files: none of it may be uploaded."""
    for name in ("checkpoints/best.weights.h5", "checkpoints/best.json", "history.csv",
                 "logs/train/events.out.tfevents.1", "backup/chief/ckpt", ".git/HEAD",
                 "notes/confusion_matrix.png"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"x")
    (run / "training_curves.png").write_bytes(b"\x89PNG")


def fake_export(root: Path, version: int = 3) -> Path:
    folder = root / "exported" / "tfsent" / str(version)
    for name in ("saved_model.pb", "variables/variables.index",
                 "variables/variables.data-00000-of-00001", "assets/labels.txt",
                 "assets.extra/tf_serving_warmup_requests"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    return folder


class FakeHub:
    """Replaces the three HfApi methods that reach the network; upload_folder runs for real."""

    def __init__(self, monkeypatch):
        self.repos, self.commits, self.validated = [], [], []
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.repos.append((repo_id, kwargs, api.token))
            return f"https://huggingface.co/{repo_id}"

        def validate_yaml(api, content, repo_type=None, token=None):
            hub.validated.append(content)

        def create_commit(api, repo_id, operations, **kwargs):
            hub.commits.append(sorted(op.path_in_repo for op in operations))
            oid = f"{len(hub.commits):040d}"
            return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{oid}",
                              commit_message=kwargs.get("commit_message", ""),
                              commit_description="", oid=oid)

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "_validate_yaml", validate_yaml)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)


def test_push_uploads_exactly_the_planned_files(run_copy, tmp_path, monkeypatch):
    run, _ = run_copy
    add_clutter(run)
    export = fake_export(tmp_path)
    tokenizer_files = sorted(f"tokenizer/{p.name}" for p in (run / "tokenizer").iterdir())
    run_files = sorted(["README.md", "config.json", "metrics.json", "model/config.json",
                        "model/tf_model.h5", "confusion_matrix.png", "confusion_matrix_test.png",
                        "training_curves.png", "reliability_diagram.png", *tokenizer_files])
    export_files = sorted(f"saved_model/3/{name}" for name in (
        "saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001",
        "assets/labels.txt", "assets.extra/tf_serving_warmup_requests"))
    hub = FakeHub(monkeypatch)

    url = push_run(run, "someone/tfsent-demo", token="hf_test", private=True,
                   saved_model=export.parent)  # the model base path: its newest version
    assert url == "https://huggingface.co/someone/tfsent-demo"
    assert hub.repos == [("someone/tfsent-demo", {"private": True, "exist_ok": True,
                                                  "repo_type": "model"}, "hf_test")]
    assert hub.commits == [run_files, export_files]
    assert sorted(upload_plan(run, export)) == sorted(run_files + export_files)
    # The card sent is valid, names the repo, and says the SavedModel is in saved_model/3.
    assert len(hub.validated) == 1
    card_file = tmp_path / "sent.md"
    card_file.write_text(hub.validated[0])
    card = check_model_card(card_file)
    assert 'repo = "someone/tfsent-demo"' in card.text
    assert "saved_model/3/" in card.text


def test_dry_run_lists_the_files_and_uploads_nothing(run_copy, capsys, monkeypatch):
    run, _ = run_copy
    hub = FakeHub(monkeypatch)
    assert run_cli(push_main, ["--run-dir", str(run), "--push-to-hub", "someone/x",
                               "--dry-run"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed == upload_plan(run)
    assert "model/tf_model.h5" in listed and "README.md" in listed
    assert hub.repos == [] and hub.commits == []


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(err: str) -> str:
    err = err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_unreachable_hub_is_one_line_exit_2_and_the_run_is_untouched(run_copy):
    run, _ = run_copy
    write_model_card(RunDir(run))
    before = tree_digest(run)
    # A closed port on loopback: connection refused, as fast as a dead network gets.
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9",
               HF_TOKEN="hf_not_a_real_token")
    proc = subprocess.run([sys.executable, "-m", "tfsent.push", "--run-dir", str(run),
                           "--push-to-hub", "someone/tfsent-demo"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    err = one_line_error(proc.stderr)
    assert ("could not push to the Hub repo someone/tfsent-demo (cannot reach "
            "http://127.0.0.1:9") in err
    assert f"the run in {run} is unchanged" in err
    assert tree_digest(run) == before


def test_offline_mode_is_one_line_exit_2(run_copy, capsys):
    run, _ = run_copy
    before = tree_digest(run)
    # conftest sets HF_HUB_OFFLINE=1: huggingface_hub refuses before any request.
    assert run_cli(push_main, ["--run-dir", str(run), "--push-to-hub", "someone/x"]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "could not push" in err and "HF_HUB_OFFLINE is set" in err
    assert tree_digest(run) == before


@pytest.mark.parametrize("argv,message", [
    (["--push-to-hub", "not a repo id"], "is not a Hub repo id"),
    (["--push-to-hub", "a/b/c"], "is not a Hub repo id"),
    (["--push-to-hub", "someone/x", "--saved-model", "/no/such/export"], "holds no SavedModel"),
])
def test_bad_push_arguments_are_one_line_errors(run_copy, capsys, argv, message):
    run, _ = run_copy
    assert run_cli(push_main, ["--run-dir", str(run), *argv]) == 2
    assert message in one_line_error(capsys.readouterr().err)


def test_push_of_an_unfinished_run_is_refused(tmp_path, capsys):
    run = make_tiny_run_dir(tmp_path / "run")  # no metrics.json
    assert run_cli(push_main, ["--run-dir", str(run), "--push-to-hub", "someone/x"]) == 2
    assert "finished" in one_line_error(capsys.readouterr().err)


def test_fit_writes_the_card_and_a_failed_push_keeps_the_trained_run(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9")
    argv = ["--dataset", "demo", "--model", "tiny", "--max-train-samples", "200",
            "--max-eval-samples", "100", "--max-length", "32", "--tiny-vocab-size", "300",
            "--epochs", "1", "--batch-size", "32", "--learning-rate", "3e-3", "--progress", "0",
            "--output-dir", str(out), "--push-to-hub", "someone/tfsent-demo",
            "--hub-token", "hf_secret_token"]
    proc = subprocess.run([sys.executable, "-m", "tfsent.fit", *argv], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = one_line_error(proc.stderr.strip().splitlines()[-1])
    assert "could not push to the Hub repo someone/tfsent-demo" in err
    run = RunDir(out)
    assert run.finished and run.has_model and run.has_tokenizer
    card = check_model_card(out / "README.md")  # written by fit, before the push
    assert card.data.eval_results[0].metric_value == pytest.approx(
        run.metrics["validation"]["accuracy"])
    assert "hf_secret_token" not in "".join(
        p.read_text(errors="ignore") for p in out.rglob("*.json"))
