"""One loaded version of a model: a SavedModel's signatures, checked and run like TF Serving.

``tf.saved_model.load`` gives the callable signatures; the ``SignatureDef`` protos (what
GetModelMetadata reports and what requests are checked against) are read from the same
``saved_model.pb``, as TF Serving reads its MetaGraphDef. Requests reach a servable only through
``tfsent.model_server.service.run`` (checks, limits, batching), which the warmup replay uses too::

    servable = Servable.load("exported/tfsent/1", name="tfsent", version=1)
    servable.check_request("serving_default", {"text": texts})
    outputs = servable.run("serving_default", {"text": texts})
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfsent.model_server.status import RequestError, clean_message, code_from_number

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses more (saved_model_warmup_util.cc)


def dtype_name(dtype_enum: int) -> str:
    """TensorFlow's ``DataTypeString``: ``float`` for DT_FLOAT, ``string`` for DT_STRING."""
    from tensorflow.core.framework import types_pb2

    try:
        return types_pb2.DataType.Name(dtype_enum).removeprefix("DT_").lower()
    except ValueError:
        return f"unknown dtype {dtype_enum}"


def numpy_dtype_enum(array: np.ndarray) -> int:
    """The ``DataType`` enum of a numpy array (object arrays of bytes are DT_STRING)."""
    import tensorflow as tf

    return tf.as_dtype(array.dtype).as_datatype_enum


def shape_text(shape: Any) -> str:
    """``[-1,2]`` for a TensorShapeProto, ``[?]`` for an unknown rank (TF Serving's format)."""
    if shape.unknown_rank:
        return "[?]"
    return "[" + ",".join(str(d.size) for d in shape.dim) + "]"


def shape_compatible(shape: Any, actual: Sequence[int]) -> bool:
    if shape.unknown_rank:
        return True
    if len(shape.dim) != len(actual):
        return False
    return all(d.size < 0 or d.size == n for d, n in zip(shape.dim, actual, strict=True))


