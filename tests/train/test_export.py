"""The export stage: layout, versions, atomicity, TF Serving compatibility, and parity of the
in-graph tokenizer and of the exported model with the training pipeline (tiny models, offline)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.train.tokenizer_cases import LONG_REVIEW, MAX_LENGTH, TEXTS, hf_rows, pad
from tfsent import export as export_module
from tfsent.errors import UserError, run_cli
from tfsent.export import (
    SERVING_IMAGE,
    TF_TEXT_OPS,
    export_run,
    list_graph_ops,
    load_tokenizer_from_export,
    main,
    unsupported_ops,
)
from tfsent.graph_tokenizer import TRIM_CHARS_PER_TOKEN, GraphTokenizer
from tfsent.rundir import RunDir
from tfsent.testing import make_tiny_run_dir, tiny_tokenizer
from tfsent.versions import hold_lock, next_version, remove_stale_staging, staged_version

REPO = Path(__file__).resolve().parents[2]
LABELS = ("negative", "positive")
# The module's run is calibrated: its metrics.json holds this temperature.
TEMPERATURE = 2.0


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def keras_logits(model, rows: list[list[int]]) -> np.ndarray:
    ids = pad(rows)
    features = {"input_ids": ids.astype(np.int32), "attention_mask": (ids != 0).astype(np.int32),
                "token_type_ids": np.zeros_like(ids, np.int32)}
    return model(features, training=False).logits.numpy()


def write_temperature(run: Path, temperature: float) -> None:
    """metrics.json as tfsent.fit writes it after calibrating (the parts the export reads)."""
    (run / "metrics.json").write_text(json.dumps({"calibration": {"temperature": temperature}}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = make_tiny_run_dir(tmp_path_factory.mktemp("run"), LABELS, MAX_LENGTH, "head+tail")
    write_temperature(run, TEMPERATURE)
    assert RunDir(run).temperature == TEMPERATURE
    return run


@pytest.fixture(scope="module")
def cli_export(run_dir, tmp_path_factory):
    """One real export, through the CLI: (exit code, stdout, base folder)."""
    base = tmp_path_factory.mktemp("exported")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_cli(main, ["--run-dir", str(run_dir), "--export-dir", str(base),
                              "--model-name", "tfsent"])
    return code, out.getvalue(), base / "tfsent"


@pytest.fixture(scope="module")
def exported(cli_export) -> Path:
    return cli_export[2] / "1"


@contextlib.contextmanager
def tf1_session(version_dir: Path):
    """An export loaded as TF Serving's C++ loader does (a SavedModelBundle): a fresh TF1 graph
    and session, tag "serve", signatures answered by tensor names."""
    graph = tf.Graph()
    with graph.as_default():
        sess = tf.compat.v1.Session(graph=graph)
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(version_dir))
    try:
        yield sess, meta_graph.signature_def
    finally:
        sess.close()


@pytest.fixture(scope="module")
def session(exported):
    with tf1_session(exported) as loaded:
        yield loaded


def run_signature(session, name: str, feeds: dict) -> dict[str, np.ndarray]:
    sess, signatures = session
    signature = signatures[name]
    fetches = {key: info.name for key, info in signature.outputs.items()}
    return sess.run(fetches, {signature.inputs[k].name: v for k, v in feeds.items()})


@pytest.fixture(scope="module")
def keras_model(run_dir):
    return RunDir(run_dir).load_model()


def test_cli_prints_the_version_path(cli_export, exported):
    code, stdout, base = cli_export
    assert code == 0
    assert stdout.strip() == str(exported)
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # the temp dir is gone


def test_layout(exported, run_dir):
    # Nothing of the staging (lock, scratch files) is left in the version.
    assert sorted(p.name for p in exported.iterdir()) == [
        "assets", "assets.extra", "fingerprint.pb", "saved_model.pb", "variables"]
    assert (exported / "variables" / "variables.index").is_file()
    assets = exported / "assets"
    assert sorted(p.name for p in assets.iterdir()) == [
        "export_config.json", "labels.txt", "vocab.txt"]
    assert (assets / "labels.txt").read_text() == "negative\npositive\n"
    vocab = (run_dir / "tokenizer" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert (assets / "vocab.txt").read_text(encoding="utf-8").splitlines() == vocab
    config = json.loads((assets / "export_config.json").read_text())
    assert config["model_name"] == "tfsent" and config["version"] == 1
    assert config["label_names"] == list(LABELS)
    assert config["temperature"] == TEMPERATURE
    tokenizer = config["tokenizer"]
    assert (tokenizer["class_name"], tokenizer["vocab_file"]) == ("GraphTokenizer", "vocab.txt")
    options = tokenizer["config"]
    assert (options["max_length"], options["truncation"]) == (MAX_LENGTH, "head+tail")
    assert (options["lowercase"], options["strip_accents"]) == (True, True)
    assert options["trim_chars_per_token"] == TRIM_CHARS_PER_TOKEN
    assert "vocab" not in options and set(options["char_classes"]) == {
        "removed", "spaces", "cjk", "marks", "split", "punctuation"}
    outputs = ["probabilities", "label_id", "label", "logits", "classes"]
    assert config["signatures"] == {
        "serving_default": {"inputs": ["text"], "outputs": outputs},
        "token_ids": {"inputs": ["input_ids", "attention_mask", "token_type_ids"],
                      "outputs": outputs},
    }
    assert config["tensorflow_text_version"] == metadata.version("tensorflow-text")
    assert config["serving_image"] == SERVING_IMAGE == "tensorflow/serving:2.21.0"
    assert config["tensorflow_text_ops"] == list(TF_TEXT_OPS)


def test_the_export_describes_its_tokenizer_completely(exported, run_dir, session):
    """assets/ alone rebuild the serving graph's tokenizer: same ids as the export's graph."""
    rebuilt = load_tokenizer_from_export(exported)
    original = GraphTokenizer.from_hf(tiny_tokenizer(), MAX_LENGTH, "head+tail")
    assert rebuilt.get_config() == original.get_config()
    texts = TEXTS + [LONG_REVIEW * 200]  # and one the trim cuts
    hf = tiny_tokenizer()
    ids = rebuilt(tf.constant(texts))["input_ids"].numpy()
    np.testing.assert_array_equal(ids, pad(hf_rows(hf, texts, MAX_LENGTH, "head+tail")))
    # The SavedModel's own tokenizer, through its logits: the same ids give the same logits.
    served = run_signature(session, "serving_default",
                           {"text": np.array([t.encode() for t in texts], dtype=object)})
    by_ids = run_signature(session, "token_ids", {
        "input_ids": ids, "attention_mask": (ids != 0).astype(np.int64),
        "token_type_ids": np.zeros_like(ids)})
    np.testing.assert_allclose(served["logits"], by_ids["logits"], atol=1e-6, rtol=0)


def test_warmup_requests_are_prediction_logs(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(str(path))]
    assert len(logs) >= 2
    batch_sizes = []
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == "tfsent"
        assert request.model_spec.signature_name == "serving_default"
        texts = tf.make_ndarray(request.inputs["text"])
        assert texts.dtype == object and all(t.decode() for t in texts)
        batch_sizes.append(len(texts))
    assert 1 in batch_sizes and max(batch_sizes) > 1


def test_every_op_is_registered_and_there_is_no_python(exported):
    ops = list_graph_ops(exported)
    assert {"FastWordpieceTokenizeWithOffsets", "RegexSplitWithOffsets", "StaticRegexReplace",
            "MatMul", "Softmax"} <= ops
    assert unsupported_ops(ops) == set()
    # The tensorflow-text ops (not in tf.raw_ops) are the ones SERVING_IMAGE must link.
    assert {op for op in ops if not hasattr(tf.raw_ops, op)} == set(TF_TEXT_OPS)
    # ...and the check does flag what a C++ server cannot run.
    assert unsupported_ops({"MatMul", "PyFunc", "EagerPyFunc", "NoSuchOp"}) == {
        "PyFunc", "EagerPyFunc", "NoSuchOp"}


def test_tf1_session_answers_by_tensor_names(session):
    texts = np.array([t.encode() for t in ["A great film.", "", LONG_REVIEW]], dtype=object)
    out = run_signature(session, "serving_default", {"text": texts})
    assert out["probabilities"].shape == (3, 2) and out["probabilities"].dtype == np.float32
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(out["label_id"], out["logits"].argmax(axis=1))
    assert [s.decode() for s in out["label"]] == [LABELS[i] for i in out["label_id"]]
    # Every row names the probability columns, in id order.
    assert out["classes"].shape == (3, 2)
    assert [[s.decode() for s in row] for row in out["classes"]] == [list(LABELS)] * 3


def test_saved_model_cli_lists_both_signatures(exported):
    cli = Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run(
        [str(cli), "show", "--all", "--dir", str(exported)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    blocks = {name: text.split(f"signature_def['{name}']")[1].split("signature_def[")[0]
              for name in ("serving_default", "token_ids")}
    assert "inputs['text']" in blocks["serving_default"]
    assert "DT_STRING" in blocks["serving_default"].split("output(s)")[0]
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert f"inputs['{name}']" in blocks["token_ids"]
    assert blocks["token_ids"].split("output(s)")[0].count("DT_INT64") == 3
    for block in blocks.values():
        outputs = block.split("output(s)")[1]
        for name in ("probabilities", "label_id", "label", "logits", "classes"):
            assert f"outputs['{name}']" in outputs
        classes = outputs.split("outputs['classes']")[1].split("outputs[")[0]
        assert "dtype: DT_STRING" in classes and "shape: (-1, 2)" in classes
        assert "tensorflow/serving/predict" in block


def test_a_request_of_no_texts_gets_empty_outputs(session):
    got = run_signature(session, "serving_default", {"text": np.array([], dtype=object)})
    assert got["probabilities"].shape == (0, 2)
    assert got["label"].shape == got["label_id"].shape == (0,)
    assert got["classes"].shape == (0, 2)


def test_exported_probabilities_equal_the_keras_model(session, keras_model):
    hf = tiny_tokenizer(lowercase=True)
    rows = hf_rows(hf, TEXTS, MAX_LENGTH, "head+tail")
    ids = pad(rows)
    logits = keras_logits(keras_model, rows)
    texts = np.array([t.encode() for t in TEXTS], dtype=object)
    got = run_signature(session, "serving_default", {"text": texts})
    # Calibrated: probabilities are softmax(logits / T); logits and the argmax are the model's.
    np.testing.assert_allclose(got["logits"], logits, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["probabilities"], softmax(logits / TEMPERATURE), atol=1e-6,
                               rtol=0)
    assert np.abs(got["probabilities"] - softmax(logits)).max() > 0.01  # T really applies
    np.testing.assert_array_equal(got["label_id"], logits.argmax(axis=1))
    assert softmax(logits)[:, 1].std() > 0.05  # outputs depend on the text: a wrong id would show
    assert set(got["label_id"]) == {0, 1}

    by_ids = run_signature(session, "token_ids", {
        "input_ids": ids, "attention_mask": (ids != 0).astype(np.int64),
        "token_type_ids": np.zeros_like(ids)})
    for key in ("probabilities", "logits"):
        np.testing.assert_allclose(by_ids[key], got[key], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(by_ids["label_id"], got["label_id"])
    np.testing.assert_array_equal(by_ids["label"], got["label"])
    assert by_ids["classes"].tolist() == got["classes"].tolist() == [
        [name.encode() for name in LABELS]] * len(TEXTS)


def test_uncalibrated_export_gives_the_plain_softmax(tiny_export):
    """A run without a temperature (the shared tiny export's) exports T = 1."""
    config = json.loads((tiny_export / "assets" / "export_config.json").read_text())
    assert config["temperature"] == 1.0
    loaded = tf.saved_model.load(str(tiny_export))
    out = loaded.signatures["serving_default"](text=tf.constant(TEXTS))
    np.testing.assert_allclose(out["probabilities"].numpy(), softmax(out["logits"].numpy()),
                               atol=1e-6, rtol=0)


def test_real_reviews_through_the_tf1_session_equal_the_keras_model(
        session, keras_model, real_reviews):
    """Real IMDB reviews, long ones included (the trim cuts those), through both signatures
    of the export loaded as TF Serving loads it."""
    hf = tiny_tokenizer()
    rows = hf_rows(hf, real_reviews, MAX_LENGTH, "head+tail")
    logits = keras_logits(keras_model, rows)
    got = run_signature(session, "serving_default",
                        {"text": np.array([t.encode() for t in real_reviews], dtype=object)})
    np.testing.assert_allclose(got["logits"], logits, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["probabilities"], softmax(logits / TEMPERATURE), atol=1e-6,
                               rtol=0)
    np.testing.assert_array_equal(got["label_id"], logits.argmax(axis=1))
    ids = pad(rows)
    by_ids = run_signature(session, "token_ids", {
        "input_ids": ids, "attention_mask": (ids != 0).astype(np.int64),
        "token_type_ids": np.zeros_like(ids)})
    np.testing.assert_allclose(by_ids["logits"], logits, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(by_ids["label_id"], got["label_id"])


def test_model_loads_in_float32_under_a_mixed_precision_policy(run_dir):
    import tf_keras

    tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = RunDir(run_dir).load_model()
        assert tf_keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # restored
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    assert model.dtype_policy.name == "float32"
    assert model(model.dummy_inputs).logits.dtype == tf.float32


# Trimming long texts before tokenization (GraphTokenizer.trim): same ids, bounded work.


# Versioning and atomicity: the SavedModel writer is replaced by a stub, so these run in ms.


@pytest.fixture
def stub_writer(monkeypatch):
    """Replace the slow writer; record the staging dirs it was given."""
    staged: list[Path] = []

    def write(run, target, model_name, version):
        staged.append(target)
        (target / "saved_model.pb").write_bytes(b"stub")
        (target / "variables").mkdir()

    monkeypatch.setattr(export_module, "write_saved_model", write)
    return staged


def test_versions_only_grow(run_dir, tmp_path, stub_writer):
    base = tmp_path / "exported"
    assert export_run(run_dir, base, "m") == base / "m" / "1"
    assert export_run(run_dir, base, "m") == base / "m" / "2"
    assert export_run(run_dir, base, "m", version=7) == base / "m" / "7"
    (base / "m" / "not-a-version").mkdir()
    assert export_run(run_dir, base, "m") == base / "m" / "8"
    assert sorted(p.name for p in (base / "m").iterdir()) == ["1", "2", "7", "8", "not-a-version"]
    for staging in stub_writer:
        assert staging.parent == base / "m"
        assert not staging.name.isdigit() and not staging.exists()


def test_existing_version_is_refused(run_dir, tmp_path, stub_writer):
    base = tmp_path / "exported"
    export_run(run_dir, base, "m", version=3)
    with pytest.raises(UserError, match="version 3 already exists.*to get 4"):
        export_run(run_dir, base, "m", version=3)
    with pytest.raises(UserError, match="positive integer"):
        export_run(run_dir, base, "m", version=0)
    assert sorted(p.name for p in (base / "m").iterdir()) == ["3"]
    assert len(stub_writer) == 1


def test_failed_export_leaves_nothing_behind(run_dir, tmp_path, monkeypatch):
    staged = []

    def write(run, target, model_name, version):
        staged.append(target)
        (target / "saved_model.pb").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_module, "write_saved_model", write)
    base = tmp_path / "deep" / "exported"
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(run_dir, base, "m")
    assert staged and not staged[0].name.isdigit()
    assert not (tmp_path / "deep").exists()  # folders made for the export are removed too

    (base / "m" / "1").mkdir(parents=True)
    with pytest.raises(RuntimeError):
        export_run(run_dir, base, "m")
    assert sorted(p.name for p in (base / "m").iterdir()) == ["1"]


def test_version_written_meanwhile_is_a_user_error(run_dir, tmp_path, monkeypatch):
    def write(run, target, model_name, version):
        (target / "saved_model.pb").write_bytes(b"mine")
        (target.parent / str(version) / "saved_model.pb").parent.mkdir()
        (target.parent / str(version) / "saved_model.pb").write_bytes(b"theirs")

    monkeypatch.setattr(export_module, "write_saved_model", write)
    with pytest.raises(UserError, match="written meanwhile"):
        export_run(run_dir, tmp_path, "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]
    assert (tmp_path / "m" / "1" / "saved_model.pb").read_bytes() == b"theirs"


def test_unwritable_target_fails_before_the_slow_work(run_dir, tmp_path, monkeypatch):
    def never(*args):
        raise AssertionError("the slow work started")

    monkeypatch.setattr(export_module, "write_saved_model", never)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write to"):
        export_run(run_dir, blocker / "exported", "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_folders_that_are_not_versions_are_ignored(run_dir, tmp_path, stub_writer):
    """Only ASCII-digit names are versions, as for TF Serving: "²" and "٣" are not."""
    base = tmp_path / "m"
    for name in ("²", "٣", "1x", "02"):
        (base / name).mkdir(parents=True)
    assert export_run(run_dir, tmp_path, "m") == base / "3"
    with pytest.raises(UserError, match="version 2 already exists"):
        export_run(run_dir, tmp_path, "m", version=2)
    with pytest.raises(UserError, match="above TF Serving's largest version"):
        export_run(run_dir, tmp_path, "m", version=2**63)
    assert sorted(p.name for p in base.iterdir()) == ["02", "1x", "3", "²", "٣"]


def test_staged_version_is_renamed_whole_or_removed(tmp_path):
    """The one way a version folder is made (exports, and fit's export through them): written
    aside under its writer's lock, then renamed; nothing at all left if the writing fails."""
    base = tmp_path / "deep" / "m"
    with pytest.raises(RuntimeError, match="disk full"):
        with staged_version(base, 1) as staging:
            (staging / "saved_model.pb").write_bytes(b"half")
            assert [p.name for p in base.iterdir()] == [f".tmp-1-{os.getpid()}"]
            assert (staging / ".lock").is_file()
            raise RuntimeError("disk full")
    assert not (tmp_path / "deep").exists()
    (base / "4").mkdir(parents=True)
    assert next_version(base) == 5
    with staged_version(base, next_version(base)) as staging:
        (staging / "saved_model.pb").write_bytes(b"whole")
    assert sorted(p.name for p in base.iterdir()) == ["4", "5"]
    assert sorted(p.name for p in (base / "5").iterdir()) == ["saved_model.pb"]
    assert next_version(base) == 6


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_stale_staging_folders_are_removed_live_ones_kept(run_dir, tmp_path, stub_writer):
    base = tmp_path / "m"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead, live = dead_pid(), sleeper.pid
        folders = {name: base / name for name in (
            f".tmp-4-{dead}",  # killed before it took its lock: its pid is gone
            f".tmp-5-{live}",  # just made by a running export, no lock yet
            f".tmp-6-{dead}",  # locked: its export runs (on another host, say)
            f".tmp-7-{live}",  # lock free: its export died, the pid was reused
        )}
        for folder in folders.values():
            (folder / "variables").mkdir(parents=True)
        (folders[f".tmp-7-{live}"] / ".lock").touch()
        held = hold_lock(folders[f".tmp-6-{dead}"] / ".lock")
        try:
            assert export_run(run_dir, tmp_path, "m") == base / "1"
            left = sorted(p.name for p in base.iterdir())
            assert left == [f".tmp-5-{live}", f".tmp-6-{dead}", "1"]
        finally:
            os.close(held)
        assert remove_stale_staging(base) == [folders[f".tmp-6-{dead}"]]  # now released
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_staging(base) == [folders[f".tmp-5-{live}"]]
    assert sorted(p.name for p in base.iterdir()) == ["1"]


def wait_for(predicate, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the export never got there"
        time.sleep(0.02)


# python -m tfsent.export, held at a moment (a marker file says it got there) to be killed.
HELD_EXPORT = """
import pathlib, sys, time
from tfsent import export
from tfsent.errors import run_cli

moment, marker = sys.argv[1], pathlib.Path(sys.argv[2])
write_warmup = export.write_warmup_requests

def held(path, model_name):
    if moment == "staging complete":
        write_warmup(path, model_name)
    marker.touch()
    time.sleep(600)

if moment != "staging made":
    export.write_warmup_requests = held
sys.exit(run_cli(export.main, sys.argv[3:]))
"""


@pytest.mark.parametrize("moment", ["staging made", "model saved", "staging complete"])
def test_a_killed_export_leaves_nothing_after_the_next_one(run_dir, tmp_path, monkeypatch,
                                                           moment):
    """SIGKILL of the export CLI at a few moments (models loading, SavedModel written, all
    written but not renamed): no version folder, half or whole; nothing in the temp dir; and
    the next export removes the staging folder."""
    base, scratch, marker = tmp_path / "exported" / "m", tmp_path / "tmpdir", tmp_path / "there"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", HELD_EXPORT, moment, str(marker), "--run-dir", str(run_dir),
         "--export-dir", str(base.parent), "--model-name", "m"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def staging(*parts):
        return [p for p in base.glob(".tmp-*") if p.joinpath(*parts).exists()]

    try:
        if moment == "staging made":
            wait_for(lambda: staging(".lock"), process)
        else:
            wait_for(marker.exists, process)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert [p.name for p in base.iterdir() if p.name.isdigit()] == []
    (left,) = staging()
    if moment != "staging made":
        assert (left / "saved_model.pb").is_file()
    if moment == "staging complete":
        assert (left / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert list(scratch.iterdir()) == []

    def write(run, target, model_name, version):
        (target / "saved_model.pb").write_bytes(b"stub")

    monkeypatch.setattr(export_module, "write_saved_model", write)
    assert export_run(run_dir, base.parent, "m") == base / "1"
    assert sorted(p.name for p in base.iterdir()) == ["1"]
    assert sorted(p.name for p in (base / "1").iterdir()) == ["saved_model.pb"]


def test_bad_temperature_is_a_user_error_before_anything_is_written(run_dir, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    write_temperature(broken, 0.0)
    with pytest.raises(UserError, match="calibration temperature 0.0"):
        export_run(broken, tmp_path / "exported", "m")
    assert not (tmp_path / "exported").exists()


@pytest.mark.parametrize("damage, message", [
    ("nothing", "does not exist"),
    ("config.json", "has no config.json"),
    ("model/tf_model.h5", "has no model weights"),
    ("tokenizer", "has no tokenizer"),
])
def test_bad_run_dir_is_a_user_error(run_dir, tmp_path, monkeypatch, damage, message):
    monkeypatch.setattr(export_module, "write_saved_model", lambda *a: pytest.fail("wrote"))
    broken = tmp_path / "run"
    if damage != "nothing":
        shutil.copytree(run_dir, broken)
        target = broken / damage
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(UserError, match=message):
        export_run(broken, tmp_path / "exported", "m")
    assert not (tmp_path / "exported").exists()


def test_cli_bad_inputs_exit_2_with_one_line(run_dir, exported, tmp_path):
    cases = [
        ["--run-dir", str(tmp_path / "missing"), "--export-dir", str(tmp_path)],
        ["--run-dir", str(run_dir), "--export-dir", str(exported.parents[1]), "--version", "1"],
        ["--run-dir", str(run_dir), "--version", "two"],
        ["--no-such-flag"],
    ]
    for argv in cases:
        done = subprocess.run([sys.executable, "-m", "tfsent.export", *argv], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
        assert done.returncode == 2, (argv, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, done.stderr)
        assert done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_minilm_export_in_a_tf1_session_equals_keras_on_real_reviews(minilm_path, real_reviews,
                                                                     tmp_path):
    """The real all-MiniLM-L6-v2 (fresh classifier head), exported at max length 64 (so the
    longest reviews are trimmed) and loaded as TF Serving loads it, scores real reviews as the
    Keras model does on the HF tokenizer's ids."""
    from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from tfsent.model import build_model, load_tokenizer

    run, max_length, temperature = tmp_path / "run", 64, 1.5
    hf = load_tokenizer(str(minilm_path))
    hf.save_pretrained(run / "tokenizer")
    build_model(str(minilm_path), LABELS, hf).save_pretrained(run / "model")
    RunConfig(
        DataConfig(dataset="demo"),
        ModelConfig(model=str(minilm_path), max_length=max_length, truncation="head+tail"),
        TrainConfig(output_dir=str(run)),
    ).save(run / "config.json")
    write_temperature(run, temperature)
    exported = export_run(run, tmp_path / "exported", "tfsent")

    rows = hf_rows(hf, real_reviews, max_length, "head+tail")
    logits = keras_logits(RunDir(run).load_model(), rows)
    ids = pad(rows)
    with tf1_session(exported) as loaded:
        got = run_signature(loaded, "serving_default",
                            {"text": np.array([t.encode() for t in real_reviews], dtype=object)})
        by_ids = run_signature(loaded, "token_ids", {
            "input_ids": ids, "attention_mask": (ids != 0).astype(np.int64),
            "token_type_ids": np.zeros_like(ids)})
    for out in (got, by_ids):
        np.testing.assert_allclose(out["logits"], logits, atol=1e-4, rtol=0)
        np.testing.assert_allclose(out["probabilities"], softmax(logits / temperature),
                                   atol=1e-5, rtol=0)
        np.testing.assert_array_equal(out["label_id"], logits.argmax(axis=1))
