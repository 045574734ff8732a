"""The export stage: layout, versions, atomicity, TF Serving compatibility, and parity of the
in-graph tokenizer and of the exported model with the training pipeline (tiny models, offline)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.tiny import make_tiny_run_dir, tiny_tokenizer
from tfsent import export as export_module
from tfsent.data import clean_text
from tfsent.errors import UserError, run_cli
from tfsent.export import export_run, list_graph_ops, main, unsupported_ops
from tfsent.features import encode, truncate_ids
from tfsent.graph_tokenizer import GraphTokenizer

MAX_LENGTH = 32
LABELS = ("negative", "positive")
LONG_REVIEW = (
    "The first scene is great. " + "The plot was dull and the acting was bad. " * 12
    + "But the ending was beautiful and I loved it!"
)
# Every kind of input the in-graph tokenizer must treat as the HF tokenizer does.
TEXTS = [
    "A great film.",
    "ThE MoViE wAs GrEaT, really GREAT!!",
    "café naïve résumé CAFÉ NAÏVE",
    "I 😀 loved it 👍🏽! 👨\u200d👩\u200d👧 family film",
    "這部電影很好",
    "映画はとても良かった 한국어 영화",
    "Great acting.<br /><br />Bad plot.<BR>Good end<br/>x<br  />y<br\xa0/>z",
    LONG_REVIEW,
    "the " * 40 + "end",
    "",
    "   ",
    "\t\n \r\n",
    "!!!???... --- (((",
    "don't $100 a+b<c>=d^e`f|g~h _x_ @me #1",
    "¿Qué? «Hola» — “quotes” … ‘single’",
    "10/10, 3.5 stars, 1999, 2nd, 42!",
    "a\x00b c\x07d soft\u00adhyphen zero\u200bwidth x\ufffdy private\ue000use",
    "ﬁne ｆｕｌｌ width Ⅻ ℌ 𝔘𝔫𝔦",
    "Straße ẞ ΣΑΣ ΟΔΟΣ İstanbul",
    "good [SEP] movie [PAD] x[CLS]y [sep] [S\u200bEP]",
    "x" * 150 + " " + "é" * 60 + " " + "e\u0301" * 40,
    "new marks a\u0898b, CJK extension x\U0002b820y x\U0002b920y and \u4e00",
]


def hf_rows(tokenizer, texts, max_length, truncation) -> list[list[int]]:
    """Token ids by the training pipeline: clean_text, HF tokenizer, truncate_ids, [CLS]/[SEP]."""
    encoded = encode(tokenizer, [clean_text(t) for t in texts], max_length, truncation)
    return [row.tolist() for row in encoded.input_ids]


def pad(rows: list[list[int]]) -> np.ndarray:
    width = max(len(r) for r in rows)
    return np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int64)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_tiny_run_dir(tmp_path_factory.mktemp("run"), LABELS, MAX_LENGTH, "head+tail")


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


@pytest.fixture(scope="module")
def session(exported):
    """The export loaded as TF Serving's C++ loader does: a TF1 graph + session, by tensor names."""
    graph = tf.Graph()
    with graph.as_default():
        sess = tf.compat.v1.Session(graph=graph)
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(exported))
    yield sess, meta_graph.signature_def
    sess.close()


def run_signature(session, name: str, feeds: dict) -> dict[str, np.ndarray]:
    sess, signatures = session
    signature = signatures[name]
    fetches = {key: info.name for key, info in signature.outputs.items()}
    return sess.run(fetches, {signature.inputs[k].name: v for k, v in feeds.items()})


@pytest.fixture(scope="module")
def keras_model(run_dir):
    return export_module.load_float32_model(run_dir / "model")


def test_cli_prints_the_version_path(cli_export, exported):
    code, stdout, base = cli_export
    assert code == 0
    assert stdout.strip() == str(exported)
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # the temp dir is gone


