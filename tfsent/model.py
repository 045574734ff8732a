"""Model: tokenizer and ``TF*ForSequenceClassification``, from the Hub, a folder or a config.

BERT (``TFBertForSequenceClassification``) is the default; the other WordPiece encoders that
transformers ships with a TF sequence-classification head train, export and serve the same way
(:data:`FAMILIES`: DistilBERT, ELECTRA, MobileBERT, ConvBERT), through
``TFAutoModelForSequenceClassification``. What differs per family is the model's inputs:

    >>> FAMILIES["distilbert"].inputs
    ('input_ids', 'attention_mask')

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
- ``tiny`` (or ``tiny-<family>``, e.g. ``tiny-distilbert``): a small model of that family built
  from a config, with a WordPiece vocabulary made from the training texts, for offline demos and
  tests.

Models of other families, and tokenizers other than WordPiece (BPE, SentencePiece), are refused
with one line naming what is supported: the serving graph rebuilds BERT's WordPiece tokenizer
only (:mod:`tfsent.graph_tokenizer`), so nothing else could be exported.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.errors import fail, first_line
from tfsent.features import MODEL_INPUTS

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerFast, TFPreTrainedModel

TINY = "tiny"
TINY_PREFIX = "tiny-"
TF_WEIGHTS = ("tf_model.h5",)
PT_WEIGHTS = ("model.safetensors",)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# The tokenizer pipeline the serving graph rebuilds (tfsent.graph_tokenizer), as named in a fast
# tokenizer's tokenizer.json.
WORDPIECE = ("BertNormalizer", "BertPreTokenizer", "WordPiece")


@dataclass(frozen=True)
class Family:
    """A model family tfsent fine-tunes: a WordPiece encoder with a TF sequence-classification
    head in transformers 4.x, compiled with its built-in loss like BERT."""

    model_type: str  # transformers' config.model_type
    inputs: tuple[str, ...]  # what the model takes: the features and the token_ids signature
    tiny_sizes: Callable[[int], dict[str, Any]]  # its tiny model's config for a hidden width


def _two_layers(width: int, **extra: Any) -> dict[str, Any]:
    return {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": width,
            "intermediate_size": 2 * width, **extra}


FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("bert", MODEL_INPUTS, _two_layers),
    # DistilBERT has no segment embeddings: it refuses token_type_ids.
    Family("distilbert", ("input_ids", "attention_mask"),
           lambda w: {"n_layers": 2, "n_heads": 2, "dim": w, "hidden_dim": 2 * w}),
    Family("electra", MODEL_INPUTS, lambda w: _two_layers(w, embedding_size=w)),
    Family("convbert", MODEL_INPUTS, lambda w: _two_layers(w, embedding_size=w)),
    Family("mobilebert", MODEL_INPUTS,
           lambda w: _two_layers(w, embedding_size=max(w // 2, 1), true_hidden_size=w,
                                 intra_bottleneck_size=w, num_feedforward_networks=1)),
)}
SUPPORTED = ", ".join(FAMILIES)


def tiny_family(name: str) -> str | None:
    """The family of a tiny model name (``tiny`` is BERT), or None if ``name`` is not one.

    >>> tiny_family("tiny"), tiny_family("tiny-electra"), tiny_family("bert-base-uncased")
    ('bert', 'electra', None)
    """
    if name == TINY:
        return "bert"
    if name.startswith(TINY_PREFIX):
        family = name[len(TINY_PREFIX):]
        if family not in FAMILIES:
            fail(f"--model {name}: no such tiny model; use tiny or tiny-<family> with a family "
                 f"of {SUPPORTED}")
        return family
    return None


def model_family(name_or_path: str) -> Family:
    """The family of ``--model`` (a tiny name, a folder or a Hub id), read from its config; a
    model of another family is a one-line error naming the supported ones."""
    family = tiny_family(name_or_path)
    if family is None:
        family = _load_config(name_or_path).model_type
    return family_of(family, name_or_path)


def family_of(model_type: str, name: str = "the model") -> Family:
    """``FAMILIES[model_type]``, or a one-line error naming the supported families."""
    if model_type not in FAMILIES:
        fail(f"{name} is a {model_type!r} model; tfsent fine-tunes WordPiece encoders: "
             f"{SUPPORTED} (pass --model with one of those, e.g. distilbert-base-uncased)")
    return FAMILIES[model_type]


def tiny_config(family: str, vocab_size: int, width: int = 64, **overrides) -> PretrainedConfig:
    """A 2-layer, ``width``-wide model config of ``family``: trains on 2 CPU cores in a minute.

    >>> config = tiny_config("distilbert", vocab_size=100, num_labels=3)
    >>> type(config).__name__, config.dim, config.n_layers, config.num_labels
    ('DistilBertConfig', 64, 2, 3)
    """
    from transformers import AutoConfig

    values = {**FAMILIES[family].tiny_sizes(width), **overrides}
    return AutoConfig.for_model(family, vocab_size=vocab_size, max_position_embeddings=512,
                                **values)


def wordpiece_tokenizer_class(family: str) -> type:
    """The HF fast tokenizer class of ``family`` (``DistilBertTokenizerFast``, ...): each is BERT's
    WordPiece, with the family's ``model_input_names``."""
    import transformers
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    return getattr(transformers, TOKENIZER_MAPPING_NAMES[family][1])


