import numpy as np
import pytest
import tf_keras
from transformers import BertTokenizerFast

from tfsent.errors import UserError
from tfsent.features import encode, make_dataset
from tfsent.model import (
    build_model,
    build_tiny_tokenizer,
    load_tokenizer,
    load_trained_model,
    make_optimizer,
    precision_policy,
    resolve_precision,
)

POSITIVE, NEGATIVE = ["great", "superb", "loved"], ["awful", "dull", "hated"]
FILLER = ["the", "film", "plot", "was", "and", "actor", "scene"]


def toy_task(n=320, seed=0):
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 2
        words = list(rng.choice(FILLER, size=rng.integers(4, 20)))
        words.insert(int(rng.integers(len(words))), rng.choice(POSITIVE if y else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(y)
    return texts, np.array(labels)


def test_tiny_tokenizer_is_a_bert_wordpiece():
    tok = build_tiny_tokenizer(["a great film", "a dull film"] * 10, vocab_size=60)
    assert isinstance(tok, BertTokenizerFast)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    assert tok("GREAT Film", add_special_tokens=False).input_ids == tok.convert_tokens_to_ids(
        ["great", "film"])


def test_compile_without_loss_trains_on_a_learnable_task():
    texts, labels = toy_task()
    tok = build_tiny_tokenizer(texts, vocab_size=100)
    tf_keras.utils.set_random_seed(0)
    model = build_model("tiny", ["negative", "positive"], tok)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    ds = make_dataset(encode(tok, texts, 32, "head", labels), 32, shuffle=True, seed=0)
    model.compile(optimizer=make_optimizer(3e-3, 100, 0.1, 0.01),
                  metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    history = model.fit(ds, epochs=10, verbose=0).history
    assert model._using_dummy_loss  # compiled without loss=: the built-in loss trains
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["accuracy"][-1] > 0.9


def test_model_folder_without_weights_is_a_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    tok = build_tiny_tokenizer(["a b c"], vocab_size=30)
    with pytest.raises(UserError, match="has no weights"):
        build_model(str(tmp_path), ["a", "b"], tok)


def test_missing_model_path_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nope"))


def test_offline_hub_id_is_a_one_line_error():
    with pytest.raises(UserError, match="could not load tokenizer 'no-such-org/no-such-model'"):
        load_tokenizer("no-such-org/no-such-model")


def test_precision_policies():
    assert resolve_precision("no") == "float32"
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert resolve_precision("auto") in {"float32", "mixed_bfloat16", "mixed_float16"}


def test_precision_policy_restores_the_policy_it_found():
    tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        with precision_policy("float32"):
            assert tf_keras.mixed_precision.global_policy().name == "float32"
        assert tf_keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")


def test_a_model_folder_that_does_not_load_is_a_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match=r"^could not load the model in .*re-run python -m "
                       r"tfsent.fit$") as info:
        load_trained_model(tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_real_minilm_safetensors_weights_load(minilm_path):
    from safetensors.numpy import load_file

    tok = load_tokenizer(str(minilm_path))
    model = build_model(str(minilm_path), ["negative", "positive"], tok)
    info = model.loading_info
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    assert not info["mismatched_keys"]
    state = load_file(str(minilm_path / "model.safetensors"))
    by_name = {w.name.split("/", 1)[1].rsplit(":", 1)[0]: w.numpy() for w in model.weights}
    np.testing.assert_array_equal(
        by_name["bert/embeddings/word_embeddings/weight"],
        state["embeddings.word_embeddings.weight"],
    )
    np.testing.assert_array_equal(
        by_name["bert/encoder/layer_._5/attention/self/query/kernel"],
        state["encoder.layer.5.attention.self.query.weight"].T)
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    # The pretrained encoder already separates meaning: same sentence -> same pooled output.
    ids = tok(["a wonderful film", "a wonderful film"], return_tensors="tf")
    pooled = model.bert(**ids).pooler_output.numpy()
    np.testing.assert_allclose(pooled[0], pooled[1], atol=1e-6)
