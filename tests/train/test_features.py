import numpy as np
import pytest
from transformers import BertTokenizerFast

from tfsent.errors import UserError
from tfsent.features import (
    bucket_boundaries,
    count_batches,
    encode,
    head_size,
    make_dataset,
    make_train_dataset,
    padding_fraction,
    truncate_ids,
)

WORDS = ["good", "bad", "film", "the", "a", "plot", "actor", "great", "dull", "end"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)


def test_truncation_strategies_keep_the_documented_tokens():
    ids = list(range(100))
    assert truncate_ids(ids, 10, "head") == list(range(10))
    assert truncate_ids(ids, 10, "tail") == list(range(90, 100))
    # Sun et al.: 128 head + 382 tail of a 510-token budget.
    assert head_size(510) == 128
    kept = truncate_ids(list(range(1000)), 510, "head+tail")
    assert kept[:128] == list(range(128)) and kept[128:] == list(range(1000 - 382, 1000))
    assert truncate_ids(ids[:5], 10, "tail") == ids[:5]  # short rows are untouched
    with pytest.raises(UserError, match="truncation"):
        truncate_ids(ids, 10, "middle")


@pytest.mark.parametrize("strategy,expected_words", [
    ("head", ["good", "the", "a", "plot"]),
    ("tail", ["actor", "great", "dull", "end"]),
    ("head+tail", ["good", "great", "dull", "end"]),
])
def test_encode_applies_strategy_and_special_tokens(tokenizer, strategy, expected_words):
    text = "GOOD the a plot actor great dull end"
    enc = encode(tokenizer, [text, "bad"], max_length=6, truncation=strategy,
                 labels=np.array([1, 0]))
    row = enc.input_ids[0].tolist()
    assert row[0] == tokenizer.cls_token_id and row[-1] == tokenizer.sep_token_id
    assert tokenizer.convert_ids_to_tokens(row[1:-1]) == expected_words
    assert enc.lengths.tolist() == [6, 3]
    assert enc.labels.tolist() == [1, 0]


def _varied_lengths(tokenizer, n=400, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([rng.integers(3, 30, n // 2), rng.integers(100, 250, n // 2)])
    texts = [" ".join(rng.choice(WORDS, size=k)) for k in lengths]
    return encode(tokenizer, texts, 256, "head", labels=rng.integers(0, 2, n))


def test_bucketing_reduces_padding_and_keeps_every_example(tokenizer):
    enc = _varied_lengths(tokenizer)
    plain = make_dataset(enc, 16, shuffle=True, seed=0, bucketing=False)
    bucketed = make_dataset(enc, 16, shuffle=True, seed=0, bucketing=True, max_length=256)
    assert padding_fraction(plain) > 0.3
    assert padding_fraction(bucketed) < 0.1
    seen = sorted(int(f["attention_mask"][i].numpy().sum())
                  for f, _ in bucketed for i in range(f["attention_mask"].shape[0]))
    assert seen == sorted(enc.lengths.tolist())


def test_dataset_features_are_consistent(tokenizer):
    enc = _varied_lengths(tokenizer, n=64)
    total_labels = []
    for features, labels in make_dataset(enc, 8, shuffle=False, seed=0, max_length=256):
        ids, mask = features["input_ids"].numpy(), features["attention_mask"].numpy()
        assert ids.shape == mask.shape and (features["token_type_ids"].numpy() == 0).all()
        assert ((ids != 0) == (mask == 1)).all()
        assert ids.shape[1] == mask.sum(axis=1).max()  # dynamic padding: longest in batch
        total_labels += labels.numpy().tolist()
    assert sorted(total_labels) == sorted(enc.labels.tolist())


def test_pad_to_bucket_boundary_limits_shapes(tokenizer):
    enc = _varied_lengths(tokenizer)
    ds = make_dataset(enc, 16, shuffle=True, seed=0, max_length=256, pad_to_bucket_boundary=True)
    widths = {f["input_ids"].shape[1] for f, _ in ds}
    assert widths <= set(bucket_boundaries(256))


@pytest.mark.parametrize("options", [
    dict(bucketing=True, max_length=256),
    dict(bucketing=True, max_length=256, pad_to_bucket_boundary=True),
    dict(bucketing=True, max_length=256, drop_remainder=True),
    dict(bucketing=True),  # buckets up to the longest row
    dict(bucketing=False),
    dict(bucketing=False, drop_remainder=True),
])
def test_every_dataset_knows_its_number_of_batches(tokenizer, options):
    # Keras' progress bar shows "step/total" only when the dataset's cardinality is known.
    enc = _varied_lengths(tokenizer, n=203)
    ds = make_dataset(enc, 16, shuffle=True, seed=0, **options)
    counted = sum(1 for _ in ds)
    assert int(ds.cardinality()) == counted == count_batches(
        enc.lengths, 16, bucketing=options["bucketing"], max_length=options.get("max_length"),
        drop_remainder=options.get("drop_remainder", False))


def test_training_order_is_a_function_of_the_seed_and_epoch(tokenizer):
    enc = _varied_lengths(tokenizer, n=96)

    def batches(ds):
        return [tuple(f["input_ids"][:, 1].numpy().tolist()) + tuple(y.numpy().tolist())
                for f, y in ds]

    ds, steps = make_train_dataset(enc, 8, seed=5, epochs=3, max_length=256)
    stream = batches(ds)
    assert len(stream) == 3 * steps == int(ds.cardinality())
    epochs = [stream[i * steps:(i + 1) * steps] for i in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]  # each epoch its own permutation
    for epoch in epochs:  # ... of every example
        assert sum(len(b) for b in epoch) == 2 * 96
    assert batches(make_train_dataset(enc, 8, seed=5, epochs=3, max_length=256)[0]) == stream
    assert batches(make_train_dataset(enc, 8, seed=6, epochs=3, max_length=256)[0]) != stream
    # Resumed at epoch 2, step 3: the rest of the very same stream.
    resumed, _ = make_train_dataset(enc, 8, seed=5, epochs=3, start_epoch=1, start_step=3,
                                    max_length=256)
    assert batches(resumed) == stream[steps + 3:]
