"""Features: texts -> token ids (HF fast tokenizer) -> bucketed, dynamically padded ``tf.data``.

Long reviews are cut to ``max_length`` tokens by one of three strategies (Sun et al. 2019, "How to
Fine-Tune BERT for Text Classification?", found head+tail best on IMDB)::

    >>> truncate_ids(list(range(10)), budget=4, strategy="head")
    [0, 1, 2, 3]
    >>> truncate_ids(list(range(10)), budget=4, strategy="tail")
    [6, 7, 8, 9]
    >>> truncate_ids(list(range(10)), budget=4, strategy="head+tail")
    [0, 7, 8, 9]

The exported SavedModel repeats this cut in the graph (``tfsent.graph_tokenizer``); tests hold
the two to the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tfsent.config import check_model_options
from tfsent.errors import fail

if TYPE_CHECKING:
    import tensorflow as tf
    from transformers import PreTrainedTokenizerFast

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def head_size(budget: int) -> int:
    """Tokens kept from the start under head+tail: a quarter (128 of 510 at max length 512)."""
    return (budget + 2) // 4


def truncate_ids(ids: Sequence[int], budget: int, strategy: str) -> list[int]:
    """Cut ``ids`` (no special tokens) to at most ``budget`` tokens with ``strategy``."""
    ids = list(ids)
    if len(ids) <= budget:
        return ids
    if strategy == "head":
        return ids[:budget]
    if strategy == "tail":
        return ids[len(ids) - budget :]
    if strategy == "head+tail":
        head = head_size(budget)
        return ids[:head] + ids[len(ids) - (budget - head) :]
    check_model_options(budget + 2, strategy)  # an unknown strategy: the one message for it
    raise AssertionError(f"truncation {strategy!r} passed the check but has no branch")


@dataclass
class Encoded:
    """Token ids of a list of texts, one variable-length row per text, special tokens included."""

    input_ids: list[np.ndarray]
    labels: np.ndarray | None

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(r) for r in self.input_ids), dtype=np.int64, count=len(self))

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(
    tokenizer: PreTrainedTokenizerFast,
    texts: Sequence[str],
    max_length: int,
    truncation: str,
    labels: np.ndarray | None = None,
    batch_size: int = 1000,
) -> Encoded:
    """Tokenize ``texts`` in batches with the fast tokenizer, cut each to ``max_length``.

    Tokenizing without truncation and cutting afterwards is what lets tail and head+tail keep the
    end of a review; the fast tokenizer has no such strategy of its own.
    """
    check_model_options(max_length, truncation)
    budget = max_length - 2
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        fail("the tokenizer has no [CLS]/[SEP] tokens; use a BERT WordPiece tokenizer")
    rows: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        pieces = tokenizer(chunk, add_special_tokens=False, truncation=False, verbose=False)
        for ids in pieces["input_ids"]:
            row = [cls_id, *truncate_ids(ids, budget, truncation), sep_id]
            rows.append(np.asarray(row, dtype=np.int32))
    return Encoded(rows, None if labels is None else np.asarray(labels, dtype=np.int64))


def bucket_boundaries(max_length: int) -> list[int]:
    """Upper lengths of the length buckets: fine steps for short reviews, coarser for long."""
    edges = [16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512]
    edges += list(range(640, max_length + 1, 128))
    return [e for e in edges if e < max_length] + [max_length]


def count_batches(
    lengths: np.ndarray,
    batch_size: int,
    *,
    bucketing: bool = True,
    max_length: int | None = None,
    drop_remainder: bool = False,
) -> int:
    """The number of batches :func:`make_dataset` makes of rows of these ``lengths``.

    Bucketing batches each bucket separately, so the count is that of every bucket's batches
    whatever the order: it is known before the pipeline runs, and Keras' progress bar gets its
    total from it.

    >>> count_batches(np.array([5, 6, 40, 41, 42]), 2, max_length=64)  # buckets: 2 + 3 rows
    3
    >>> count_batches(np.array([5, 6, 40, 41, 42]), 2, bucketing=False)
    3
    """
    rounding = np.floor if drop_remainder else np.ceil
    if not bucketing:
        return int(rounding(len(lengths) / batch_size))
    edges = np.asarray(_bucket_edges(lengths, max_length), dtype=np.int64)
    buckets = np.bincount(np.searchsorted(edges, lengths, side="right"), minlength=len(edges) + 1)
    return int(rounding(buckets / batch_size).sum())


def _bucket_edges(lengths: np.ndarray, max_length: int | None) -> list[int]:
    """``bucket_by_sequence_length``'s boundaries: bucket ``i`` holds lengths below edge ``i``."""
    return [b + 1 for b in _bucket_bounds(_limit(lengths, max_length))[:-1]]


