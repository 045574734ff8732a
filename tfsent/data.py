"""Data stage: labelled texts from any source, split into train / validation / test.

``DataConfig.dataset`` (and ``validation_data`` / ``test_data``) name one of:

- ``demo``: generated reviews (:mod:`tfsent.synthetic`), 1,200 train + 300 test, offline;
- an ``aclImdb/`` folder, a folder holding one, or the ``aclImdb_v1.tar.gz`` tarball (read in
  place): ``train/`` and, when present, ``test/``, each with ``pos/`` and ``neg/``;
- a ``.csv``, ``.jsonl`` / ``.json`` or ``.parquet`` file with a text and a label column;
- otherwise a Hugging Face ``datasets`` id (``stanfordnlp/imdb`` by default).

Labels become ids ``0..K-1`` in the order of ``label_names``: ``negative, positive`` for IMDB
sources; the names of a ``ClassLabel`` when known; else the sorted distinct labels of the training
data (integer labels sorted as numbers). Validation and test data are mapped with the training
data's names, and a label the training data lacks is an error. Without validation data, a
stratified, seeded share of train (``validation_size``) becomes validation. Every text goes
through :func:`clean_text`, as at serving time.

    >>> from tfsent.config import DataConfig
    >>> splits = load_splits(DataConfig(dataset="demo", validation_size=0.2), seed=0)
    >>> splits.label_names, len(splits.train), len(splits.validation), len(splits.test)
    (['negative', 'positive'], 960, 240, 300)
    >>> clean_text("Great.<br /><br />Loved it")
    'Great.  Loved it'
"""

from __future__ import annotations

import io
import json
import math
import re
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfsent.config import DataConfig
from tfsent.errors import fail, first_line

# Also compiled by RE2 (tf.strings.regex_replace) in the exported serving graph: keep it RE2-valid.
BR_PATTERN = r"(?i)<br\s*/?>"
_BR = re.compile(BR_PATTERN)

DEMO = "demo"
DEMO_TRAIN_SIZE = 1200
DEMO_TEST_SIZE = 300
IMDB_LABEL_NAMES = ["negative", "positive"]
# IMDB's ClassLabel says neg/pos; tfsent's models and exports say it in full.
_LABEL_ALIASES = {("neg", "pos"): IMDB_LABEL_NAMES}
TABLE_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_ACLIMDB_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation",
                  "dev": "validation", "test": "test"}


def clean_text(text: str) -> str:
    """Replace HTML line breaks (``<br />`` and alike) by a space; the tokenizer does the rest."""
    return _BR.sub(" ", text)


