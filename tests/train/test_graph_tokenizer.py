"""The in-graph tokenizer (``GraphTokenizer``): the training pipeline's and the HF tokenizer's ids
from TensorFlow + tensorflow-text ops, its config round trip, and the bounded trim of long texts."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.train.tokenizer_cases import LONG_REVIEW, MAX_LENGTH, TEXTS, hf_rows, pad
from tfsent.data import clean_text
from tfsent.errors import UserError
from tfsent.features import truncate_ids
from tfsent.graph_tokenizer import TRIM_CHARS_PER_TOKEN, GraphTokenizer
from tfsent.testing import tiny_tokenizer

# Words and separators the generated long reviews are made of: every kind the trim must keep whole.
PIECES = [
    "great", "Film", "boring", "don't", "café", "CAFÉ", "naïve", "e\u0301" * 5, "Straße", "ΣΑΣ",
    "這部電影很好", "映画", "😀", "👍🏽", "👨\u200d👩\u200d👧", "[SEP]", "x[CLS]y", "!!!???", "...",
    "a" * 100, "b" * 101, "é" * 99, "soft\u00adhyphen", "zero\u200bwidth", "a\x00b",
    "<br />", "<BR>", "<br/>", "<br  />", "x\ufffdy", "private\ue000use",
]
SEPARATORS = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \u3000 ", "\r\n", " " * 20]


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


def test_non_bert_tokenizer_is_a_user_error():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(UserError, match="supports WordPiece tokenizers"):
        GraphTokenizer.from_hf(PreTrainedTokenizerFast(tokenizer_object=backend), 16, "head")


def reference_trim(text: str, head_chars: int, tail_chars: int) -> str:
    """What GraphTokenizer.trim keeps of a (valid) text, in Python."""
    if len(text) <= head_chars + tail_chars:
        return text
    return text[:head_chars] + " " + text[len(text) - tail_chars:]


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


