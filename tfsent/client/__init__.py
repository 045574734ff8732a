"""Score reviews with an exported tfsent model: over TF Serving (gRPC or REST), or in-process.

``SentimentClient`` talks to a ``tensorflow_model_server`` (or ``python -m tfsent.serve``);
``SavedModelPredictor`` runs the export in this process. Both answer with ``Prediction``s and
raise ``ServingError``. Importing this package loads no TensorFlow.
"""

from tfsent.client.tf_serving import (
    DEFAULT_MODEL_NAME,
    DEFAULT_SIGNATURE,
    GRPC_PORT,
    REST_PORT,
    ModelMetadata,
    Prediction,
    SentimentClient,
    ServingError,
    VersionStatus,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DEFAULT_SIGNATURE",
    "GRPC_PORT",
    "REST_PORT",
    "ModelMetadata",
    "Prediction",
    "SentimentClient",
    "ServingError",
    "VersionStatus",
]
