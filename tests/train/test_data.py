"""Data stage: every source, the seeded stratified splits, sampling, cleaning and bad input."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfsent import data
from tfsent.config import DataConfig
from tfsent.data import BR_PATTERN, clean_text, load_evaluation_set, load_splits
from tfsent.errors import UserError
from tfsent.synthetic import (
    class_word_lists,
    generate_reviews,
    write_aclimdb,
    write_aclimdb_tarball,
)

EMOTIONS = ("joy", "sadness", "anger", "fear")


def load(dataset, seed=0, **options) -> data.Splits:
    return load_splits(DataConfig(dataset=str(dataset), **options), seed)


def user_error(dataset, seed=0, **options) -> str:
    with pytest.raises(UserError) as info:
        load(dataset, seed, **options)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def counts(dataset: data.TextDataset) -> list[int]:
    return np.bincount(dataset.labels, minlength=len(dataset.label_names)).tolist()


def write_table(path: Path, texts, labels, text_column="text", label_column="label") -> Path:
    frame = pd.DataFrame({text_column: texts, label_column: labels})
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


# --- cleaning and generated data -----------------------------------------------------------


def test_clean_text_replaces_every_html_line_break_and_nothing_else():
    assert clean_text("a<br />b<br/>c<BR>d<br   />e<Br\t/>f") == "a b c d e f"
    assert clean_text("<b>bold</b> <brand> 3 < 4") == "<b>bold</b> <brand> 3 < 4"
    assert re.sub(BR_PATTERN, " ", "x<br /><br />y") == "x  y"


def test_br_pattern_is_valid_re2_and_matches_like_python():
    tf = pytest.importorskip("tensorflow")
    texts = ["a<br />b<BR/>c<br>d", "<b>no</b> <brand>", "x<br   />y"]
    graph = tf.strings.regex_replace(tf.constant(texts), BR_PATTERN, " ").numpy()
    assert [t.decode() for t in graph] == [clean_text(t) for t in texts]


def test_generated_reviews_are_deterministic_balanced_and_varied():
    texts, labels = generate_reviews(400, seed=5, label_names=EMOTIONS)
    assert (texts, labels) == generate_reviews(400, seed=5, label_names=EMOTIONS)
    assert texts != generate_reviews(400, seed=6, label_names=EMOTIONS)[0]
    assert Counter(labels) == {0: 100, 1: 100, 2: 100, 3: 100}
    lengths = [len(clean_text(t).split()) for t in texts]
    assert min(lengths) >= 5 and max(lengths) > 80
    assert any("<br" in t for t in texts) and any("!" in t for t in texts)
    # Each class's own words dominate its reviews: "joy" reviews say joyful things.
    joy = " ".join(t.lower() for t, y in zip(texts, labels, strict=True) if y == 0)
    fear = " ".join(t.lower() for t, y in zip(texts, labels, strict=True) if y == 3)
    assert joy.count("happy") > 3 * fear.count("happy")
    assert fear.count("scared") > 3 * joy.count("scared")


def test_more_classes_than_word_lists_still_get_words_of_their_own():
    names = [f"c{i}" for i in range(12)]
    lists = class_word_lists(names)
    assert len({frozenset(words) for words in lists}) == 12


# --- sources -------------------------------------------------------------------------------


def test_demo_source_is_offline_seeded_and_cleaned():
    splits = load("demo", seed=1)
    assert splits.label_names == ["negative", "positive"]
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (1080, 120, 300)
    assert counts(splits.validation) == [60, 60] and counts(splits.test) == [150, 150]
    assert not any("<br" in t.lower() for t in splits.train.texts + splits.test.texts)
    again = load("demo", seed=1)
    assert again.train.texts == splits.train.texts
    assert load("demo", seed=2).validation.texts != splits.validation.texts
    # Same data whatever the seed, only the split differs.
    assert load("demo", seed=2).test.texts == splits.test.texts


def test_aclimdb_folder_with_train_and_test(tmp_path):
    top = write_aclimdb(tmp_path, n_per_class=40, seed=3)
    assert top == tmp_path / "aclImdb" and (top / "README").is_file()
    names = sorted(p.name for p in (top / "train" / "pos").iterdir())
    assert len(names) == 40
    assert all(7 <= int(n.split("_")[1][:-4]) <= 10 for n in names)
    assert all(1 <= int(p.name.split("_")[1][:-4]) <= 4 for p in (top / "test" / "neg").iterdir())

    splits = load(top)
    assert splits.label_names == ["negative", "positive"]
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (72, 8, 80)
    assert counts(splits.test) == [40, 40] and counts(splits.validation) == [4, 4]
    # Labels follow the folders, and <br /> is gone.
    for folder, label in (("pos", 1), ("neg", 0)):
        review = clean_text(next((top / "test" / folder).glob("7_*.txt")).read_text())
        assert splits.test.labels[splits.test.texts.index(review)] == label
    assert not any("<br" in t.lower() for t in splits.train.texts + splits.test.texts)
    # train/unsup is skipped.
    unsup = {clean_text(p.read_text()) for p in (top / "train" / "unsup").iterdir()}
    assert unsup and not unsup & set(splits.train.texts + splits.validation.texts)
    # The folder holding aclImdb/ works the same.
    assert load(tmp_path).train.texts == splits.train.texts
    # Training examples come shuffled, not all negatives first.
    assert 0 < splits.train.labels[:20].sum() < 20


def test_train_only_aclimdb_folder_has_no_test(tmp_path):
    top = write_aclimdb(tmp_path, n_per_class=20, with_test=False)
    assert not (top / "test").exists()
    splits = load(top, validation_size=10)
    assert splits.test is None
    assert (len(splits.train), len(splits.validation)) == (30, 10)


def test_tarball_reads_the_same_reviews_as_the_folder(tmp_path):
    tarball = write_aclimdb_tarball(tmp_path / "aclImdb_v1.tar.gz", n_per_class=30, seed=4)
    folder = write_aclimdb(tmp_path / "extracted", n_per_class=30, seed=4)
    from_tar, from_folder = load(tarball), load(folder)
    assert from_tar.train.texts == from_folder.train.texts
    assert from_tar.test.texts == from_folder.test.texts
    assert from_tar.train.labels.tolist() == from_folder.train.labels.tolist()
    assert len(from_tar.test) == 60
    assert not (tmp_path / "aclImdb").exists()  # read in place, nothing extracted


def test_csv_with_string_emotion_labels(tmp_path):
    texts, ids = generate_reviews(200, seed=2, label_names=EMOTIONS)
    path = write_table(tmp_path / "emotions.csv", texts, [EMOTIONS[i] for i in ids],
                       "sentence", "emotion")
    splits = load(path, text_column="sentence", label_column="emotion", validation_size=0.2)
    assert splits.label_names == sorted(EMOTIONS)  # anger, fear, joy, sadness
    assert splits.test is None
    assert (len(splits.train), len(splits.validation)) == (160, 40)
    assert counts(splits.validation) == [10, 10, 10, 10]
    by_text = dict(zip(map(clean_text, texts), (EMOTIONS[i] for i in ids), strict=True))
    for text, label in zip(splits.train.texts, splits.train.labels, strict=True):
        assert splits.label_names[label] == by_text[text]


def test_csv_with_integer_labels(tmp_path):
    texts, ids = generate_reviews(90, seed=2, label_names=("a", "b", "c"))
    path = write_table(tmp_path / "reviews.csv", texts, ids)
    splits = load(path, validation_size=0.2)
    assert splits.label_names == ["0", "1", "2"]
    by_text = dict(zip(map(clean_text, texts), ids, strict=True))
    assert [by_text[t] for t in splits.validation.texts] == splits.validation.labels.tolist()
    assert counts(splits.validation) == [6, 6, 6]


def test_integer_labels_not_starting_at_zero_keep_their_values_as_names(tmp_path):
    texts, ids = generate_reviews(40, seed=2)
    stars = [5 if y else 1 for y in ids]
    splits = load(write_table(tmp_path / "stars.csv", texts, stars), validation_size=0.25)
    assert splits.label_names == ["1", "5"]
    assert sorted(set(splits.train.labels.tolist())) == [0, 1]


def test_jsonl_and_json_files(tmp_path):
    texts, ids = generate_reviews(60, seed=7)
    names = ["negative", "positive"]
    rows = [{"text": t, "label": names[y]} for t, y in zip(texts, ids, strict=True)]
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    as_lines = tmp_path / "lines.json"
    as_lines.write_text(jsonl.read_text())
    as_array = tmp_path / "array.json"
    as_array.write_text(json.dumps(rows))
    results = [load(p, validation_size=0.2) for p in (jsonl, as_lines, as_array)]
    for splits in results:
        assert splits.label_names == names
        assert (len(splits.train), len(splits.validation)) == (48, 12)
        assert splits.train.texts == results[0].train.texts
    expected = dict(zip(map(clean_text, texts), ids, strict=True))
    assert [expected[t] for t in results[0].train.texts] == results[0].train.labels.tolist()


def test_parquet_file(tmp_path):
    texts, ids = generate_reviews(50, seed=8, label_names=EMOTIONS)
    path = write_table(tmp_path / "emotions.parquet", texts, [EMOTIONS[i] for i in ids])
    splits = load(path, validation_size=10)
    assert splits.label_names == sorted(EMOTIONS)
    assert (len(splits.train), len(splits.validation)) == (40, 10)


def test_parquet_written_by_datasets_keeps_its_class_label_names(tmp_path):
    datasets = pytest.importorskip("datasets")
    texts, ids = generate_reviews(40, seed=9)
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    path = tmp_path / "imdb.parquet"
    datasets.Dataset.from_dict({"text": texts, "label": ids}, features=features).to_parquet(path)
    splits = load(path, validation_size=0.25)
    assert splits.label_names == ["negative", "positive"]  # IMDB's neg/pos said in full
    expected = dict(zip(map(clean_text, texts), ids, strict=True))
    assert [expected[t] for t in splits.train.texts] == splits.train.labels.tolist()


def hub_dataset(datasets, with_validation=False):
    texts, ids = generate_reviews(80, seed=11)
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    parts = {
        "train": datasets.Dataset.from_dict({"text": texts[:50], "label": ids[:50]}, features),
        "test": datasets.Dataset.from_dict({"text": texts[50:70], "label": ids[50:70]}, features),
        # IMDB's unlabelled split: label -1, never used.
        "unsupervised": datasets.Dataset.from_dict(
            {"text": ["no label here"] * 3, "label": [-1] * 3}, features),
    }
    if with_validation:
        parts["validation"] = datasets.Dataset.from_dict(
            {"text": texts[70:], "label": ids[70:]}, features)
    return datasets.DatasetDict(parts), texts, ids


def test_hugging_face_dataset_with_mocked_load_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    dataset_dict, texts, ids = hub_dataset(datasets)
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name: asked.append(name) or dataset_dict)
    splits = load("stanfordnlp/imdb", validation_size=10)
    assert asked == ["stanfordnlp/imdb"]
    assert splits.label_names == ["negative", "positive"]
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (40, 10, 20)
    assert splits.test.texts == [clean_text(t) for t in texts[50:70]]
    assert splits.test.labels.tolist() == ids[50:70]
    assert "no label here" not in splits.train.texts + splits.validation.texts


def test_hugging_face_validation_split_is_used_when_present(monkeypatch):
    datasets = pytest.importorskip("datasets")
    dataset_dict, texts, _ = hub_dataset(datasets, with_validation=True)
    monkeypatch.setattr(datasets, "load_dataset", lambda name: dataset_dict)
    splits = load("someone/reviews")
    assert len(splits.train) == 50
    assert splits.validation.texts == [clean_text(t) for t in texts[70:]]


def test_hub_unreachable_gives_one_line_with_alternatives():
    pytest.importorskip("datasets")
    message = user_error("someone/no-such-dataset-offline")  # conftest sets HF offline mode
    assert "could not load dataset 'someone/no-such-dataset-offline'" in message
    assert "--dataset demo" in message and "local" in message


# --- splitting, sampling, label mapping ----------------------------------------------------


def imbalanced_csv(tmp_path, n_neg=150, n_pos=50) -> Path:
    texts, ids = generate_reviews(2 * max(n_neg, n_pos), seed=12)
    neg = [t for t, y in zip(texts, ids, strict=True) if y == 0][:n_neg]
    pos = [t for t, y in zip(texts, ids, strict=True) if y == 1][:n_pos]
    return write_table(tmp_path / "imbalanced.csv", neg + pos,
                       ["negative"] * n_neg + ["positive"] * n_pos)


def test_validation_split_is_stratified_and_seeded(tmp_path):
    path = imbalanced_csv(tmp_path)
    first = load(path, seed=7, validation_size=0.2)
    assert counts(first.validation) == [30, 10]  # the 3:1 ratio kept
    assert counts(first.train) == [120, 40]
    assert load(path, seed=7, validation_size=0.2).validation.texts == first.validation.texts
    other = load(path, seed=8, validation_size=0.2)
    assert other.validation.texts != first.validation.texts
    assert counts(other.validation) == [30, 10]
    assert not set(first.validation.texts) & set(first.train.texts)
    assert len(load(path, validation_size=25).validation) == 25


def test_max_samples_keep_every_class_and_are_seeded(tmp_path):
    path = imbalanced_csv(tmp_path)
    options = {"validation_size": 0.2, "max_train_samples": 20, "max_eval_samples": 8}
    splits = load(path, seed=3, **options)
    assert counts(splits.train) == [15, 5] and counts(splits.validation) == [6, 2]
    assert load(path, seed=3, **options).train.texts == splits.train.texts
    demo = load("demo", max_train_samples=10, max_eval_samples=4)
    assert counts(demo.train) == [5, 5] and len(demo.validation) == len(demo.test) == 4
    assert counts(demo.test) == [2, 2]


def test_validation_and_test_files_share_the_train_label_mapping(tmp_path):
    texts, ids = generate_reviews(120, seed=13, label_names=EMOTIONS)
    names = [EMOTIONS[i] for i in ids]
    train = write_table(tmp_path / "train.csv", texts[:80], names[:80])
    # Validation lacks two classes: ids still come from train's names, not its own.
    keep = [i for i in range(80, 100) if names[i] in ("joy", "sadness")]
    valid = write_table(tmp_path / "valid.jsonl", [texts[i] for i in keep],
                        [names[i] for i in keep])
    test = write_table(tmp_path / "test.parquet", texts[100:], names[100:])
    splits = load(train, validation_data=str(valid), test_data=str(test))
    assert splits.label_names == ["anger", "fear", "joy", "sadness"]
    assert splits.validation.label_names == splits.test.label_names == splits.label_names
    assert len(splits.train) == 80  # nothing carved when validation data is given
    assert set(splits.validation.labels.tolist()) == {2, 3}
    assert [splits.label_names[i] for i in splits.test.labels] == names[100:]


def test_unseen_label_in_validation_data_is_an_error(tmp_path):
    texts, ids = generate_reviews(40, seed=14)
    train = write_table(tmp_path / "train.csv", texts, ["neg", "pos"] * 20)
    valid = write_table(tmp_path / "valid.csv", texts[:3], ["neg", "pos", "meh"])
    message = user_error(train, validation_data=str(valid))
    assert "meh" in message and "neg, pos" in message and "valid.csv" in message


def test_evaluation_set_maps_onto_a_model_label_names(tmp_path):
    folder = write_aclimdb(tmp_path, n_per_class=10)
    imdb = load_evaluation_set(str(folder), DataConfig(), ["negative", "positive"])
    assert len(imdb) == 20 and counts(imdb) == [10, 10]  # its test split
    texts, ids = generate_reviews(10, seed=15)
    csv = write_table(tmp_path / "ids.csv", texts, ids)
    as_ids = load_evaluation_set(str(csv), DataConfig(), ["negative", "positive"])
    assert as_ids.labels.tolist() == ids  # integer labels read as ids of named classes
    with pytest.raises(UserError, match="not among the training labels"):
        load_evaluation_set(str(folder), DataConfig(), ["anger", "joy"])


# --- bad input -----------------------------------------------------------------------------


def test_missing_path(tmp_path):
    message = user_error(tmp_path / "nope.csv")
    assert "nope.csv does not exist" in message


def test_unknown_column_lists_the_columns(tmp_path):
    path = write_table(tmp_path / "r.csv", ["good film", "bad film"], ["pos", "neg"],
                       "review", "sentiment")
    message = user_error(path)
    assert "no column 'text'" in message and "review, sentiment" in message
    assert "--text-column" in message
    assert "no column 'label'" in user_error(path, text_column="review")


@pytest.mark.parametrize("name,content,message", [
    ("header.csv", "text,label\n", "has no examples (a header and no rows?)"),
    ("empty.jsonl", "", "is empty; add labelled rows with a 'text' and a 'label' column"),
    ("empty.csv", "", "could not read"),
])
def test_a_file_without_rows_is_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    assert message in user_error(path)


def test_validation_data_without_rows_is_one_line(tmp_path):
    train = write_table(tmp_path / "train.csv", ["good", "bad"] * 10, ["pos", "neg"] * 10)
    (tmp_path / "valid.csv").write_text("text,label\n")
    message = user_error(train, validation_data=str(tmp_path / "valid.csv"))
    assert message.startswith(f"{tmp_path / 'valid.csv'} has no examples")


def test_single_class(tmp_path):
    path = write_table(tmp_path / "r.csv", ["good", "fine", "great"], ["pos"] * 3)
    message = user_error(path)
    assert "only one class (pos)" in message and "'label'" in message


def test_empty_texts_are_counted_with_the_first_row(tmp_path):
    texts = ["good film", "  ", "bad film", None, "<br />", "fine"]
    path = write_table(tmp_path / "r.csv", texts, ["pos", "neg"] * 3)
    message = user_error(path)
    assert "empty or whitespace-only" in message
    assert "3 (first at row 2" in message


def test_missing_labels(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": null}\n'
                    '{"text": "c", "label": "neg"}\n{"text": "d"}\n')
    message = user_error(path)
    assert "missing labels" in message and "2 (first at row 2" in message


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\xe9 cr\xe8me,pos\nbad,neg\n".encode("latin-1"))
    message = user_error(path)
    assert "not UTF-8" in message and "re-encode" in message


def test_unsupported_extension(tmp_path):
    path = tmp_path / "reviews.txt"
    path.write_text("a great film\n")
    message = user_error(path)
    assert "unsupported file type '.txt'" in message and ".csv" in message


def test_tarball_or_folder_without_aclimdb_train(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no aclImdb train/pos and train/neg" in user_error(tmp_path / "empty")
    top = write_aclimdb(tmp_path / "half", n_per_class=5)
    for file in (top / "train" / "neg").iterdir():
        file.unlink()
    assert "no aclImdb train/pos and train/neg" in user_error(top)
    not_tar = tmp_path / "aclImdb_v1.tar.gz"
    not_tar.write_bytes(b"this is no tarball")
    assert "not a readable tar archive" in user_error(not_tar)


def test_validation_size_that_leaves_no_training_data(tmp_path):
    path = write_table(tmp_path / "r.csv", ["a", "b", "c", "d"], ["pos", "neg"] * 2)
    assert "leaves no training data" in user_error(path, validation_size=4)
    assert "leaves no training data" in user_error(path, validation_size=0.99)
    assert "validation_size 0" in user_error(path, validation_size=0)


# --- the real reviews ----------------------------------------------------------------------


@pytest.mark.slow
def test_real_imdb_train_tarball(imdb_tarball):
    start = time.perf_counter()
    splits = load(imdb_tarball, seed=42)
    elapsed = time.perf_counter() - start
    print(f"loaded 25,000 real reviews from {imdb_tarball.name} in {elapsed:.1f} s")
    assert splits.test is None
    assert len(splits.train) + len(splits.validation) == 25_000
    assert counts(splits.train) == [11_250, 11_250] and counts(splits.validation) == [1250, 1250]
    assert not any("<br" in t.lower() for t in splits.train.texts + splits.validation.texts)