@dataclass
class TextDataset:
    """Texts with integer labels (ids into ``label_names``)."""

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices: Sequence[int] | np.ndarray) -> TextDataset:
        """The examples at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return TextDataset([self.texts[i] for i in indices], self.labels[indices],
                           self.label_names)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return dict(zip(self.label_names, counts.tolist(), strict=True))


@dataclass
class Splits:
    train: TextDataset
    validation: TextDataset
    test: TextDataset | None
    label_names: list[str]


@dataclass
class _Raw:
    """One split as its source holds it, before checks and label ids."""

    texts: Sequence[Any]
    labels: Sequence[Any]
    where: str  # names the split in messages, e.g. "reviews.csv" or "x/y (train split)"
    label_names: list[str] | None = None  # when known, labels are ids into these
    columns: tuple[str, str] | None = None  # text and label column, for tabular sources


def load_splits(cfg: DataConfig, seed: int) -> Splits:
    """Train, validation and (when there is one) test data of a run, as ``cfg`` describes.

    The training examples come shuffled (seeded), so a bounded shuffle buffer downstream still
    sees both classes; validation and test keep their source order.
    """
    _check_sizes(cfg)
    source = read_source(cfg.dataset, cfg)
    if "train" not in source:
        fail(f"{cfg.dataset} has no train split (it has {', '.join(source)}); "
             "pass training data to --dataset")
    train = to_dataset(source["train"])
    names = train.label_names
    counts = np.bincount(train.labels, minlength=len(names))
    if np.count_nonzero(counts) < 2:
        raw = source["train"]
        what = f"label column '{raw.columns[1]}' of " if raw.columns else ""
        fail(f"{what}{raw.where} has only one class ({names[int(np.argmax(counts))]}); "
             "a classifier needs examples of at least two classes")

    if cfg.validation_data:
        validation = to_dataset(_pick(read_source(cfg.validation_data, cfg), "validation"), names)
    elif "validation" in source:
        validation = to_dataset(source["validation"], names)
    else:
        train, validation = carve_validation(train, cfg.validation_size, seed)
    if cfg.test_data:
        test = to_dataset(_pick(read_source(cfg.test_data, cfg), "test"), names)
    elif "test" in source:
        test = to_dataset(source["test"], names)
    else:
        test = None

    train = subsample(train, cfg.max_train_samples, seed)
    validation = subsample(validation, cfg.max_eval_samples, seed)
    test = subsample(test, cfg.max_eval_samples, seed) if test is not None else None
    train = train.select(np.random.default_rng(seed).permutation(len(train)))
    return Splits(train, validation, test, names)


def load_evaluation_set(
    source: str, cfg: DataConfig, label_names: Sequence[str], max_samples: int | None = None
) -> TextDataset:
    """Labelled data to evaluate a trained model on: ``source``'s test split when it has one
    (else its validation split, else all of it), labels mapped onto ``label_names``."""
    dataset = to_dataset(_pick(read_source(source, cfg), "test"), list(label_names))
    return subsample(dataset, max_samples, seed=0)


def read_source(source: str, cfg: DataConfig) -> dict[str, _Raw]:
    """The splits (``train`` / ``validation`` / ``test``) that ``source`` holds, unchecked."""
    if source == DEMO:
        return _read_demo()
    path = Path(source).expanduser()
    if path.is_dir():
        return _read_aclimdb_folder(path)
    if path.is_file():
        name = path.name.lower()
        if name.endswith(TARBALL_SUFFIXES):
            return _read_aclimdb_tarball(path)
        if name.endswith(TABLE_SUFFIXES):
            return {"train": _read_table(path, cfg.text_column, cfg.label_column)}
        fail(f"unsupported file type '{path.suffix}' for {source}; pass a .csv, .jsonl/.json or "
             ".parquet file, an aclImdb folder or aclImdb_v1.tar.gz, or --dataset demo")
    if _looks_like_path(source):
        fail(f"{source} does not exist; pass an existing file or folder, a Hugging Face "
             "dataset id, or --dataset demo")
    return _read_hub(source, cfg.text_column, cfg.label_column)


def _looks_like_path(source: str) -> bool:
    lowered = source.lower()
    return (source.startswith(("/", "./", "../", "~", "\\")) or ":\\" in source
            or lowered.endswith(TABLE_SUFFIXES + TARBALL_SUFFIXES) or lowered.endswith("aclimdb"))


def _pick(source: dict[str, _Raw], role: str) -> _Raw:
    """The split of a source given for one role: the one so named, else the other held-out
    split, else train (a single file is all train)."""
    other = "validation" if role == "test" else "test"
    for name in (role, other, "train"):
        if name in source:
            return source[name]
    raise AssertionError("a source always has at least one split")


# --- sources -------------------------------------------------------------------------------


def _read_demo() -> dict[str, _Raw]:
    from tfsent.synthetic import generate_reviews

    # Fixed seeds: the demo data, like a real dataset, does not change with --seed.
    train = generate_reviews(DEMO_TRAIN_SIZE, seed=0, label_names=IMDB_LABEL_NAMES)
    test = generate_reviews(DEMO_TEST_SIZE, seed=1, label_names=IMDB_LABEL_NAMES)
    return {
        "train": _Raw(*train, where="demo (train split)", label_names=IMDB_LABEL_NAMES),
        "test": _Raw(*test, where="demo (test split)", label_names=IMDB_LABEL_NAMES),
    }


def _aclimdb_splits(reviews: dict[str, list[tuple[int, int, str]]], where: str) -> dict[str, _Raw]:
    """``reviews[split]`` holds ``(label, id, text)``; train needs both classes."""
    train_labels = {label for label, _, _ in reviews.get("train", [])}
    if train_labels != {0, 1}:
        fail(f"{where} has no aclImdb train/pos and train/neg reviews (<id>_<stars>.txt); pass "
             "the aclImdb_v1.tar.gz tarball or its extracted aclImdb/ folder")
    splits = {}
    for split, items in reviews.items():
        items.sort()  # neg then pos, by review id: the same order from a folder or a tarball
        splits[split] = _Raw([text for _, _, text in items], [label for label, _, _ in items],
                             where=f"{where} ({split} split)", label_names=IMDB_LABEL_NAMES)
    return splits


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        fail(f"{name} is not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
             "re-encode it as UTF-8")


def _read_aclimdb_folder(path: Path) -> dict[str, _Raw]:
    top = path if (path / "train").is_dir() else path / "aclImdb"
    reviews: dict[str, list[tuple[int, int, str]]] = {}
    for split in ("train", "test"):
        for label, folder in enumerate(("neg", "pos")):
            directory = top / split / folder
            if not directory.is_dir():
                continue
            for file in directory.iterdir():
                match = _ACLIMDB_MEMBER.search(f"{split}/{folder}/{file.name}")
                if match:
                    text = _decode(file.read_bytes(), str(file))
                    reviews.setdefault(split, []).append((label, int(match[3]), text))
    return _aclimdb_splits(reviews, str(path))


def _read_aclimdb_tarball(path: Path) -> dict[str, _Raw]:
    reviews: dict[str, list[tuple[int, int, str]]] = {}
    try:
        # Stream mode: one pass over the gzip stream, no seeking, nothing extracted to disk.
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                match = _ACLIMDB_MEMBER.search(member.name)
                if not (match and member.isfile()):
                    continue
                text = _decode(tar.extractfile(member).read(), f"{path}:{member.name}")
                label = 1 if match[2] == "pos" else 0
                reviews.setdefault(match[1], []).append((label, int(match[3]), text))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        fail(f"{path} is not a readable tar archive ({_cause(err)}); pass the "
             "aclImdb_v1.tar.gz tarball, or an extracted aclImdb/ folder")
    return _aclimdb_splits(reviews, str(path))


def _read_table(path: Path, text_column: str, label_column: str) -> _Raw:
    import pandas as pd

    name = path.name.lower()
    label_names = None
    try:
        if name.endswith(".parquet"):
            frame = pd.read_parquet(path)
            label_names = _parquet_class_names(path, label_column)
        else:
            data = path.read_bytes()
            try:
                content = data.decode("utf-8-sig")
            except UnicodeDecodeError as err:
                fail(f"{path} is not UTF-8 text (byte {data[err.start]:#04x} at offset "
                     f"{err.start}); re-encode it as UTF-8, e.g. iconv -f latin1 -t utf-8")
            if name.endswith(".csv"):
                frame = pd.read_csv(io.StringIO(content), keep_default_na=False,
                                    na_values=[""], dtype={text_column: str})
            else:
                # .json: JSON Lines, or one array of records.
                lines = not (name.endswith(".json") and content.lstrip().startswith("["))
                frame = pd.read_json(io.StringIO(content), lines=lines, orient="records",
                                     dtype=False)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        kind = name.rsplit(".", 1)[-1].upper()
        fail(f"could not read {path} as {kind} ({_cause(err)}); fix the file")
    columns = [str(c) for c in frame.columns]
    if not columns:
        fail(f"{path} is empty; add labelled rows with a '{text_column}' and a "
             f"'{label_column}' column")
    for column, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if column not in frame.columns:
            fail(f"{path} has no column '{column}'; its columns are: {', '.join(columns)}; "
                 f"pass the right one with {flag}")
    return _Raw(frame[text_column].tolist(), frame[label_column].tolist(), where=str(path),
                label_names=label_names, columns=(text_column, label_column))


def _parquet_class_names(path: Path, label_column: str) -> list[str] | None:
    """Label names stored by ``datasets.Dataset.to_parquet`` when the column is a ClassLabel."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
        feature = features[label_column]
    except (KeyError, TypeError, ValueError):
        return None
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names"):
        return _alias(list(feature["names"]))
    return None


