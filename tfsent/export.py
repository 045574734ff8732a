"""Export stage: a run directory -> a versioned SavedModel that stock TensorFlow Serving hosts.

::

    python -m tfsent.export --run-dir runs/demo --export-dir exported --model-name tfsent
    # -> exported/tfsent/<N>/{saved_model.pb, variables/, assets/, assets.extra/}

    >>> from tfsent.export import export_run  # doctest: +SKIP
    >>> export_run("runs/demo", "exported", "tfsent")  # doctest: +SKIP
    PosixPath('exported/tfsent/1')

The SavedModel scores raw review text: its ``serving_default`` signature (``text`` ->
``probabilities``, ``label_id``, ``label``, ``logits``, ``classes``) tokenizes inside the graph
(:mod:`tfsent.graph_tokenizer`, equal to the training tokenizer id for id) and runs the fine-tuned
``TFBertForSequenceClassification`` in float32; ``token_ids`` takes ``input_ids`` /
``attention_mask`` / ``token_type_ids`` (int64) from clients that tokenize themselves. Both
return the same outputs; ``classes`` (string ``[batch, num_labels]``) repeats the label names in
id order on every row, naming the ``probabilities`` columns as the Classify API's ``classes`` /
``scores`` do, since TF Serving does not serve assets.
``assets/`` holds ``labels.txt``, ``vocab.txt`` and ``export_config.json``;
``assets.extra/tf_serving_warmup_requests`` holds the ``PredictionLog`` records TF Serving replays
before it marks a version ready.

Versions are integers that only grow (next = highest + 1); each is written into a hidden,
non-integer sibling (``.tmp-<N>-<pid>``, which TF Serving ignores) and renamed into place, so a
server polling the folder never loads half a model.

**Serving needs tensorflow-text's ops.** The tokenizer uses tensorflow-text ops
(``FastWordpieceTokenizeWithOffsets``, ``RegexSplitWithOffsets``, ``NormalizeUTF8``), which stock
``tensorflow/serving`` images link, from the tensorflow-text release of their own version. This
export needs tensorflow-text 2.21 (TensorFlow 2.21), so serve it with ``tensorflow/serving:2.21.0``
(or a later 2.21.x); both versions are recorded in ``assets/export_config.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.config import TRUNCATIONS, RunConfig
from tfsent.errors import OneLineArgumentParser, fail, run_cli
from tfsent.features import MODEL_INPUTS

if TYPE_CHECKING:
    import tensorflow as tf

    from tfsent.graph_tokenizer import GraphTokenizer

SERVING_SIGNATURE = "serving_default"
TOKEN_IDS_SIGNATURE = "token_ids"
OUTPUTS = ("probabilities", "label_id", "label", "logits", "classes")
WEIGHT_FILES = ("tf_model.h5",)
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
# Replayed by TF Serving before a version serves: a short and a long review (the longest shape,
# up to max_length), alone and in a batch, so the first real requests do not pay for tracing.
WARMUP_TEXTS = (
    ("A wonderful, moving film. The cast is superb!",),
    (
        "Dull and far too long.<br /><br />I wanted to leave after an hour.",
        "Not bad, not great: a perfectly average evening at the movies.",
        "I loved every minute of it " + "and the music is lovely, " * 200 + "truly.",
    ),
)
# Never registered in a C++ server: a graph holding these can only run inside Python.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


def serving_image(tf_version: str | None = None) -> str:
    """The ``tensorflow/serving`` image whose linked ops match this TensorFlow / tensorflow-text."""
    version = tf_version or metadata.version("tensorflow")
    major, minor = version.split(".")[:2]
    return f"tensorflow/serving:{major}.{minor}.0"


def export_run(
    run_dir: str | Path,
    export_dir: str | Path = "exported",
    model_name: str = "tfsent",
    version: int | None = None,
) -> Path:
    """Export the run in ``run_dir`` to ``export_dir/model_name/<version>``; return that path."""
    run = check_run_dir(run_dir)
    if not model_name or model_name in (".", "..") or "/" in model_name or "\\" in model_name:
        fail(f"model name {model_name!r} is not a folder name; pass e.g. --model-name tfsent")
    base = Path(export_dir) / model_name
    version = next_version(base, version)
    with _staging_dir(base, version) as staging:
        write_saved_model(run, staging, model_name, version)
        target = base / str(version)
        try:
            os.rename(staging, target)  # atomic: servers see no version or a whole one
        except OSError as err:
            fail(f"could not move the export into {target} ({err.strerror}); "
                 "was that version written meanwhile? export again")
    return target


def check_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` if it holds what an export needs, else a one-line ``UserError``."""
    run = Path(run_dir)
    hint = "pass the --output-dir of a finished python -m tfsent.fit run"
    if not run.is_dir():
        fail(f"run directory {run} does not exist; {hint}")
    if not (run / "config.json").is_file():
        fail(f"run directory {run} has no config.json; {hint}")
    model = run / "model"
    if not (model / "config.json").is_file() or not any(
        (model / f).is_file() for f in WEIGHT_FILES
    ):
        fail(f"run directory {run} has no model weights (model/{WEIGHT_FILES[0]} and "
             f"model/config.json); {hint}")
    tokenizer = run / "tokenizer"
    if not any((tokenizer / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        fail(f"run directory {run} has no tokenizer (tokenizer/vocab.txt); {hint}")
    return run


def existing_versions(base: Path) -> list[int]:
    """The integer-named entries under ``base`` (others, like temp dirs, are not versions)."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())


def next_version(base: Path, version: int | None = None) -> int:
    """``version`` if it is free, else a ``UserError``; by default the highest + 1, or 1."""
    versions = existing_versions(base)
    if version is None:
        return versions[-1] + 1 if versions else 1
    if version < 1:
        fail(f"--version {version} is not a positive integer; TF Serving versions are 1, 2, ...")
    if version in versions:
        fail(f"version {version} already exists in {base}; pass another --version or omit it "
             f"to get {versions[-1] + 1}")
    return version


@contextmanager
def _staging_dir(base: Path, version: int):
    """A fresh ``base/.tmp-<version>-<pid>``, made first (an unwritable target fails fast) and
    removed, with any folders made for it, if the export fails."""
    made = [p for p in (base, *base.parents) if not p.exists()]
    staging = base / f".tmp-{version}-{os.getpid()}"
    try:
        base.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as err:
        _remove_empty(made)
        fail(f"cannot write to {base} ({err.strerror}); pass a writable --export-dir")
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(made)
        raise


def _remove_empty(folders: Iterable[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            pass


def write_saved_model(run: Path, target: Path, model_name: str, version: int) -> None:
    """The SavedModel of ``run`` with assets and warmup requests, written into ``target``."""
    import tensorflow as tf
    from transformers import AutoTokenizer

    from tfsent.graph_tokenizer import GraphTokenizer

    cfg = _load_run_config(run)
    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(str(run / "tokenizer"), use_fast=True)
    except (OSError, ValueError) as err:
        fail(f"could not load the tokenizer in {run / 'tokenizer'} ({type(err).__name__}); "
             "re-run python -m tfsent.fit")
    graph_tokenizer = GraphTokenizer.from_hf(hf_tokenizer, cfg.model.max_length,
                                             cfg.model.truncation)
    model = load_float32_model(run / "model")
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    export_config = {
        "model_name": model_name,
        "version": version,
        "max_length": cfg.model.max_length,
        "truncation": cfg.model.truncation,
        "do_lower_case": graph_tokenizer.lowercase,
        "strip_accents": graph_tokenizer.strip_accents,
        "label_names": label_names,
        "vocab_size": len(graph_tokenizer.vocab),
        "signatures": {
            SERVING_SIGNATURE: {"inputs": ["text"], "outputs": list(OUTPUTS)},
            TOKEN_IDS_SIGNATURE: {"inputs": list(MODEL_INPUTS), "outputs": list(OUTPUTS)},
        },
        "tensorflow_version": tf.__version__,
        "tensorflow_text_version": metadata.version("tensorflow-text"),
        "transformers_version": metadata.version("transformers"),
        "serving_image": serving_image(tf.__version__),
        "base_model": cfg.model.model,
        "run_dir": str(run.resolve()),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with tempfile.TemporaryDirectory() as scratch:
        assets = _write_asset_files(Path(scratch), label_names, graph_tokenizer.vocab,
                                    export_config)
        module = sentiment_module_class()(model, graph_tokenizer, label_names, assets)
        tf.saved_model.save(
            module,
            str(target),
            signatures={
                SERVING_SIGNATURE: module.serve_text,
                TOKEN_IDS_SIGNATURE: module.serve_token_ids,
            },
        )
    write_warmup_requests(target / WARMUP_FILE, model_name)


def load_float32_model(model_dir: Path):
    """The run's ``TFBertForSequenceClassification``, in float32 whatever it trained in.

    Runs may train under a mixed-precision Keras policy; the export computes in float32 so its
    outputs match on every server (CPU kernels for fp16/bf16 are slow or missing).
    """
    import tf_keras
    from transformers import TFBertForSequenceClassification
    from transformers.utils import logging as hf_logging

    previous, verbosity = tf_keras.mixed_precision.global_policy(), hf_logging.get_verbosity()
    tf_keras.mixed_precision.set_global_policy("float32")
    hf_logging.set_verbosity_error()  # "All model checkpoint layers were used..." is noise here
    try:
        return TFBertForSequenceClassification.from_pretrained(str(model_dir))
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        fail(f"could not load the model in {model_dir} ({reason}); re-run python -m tfsent.fit")
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
        hf_logging.set_verbosity(verbosity)


def _load_run_config(run: Path) -> RunConfig:
    try:
        cfg = RunConfig.load(run / "config.json")
    except (ValueError, TypeError) as err:
        fail(f"{run / 'config.json'} is not a tfsent run config ({type(err).__name__}); "
             "re-run python -m tfsent.fit")
    if cfg.model.truncation not in TRUNCATIONS or cfg.model.max_length < 3:
        fail(f"{run / 'config.json'} has max_length {cfg.model.max_length} / truncation "
             f"{cfg.model.truncation!r}; expected >= 3 and one of {', '.join(TRUNCATIONS)}")
    return cfg


def _write_asset_files(
    folder: Path, label_names: Sequence[str], vocab: Sequence[str], export_config: dict[str, Any]
) -> dict[str, Path]:
    files = {
        "labels": folder / "labels.txt",
        "vocab": folder / "vocab.txt",
        "export_config": folder / "export_config.json",
    }
    files["labels"].write_text("".join(f"{name}\n" for name in label_names), encoding="utf-8")
    files["vocab"].write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")
    files["export_config"].write_text(json.dumps(export_config, indent=2, ensure_ascii=False)
                                      + "\n", encoding="utf-8")
    return files


@functools.cache
def sentiment_module_class() -> type:
    """``SentimentModule`` (a ``tf.Module``), defined on first use so that importing this module
    and its CLI's bad-input errors do not wait for TensorFlow."""
    import tensorflow as tf

    text_spec = tf.TensorSpec([None], tf.string, name="text")
    id_specs = [tf.TensorSpec([None, None], tf.int64, name=name) for name in MODEL_INPUTS]

    class SentimentModule(tf.Module):
        """The fine-tuned model behind two signatures: raw text, or token ids."""

        def __init__(self, model, tokenizer: GraphTokenizer, label_names: Sequence[str],
                     assets: dict[str, Path]):
            super().__init__(name="tfsent")
            # Tracking the weights, not the Keras model, keeps Keras' per-layer SavedModel
            # metadata (unused by TF Serving, half the save time) out of the export.
            self.model_weights = list(model.weights)
            self._logits = lambda features: model(features, training=False).logits
            self.tokenizer = tokenizer
            self.label_names = tf.constant(list(label_names), tf.string)
            # Tracked assets are copied into assets/ (and their paths made relative) on save.
            self.assets = {key: tf.saved_model.Asset(str(path)) for key, path in assets.items()}

        @tf.function(input_signature=[text_spec], autograph=False)
        def serve_text(self, text):
            # A call of the other signature's function: the model is traced (and saved) once.
            return self.serve_token_ids(**self.tokenizer(text))

        @tf.function(input_signature=id_specs, autograph=False)
        def serve_token_ids(self, input_ids, attention_mask, token_type_ids):
            return self.predict({"input_ids": input_ids, "attention_mask": attention_mask,
                                 "token_type_ids": token_type_ids})

        def predict(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            # int32 as in training (tfsent.features); the ids fit easily. A request of no rows
            # tokenizes to zero width, which BERT's attention cannot multiply: pad it to one.
            width = tf.shape(inputs["input_ids"])[1]
            grow = [[0, 0], [0, tf.maximum(1 - width, 0)]]
            features = {k: tf.pad(tf.cast(inputs[k], tf.int32), grow) for k in MODEL_INPUTS}
            logits = tf.cast(self._logits(features), tf.float32)
            label_id = tf.argmax(logits, axis=-1, output_type=tf.int64)
            batch = tf.shape(logits)[0]
            return {
                "probabilities": tf.nn.softmax(logits, axis=-1),
                "label_id": label_id,
                "label": tf.gather(self.label_names, label_id),
                "logits": logits,
                # Per row, as the Classify API's ``classes``: REST row replies carry it too.
                "classes": tf.tile(self.label_names[None, :], [batch, 1]),
            }

    return SentimentModule


def warmup_requests(model_name: str, batches: Iterable[Sequence[str]] = WARMUP_TEXTS):
    """``PredictionLog`` records calling ``serving_default`` with ``batches`` of texts."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    for texts in batches:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = SERVING_SIGNATURE
        request.inputs["text"].CopyFrom(tf.make_tensor_proto(list(texts), dtype=tf.string))
        yield prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)
        )


def write_warmup_requests(path: Path, model_name: str) -> None:
    """``assets.extra/tf_serving_warmup_requests``: a TFRecord file of ``PredictionLog``."""
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in warmup_requests(model_name):
            writer.write(log.SerializeToString())


def list_graph_ops(saved_model_dir: str | Path) -> set[str]:
    """Every op type in ``saved_model.pb``: the meta graphs' nodes and their function library."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    ops: set[str] = set()
    for meta_graph in saved_model.meta_graphs:
        graph = meta_graph.graph_def
        ops.update(node.op for node in graph.node)
        for function in graph.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def unsupported_ops(ops: Iterable[str]) -> set[str]:
    """The ``ops`` a server with TensorFlow + tensorflow-text ops cannot run.

    Those registered by neither (checked in this process, after loading tensorflow-text's op
    libraries), plus the Python-callback ops, which only exist inside a Python process.
    """
    import tensorflow_text  # noqa: F401  (registers its ops)
    from tensorflow.python.framework import op_def_registry

    ops = set(ops)
    return {op for op in ops if op in PYTHON_OPS or op_def_registry.get(op) is None}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m tfsent.export",
        description="Export a tfsent run as a versioned SavedModel for TensorFlow Serving.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--run-dir", required=True,
                        help="Run directory written by python -m tfsent.fit (its --output-dir).")
    parser.add_argument("--export-dir", default="exported",
                        help="Base folder; the model goes to <export-dir>/<model-name>/<version>.")
    parser.add_argument("--model-name", default="tfsent",
                        help="Model name: the folder under --export-dir and TF Serving's name.")
    parser.add_argument("--version", type=int, default=None,
                        help="Version number (must not exist). Default: the highest + 1, or 1.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = export_run(args.run_dir, args.export_dir, args.model_name, args.version)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
