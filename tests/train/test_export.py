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

from tfsent import export as export_module
from tfsent.data import clean_text
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
from tfsent.features import encode, truncate_ids
from tfsent.graph_tokenizer import TRIM_CHARS_PER_TOKEN, GraphTokenizer
from tfsent.rundir import RunDir
from tfsent.testing import make_tiny_run_dir, tiny_tokenizer
from tfsent.versions import hold_lock, next_version, remove_stale_staging, staged_version

REPO = Path(__file__).resolve().parents[2]
MAX_LENGTH = 32
LABELS = ("negative", "positive")
# The module's run is calibrated: its metrics.json holds this temperature.
TEMPERATURE = 2.0
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


@pytest.fixture(scope="module")
def real_reviews(imdb_tarball) -> list[str]:
    """Real raw IMDB reviews: the 40 longest (up to 14,000 characters) and 40 others."""
    from tfsent.config import DataConfig
    from tfsent.data import read_source

    texts = read_source(str(imdb_tarball), DataConfig())["train"].texts
    longest = sorted(texts, key=len)[-40:]
    others = [texts[i] for i in np.random.default_rng(0).choice(len(texts), 40, replace=False)]
    return longest + others


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


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
@pytest.mark.parametrize("trim", [TRIM_CHARS_PER_TOKEN, 7, None])
def test_tokenizer_config_round_trip(lowercase, trim):
    graph = GraphTokenizer.from_hf(tiny_tokenizer(lowercase), 12, "tail", trim_chars_per_token=trim)
    config = json.loads(json.dumps(graph.get_config()))  # plain JSON values
    again = GraphTokenizer.from_config(config)
    assert again.get_config() == graph.get_config()
    assert (config["lowercase"], config["trim_chars_per_token"]) == (lowercase, trim)
    texts = tf.constant(TEXTS + [LONG_REVIEW * 50])
    for key, value in graph(texts).items():
        np.testing.assert_array_equal(again(texts)[key].numpy(), value.numpy())
    # ...and the config does matter: another max_length gives other ids.
    shorter = GraphTokenizer.from_config({**config, "max_length": 8})
    assert shorter(texts)["input_ids"].shape[1] == 8 < graph(texts)["input_ids"].shape[1]


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


def test_non_bert_tokenizer_is_a_user_error():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(UserError, match="supports WordPiece tokenizers"):
        GraphTokenizer.from_hf(PreTrainedTokenizerFast(tokenizer_object=backend), 16, "head")


# Trimming long texts before tokenization (GraphTokenizer.trim): same ids, bounded work.


def reference_trim(text: str, head_chars: int, tail_chars: int) -> str:
    """What GraphTokenizer.trim keeps of a (valid) text, in Python."""
    if len(text) <= head_chars + tail_chars:
        return text
    return text[:head_chars] + " " + text[len(text) - tail_chars:]


# Words tokenization treats differently: multibyte (2, 3 and 4 bytes, combining marks, ZWJ
# emoji), CJK (a token each), special tokens, punctuation runs, words at and over HF's
# 100-character limit ([UNK]), deleted characters inside words, <br /> tags in all spellings.
PIECES = [
    "great", "Film", "boring", "don't", "café", "CAFÉ", "naïve", "e\u0301" * 5, "Straße", "ΣΑΣ",
    "這部電影很好", "映画", "😀", "👍🏽", "👨\u200d👩\u200d👧", "[SEP]", "x[CLS]y", "!!!???", "...",
    "a" * 100, "b" * 101, "é" * 99, "soft\u00adhyphen", "zero\u200bwidth", "a\x00b",
    "<br />", "<BR>", "<br/>", "<br  />", "x\ufffdy", "private\ue000use",
]
SEPARATORS = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \u3000 ", "\r\n", " " * 20]


def generated_review(rng: np.random.Generator, chars: int) -> str:
    """Random words and separators, every word with its separators under 128 characters."""
    parts, size = [], 0
    while size < chars:
        word = PIECES[rng.integers(len(PIECES))] if rng.random() < 0.3 else \
            str(rng.choice(["the", "movie", "was", "not", "bad", "I", "loved", "it", ","]))
        parts += [word, SEPARATORS[rng.integers(len(SEPARATORS))]]
        size += len(word) + len(parts[-1])
    return "".join(parts)