def test_layout(exported, run_dir):
    assert (exported / "saved_model.pb").is_file()
    assert (exported / "variables" / "variables.index").is_file()
    assets = exported / "assets"
    assert (assets / "labels.txt").read_text() == "negative\npositive\n"
    vocab = (run_dir / "tokenizer" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert (assets / "vocab.txt").read_text(encoding="utf-8").splitlines() == vocab
    config = json.loads((assets / "export_config.json").read_text())
    assert config["model_name"] == "tfsent" and config["version"] == 1
    assert (config["max_length"], config["truncation"]) == (MAX_LENGTH, "head+tail")
    assert config["do_lower_case"] is True
    assert config["label_names"] == list(LABELS)
    outputs = ["probabilities", "label_id", "label", "logits", "classes"]
    assert config["signatures"] == {
        "serving_default": {"inputs": ["text"], "outputs": outputs},
        "token_ids": {"inputs": ["input_ids", "attention_mask", "token_type_ids"],
                      "outputs": outputs},
    }
    assert config["tensorflow_text_version"] == metadata.version("tensorflow-text")
    major_minor = ".".join(metadata.version("tensorflow-text").split(".")[:2])
    assert config["serving_image"] == f"tensorflow/serving:{major_minor}.0"


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


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
def test_graph_token_ids_equal_the_training_pipeline(lowercase, truncation):
    hf = tiny_tokenizer(lowercase)
    max_length = 16
    expected = hf_rows(hf, TEXTS, max_length, truncation)
    untruncated = hf([clean_text(t) for t in TEXTS], add_special_tokens=False).input_ids
    assert max(len(r) for r in untruncated) > 3 * max_length  # the cut really happens
    assert hf.unk_token_id in sum(untruncated, [])
    assert hf.sep_token_id in untruncated[TEXTS.index(next(t for t in TEXTS if "[SEP]" in t))]

    graph = GraphTokenizer.from_hf(hf, max_length, truncation)
    whole = graph.tokenize(tf.constant(TEXTS)).to_list()
    for text, row, want_row in zip(TEXTS, whole, untruncated, strict=True):
        assert row == want_row, (
            f"{text!r}: {hf.convert_ids_to_tokens(row)} != {hf.convert_ids_to_tokens(want_row)}")
    got = {k: v.numpy() for k, v in graph(tf.constant(TEXTS)).items()}
    want = pad(expected)
    for text, row, want_row in zip(TEXTS, got["input_ids"], want, strict=True):
        assert row.tolist() == want_row.tolist(), (
            f"{text!r}: {hf.convert_ids_to_tokens(row)} != {hf.convert_ids_to_tokens(want_row)}")
    np.testing.assert_array_equal(got["attention_mask"], (want != 0).astype(np.int64))
    np.testing.assert_array_equal(got["token_type_ids"], np.zeros_like(want))
    assert got["input_ids"].dtype == np.int64


def test_invalid_utf8_is_read_as_python_decodes_it():
    hf = tiny_tokenizer()
    raw = [b"good \xff\xfe movie", b"caf\xc3", b"\xe2\x82 x", b"ok\xc3\xa9"]
    texts = [r.decode("utf-8", errors="replace") for r in raw]
    graph = GraphTokenizer.from_hf(hf, MAX_LENGTH, "head")
    got = graph(tf.constant(raw))["input_ids"].numpy()
    np.testing.assert_array_equal(got, pad(hf_rows(hf, texts, MAX_LENGTH, "head")))


def test_graph_truncation_equals_truncate_ids():
    for budget in (1, 2, 5, 8):
        for strategy in ("head", "tail", "head+tail"):
            graph = GraphTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]"], budget + 2, strategy)
            rows = [list(range(100, 100 + n)) for n in range(0, 3 * budget + 2)]
            got = graph.truncate(tf.ragged.constant(rows, dtype=tf.int64)).to_list()
            assert got == [truncate_ids(r, budget, strategy) for r in rows], (budget, strategy)