def _limit(lengths: np.ndarray, max_length: int | None) -> int:
    longest = int(lengths.max()) if len(lengths) else 1
    return max(max_length or longest, longest)


def _bucket_bounds(limit: int) -> list[int]:
    return [b for b in bucket_boundaries(limit) if b < limit] + [limit]


def make_dataset(
    encoded: Encoded,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    bucketing: bool = True,
    pad_to_bucket_boundary: bool = False,
    shuffle_buffer: int = 10_000,
    max_length: int | None = None,
    drop_remainder: bool = False,
    inputs: Sequence[str] = MODEL_INPUTS,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of ``({input_ids, attention_mask, token_type_ids}, labels)``, with
    only the ``inputs`` the model takes (DistilBERT: no ``token_type_ids``).

    Rows are padded per batch (dynamic padding), and with ``bucketing`` batched with rows of
    similar length, so a batch of short reviews is not padded to the longest review of the run.
    ``pad_to_bucket_boundary`` keeps the number of distinct shapes small, which XLA needs to
    avoid recompiling for every batch. The dataset knows its number of batches
    (``cardinality``). ``shuffle`` reshuffles at every iteration with a bounded buffer; training
    in :mod:`tfsent.fit` uses :func:`make_train_dataset`, whose order is a function of the epoch.
    """
    import tensorflow as tf

    rows = _RowSource(encoded)
    ds = tf.data.Dataset.range(len(encoded))
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, max(len(encoded), 1)), seed=seed,
                        reshuffle_each_iteration=True)
    ds = _batches(ds.map(rows.row, num_parallel_calls=tf.data.AUTOTUNE), encoded.lengths,
                  batch_size, bucketing, pad_to_bucket_boundary, max_length, drop_remainder)
    batches = count_batches(encoded.lengths, batch_size, bucketing=bucketing,
                            max_length=max_length, drop_remainder=drop_remainder)
    ds = ds.map(_model_inputs(inputs), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(tf.data.AUTOTUNE)


def make_train_dataset(
    encoded: Encoded,
    batch_size: int,
    *,
    seed: int,
    epochs: int,
    start_epoch: int = 0,
    start_step: int = 0,
    bucketing: bool = True,
    pad_to_bucket_boundary: bool = False,
    max_length: int | None = None,
    inputs: Sequence[str] = MODEL_INPUTS,
) -> tuple[tf.data.Dataset, int]:
    """The training batches of epochs ``start_epoch .. epochs - 1`` as one stream, and the
    number of batches per epoch (for ``fit(steps_per_epoch=...)``).

    Each epoch's order is a permutation of all examples seeded by ``(seed, epoch)``
    (``tf.random.experimental.stateless_shuffle``), not the next draw of a stateful shuffle, so
    a run resumed at epoch 3, step 10 (``start_epoch=2, start_step=10``) sees the very batches
    the uninterrupted run saw from there on.

    >>> import numpy as np
    >>> enc = Encoded([np.arange(1, 4 + i % 3, dtype=np.int32) for i in range(10)],
    ...               np.arange(10) % 2)
    >>> ds, steps = make_train_dataset(enc, 4, seed=0, epochs=2, max_length=8)
    >>> steps, int(ds.cardinality())
    (3, 6)
    >>> first = [b[1].numpy().tolist() for b in ds]
    >>> late, _ = make_train_dataset(enc, 4, seed=0, epochs=2, start_epoch=1, start_step=1,
    ...                              max_length=8)
    >>> [b[1].numpy().tolist() for b in late] == first[4:]
    True
    """
    import tensorflow as tf

    rows = _RowSource(encoded)
    count = len(encoded)
    seed_t = tf.constant(seed, tf.int64)

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64),
                                                         seed=tf.stack([seed_t, epoch]))
        examples = tf.data.Dataset.from_tensor_slices(order).map(rows.row)
        return _batches(examples, encoded.lengths, batch_size, bucketing,
                        pad_to_bucket_boundary, max_length, False)

    steps = count_batches(encoded.lengths, batch_size, bucketing=bucketing,
                          max_length=max_length)
    ds = tf.data.Dataset.range(start_epoch, epochs).flat_map(one_epoch).skip(start_step)
    ds = ds.map(_model_inputs(inputs), num_parallel_calls=tf.data.AUTOTUNE)
    total = max((epochs - start_epoch) * steps - start_step, 0)
    ds = ds.apply(tf.data.experimental.assert_cardinality(total))
    return ds.prefetch(tf.data.AUTOTUNE), steps


class _RowSource:
    """Rows sliced out of one flat tensor: dense variable-length vectors that padded batching
    can pad, with no per-example Python in the pipeline."""

    def __init__(self, encoded: Encoded) -> None:
        import tensorflow as tf

        lengths = encoded.lengths
        flat = np.concatenate(encoded.input_ids) if len(encoded) else np.zeros([0], np.int32)
        labels = encoded.labels if encoded.labels is not None else np.zeros(len(encoded))
        self.flat = tf.constant(flat, tf.int32)
        self.starts = tf.constant(np.concatenate([[0], np.cumsum(lengths)[:-1]]), tf.int64)
        self.lengths = tf.constant(lengths, tf.int64)
        self.labels = tf.constant(np.asarray(labels, np.int64), tf.int64)

    def row(self, i):
        start = self.starts[i]
        return self.flat[start : start + self.lengths[i]], self.labels[i]


def _batches(ds, lengths: np.ndarray, batch_size: int, bucketing: bool,
             pad_to_bucket_boundary: bool, max_length: int | None, drop_remainder: bool):
    import tensorflow as tf

    if not bucketing:
        return ds.padded_batch(batch_size, padded_shapes=([None], []),
                               drop_remainder=drop_remainder)
    bounds = _bucket_bounds(_limit(lengths, max_length))
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda ids, y: tf.shape(ids)[0],
        bucket_boundaries=_bucket_edges(lengths, max_length),  # buckets hold lengths < edge
        bucket_batch_sizes=[batch_size] * len(bounds),
        padded_shapes=([None], []),
        pad_to_bucket_boundary=False,
        drop_remainder=drop_remainder,
    )
    if pad_to_bucket_boundary:
        ds = ds.map(_pad_to_bound(bounds), num_parallel_calls=tf.data.AUTOTUNE)
    return ds


def _pad_to_bound(bounds: list[int]):
    import tensorflow as tf

    edges = tf.constant(bounds, tf.int32)

    def pad(ids, y):
        width = tf.shape(ids)[1]
        target = edges[tf.argmax(tf.cast(edges >= width, tf.int32))]
        return tf.pad(ids, [[0, 0], [0, target - width]]), y

    return pad


def _model_inputs(inputs: Sequence[str]):
    import tensorflow as tf

    unknown = set(inputs) - set(MODEL_INPUTS)
    if unknown:
        raise ValueError(f"unknown model inputs {sorted(unknown)}; expected some of {MODEL_INPUTS}")

    def to_model_inputs(ids, labels):
        ids = tf.cast(ids, tf.int32)
        mask = tf.cast(ids != 0, tf.int32)  # BERT vocabularies put [PAD] at id 0
        features = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tf.zeros_like(ids)}
        return {name: features[name] for name in inputs}, labels

    return to_model_inputs


def padding_fraction(dataset: tf.data.Dataset) -> float:
    """Share of the token positions fed to the model that are padding (for tests, benchmarks)."""
    real = total = 0
    for features, _ in dataset:
        mask = features["attention_mask"].numpy()
        real += int(mask.sum())
        total += mask.size
    return 1.0 - real / max(total, 1)
