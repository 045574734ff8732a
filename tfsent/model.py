"""Model: tokenizer and ``TFBertForSequenceClassification``, from the Hub, a folder or a config.

Three ways to get weights, one function each:

    >>> tok = build_tiny_tokenizer(["A good film.", "A bad film.", "Good, not bad!"])
    >>> tok.tokenize("a GOOD film, a goodbad one.")  # "one": "e" is in no text
    ['a', 'good', 'film', ',', 'a', 'good', '##b', '##a', '##d', '[UNK]', '.']
    >>> model = build_model("tiny", ["negative", "positive"], tok)
    >>> model.config.num_labels, model.config.id2label[1]
    (2, 'positive')

- a Hub id or a folder of TF weights (``tf_model.h5``): ``from_pretrained``;
- a folder holding PyTorch weights (``model.safetensors``, e.g. sentence-transformers' MiniLM):
  converted in memory, because ``from_pretrained(from_pt=True)`` on safetensors fails in
  transformers 4.57 (``'builtins.safe_open' object is not iterable``);
- ``tiny``: a small BERT built from a config, with a WordPiece vocabulary trained on the training
  texts by the ``tokenizers`` library, for offline demos and tests.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tfsent.errors import fail

if TYPE_CHECKING:
    import tensorflow as tf
    from transformers import PreTrainedTokenizerFast, TFBertForSequenceClassification

TINY = "tiny"
TF_WEIGHTS = ("tf_model.h5",)
PT_WEIGHTS = ("model.safetensors",)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_bert_config(vocab_size: int, **overrides):
    """A 2-layer, 64-wide BERT: trains on 2 CPU cores in a minute."""
    from transformers import BertConfig

    values = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
    )
    values.update(overrides)
    return BertConfig(**values)


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A lowercase BERT WordPiece tokenizer (``BertTokenizerFast``) with a vocabulary built from
    ``texts``: the special tokens, every character they hold (alone and as a ``##``
    continuation, so no text becomes ``[UNK]``), then their most frequent words, ties in
    alphabetical order, up to ``vocab_size`` entries. Words not in it split into characters.

    The same texts give the same vocabulary in every process, so a run and its rerun, the demo
    and the tests reproduce their numbers (the ``tokenizers`` WordPiece trainer breaks ties
    between equally frequent pieces in hash order, which changes from process to process).
    """
    from collections import Counter

    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer
    from transformers import BertTokenizerFast

    normalizer, splitter = BertNormalizer(lowercase=True), BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted({c for word in counts for c in word})
    vocab = list(dict.fromkeys([*SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters)]))
    known = set(vocab)
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(vocab) >= vocab_size:
            break
        if word not in known:
            vocab.append(word)
            known.add(word)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.txt"  # the format BERT tokenizers load
        vocab_file.write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")
        return BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    """The fast (Rust) tokenizer of a Hub id or a local folder."""
    from transformers import AutoTokenizer

    _check_local(name_or_path, "tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
    except (OSError, ValueError) as err:
        fail(_hub_message(name_or_path, "tokenizer", err))
    if not tokenizer.is_fast:
        fail(f"{name_or_path} has no fast tokenizer; use a BERT model with tokenizer.json")
    return tokenizer


def build_model(
    name_or_path: str, label_names: Sequence[str], tokenizer: PreTrainedTokenizerFast
) -> TFBertForSequenceClassification:
    """A ``TFBertForSequenceClassification`` with a fresh head for ``label_names``."""
    from transformers import BertConfig, TFBertForSequenceClassification

    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    if name_or_path == TINY:
        model = TFBertForSequenceClassification(tiny_bert_config(len(tokenizer), **labels))
        model(model.dummy_inputs, training=False)  # create the variables now
        return model
    _check_local(name_or_path, "model")
    path = Path(name_or_path)
    if path.is_dir() and not any((path / f).is_file() for f in TF_WEIGHTS):
        if any((path / f).is_file() for f in PT_WEIGHTS):
            config = BertConfig.from_pretrained(path, **labels)
            return load_pytorch_safetensors(path / PT_WEIGHTS[0], config)
        fail(
            f"model folder {name_or_path} has no weights ({', '.join(TF_WEIGHTS + PT_WEIGHTS)}); "
            "point --model at a folder saved with save_pretrained or at a Hub id"
        )
    try:
        return TFBertForSequenceClassification.from_pretrained(name_or_path, **labels)
    except OSError as err:
        fail(_hub_message(name_or_path, "model", err))


def load_pytorch_safetensors(file: Path, config) -> TFBertForSequenceClassification:
    """Build the TF model and copy a PyTorch ``model.safetensors`` (BertModel or task keys) in.

    Sentence-transformers checkpoints hold a bare ``BertModel`` whose keys lack the ``bert.``
    prefix of the task model. Only the classifier stays newly initialised.
    """
    from safetensors.numpy import load_file
    from transformers import TFBertForSequenceClassification
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    state = load_file(str(file))
    state = {
        k if k.startswith(("bert.", "classifier.")) else f"bert.{k}": v for k, v in state.items()
    }
    model = TFBertForSequenceClassification(config)
    model(model.dummy_inputs, training=False)
    model, info = load_pytorch_state_dict_in_tf2_model(
        model, state, allow_missing_keys=True, output_loading_info=True
    )
    missing = [k for k in info["missing_keys"] if not k.startswith("classifier")]
    if missing:
        fail(f"{file} does not hold BERT weights (missing {missing[0]} and more); use a BERT model")
    model.loading_info = info  # which weights came from the file: checked by tests
    return model


def make_optimizer(
    learning_rate: float, num_train_steps: int, warmup_ratio: float, weight_decay: float
):
    """AdamW (no decay on LayerNorm and biases) with linear warmup then linear decay to 0."""
    from transformers import create_optimizer

    optimizer, _ = create_optimizer(
        init_lr=learning_rate,
        num_train_steps=max(num_train_steps, 1),
        num_warmup_steps=int(warmup_ratio * num_train_steps),
        weight_decay_rate=weight_decay,
    )
    return optimizer


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy for ``--strategy``."""
    import tensorflow as tf

    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        from tfsent.workers import make_multi_worker_strategy

        return make_multi_worker_strategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.NotFoundError) as err:
            fail(f"--strategy tpu found no TPU ({err}); use --strategy auto")
        return tf.distribute.TPUStrategy(resolver)
    fail(f"unknown --strategy {name!r}")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bf16 pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str) -> str:
    """The Keras dtype policy for ``--mixed-precision``."""
    import tensorflow as tf

    if name == "no":
        return "float32"
    if name == "auto":
        if tf.config.list_physical_devices("GPU"):
            return "mixed_float16"
        return "mixed_bfloat16" if cpu_has_bf16() else "float32"
    return name


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Set the Keras dtype policy for a block; back to float32 after, as the policy is global."""
    import tf_keras

    tf_keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")


@contextlib.contextmanager
def generator_dropout() -> Iterator[None]:
    """Models built in this block draw their dropout masks from ``tf.random.Generator`` objects
    (Keras' ``enable_tf_random_generator``), whose state a callback can set before each step
    (:class:`tfsent.callbacks.ReseedDropout`); Keras' default TF1 random ops keep theirs out of
    reach. The layers' weights, and so the saved models, are the same either way."""
    import tf_keras

    experimental = tf_keras.backend.experimental
    was_enabled = experimental.is_tf_random_generator_enabled()
    experimental.enable_tf_random_generator()
    try:
        yield
    finally:
        if not was_enabled:
            experimental.disable_tf_random_generator()


def _check_local(name_or_path: str, what: str) -> None:
    # Hub ids are "name" or "org/name"; anything else can only be a local path.
    path = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local and not path.exists():
        fail(f"{what} path {name_or_path} does not exist; pass an existing folder or a Hub id")


def _hub_message(name: str, what: str, err: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    reason = "HF_HUB_OFFLINE=1 is set and it is not cached" if offline else type(err).__name__
    return (
        f"could not load {what} {name!r} ({reason}); check the id or pass a local folder "
        "(or --model tiny to run offline)"
    )
