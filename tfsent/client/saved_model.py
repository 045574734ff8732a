"""``SavedModelPredictor``: an exported model called in this process, answering like
``SentimentClient`` (same ``predict`` / ``status`` / ``metadata`` / ``close``, same
``Prediction``\\ s, ``ServingError`` when the model call fails).

TensorFlow (and tensorflow-text, whose ops the export's tokenizer uses) is imported when a
predictor is made, not when this module is: install ``tfsent[serve]`` (or ``[train]``) for it.
::

    from tfsent.client import SavedModelPredictor

    with SavedModelPredictor("exported/tfsent") as predictor:   # its newest version
        print(predictor.predict(["great film"])[0].label)          # positive

The export's ``classes`` output names the probabilities, as over a server; ``label_names``
overrides them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfsent.client.predictions import (
    DEFAULT_MODEL_NAME,
    DEFAULT_SIGNATURE,
    ModelMetadata,
    Prediction,
    ServingError,
    VersionStatus,
    predictions_from_outputs,
    status_code_name,
)
from tfsent.errors import fail, first_line
from tfsent.signatures import TEXT_INPUT
from tfsent.versions import parse_version, scan_versions

SAVED_MODEL_FILE = "saved_model.pb"
SERVE_TAG = "serve"
# What a predictor imports when it is made: the export's graph runs tensorflow-text ops.
REQUIRED_MODULES = ("tensorflow", "tensorflow_text")


def find_version_dir(path: str | Path, version: int | None = None) -> Path:
    """``path`` itself if it holds a SavedModel, else its newest (or the given) version folder,
    found as TF Serving finds them (``tfsent.versions``: ASCII-digit names only).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for name in ("1", "12", "\u0663", ".tmp-13"):  # U+0663: an Arabic-Indic three
    ...         (Path(tmp) / name).mkdir()
    ...         (Path(tmp) / name / SAVED_MODEL_FILE).touch()
    ...     print(find_version_dir(tmp).name, find_version_dir(tmp, 1).name)
    12 1
    """
    path = Path(path)
    if not path.is_dir():
        fail(f"no such directory: {path}; give an export like exported/tfsent")
    if (path / SAVED_MODEL_FILE).is_file():
        if version is not None and parse_version(path.name) != version:
            fail(f"{path} is version {path.name}, not {version}; give the model's base directory")
        return path
    # Non-integer siblings are exports still being written (see tfsent.export).
    versions = {
        number: folder
        for number, folder in (scan_versions(path) or {}).items()
        if (folder / SAVED_MODEL_FILE).is_file()
    }
    if not versions:
        fail(f"no SavedModel versions in {path}: expected <version>/{SAVED_MODEL_FILE}; "
             "export one with tfsent.export")
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        fail(f"no version {version} in {path}; it has {sorted(versions)}")
    return versions[version]


class SavedModelPredictor:
    """The export's serving signature called in-process (see module docstring).

    ``path`` is a version folder or the model's base folder (``version`` picks one, default the
    newest); ``chunk_size`` texts go through the signature at a time; ``label_names`` (class-id
    order) key the probabilities instead of the export's ``classes``; ``model_name`` is what
    ``metadata()`` reports. Bad paths and signatures raise ``tfsent.errors.UserError``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        version: int | None = None,
        signature_name: str = DEFAULT_SIGNATURE,
        chunk_size: int = 64,
        label_names: Sequence[str] | None = None,
        model_name: str = DEFAULT_MODEL_NAME,
    ) -> None:
        if chunk_size < 1:
            fail(f"chunk_size must be at least 1, got {chunk_size}")
        if label_names is not None and (isinstance(label_names, str) or not label_names):
            fail(f"label_names must be a list of class names, got {label_names!r}")
        self.version_dir = find_version_dir(path, version)
        self.version = parse_version(self.version_dir.name) or 0
        self.model_name = model_name
        self.signature_name = signature_name
        self.chunk_size = chunk_size
        self.label_names = list(label_names) if label_names is not None else None

        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)

        self._tf = tf
        try:
            self._loaded = tf.saved_model.load(str(self.version_dir))
        except (OSError, ValueError, tf.errors.OpError) as err:
            fail(f"cannot load the SavedModel in {self.version_dir}: {first_line(err)}")
        if signature_name not in self._loaded.signatures:
            fail(f"the SavedModel has no signature {signature_name!r}; "
                 f"it has {sorted(self._loaded.signatures)}")
        self._signature = self._loaded.signatures[signature_name]
        inputs = set(self._signature.structured_input_signature[1])
        if inputs != {TEXT_INPUT}:
            fail(f"signature {signature_name!r} takes {sorted(inputs)}, not texts; "
                 f"use the {DEFAULT_SIGNATURE} signature")

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One ``Prediction`` per text, in order."""
        if isinstance(texts, (str, bytes)):
            fail("predict() takes a list of texts, not one string; write predict([text])")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            bad = next(t for t in texts if not isinstance(t, str))
            fail(f"predict() takes texts (str), got a {type(bad).__name__}: {bad!r:.60}")
        signature = self._open_signature()
        result: list[Prediction] = []
        for start in range(0, len(texts), self.chunk_size):
            chunk = texts[start : start + self.chunk_size]
            try:
                outputs = signature(**{TEXT_INPUT: self._tf.constant(chunk, self._tf.string)})
            except self._tf.errors.OpError as err:
                # The error type a server failure has, so callers handle one.
                raise ServingError(status_code_name(err.error_code), err.message) from None
            numpy = {name: tensor.numpy() for name, tensor in outputs.items()}
            result += predictions_from_outputs(numpy, len(chunk), self.label_names)
        return result

    def status(self) -> list[VersionStatus]:
        """The loaded version, ``AVAILABLE`` (as a server reports a version it serves)."""
        self._open_signature()
        return [VersionStatus(self.version, "AVAILABLE")]

    def metadata(self) -> ModelMetadata:
        """The signatures of the export's ``serve`` graph, read from its ``saved_model.pb``, as
        TF Serving's GetModelMetadata returns them."""
        self._open_signature()
        from tfsent.client.protos.tensorflow.core.protobuf import saved_model_pb2

        saved_model = saved_model_pb2.SavedModel.FromString(
            (self.version_dir / SAVED_MODEL_FILE).read_bytes()
        )
        graph: Any = next(
            (g for g in saved_model.meta_graphs if SERVE_TAG in g.meta_info_def.tags),
            saved_model.meta_graphs[0],
        )
        return ModelMetadata(self.model_name, self.version, dict(graph.signature_def))

    def close(self) -> None:
        """Let go of the model (its memory is freed once nothing else holds it)."""
        self._signature = None
        self._loaded = None

    def __enter__(self) -> SavedModelPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_signature(self) -> Any:
        if self._signature is None:
            fail("this SavedModelPredictor is closed; make a new one")
        return self._signature