def read_meta_graph(export_dir: Path, tags: Sequence[str]) -> Any:
    """The MetaGraphDef tagged exactly ``tags`` in ``export_dir``'s saved_model.pb(txt)."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    binary = export_dir / "saved_model.pb"
    if binary.is_file():
        saved_model.ParseFromString(binary.read_bytes())
    else:
        text_format.Parse((export_dir / "saved_model.pbtxt").read_text(), saved_model)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            return meta_graph
    available = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise RuntimeError(
        f"Could not find meta graph def matching supplied tags: {{ {' '.join(tags)} }}. "
        f"Available tags: {available}"
    )


class Servable:
    """A SavedModel version, loaded: ``check_request`` then ``run`` a signature."""

    def __init__(self, name: str, version: int, path: Path, loaded: Any, meta_graph: Any) -> None:
        self.name = name
        self.version = version
        self.path = path
        self._loaded = loaded
        self.signature_defs: dict[str, Any] = dict(meta_graph.signature_def)
        self._functions = dict(loaded.signatures)

    @classmethod
    def load(
        cls, path: str | Path, name: str, version: int, tags: Sequence[str] = ("serve",)
    ) -> Servable:
        """Load ``path`` with ``tf.saved_model.load`` (tensorflow-text's ops registered first)."""
        import tensorflow as tf

        try:  # the export tokenizes in the graph with tensorflow-text ops
            import tensorflow_text  # noqa: F401
        except ImportError:
            log.warning("tensorflow_text is not installed; models using its ops will not load")
        path = Path(path)
        meta_graph = read_meta_graph(path, tags)
        loaded = tf.saved_model.load(str(path), tags=list(tags))
        return cls(name, version, path, loaded, meta_graph)

    def signature_def(self, signature_name: str) -> Any:
        """The SignatureDef, or FAILED_PRECONDITION as TF Serving's Predict answers."""
        signature_name = signature_name or DEFAULT_SIGNATURE
        signature = self.signature_defs.get(signature_name)
        if signature is None or signature_name not in self._functions:
            raise RequestError.failed_precondition(
                f'Serving signature key "{signature_name}" not found.'
            )
        return signature

    def check_request(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> Any:
        """Validate inputs and output filter against the signature, as TF Serving's predict_util."""
        signature = self.signature_def(signature_name)
        if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise RequestError.internal(
                "Expected prediction signature method_name to be one of "
                f"{{{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. "
                f"Was: {signature.method_name}"
            )
        expected = sorted(signature.inputs)
        sent = sorted(inputs)
        if len(sent) != len(expected):
            extra = sorted(set(sent) - set(expected))
            missing = sorted(set(expected) - set(sent))
            raise RequestError.invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sent)}}}) != len({{{','.join(expected)}}}). "
                f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}."
            )
        for alias in sent:
            info = signature.inputs.get(alias)
            if info is None:
                raise RequestError.invalid_argument(
                    f"input tensor alias not found in signature: {alias}. "
                    f"Inputs expected to be in the set {{{','.join(expected)}}}."
                )
            array = inputs[alias]
            got = numpy_dtype_enum(array)
            if got != info.dtype:
                raise RequestError.invalid_argument(
                    f"Expects arg[{expected.index(alias)}] to be {dtype_name(info.dtype)} "
                    f"but {dtype_name(got)} is provided"
                )
            if not shape_compatible(info.tensor_shape, array.shape):
                raise RequestError.invalid_argument(
                    f"input tensor alias {alias} has shape "
                    f"[{','.join(str(n) for n in array.shape)}], which is incompatible with the "
                    f"signature's shape {shape_text(info.tensor_shape)}"
                )
        seen: set[str] = set()
        for alias in output_filter:
            if alias not in signature.outputs:
                raise RequestError.invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected to be "
                    f"in the set {{{','.join(sorted(signature.outputs))}}}."
                )
            if alias in seen:
                raise RequestError.invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        return signature

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a signature on checked inputs; every output, as numpy arrays."""
        import tensorflow as tf

        function = self._functions[signature_name or DEFAULT_SIGNATURE]
        try:
            outputs = function(**{k: tf.convert_to_tensor(v) for k, v in inputs.items()})
        except tf.errors.OpError as err:
            log.info("%s version %d: %s", self.name, self.version, err.message)
            raise RequestError(
                code_from_number(err.error_code), clean_message(err.message, [str(self.path)])
            ) from None
        except (TypeError, ValueError) as err:
            raise RequestError.invalid_argument(clean_message(str(err).strip())) from None
        return {k: v.numpy() for k, v in outputs.items()}

    def warmup_requests(self) -> Iterator[tuple[str, dict[str, np.ndarray], list[str]]]:
        """The requests of ``assets.extra/tf_serving_warmup_requests`` (PredictionLog
        TFRecords) as ``(signature, inputs, output_filter)``; TF Serving replays them before a
        version becomes AVAILABLE, and so does ``ServerCore`` (``service.replay_warmup``)."""
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        path = self.path / WARMUP_FILE
        if not path.is_file():
            return
        records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
        if len(records) > MAX_WARMUP_RECORDS:
            raise RuntimeError(
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at "
                f"{WARMUP_FILE}"
            )
        for record in records:
            entry = prediction_log_pb2.PredictionLog.FromString(record)
            kind = entry.WhichOneof("log_type")
            if kind != "predict_log":
                log.warning(
                    "skipping a %s warmup record for %s: only predict_log is replayed",
                    kind,
                    self.name,
                )
                continue
            request = entry.predict_log.request
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            yield request.model_spec.signature_name, inputs, list(request.output_filter)


def select_outputs(
    outputs: dict[str, np.ndarray], output_filter: Sequence[str]
) -> dict[str, np.ndarray]:
    if not output_filter:
        return outputs
    return {alias: outputs[alias] for alias in output_filter}