@pytest.fixture(scope="module")
def long_texts() -> list[str]:
    rng = np.random.default_rng(0)
    texts = [generated_review(rng, n) for n in (3_000, 5_000, 9_000, 20_000, 60_000)]
    # Long runs of whitespace, long words, a multibyte flood and invalid spots in the middle,
    # which the trim drops: they change nothing.
    texts += [
        texts[0] + " " * 50_000 + texts[1],
        texts[1] + "\n" * 20_000 + "w" * 30_000 + "\t" * 10_000 + texts[2],
        texts[2] + "日本語😀é" * 10_000 + texts[3],
        texts[3] + "<br />" * 5_000 + "[SEP]" * 2_000 + texts[0],
    ]
    return texts


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
@pytest.mark.parametrize("max_length", [3, 8, 16])
def test_trimmed_long_texts_keep_their_ids(long_texts, truncation, max_length):
    hf = tiny_tokenizer()
    graph = GraphTokenizer.from_hf(hf, max_length, truncation)
    head, tail = graph.kept_tokens
    kept = [k.decode() for k in graph.trim(tf.constant(long_texts)).numpy()]
    for text, got in zip(long_texts, kept, strict=True):
        assert got == reference_trim(text, 128 * head, 128 * tail)
        assert len(got) <= 128 * (max_length - 2) + 1 < len(text)  # the trim did cut
    got = graph(tf.constant(long_texts))["input_ids"].numpy()
    np.testing.assert_array_equal(got, pad(hf_rows(hf, long_texts, max_length, truncation)))


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
@pytest.mark.parametrize("max_length", [4, 16, 32])
def test_trimmed_real_reviews_keep_their_ids(real_reviews, truncation, max_length):
    hf = tiny_tokenizer()
    graph = GraphTokenizer.from_hf(hf, max_length, truncation)
    kept = graph.trim(tf.constant(real_reviews)).numpy()
    cut = sum(len(k) < len(t.encode()) for k, t in zip(kept, real_reviews, strict=True))
    assert cut >= 40  # at least the 40 longest reviews are cut
    got = graph(tf.constant(real_reviews))["input_ids"].numpy()
    np.testing.assert_array_equal(got, pad(hf_rows(hf, real_reviews, max_length, truncation)))


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
def test_trim_cuts_multibyte_text_at_character_starts(truncation):
    """Texts of 1- to 4-byte characters, cut at every offset: the kept ends are whole
    characters (valid UTF-8), exactly the reference's."""
    graph = GraphTokenizer.from_hf(tiny_tokenizer(), 6, truncation, trim_chars_per_token=3)
    head, tail = (3 * n for n in graph.kept_tokens)
    alphabet = "aé日😀"
    texts = ["".join(alphabet[(i * 7 + j) % 4] for j in range(n))
             for i in range(4) for n in range(head + tail - 2, head + tail + 40)]
    kept = graph.trim(tf.constant(texts)).numpy()
    for text, got in zip(texts, kept, strict=True):
        assert got.decode("utf-8") == reference_trim(text, head, tail)


def test_trim_of_invalid_utf8_is_bounded_and_decodes_as_the_whole_text():
    graph = GraphTokenizer.from_hf(tiny_tokenizer(), 8, "head+tail")
    head, tail = (128 * n for n in graph.kept_tokens)
    # Any bytes: continuation-byte floods (no character starts at all), truncated sequences.
    weird = [b"\x80" * 1_000_000, b"\xff" * 100_000, b"\xe2\x82" * 300_000,
             b"good " + b"\xbf" * 500_000 + b" bad"]
    for text, got in zip(weird, graph.trim(tf.constant(weird)).numpy(), strict=True):
        assert len(got) <= 4 * (head + tail + 2) + 1 < len(text)
    # Invalid bytes within the kept ends decode (to U+FFFD, deleted) as in the whole text.
    words = generated_review(np.random.default_rng(1), 20_000).encode()
    raw = [b"ok\xc3 " + words + b" \xe2\x82 x\xff", words[:3_000] + b"\x80" * 10 + words]
    texts = [r.decode("utf-8", errors="replace") for r in raw]
    hf = tiny_tokenizer()
    np.testing.assert_array_equal(graph(tf.constant(raw))["input_ids"].numpy(),
                                  pad(hf_rows(hf, texts, 8, "head+tail")))


def test_text_outside_the_bound_gets_the_ids_of_its_kept_ends():
    """The documented difference: a text whose first words lie beyond 128 characters per token
    (here 100,000 spaces after the first word) is tokenized as its kept ends are: its second
    token comes from the kept tail."""
    hf = tiny_tokenizer()
    graph = GraphTokenizer.from_hf(hf, 8, "head+tail")
    head, tail = (128 * n for n in graph.kept_tokens)
    text = "great" + " " * 100_000 + "the plot was dull. " * 100 + "but I loved the end"
    got = graph(tf.constant([text]))["input_ids"].numpy().tolist()
    assert got == hf_rows(hf, [reference_trim(text, head, tail)], 8, "head+tail")
    assert got != hf_rows(hf, [text], 8, "head+tail")
    assert GraphTokenizer.from_hf(hf, 8, "head+tail", trim_chars_per_token=None)(
        tf.constant([text]))["input_ids"].numpy().tolist() == hf_rows(hf, [text], 8, "head+tail")


def test_a_bound_too_small_for_the_text_does_change_ids(long_texts):
    """The bound matters: 2 characters per token is too few for these texts."""
    hf = tiny_tokenizer()
    graph = GraphTokenizer.from_hf(hf, 16, "head+tail", trim_chars_per_token=2)
    got = graph(tf.constant(long_texts))["input_ids"].numpy()
    want = pad(hf_rows(hf, long_texts, 16, "head+tail"))
    assert got.shape != want.shape or (got != want).any()


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
