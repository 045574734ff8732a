"""Score reviews with an exported tfsent model: over TF Serving (gRPC or REST), or in-process.

``SentimentClient`` talks to a ``tensorflow_model_server`` (or ``python -m tfsent.serve``);
``SavedModelPredictor`` runs the export in this process. Both answer ``predict(texts)`` with
``Prediction``\\ s, have ``status()``, ``metadata()`` and ``close()``, work as context managers,
and raise ``ServingError`` when the server or the model fails (``tfsent.errors.UserError`` for
bad arguments).

Importing this package loads no TensorFlow (nor ``tensorflow-serving-api``): the client needs
only numpy, grpcio, protobuf and httpx (the base install, ``pip install .`` in a clone);
``SavedModelPredictor`` imports TensorFlow when it is made. ``tests/client/test_client_light.py``
holds it to that, in a fresh interpreter and in a virtualenv without TensorFlow.
"""

from tfsent.client.predictions import (
    DEFAULT_MODEL_NAME,
    DEFAULT_SIGNATURE,
    GRPC_PORT,
    REST_PORT,
    ModelMetadata,
    Prediction,
    ServingError,
    VersionStatus,
    predictions_from_outputs,
)
from tfsent.client.saved_model import SavedModelPredictor
from tfsent.client.tf_serving import SentimentClient

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DEFAULT_SIGNATURE",
    "GRPC_PORT",
    "REST_PORT",
    "ModelMetadata",
    "Prediction",
    "SavedModelPredictor",
    "SentimentClient",
    "ServingError",
    "VersionStatus",
    "predictions_from_outputs",
]
