"""A valid run directory without training: tiny config-built model + a small hand-made vocabulary.

For the tests and the benchmarks' smoke runs, which need a run (to export, serve, score) in
seconds rather than a trained model. The run is written through :class:`tfsent.rundir.RunDir`,
with the tiny models of :mod:`tfsent.model`, so it has the layout ``python -m tfsent.fit``
gives it::

    >>> import tempfile
    >>> run = make_tiny_run_dir(Path(tempfile.mkdtemp()) / "run", truncation="tail")
    >>> sorted(p.name for p in run.iterdir())
    ['config.json', 'model', 'tokenizer']
    >>> RunDir(run).check().config.model.truncation
    'tail'

The vocabulary holds every ASCII letter, digit and punctuation mark (alone and as ``##`` pieces),
so any English text splits into known pieces as in a real BERT vocabulary; common words in lower
and title case (so cased and uncased vocabularies both have whole words); a few subword suffixes;
and some accented, CJK and emoji characters. Characters outside it become ``[UNK]``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tfsent.model import SPECIAL_TOKENS, TINY, TINY_PREFIX, build_tiny_model, wordpiece_tokenizer
from tfsent.rundir import RunDir

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

WORDS = (
    "the a an and or but of to in on at for with is was were be been it this that these those "
    "i you he she we they my your his her our their film movie story plot actor actors acting "
    "scene scenes great good bad awful terrible boring dull superb loved love hated hate best "
    "worst not no very really just so too much more most ever never all one two three time "
    "watch watched watching character characters director ending end funny sad beautiful "
    "review reviews think thought like liked would could should"
).split()
SUFFIXES = ["##s", "##ing", "##ed", "##ly", "##er", "##est", "##n't"]
EXTRA = [
    "café", "naïve", "cafe", "naive", "é", "ï", "ü", "ß", "ñ", "##é", "##ï",
    "這", "部", "電", "影", "很", "好", "映", "画",
    "😀", "👍",
    # Where HF and other normalizers part ways: HF lowercases Σ to σ everywhere (ICU: ς at a
    # word's end), keeps ﬁ / ℌ / full-width letters (NFKC folds them), ...
    "σ", "ς", "α", "ο", "δ", "##σ", "##ς", "##α", "##ο", "##δ", "Σ", "Α", "Ο", "Δ", "##Σ", "##Α",
    "##Ο", "##Δ", "ﬁ", "ℌ", "ｆ", "##ｕ", "##ｌ",
    # ... and skips U+2B820-U+2B91F in its CJK ranges.
    "\U0002b820", "\U0002b920",
]


def tiny_vocab() -> list[str]:
    """The vocabulary, [PAD] at id 0; no duplicates."""
    singles = list(string.ascii_letters + string.digits + string.punctuation)
    tokens = (
        SPECIAL_TOKENS
        + WORDS
        + [w.capitalize() for w in WORDS]
        + SUFFIXES
        + singles
        + [f"##{c}" for c in string.ascii_letters + string.digits]
        + EXTRA
    )
    return list(dict.fromkeys(tokens))


def tiny_tokenizer(lowercase: bool = True, family: str = "bert") -> PreTrainedTokenizerFast:
    """The fast WordPiece tokenizer of ``family`` (``BertTokenizerFast`` for BERT) over
    :func:`tiny_vocab`."""
    return wordpiece_tokenizer(tiny_vocab(), family, lowercase)


def make_tiny_run_dir(
    path: str | Path,
    label_names: Sequence[str] = ("negative", "positive"),
    max_length: int = 32,
    truncation: str = "head+tail",
    lowercase: bool = True,
    seed: int = 0,
    family: str = "bert",
) -> Path:
    """Write ``path/{config.json, model/, tokenizer/}`` as ``python -m tfsent.fit`` would, with
    an untrained tiny model of ``family``; return ``path``."""
    import tf_keras

    run = RunDir(path)
    run.path.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(lowercase, family)
    tokenizer.save_pretrained(run.tokenizer_dir)

    tf_keras.utils.set_random_seed(seed)  # same weights for the same seed
    # initializer_range far above BERT's 0.02: an untrained model whose outputs depend clearly
    # on the input, so tests comparing predictions (or expecting both labels) can fail.
    model = build_tiny_model(family, len(tokenizer), label_names, width=32, initializer_range=0.5)
    model.save_pretrained(run.model_dir)

    RunConfig(
        DataConfig(dataset="demo"),
        ModelConfig(model=TINY if family == "bert" else TINY_PREFIX + family,
                    max_length=max_length, truncation=truncation),
        TrainConfig(output_dir=str(run.path), model_name="tfsent"),
    ).save(run.config_file)
    return run.path