def _alias(names: list[str]) -> list[str]:
    return list(_LABEL_ALIASES.get(tuple(names), names))


def _read_hub(dataset_id: str, text_column: str, label_column: str) -> dict[str, _Raw]:
    import datasets

    try:
        loaded = datasets.load_dataset(dataset_id)
    except Exception as err:  # the Hub's failures come as many types; all mean "not loadable"
        fail(f"could not load dataset '{dataset_id}' from the Hugging Face Hub "
             f"({_cause(err)}); pass a local aclImdb folder or tarball, a .csv/.jsonl/.parquet "
             "file, or --dataset demo")
    splits: dict[str, _Raw] = {}
    for split_name, split in loaded.items():
        role = _SPLIT_ALIASES.get(split_name)
        if role is None or role in splits:
            continue  # e.g. IMDB's unlabelled "unsupervised" split
        columns = list(split.column_names)
        for column, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
            if column not in columns:
                fail(f"dataset '{dataset_id}' ({split_name} split) has no column '{column}'; its "
                     f"columns are: {', '.join(columns)}; pass the right one with {flag}")
        feature = split.features[label_column]
        labels = list(split[label_column])
        names = None
        if isinstance(feature, datasets.ClassLabel):
            names = _alias(list(feature.names))
            if all(label == -1 for label in labels):
                continue  # a hidden-label test split (-1 means "no label")
        splits[role] = _Raw(list(split[text_column]), labels,
                            where=f"dataset '{dataset_id}' ({split_name} split)",
                            label_names=names, columns=(text_column, label_column))
    if not splits:
        fail(f"dataset '{dataset_id}' has no labelled train/validation/test split (it has "
             f"{', '.join(loaded)}); pass another dataset")
    return splits