def test_empty_batch():
    graph = GraphTokenizer.from_hf(tiny_tokenizer(), MAX_LENGTH, "head")
    out = graph(tf.constant([], tf.string))
    assert out["input_ids"].shape[0] == 0


def test_a_request_of_no_texts_gets_empty_outputs(session):
    got = run_signature(session, "serving_default", {"text": np.array([], dtype=object)})
    assert got["probabilities"].shape == (0, 2)
    assert got["label"].shape == got["label_id"].shape == (0,)
    assert got["classes"].shape == (0, 2)


def test_exported_probabilities_equal_the_keras_model(session, keras_model):
    hf = tiny_tokenizer(lowercase=True)
    ids = pad(hf_rows(hf, TEXTS, MAX_LENGTH, "head+tail"))
    features = {"input_ids": ids.astype(np.int32), "attention_mask": (ids != 0).astype(np.int32),
                "token_type_ids": np.zeros_like(ids, np.int32)}
    want = tf.nn.softmax(keras_model(features, training=False).logits, axis=-1).numpy()
    texts = np.array([t.encode() for t in TEXTS], dtype=object)
    got = run_signature(session, "serving_default", {"text": texts})
    np.testing.assert_allclose(got["probabilities"], want, atol=1e-5, rtol=0)
    assert want[:, 1].std() > 0.05  # outputs depend on the text: a wrong id would show
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


def test_model_loads_in_float32_under_a_mixed_precision_policy(run_dir):
    import tf_keras

    tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = export_module.load_float32_model(run_dir / "model")
        assert tf_keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # restored
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    assert model.dtype_policy.name == "float32"
    assert model(model.dummy_inputs).logits.dtype == tf.float32


def test_non_bert_tokenizer_is_a_user_error():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(UserError, match="supports BERT WordPiece tokenizers"):
        GraphTokenizer.from_hf(PreTrainedTokenizerFast(tokenizer_object=backend), 16, "head")


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


@pytest.mark.parametrize("damage, message", [
    ("nothing", "does not exist"),
    ("config.json", "has no config.json"),
    ("model/tf_model.h5", "has no model weights"),
    ("tokenizer", "has no tokenizer"),
])
def test_bad_run_dir_is_a_user_error(run_dir, tmp_path, monkeypatch, damage, message):
    import shutil

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
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        assert done.returncode == 2, (argv, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, done.stderr)
        assert done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
def test_graph_token_ids_with_the_real_minilm_vocab(minilm_path, truncation):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(minilm_path))
    for max_length in (16, 512):
        graph = GraphTokenizer.from_hf(hf, max_length, truncation)
        got = graph(tf.constant(TEXTS))["input_ids"].numpy()
        want = pad(hf_rows(hf, TEXTS, max_length, truncation))
        for text, row, want_row in zip(TEXTS, got, want, strict=True):
            assert row.tolist() == want_row.tolist(), (
                f"{text!r}: {hf.convert_ids_to_tokens(row)} != "
                f"{hf.convert_ids_to_tokens(want_row)}")


@pytest.mark.slow
def test_every_code_point_tokenizes_as_hf_with_the_real_minilm_vocab(minilm_path):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(minilm_path))
    tokenize = tf.function(GraphTokenizer.from_hf(hf, 512, "head").tokenize)
    # All but surrogates and planes 4-13, unassigned in every Unicode version so far.
    code_points = [*range(0xD800), *range(0xE000, 0x40000), *range(0xE0000, sys.maxunicode + 1)]
    mismatches = []
    for start in range(0, len(code_points), 100_000):
        chunk = code_points[start : start + 100_000]
        texts = [f"a{chr(c)}b" for c in chunk]
        want = hf(texts, add_special_tokens=False).input_ids
        got = tokenize(tf.constant(texts)).to_list()
        mismatches += [hex(c) for c, w, g in zip(chunk, want, got, strict=True) if w != g]
    assert mismatches == []