def wordpiece_tokenizer(vocab: Sequence[str], family: str = "bert",
                        lowercase: bool = True) -> PreTrainedTokenizerFast:
    """The fast WordPiece tokenizer of ``family`` over ``vocab`` (token id = position).

    >>> tok = wordpiece_tokenizer([*SPECIAL_TOKENS, "good", "film", "##s"])
    >>> tok.tokenize("Good films"), tok.pad_token_id
    (['good', 'film', '##s'], 0)
    """
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.txt"  # the format BERT tokenizers load
        vocab_file.write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")
        return wordpiece_tokenizer_class(family)(vocab_file=str(vocab_file),
                                                 do_lower_case=lowercase)


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 2000,
                         family: str = "bert") -> PreTrainedTokenizerFast:
    """A lowercase WordPiece tokenizer of ``family`` (``BertTokenizerFast`` for BERT) with a
    vocabulary built from ``texts``: the special tokens, every character they hold (alone and as
    a ``##`` continuation, so no text becomes ``[UNK]``), then their most frequent words, ties in
    alphabetical order, up to ``vocab_size`` entries. Words not in it split into characters.

    The same texts give the same vocabulary in every process, so a run and its rerun, the demo
    and the tests reproduce their numbers (the ``tokenizers`` WordPiece trainer breaks ties
    between equally frequent pieces in hash order, which changes from process to process).
    """
    from collections import Counter

    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

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
    return wordpiece_tokenizer(vocab, family)


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    """The fast (Rust) tokenizer of a Hub id or a local folder; a WordPiece one, or a one-line
    error."""
    from transformers import AutoTokenizer

    _check_local(name_or_path, "tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
    except (OSError, ValueError) as err:
        fail(_hub_message(name_or_path, "tokenizer", err))
    if not tokenizer.is_fast:
        fail(f"{name_or_path} has no fast tokenizer (tokenizer.json); tfsent needs the WordPiece "
             f"tokenizer of a {SUPPORTED} model")
    wordpiece_spec(tokenizer, name_or_path)
    return tokenizer


def wordpiece_spec(tokenizer: PreTrainedTokenizerFast, name: str = "the") -> dict[str, Any]:
    """The tokenizer's ``tokenizer.json`` as a dict, if it is BERT's WordPiece pipeline (what the
    serving graph can rebuild); else a one-line error naming what it is and what is supported."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    kinds = tuple(str((spec.get(part) or {}).get("type"))
                  for part in ("normalizer", "pre_tokenizer", "model"))
    if kinds != WORDPIECE:
        fail(f"{name} tokenizer is {'/'.join(kinds)}; tfsent supports WordPiece tokenizers "
             f"({'/'.join(WORDPIECE)}) of {SUPPORTED} models, not BPE or SentencePiece ones")
    if tokenizer.pad_token_id != 0:
        # Training pads with 0 and masks by it (tfsent.features), as BERT vocabularies put [PAD]
        # there.
        fail(f"{name} tokenizer has pad token {tokenizer.pad_token!r} at id "
             f"{tokenizer.pad_token_id}; tfsent needs [PAD] at id 0, as in BERT vocabularies")
    return spec


def build_model(
    name_or_path: str, label_names: Sequence[str], tokenizer: PreTrainedTokenizerFast
) -> TFPreTrainedModel:
    """A ``TF*ForSequenceClassification`` of a supported family with a fresh head for
    ``label_names`` (``TFBertForSequenceClassification`` for BERT)."""
    from transformers import TFAutoModelForSequenceClassification

    family = tiny_family(name_or_path)
    if family is not None:
        return build_tiny_model(family, len(tokenizer), label_names)
    config = _load_config(name_or_path, **label_options(label_names))
    family_of(config.model_type, name_or_path)
    path = Path(name_or_path)
    if path.is_dir() and not any((path / f).is_file() for f in TF_WEIGHTS):
        if any((path / f).is_file() for f in PT_WEIGHTS):
            return load_pytorch_safetensors(path / PT_WEIGHTS[0], config)
        fail(
            f"model folder {name_or_path} has no weights ({', '.join(TF_WEIGHTS + PT_WEIGHTS)}); "
            "point --model at a folder saved with save_pretrained or at a Hub id"
        )
    try:
        return TFAutoModelForSequenceClassification.from_pretrained(name_or_path, config=config)
    except OSError as err:
        fail(_hub_message(name_or_path, "model", err))


def label_options(label_names: Sequence[str]) -> dict[str, Any]:
    """The config options of a classification head for ``label_names``.

    >>> label_options(["neg", "pos"])
    {'num_labels': 2, 'id2label': {0: 'neg', 1: 'pos'}, 'label2id': {'neg': 0, 'pos': 1}}
    """
    return {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }


def build_tiny_model(family: str, vocab_size: int, label_names: Sequence[str],
                     **config: Any) -> TFPreTrainedModel:
    """An untrained tiny ``TF*ForSequenceClassification`` of ``family`` (:func:`tiny_config`,
    with ``config`` overriding its options), its variables created so it can be saved."""
    from transformers import TFAutoModelForSequenceClassification

    model = TFAutoModelForSequenceClassification.from_config(
        tiny_config(family, vocab_size, **{**label_options(label_names), **config}))
    model(model.dummy_inputs, training=False)
    return model


def load_trained_model(model_dir: Path) -> TFPreTrainedModel:
    """A model saved with ``save_pretrained``, in float32 whatever it trained in.

    Runs may train under a mixed-precision Keras policy; evaluation and export compute in
    float32 so their outputs match on every server (CPU kernels for fp16/bf16 are slow or
    missing). transformers' "All model checkpoint layers were used..." notice is kept quiet.
    """
    from transformers import TFAutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with float32_policy():
            return TFAutoModelForSequenceClassification.from_pretrained(str(model_dir))
    except (OSError, ValueError) as err:
        fail(f"could not load the model in {model_dir} ({first_line(err)}); "
             "re-run python -m tfsent.fit")
    finally:
        hf_logging.set_verbosity(verbosity)


def load_pytorch_safetensors(file: Path, config: PretrainedConfig) -> TFPreTrainedModel:
    """Build the TF model and copy a PyTorch ``model.safetensors`` (base model or task keys) in.

    Sentence-transformers checkpoints hold a bare base model (``BertModel``) whose keys lack the
    ``bert.`` (``distilbert.``, ...) prefix of the task model. Only the head stays newly
    initialised.
    """
    from safetensors.numpy import load_file
    from transformers import TFAutoModelForSequenceClassification
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    state = load_file(str(file))
    model = TFAutoModelForSequenceClassification.from_config(config)
    prefix = f"{model.base_model_prefix}."
    if not any(k.startswith(prefix) for k in state):
        state = {f"{prefix}{k}": v for k, v in state.items()}
    model(model.dummy_inputs, training=False)
    model, info = load_pytorch_state_dict_in_tf2_model(
        model, state, allow_missing_keys=True, output_loading_info=True
    )
    missing = [k for k in info["missing_keys"] if k.startswith(prefix)]
    if missing:
        fail(f"{file} does not hold {config.model_type} weights (missing {missing[0]} and more); "
             f"use a {config.model_type} checkpoint")
    model.loading_info = info  # which weights came from the file: checked by tests
    return model


def make_optimizer(
    learning_rate: float, num_train_steps: int, warmup_ratio: float, weight_decay: float,
    *, layerwise_lr_decay: float = 1.0, num_layers: int = 0, accumulation_steps: int = 1,
):
    """AdamW (no decay on LayerNorm and biases) with linear warmup then linear decay to 0
    over ``num_train_steps`` optimizer steps.

    With ``layerwise_lr_decay`` below 1 (over the ``num_layers`` encoder layers) or
    ``accumulation_steps`` above 1, the same AdamW and schedule as
    :class:`tfsent.optimization.RecipeAdamW`.
    """
    from transformers import create_optimizer

    optimizer, schedule = create_optimizer(
        init_lr=learning_rate,
        num_train_steps=max(num_train_steps, 1),
        num_warmup_steps=int(warmup_ratio * num_train_steps),
        weight_decay_rate=weight_decay,
    )
    if layerwise_lr_decay == 1.0 and accumulation_steps == 1:
        return optimizer
    from tfsent.optimization import recipe_adamw

    return recipe_adamw(schedule, weight_decay, layerwise_lr_decay=layerwise_lr_decay,
                        num_layers=num_layers, accumulation_steps=accumulation_steps)


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
    """Keras' dtype policy set to ``name`` inside the block, and restored after it: the policy
    is global, and a run's mixed precision must not leak into what is built after it.

    >>> import tf_keras
    >>> with precision_policy("mixed_bfloat16"):
    ...     tf_keras.mixed_precision.global_policy().name
    'mixed_bfloat16'
    >>> tf_keras.mixed_precision.global_policy().name
    'float32'
    """
    import tf_keras

    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def float32_policy() -> contextlib.AbstractContextManager[None]:
    """:func:`precision_policy` float32: what evaluation, export and saving compute in."""
    return precision_policy("float32")


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


def _load_config(name_or_path: str, **overrides) -> PretrainedConfig:
    from transformers import AutoConfig

    _check_local(name_or_path, "model")
    try:
        return AutoConfig.from_pretrained(name_or_path, **overrides)
    except (OSError, ValueError) as err:
        fail(_hub_message(name_or_path, "model", err))


def _hub_message(name: str, what: str, err: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    reason = "HF_HUB_OFFLINE=1 is set and it is not cached" if offline else type(err).__name__
    return (
        f"could not load {what} {name!r} ({reason}); check the id or pass a local folder "
        "(or --model tiny to run offline)"
    )
