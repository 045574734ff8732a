"""Export stage: a run directory -> a versioned SavedModel that stock TensorFlow Serving hosts.

::

    python -m tfsent.export --run-dir runs/demo --export-dir exported --model-name tfsent
    # -> exported/tfsent/<N>/{saved_model.pb, variables/, assets/, assets.extra/}

    from tfsent.export import export_run
    export_run("runs/demo", "exported", "tfsent")      # PosixPath('exported/tfsent/1')

The SavedModel scores raw review text: its ``serving_default`` signature (``text`` ->
``probabilities``, ``label_id``, ``label``, ``logits``, ``classes``) tokenizes inside the graph
(:mod:`tfsent.graph_tokenizer`, equal to the training tokenizer id for id, in bounded time and
memory however long the text) and runs the fine-tuned ``TF*ForSequenceClassification`` in
float32; ``token_ids`` takes the model's inputs, ``input_ids`` / ``attention_mask`` /
``token_type_ids`` (int64; DistilBERT has no ``token_type_ids``), from clients that tokenize
themselves. Both return the same outputs: ``logits`` as the model gives
them, ``probabilities`` = ``softmax(logits / T)`` with the run's calibration temperature ``T``
(``RunDir.temperature``, 1.0 for an uncalibrated run; ``label_id`` is the argmax either way), and
``classes`` (string ``[batch, num_labels]``), the label names in id order on every row, naming
the ``probabilities`` columns as the Classify API's ``classes`` / ``scores`` do, since TF Serving
does not serve assets. ``assets/`` holds ``labels.txt``, ``vocab.txt`` and ``export_config.json``
(the tokenizer's whole config, the temperature, the versions and the serving image);
``assets.extra/tf_serving_warmup_requests`` holds the ``PredictionLog`` records TF Serving replays
before it marks a version ready.

Versions are integers that only grow, each written into a hidden staging folder (scratch
files included) and renamed into place, so a server polling the folder never loads half a
model; an export killed midway (even by SIGKILL) leaves only that folder, which the next export
into the same model folder removes: :mod:`tfsent.versions` does all that, this module builds
the SavedModel.

**Serving needs tensorflow-text's ops.** The tokenizer uses tensorflow-text ops
(:data:`TF_TEXT_OPS`), which stock ``tensorflow/serving`` images link, from the tensorflow-text
release of their own version. Serve exports with :data:`SERVING_IMAGE`; the image and the
tensorflow-text version the export was made with are recorded in ``assets/export_config.json``:

>>> SERVING_IMAGE
'tensorflow/serving:2.21.0'
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsent.cli import TRAIN_MODULES, add_verbose_flag, configure_logging, require_extra
from tfsent.errors import OneLineArgumentParser, fail, run_cli
from tfsent.rundir import RunDir
from tfsent.signatures import OUTPUTS, SERVING_SIGNATURE, TEXT_INPUT, TOKEN_IDS_SIGNATURE
from tfsent.versions import (
    next_version,
    remove_stale_staging,
    staged_version,
)

if TYPE_CHECKING:
    import tensorflow as tf

    from tfsent.graph_tokenizer import GraphTokenizer

log = logging.getLogger(__name__)

# The TF Serving image exports are made for, named here only (compose, k8s, README and tests
# read or check against it). Not derived from the installed TensorFlow: the image must be a
# release that exists and links a tensorflow-text with every op the export uses (TF_TEXT_OPS);
# 2.21.0 links tensorflow-text 2.21. setup.cfg pins TF / tensorflow-text to the same minor, so
# training, export and the production server run one TensorFlow; move them together. Older
# servers are a separate promise, checked by benchmarks/serving_compat.py (2.20 loads a 2.21
# export and agrees).
SERVING_IMAGE = "tensorflow/serving:2.21.0"
# The oldest TF Serving release an export is verified to load in (benchmarks/serving_compat.py).
OLDEST_VERIFIED_SERVING = "2.20.0"
# The tensorflow-text ops the serving graph may hold (NormalizeUTF8 only for accent-stripping,
# i.e. uncased, vocabularies); the rest are TensorFlow core ops.
TF_TEXT_OPS = ("FastWordpieceTokenizeWithOffsets", "NormalizeUTF8", "RegexSplitWithOffsets")
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
# Inside the staging folder (tfsent.versions.staged_version), removed before the rename: the
# export's scratch files, kept there so that a killed export leaves nothing anywhere else.
SCRATCH_DIR = ".scratch"


def export_run(
    run_dir: str | Path,
    export_dir: str | Path = "exported",
    model_name: str = "tfsent",
    version: int | None = None,
) -> Path:
    """Export the run in ``run_dir`` to ``export_dir/model_name/<version>``; return that path."""
    run = RunDir(run_dir).check()
    # Read (and checked) now, so that a bad run fails before anything is written.
    run.config  # noqa: B018
    _temperature(run)
    if not model_name or model_name in (".", "..") or "/" in model_name or "\\" in model_name:
        fail(f"model name {model_name!r} is not a folder name; pass e.g. --model-name tfsent")
    base = Path(export_dir) / model_name
    remove_stale_staging(base)
    version = next_version(base, version)
    with staged_version(base, version) as staging:
        write_saved_model(run, staging, model_name, version)
    return base / str(version)


def write_saved_model(run: RunDir, target: Path, model_name: str, version: int) -> None:
    """The SavedModel of ``run`` with assets and warmup requests, written into ``target``.

    Scratch files (the assets before the save copies them, TensorFlow's autograph modules) go to
    ``target/.scratch``, removed at the end: an export killed midway leaves nothing outside its
    staging folder.
    """
    scratch = target / SCRATCH_DIR
    scratch.mkdir()
    with _temp_files_in(scratch):
        _write_saved_model(run, target, scratch, model_name, version)
    shutil.rmtree(scratch)


def _write_saved_model(run: RunDir, target: Path, scratch: Path, model_name: str,
                       version: int) -> None:
    import tensorflow as tf

    from tfsent.graph_tokenizer import GraphTokenizer
    from tfsent.model import family_of

    cfg = run.config
    temperature = _temperature(run)
    model = run.load_model()
    graph_tokenizer = GraphTokenizer.from_hf(
        run.load_tokenizer(), cfg.model.max_length, cfg.model.truncation,
        model_inputs=family_of(model.config.model_type).inputs)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    tokenizer_config = graph_tokenizer.get_config()
    del tokenizer_config["vocab"]  # in assets/vocab.txt, one token a line
    export_config = {
        "model_name": model_name,
        "version": version,
        "label_names": label_names,
        "temperature": temperature,
        "tokenizer": {"class_name": type(graph_tokenizer).__name__, "vocab_file": "vocab.txt",
                      "config": tokenizer_config},
        "signatures": {
            SERVING_SIGNATURE: {"inputs": [TEXT_INPUT], "outputs": list(OUTPUTS)},
            TOKEN_IDS_SIGNATURE: {"inputs": list(graph_tokenizer.model_inputs),
                                  "outputs": list(OUTPUTS)},
        },
        "serving_image": SERVING_IMAGE,
        "tensorflow_text_ops": list(TF_TEXT_OPS),
        "tensorflow_version": tf.__version__,
        "tensorflow_text_version": metadata.version("tensorflow-text"),
        "transformers_version": metadata.version("transformers"),
        "tokenizers_version": metadata.version("tokenizers"),
        "base_model": cfg.model.model,
        "model_type": model.config.model_type,
        "run_dir": str(run.path.resolve()),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    assets = _write_asset_files(scratch, label_names, graph_tokenizer.vocab, export_config)
    module = sentiment_module_class()(model, graph_tokenizer, label_names, assets, temperature)
    tf.saved_model.save(
        module,
        str(target),
        signatures={
            SERVING_SIGNATURE: module.serve_text,
            TOKEN_IDS_SIGNATURE: module.serve_token_ids,
        },
    )
    write_warmup_requests(target / WARMUP_FILE, model_name)


@contextmanager
def _temp_files_in(folder: Path) -> Iterator[None]:
    """``tempfile``'s default folder set to ``folder`` inside the block (autograph writes the
    modules it generates there, deleted only at a normal exit), restored after it."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous


def load_tokenizer_from_export(version_dir: str | Path) -> GraphTokenizer:
    """The export's in-graph tokenizer, rebuilt from ``assets/export_config.json`` and
    ``assets/vocab.txt`` alone."""
    from tfsent.graph_tokenizer import GraphTokenizer

    assets = Path(version_dir) / "assets"
    spec = json.loads((assets / "export_config.json").read_text(encoding="utf-8"))["tokenizer"]
    # One token a line; split on "\n" only (splitlines would also split on U+2028 and alike).
    vocab = (assets / spec["vocab_file"]).read_text(encoding="utf-8").split("\n")[:-1]
    return GraphTokenizer.from_config({**spec["config"], "vocab": vocab})


def _temperature(run: RunDir) -> float:
    try:
        temperature = run.temperature
    except (ValueError, TypeError, AttributeError) as err:
        fail(f"{run.metrics_file} is not a tfsent metrics file ({type(err).__name__}); "
             "re-run python -m tfsent.fit")
    if not (math.isfinite(temperature) and temperature > 0):
        fail(f"{run.metrics_file} has calibration temperature {temperature}; expected a "
             "positive number; re-run python -m tfsent.fit")
    return temperature


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

    text_spec = tf.TensorSpec([None], tf.string, name=TEXT_INPUT)

    class SentimentModule(tf.Module):
        """The fine-tuned model behind two signatures: raw text, or token ids (the inputs the
        tokenizer gives, which are the model's)."""

        def __init__(self, model, tokenizer: GraphTokenizer, label_names: Sequence[str],
                     assets: dict[str, Path], temperature: float = 1.0):
            super().__init__(name="tfsent")
            self.temperature = float(temperature)
            # Tracking the weights, not the Keras model, keeps Keras' per-layer SavedModel
            # metadata (unused by TF Serving, half the save time) out of the export.
            self.model_weights = list(model.weights)
            self._logits = lambda features: model(features, training=False).logits
            self.tokenizer = tokenizer
            self.inputs = tuple(tokenizer.model_inputs)
            self.label_names = tf.constant(list(label_names), tf.string)
            # Tracked assets are copied into assets/ (and their paths made relative) on save.
            self.assets = {key: tf.saved_model.Asset(str(path)) for key, path in assets.items()}
            # The signature's inputs are named by the specs: their number varies by family.
            def serve_token_ids(*ids):
                return self.predict(dict(zip(self.inputs, ids, strict=True)))

            self.serve_token_ids = tf.function(
                serve_token_ids,
                input_signature=[tf.TensorSpec([None, None], tf.int64, name=name)
                                 for name in self.inputs],
                autograph=False)

        @tf.function(input_signature=[text_spec], autograph=False)
        def serve_text(self, text):
            # A call of the other signature's function: the model is traced (and saved) once.
            tokens = self.tokenizer(text)
            return self.serve_token_ids(*(tokens[name] for name in self.inputs))

        def predict(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            # int32 as in training (tfsent.features); the ids fit easily. A request of no rows
            # tokenizes to zero width, which BERT's attention cannot multiply: pad it to one.
            width = tf.shape(inputs["input_ids"])[1]
            grow = [[0, 0], [0, tf.maximum(1 - width, 0)]]
            features = {k: tf.pad(tf.cast(v, tf.int32), grow) for k, v in inputs.items()}
            logits = tf.cast(self._logits(features), tf.float32)
            label_id = tf.argmax(logits, axis=-1, output_type=tf.int64)
            batch = tf.shape(logits)[0]
            return {
                # Calibrated (temperature scaling): the argmax, so label_id, is unchanged.
                "probabilities": tf.nn.softmax(logits / self.temperature, axis=-1),
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
        request.inputs[TEXT_INPUT].CopyFrom(tf.make_tensor_proto(list(texts), dtype=tf.string))
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
    add_verbose_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    require_extra("train", TRAIN_MODULES, "exporting")
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    path = export_run(args.run_dir, args.export_dir, args.model_name, args.version)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