def _cause(err: BaseException) -> str:
    """What a one-line message quotes of a library's error: its type and first line."""
    return f"{type(err).__name__}: {first_line(err)}"


# --- checks and label ids ------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _rows(indices: list[int]) -> str:
    return f"{len(indices)} (first at row {indices[0] + 1}, counting data rows from 1)"


def to_dataset(raw: _Raw, label_names: list[str] | None = None) -> TextDataset:
    """Check ``raw`` and give its labels ids: into ``label_names`` when given, else into names
    derived from ``raw`` itself (its known names, or its sorted distinct labels)."""
    text_column, label_column = raw.columns or ("text", "label")
    if len(raw.texts) == 0:
        fail(f"{raw.where} has no examples (a header and no rows?); add labelled rows or pass "
             "other data")
    texts = [clean_text(t) if isinstance(t, str) else t for t in raw.texts]
    empty = [i for i, t in enumerate(texts) if _is_missing(t) or not str(t).strip()]
    if empty:
        fail(f"{raw.where}: empty or whitespace-only texts in column '{text_column}': "
             f"{_rows(empty)}; remove those rows or pick the text column with --text-column")
    texts = [t if isinstance(t, str) else str(t) for t in texts]

    values = [_normalize_label(v) for v in raw.labels]
    missing = [i for i, v in enumerate(values) if _is_missing(v)]
    if missing:
        fail(f"{raw.where}: missing labels in column '{label_column}': {_rows(missing)}; "
             "label every row or pick the label column with --label-column")

    if raw.label_names is not None:
        bad = [v for v in values if not (isinstance(v, int) and 0 <= v < len(raw.label_names))]
        if bad:
            fail(f"{raw.where}: label {bad[0]!r} is not an id of its label names "
                 f"({', '.join(raw.label_names)}); fix the labels")
        own_names = raw.label_names
        values = [own_names[v] for v in values]
    elif all(isinstance(v, int) for v in values):
        own_names = [str(v) for v in sorted(set(values))]
    else:
        own_names = sorted({str(v) for v in values})
    keys = [str(v) for v in values]

    if label_names is None:
        label_names = list(own_names)
    else:
        label_names = list(label_names)
        index = {name: i for i, name in enumerate(label_names)}
        numeric_names = any(name.lstrip("-").isdigit() for name in label_names)
        if raw.label_names is None and not numeric_names and all(isinstance(v, int)
                                                                 for v in values):
            # Integer labels against named classes: read them as ids.
            keys = [label_names[v] if 0 <= v < len(label_names) else str(v) for v in values]
        unseen = sorted({k for k in keys if k not in index})
        if unseen:
            fail(f"{raw.where}: label(s) {', '.join(unseen[:5])} in column '{label_column}' are "
                 f"not among the training labels ({', '.join(label_names)}); use data with the "
                 "same label set")
    index = {name: i for i, name in enumerate(label_names)}
    return TextDataset(texts, np.array([index[k] for k in keys], np.int64), label_names)


