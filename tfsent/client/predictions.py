"""What every predictor answers with (``Prediction``, ``VersionStatus``, ``ModelMetadata``), the
one error it raises for server-side failures (``ServingError``), and the turning of a signature's
outputs into ``Prediction``\\ s, shared by ``SentimentClient`` and ``SavedModelPredictor``.

The export's ``serving_default`` signature returns ``probabilities``, ``label_id``, ``label`` and
``classes`` (the label names in class-id order, on every row); the probabilities are keyed by
those names:

>>> outputs = {"probabilities": [[0.2, 0.8]], "label_id": [1], "label": [b"positive"],
...            "classes": [[b"negative", b"positive"]]}
>>> (p,) = predictions_from_outputs(outputs, 1)
>>> p.label, p.label_id, round(p.confidence, 2), list(p.probabilities)
('positive', 1, 0.8, ['negative', 'positive'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfsent.signatures import CLASSES, LABEL, LABEL_ID, PROBABILITIES, SERVING_SIGNATURE

DEFAULT_MODEL_NAME = "tfsent"
DEFAULT_SIGNATURE = SERVING_SIGNATURE
GRPC_PORT = 8500
REST_PORT = 8501


class ServingError(Exception):
    """The server (or the model, or the way to it) failed: a gRPC status name such as
    ``INVALID_ARGUMENT`` or ``HTTP <status>``, and its message.

    ``retryable`` is true for failures worth retrying: gRPC UNAVAILABLE, HTTP 503, no connection.
    ``argument`` names the predictor argument the server turned down, when the client could
    tell (``"model_name"``, ``"version"``, ``"version_label"`` or ``"signature_name"``), and
    ``available`` what the server has instead, when it says (versions, signature names).

    >>> err = ServingError("NOT_FOUND", "Servable not found for request: Latest(nope)")
    >>> str(err), err.retryable, err.argument
    ('NOT_FOUND: Servable not found for request: Latest(nope)', False, None)
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        argument: str | None = None,
        available: Sequence[str] = (),
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.argument = argument
        self.available = tuple(available)


@dataclass(frozen=True)
class Prediction:
    """One review's answer: the predicted label, its probability, every class's probability
    (keyed by label name, in class-id order) and the class id."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    label_id: int


@dataclass(frozen=True)
class VersionStatus:
    """One version of the model as the server sees it (``state`` is e.g. ``AVAILABLE``)."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclass(frozen=True)
class ModelMetadata:
    """The model's name, version and signatures (``tensorflow.SignatureDef`` messages of
    ``tfsent.client.protos``, keyed by signature name), as TF Serving's GetModelMetadata says."""

    name: str
    version: int
    signature_defs: dict[str, Any] = field(repr=False)


def predictions_from_outputs(
    outputs: Mapping[str, Any], count: int, label_names: Sequence[str] | None = None
) -> list[Prediction]:
    """``count`` Predictions from a signature's ``probabilities`` / ``label_id`` / ``label`` /
    ``classes`` outputs (numpy arrays, or REST's nested lists).

    ``probabilities`` is keyed by ``label_names`` when given, else by the first row of
    ``classes``. ``Prediction.label`` is the served ``label``.
    """
    if PROBABILITIES not in outputs:
        raise ServingError(
            "INVALID_RESPONSE",
            f"the reply has no '{PROBABILITIES}' output (got {sorted(outputs)}); "
            "serve a model exported by tfsent.export",
        )
    if count == 0:
        return []
    probs = np.asarray(outputs[PROBABILITIES], dtype=np.float64).reshape(count, -1)
    if LABEL_ID in outputs:
        ids = np.asarray(outputs[LABEL_ID], dtype=np.int64).reshape(count)
    else:
        ids = probs.argmax(axis=1)
    num_labels = probs.shape[1]
    if label_names is not None:
        keys = list(label_names)
        if len(keys) != num_labels:
            raise ServingError(
                "INVALID_RESPONSE",
                f"the model has {num_labels} classes but {len(keys)} label names were given",
            )
    elif outputs.get(CLASSES) is not None:
        keys = [_text(name) for name in np.asarray(outputs[CLASSES]).reshape(count, -1)[0]]
        if len(keys) != num_labels:
            raise ServingError(
                "INVALID_RESPONSE",
                f"the model has {num_labels} classes but its '{CLASSES}' output names {len(keys)}",
            )
    else:
        raise ServingError(
            "INVALID_RESPONSE",
            f"the reply has no '{CLASSES}' output naming the classes (got "
            f"{sorted(outputs)}); serve a model exported by tfsent.export, or give label_names",
        )
    if np.any(ids < 0) or np.any(ids >= num_labels):
        raise ServingError("INVALID_RESPONSE", f"label_id {ids.tolist()} is not a class id "
                           f"of a {num_labels}-class model")
    served = outputs.get(LABEL)
    labels = (
        [_text(v) for v in np.asarray(served).reshape(count)]
        if served is not None
        else [keys[i] for i in ids]
    )
    return [
        Prediction(
            label=label,
            confidence=float(p[label_id]),
            probabilities={k: float(v) for k, v in zip(keys, p, strict=True)},
            label_id=int(label_id),
        )
        for label, p, label_id in zip(labels, probs, ids, strict=True)
    ]


def _text(value: Any) -> str:
    """A string output's value: bytes over gRPC and in-process, ``str`` over REST."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def status_code_name(code: int) -> str:
    """The name of a TensorFlow (= gRPC canonical) error code.

    >>> status_code_name(3), status_code_name(99)
    ('INVALID_ARGUMENT', '99')
    """
    from tfsent.client.protos.xla.tsl.protobuf import error_codes_pb2

    try:
        return error_codes_pb2.Code.Name(code)
    except ValueError:
        return str(code)
