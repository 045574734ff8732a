"""Every supported model family (BERT, DistilBERT, ELECTRA, MobileBERT, ConvBERT) with tiny
config-built models: its classes and inputs, the in-graph tokenizer against the HF tokenizer,
and end to end (fit -> export -> ``tfsent.serve`` -> client) for the families other than BERT,
which the rest of the suite covers. Models and tokenizers tfsent cannot export are refused in
one line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.server.helpers import copy_version
from tfsent.client import SentimentClient
from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tfsent.data import clean_text
from tfsent.errors import run_cli
from tfsent.features import MODEL_INPUTS, encode, make_dataset
from tfsent.fit import fit
from tfsent.fit import main as fit_main
from tfsent.graph_tokenizer import GraphTokenizer
from tfsent.model import FAMILIES, build_model, build_tiny_tokenizer
from tfsent.model_server.process import start_server, wait_available
from tfsent.rundir import RunDir
from tfsent.testing import tiny_tokenizer

LABELS = ["negative", "positive"]
# model_type -> (HF fast tokenizer, TF model class): what a user of transformers expects.
CLASSES = {
    "bert": ("BertTokenizerFast", "TFBertForSequenceClassification"),
    "distilbert": ("DistilBertTokenizerFast", "TFDistilBertForSequenceClassification"),
    "electra": ("ElectraTokenizerFast", "TFElectraForSequenceClassification"),
    "mobilebert": ("MobileBertTokenizerFast", "TFMobileBertForSequenceClassification"),
    "convbert": ("ConvBertTokenizerFast", "TFConvBertForSequenceClassification"),
}
NOT_BERT = [f for f in FAMILIES if f != "bert"]
# Tiny MobileBERT (bottlenecks, no LayerNorm) needs a higher rate to learn the demo in 3 epochs.
LEARNING_RATES = {"mobilebert": 6e-3}
TEXTS = [
    "A great film, truly GREAT!",
    "Dull and far too long.<br /><br />I wanted to leave after an hour.",
    "café naïve résumé 這部電影很好 😀 [SEP] x[CLS]y",
    "The first scene is great. " + "The plot was dull and the acting was bad. " * 8
    + "But the ending was beautiful and I loved it!",
    "",
]
REVIEWS = [
    "A wonderful, moving film. The cast is superb!",
    "Awful. Boring from start to end, I hated it.",
    "Not bad, not great.",
]


def test_the_supported_families_are_the_wordpiece_encoders_with_a_tf_head():
    assert sorted(FAMILIES) == sorted(CLASSES)
    assert FAMILIES["distilbert"].inputs == ("input_ids", "attention_mask")
    assert all(FAMILIES[f].inputs == MODEL_INPUTS for f in FAMILIES if f != "distilbert")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_builds_its_classes_and_computes_its_loss_on_its_inputs(family):
    tokenizer_class, model_class = CLASSES[family]
    tok = build_tiny_tokenizer(TEXTS, vocab_size=200, family=family)
    assert type(tok).__name__ == tokenizer_class
    assert set(tok.model_input_names) == set(FAMILIES[family].inputs)
    model = build_model("tiny" if family == "bert" else f"tiny-{family}", LABELS, tok)
    assert type(model).__name__ == model_class
    assert model.config.model_type == family and model.config.id2label == dict(enumerate(LABELS))
    data = make_dataset(encode(tok, TEXTS, 32, "head+tail", np.arange(len(TEXTS)) % 2), 8,
                        shuffle=False, seed=0, bucketing=False, inputs=FAMILIES[family].inputs)
    features, labels = next(iter(data))
    assert list(features) == list(FAMILIES[family].inputs)
    # The built-in loss (what compile without loss= trains) on the family's own inputs.
    out = model({**features, "labels": labels}, training=False)
    assert out.logits.shape == (len(TEXTS), 2) and np.isfinite(out.loss.numpy()).all()


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("truncation", ["head", "head+tail"])
def test_graph_tokenizer_equals_the_training_pipeline_for_every_family(family, truncation):
    hf = tiny_tokenizer(family=family)
    max_length = 16
    graph = GraphTokenizer.from_hf(hf, max_length, truncation)
    got = {k: v.numpy() for k, v in graph(tf.constant(TEXTS)).items()}
    assert set(got) == set(hf.model_input_names)  # DistilBERT's: no token_type_ids
    rows = [r.tolist() for r in encode(hf, [clean_text(t) for t in TEXTS], max_length,
                                       truncation).input_ids]
    width = max(map(len, rows))
    want = np.array([r + [0] * (width - len(r)) for r in rows])
    np.testing.assert_array_equal(got["input_ids"], want)
    np.testing.assert_array_equal(got["attention_mask"], want != 0)
    if "token_type_ids" in got:
        np.testing.assert_array_equal(got["token_type_ids"], np.zeros_like(want))
    # The same ids as the family's HF tokenizer on the cleaned texts, cut to the same length.
    if truncation == "head":
        hf_ids = hf([clean_text(t) for t in TEXTS], truncation=True, max_length=max_length,
                    padding=True, return_tensors="np")
        np.testing.assert_array_equal(got["input_ids"], hf_ids["input_ids"])
        assert set(hf_ids) == set(got)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_graph_tokenizer_equals_hf_on_real_reviews_for_every_family(family, minilm_path,
                                                                    imdb_tarball):
    """The real bert-base-uncased vocabulary (all-MiniLM-L6-v2's, which DistilBERT, ELECTRA,
    MobileBERT and ConvBERT's uncased checkpoints share) in each family's tokenizer class, on
    real reviews held out by their seed from any training here."""
    from tfsent.data import read_source
    from tfsent.model import wordpiece_tokenizer_class

    hf = wordpiece_tokenizer_class(family)(vocab_file=str(minilm_path / "vocab.txt"),
                                           do_lower_case=True)
    texts = read_source(str(imdb_tarball), DataConfig())["train"].texts
    reviews = [texts[i] for i in np.random.default_rng(13).choice(len(texts), 300, False)]
    for max_length, truncation in ((512, "head+tail"), (64, "tail")):
        graph = GraphTokenizer.from_hf(hf, max_length, truncation)
        got = graph(tf.constant(reviews))
        assert set(got) == set(hf.model_input_names)
        want = encode(hf, [clean_text(t) for t in reviews], max_length, truncation).input_ids
        for review, row, mask, want_row in zip(reviews, got["input_ids"].numpy(),
                                               got["attention_mask"].numpy(), want, strict=True):
            assert row[mask == 1].tolist() == want_row.tolist(), review[:80]


# End to end: fit -> export -> serve -> client, one server hosting every family.


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("families")
    runs = {}
    for family in NOT_BERT:
        cfg = RunConfig(
            DataConfig(dataset="demo", max_train_samples=240, max_eval_samples=80),
            ModelConfig(model=f"tiny-{family}", max_length=48, tiny_vocab_size=300),
            TrainConfig(output_dir=str(root / "runs" / family), export_dir=str(root / "exported"),
                        model_name=family, epochs=3, batch_size=32,
                        learning_rate=LEARNING_RATES.get(family, 3e-3),
                        progress=0, seed=1),
        )
        runs[family] = (Path(cfg.train.output_dir), fit(cfg))
    return runs


@pytest.fixture(scope="module")
def family_server(family_runs, tmp_path_factory):
    """One ``tfsent.serve`` hosting every family's export, by a TF Serving model config file."""
    root = tmp_path_factory.mktemp("serve")
    entries = []
    for family, (_, metrics) in family_runs.items():
        (root / family).mkdir()
        copy_version(Path(metrics["export"]), root / family, 1)
        entries.append(f'config {{ name: "{family}" base_path: "{root / family}" '
                       'model_platform: "tensorflow" }')
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
    with start_server(None, NOT_BERT[0], [f"--model_config_file={config}"],
                      timeout=180) as server:
        for family in NOT_BERT:
            wait_available(server.rest_url, family, time.monotonic() + 180)
        yield server


def keras_probabilities(run: Path, texts: list[str]) -> np.ndarray:
    """What the trained model gives on the training pipeline's features, calibrated."""
    run_dir = RunDir(run)
    cfg, model = run_dir.config, run_dir.load_model()
    inputs = FAMILIES[model.config.model_type].inputs
    encoded = encode(run_dir.load_tokenizer(), [clean_text(t) for t in texts],
                     cfg.model.max_length, cfg.model.truncation)
    features = next(iter(make_dataset(encoded, len(texts), shuffle=False, seed=0,
                                      bucketing=False, inputs=inputs)))[0]
    logits = model(features, training=False).logits.numpy()
    return tf.nn.softmax(logits / run_dir.temperature).numpy()


@pytest.mark.parametrize("family", NOT_BERT)
def test_each_family_fits_exports_serves_and_answers_clients(family, family_runs,
                                                             family_server):
    run, metrics = family_runs[family]
    assert metrics["validation"]["accuracy"] >= 0.8  # it learned the demo task
    config = json.loads((Path(metrics["export"]) / "assets" / "export_config.json").read_text())
    assert config["model_type"] == family
    assert config["signatures"]["token_ids"]["inputs"] == list(FAMILIES[family].inputs)
    card = (run / "README.md").read_text()
    assert f"`{CLASSES[family][1]}`" in card and f"\n- {family}\n" in card

    want = keras_probabilities(run, REVIEWS)
    for address in (f"grpc://{family_server.grpc_address}", family_server.rest_url):
        with SentimentClient(address, model_name=family) as client:
            got = client.predict(REVIEWS)
            signature = client.metadata().signature_defs["token_ids"]
        np.testing.assert_allclose([[p.probabilities[n] for n in LABELS] for p in got], want,
                                   atol=1e-5)
        assert [p.label for p in got] == [LABELS[i] for i in want.argmax(-1)]
        assert sorted(signature.inputs) == sorted(FAMILIES[family].inputs)


# What cannot be exported is refused before anything is written.


def _fit_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = run_cli(fit_main, argv)
    err = capsys.readouterr().err.strip()
    return code, err


def _bpe_tokenizer_folder(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "a": 2, "b": 3, "ab": 4}
    backend = Tokenizer(models.BPE(vocab, [("a", "b")], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>").save_pretrained(path)
    return path


def _unigram_tokenizer_folder(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram([("<pad>", 0.0), ("<unk>", 0.0), ("▁a", -1.0)], 1))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>").save_pretrained(path)
    return path


def test_a_model_of_another_family_is_one_line_and_writes_nothing(tmp_path, capsys):
    from transformers import RobertaConfig

    model = tmp_path / "roberta"
    RobertaConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                  intermediate_size=8).save_pretrained(model)
    _bpe_tokenizer_folder(model)
    out = tmp_path / "run"
    code, err = _fit_cli(["--model", str(model), "--dataset", "demo", "--output-dir", str(out)],
                         capsys)
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert "'roberta' model" in err
    assert "bert, distilbert, electra, convbert, mobilebert" in err
    assert not out.exists()


@pytest.mark.parametrize("kind, make", [("None/ByteLevel/BPE", _bpe_tokenizer_folder),
                                        ("None/Metaspace/Unigram", _unigram_tokenizer_folder)])
def test_a_bpe_or_sentencepiece_tokenizer_is_one_line_and_writes_nothing(kind, make, tmp_path,
                                                                       capsys):
    tokenizer = make(tmp_path / "tokenizer")
    out = tmp_path / "run"
    code, err = _fit_cli(["--model", "tiny", "--tokenizer", str(tokenizer), "--dataset", "demo",
                          "--output-dir", str(out)], capsys)
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert f"tokenizer is {kind}; tfsent supports WordPiece tokenizers" in err
    assert not out.exists()


def test_an_unknown_tiny_family_is_one_line(tmp_path, capsys):
    code, err = _fit_cli(["--model", "tiny-roberta", "--dataset", "demo",
                          "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and "\n" not in err
    assert "no such tiny model" in err and "distilbert" in err