def _normalize_label(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        return value.strip()
    return value


# --- splitting and sampling ----------------------------------------------------------------


def _check_sizes(cfg: DataConfig) -> None:
    for name in ("max_train_samples", "max_eval_samples"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            fail(f"{name} {value} must be at least 1; fix --{name.replace('_', '-')}")


def carve_validation(
    train: TextDataset, validation_size: float, seed: int
) -> tuple[TextDataset, TextDataset]:
    """Split off a stratified, seeded validation set: a fraction (<1) or a count (>=1)."""
    from sklearn.model_selection import train_test_split

    if not validation_size > 0 or (validation_size >= 1
                                   and not float(validation_size).is_integer()):
        fail(f"validation_size {validation_size} must be a fraction between 0 and 1 or a whole "
             "number of examples; fix --validation-size or pass --validation-data")
    size: float | int = validation_size if validation_size < 1 else int(validation_size)
    held_out = size if isinstance(size, int) else math.ceil(size * len(train))
    if held_out >= len(train):
        fail(f"validation_size {validation_size} leaves no training data ({len(train)} "
             "examples); use a smaller --validation-size or pass --validation-data")
    try:
        keep, hold = train_test_split(np.arange(len(train)), test_size=size,
                                      stratify=train.labels, random_state=seed)
    except ValueError as err:
        fail(f"cannot carve a stratified validation split of {held_out} from {len(train)} "
             f"training examples ({_cause(err)}); use more data, another --validation-size, "
             "or pass --validation-data")
    return train.select(np.sort(keep)), train.select(np.sort(hold))


def subsample(dataset: TextDataset, max_samples: int | None, seed: int) -> TextDataset:
    """At most ``max_samples`` examples, stratified and seeded so every class stays (when it
    can: too few examples for that fall back to the first ones after a seeded shuffle)."""
    if max_samples is None or len(dataset) <= max_samples:
        return dataset
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(dataset))
    try:
        chosen, _ = train_test_split(indices, train_size=int(max_samples),
                                     stratify=dataset.labels, random_state=seed)
    except ValueError:
        chosen = np.random.default_rng(seed).permutation(indices)[: int(max_samples)]
    return dataset.select(np.sort(chosen))
