"""The request service: Predict, Classify, Regress and GetModelMetadata over the versions the
:class:`~tfsent.model_server.core.ServerCore` holds, as TF Serving's PredictionServiceImpl
(``predict_impl``, ``get_model_metadata_impl``) over its ServerCore. Both front ends (gRPC and
REST) answer through it; the core's warmup hook does too (:func:`replay_warmup`), so warmup takes
exactly the path requests take, batching included::

    service = PredictionService(core, max_instances_per_request=256)
    outputs, version = service.predict(spec, {"text": texts}, deadline=time.monotonic() + 30)
    version, signature_map = service.metadata(spec)

The instance limit counts rows, the largest dimension 0 of a request's inputs:

    >>> import numpy as np
    >>> request_rows({"text": np.array([b"a", b"b", b"c"], object), "flag": np.array(True)})
    3
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2

from tfsent.model_server.core import Handle, ServerCore
from tfsent.model_server.servable import DEFAULT_SIGNATURE, select_outputs
from tfsent.model_server.status import RequestError, too_many_instances

SIGNATURE_DEF_FIELD = "signature_def"

Inputs = Mapping[str, np.ndarray]
# Builds a request's tensors from the signature's input ``TensorInfo`` map (REST reads its JSON
# against the signature: TF Serving's ``FillPredictRequestFromJson``).
InputReader = Callable[[Any], Inputs]


def request_rows(inputs: Inputs) -> int:
    """The instances in a request: the largest dimension 0 of its inputs (1 for scalars)."""
    return max((int(a.shape[0]) if a.ndim else 1 for a in inputs.values()), default=0)


def run(
    handle: Handle,
    signature_name: str,
    inputs: Inputs,
    output_filter: Sequence[str] = (),
    deadline: float | None = None,
    max_instances: int = 0,
) -> dict[str, np.ndarray]:
    """The one predict path (requests and warmup): check the request against the signature and
    the instance limit (0: none), run it (through the batch queue when batching), filter the
    outputs. ``deadline`` (``time.monotonic()`` seconds) bounds the wait for a batch."""
    signature_name = signature_name or DEFAULT_SIGNATURE
    handle.servable.check_request(signature_name, inputs, output_filter)
    if max_instances and request_rows(inputs) > max_instances:
        raise RequestError.invalid_argument(too_many_instances(request_rows(inputs), max_instances))
    if handle.batcher is not None:
        future = handle.batcher.submit(signature_name, inputs)
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            outputs = future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # a batch not started yet leaves it out
            raise RequestError.deadline_exceeded() from None
    else:
        outputs = handle.servable.run(signature_name, inputs)
    return select_outputs(outputs, output_filter)


def replay_warmup(handle: Handle, iterations: int = 1, max_instances: int = 0) -> int:
    """Run the version's warmup requests (``assets.extra/tf_serving_warmup_requests``)
    ``iterations`` times each through :func:`run`; the number of requests. The core calls it
    while the version is LOADING."""
    done = 0
    for signature, inputs, output_filter in handle.servable.warmup_requests():
        for _ in range(max(iterations, 1)):
            run(handle, signature, inputs, output_filter, max_instances=max_instances)
        done += 1
    return done


def _input_infos(handle: Handle, signature_name: str) -> tuple[str, Any]:
    """The signature name a request resolves to and its input ``TensorInfo`` map, or TF
    Serving's REST error for an unknown signature."""
    name = signature_name or DEFAULT_SIGNATURE
    signature = handle.servable.signature_defs.get(name)
    if signature is None:
        raise RequestError.invalid_argument(
            f'Serving signature name: "{name}" not found in signature def'
        )
    return name, signature.inputs


class PredictionService:
    """Predict / Classify / Regress / GetModelMetadata; thread-safe."""

    def __init__(self, core: ServerCore, max_instances_per_request: int = 0) -> None:
        self.core = core
        self.max_instances = max_instances_per_request

    def predict(
        self,
        spec: Any,
        inputs: Inputs | InputReader,
        output_filter: Sequence[str] = (),
        deadline: float | None = None,
    ) -> tuple[dict[str, np.ndarray], int]:
        """Run a Predict request; the outputs (filtered) and the version that served it.

        ``inputs`` are tensors, or (REST) a function of the signature's input ``TensorInfo``
        map that reads them, called with the served version held.
        """
        with self.core.servable(spec) as handle:
            name = spec.signature_name
            if callable(inputs):
                name, infos = _input_infos(handle, name)
                inputs = inputs(infos)
            outputs = run(handle, name, inputs, output_filter, deadline, self.max_instances)
            return outputs, handle.version

    def metadata(
        self, spec: Any, fields: Sequence[str] = (SIGNATURE_DEF_FIELD,)
    ) -> tuple[int, Any]:
        """GetModelMetadata as TF Serving's GetModelMetadataImpl: the served version and its
        ``SignatureDefMap`` (the only metadata field there is)."""
        if not fields:
            raise RequestError.invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in fields:
            if field != SIGNATURE_DEF_FIELD:
                raise RequestError.invalid_argument(f"Metadata field {field} is not supported")
        with self.core.servable(spec) as handle:
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for name, signature in handle.servable.signature_defs.items():
                signature_map.signature_def[name].CopyFrom(signature)
            return handle.version, signature_map

    def check_example_signature(self, spec: Any, method: str, kind: str) -> None:
        """Classify/Regress: TF Serving's signature checks, then UNIMPLEMENTED (no tf.Example
        path here)."""
        with self.core.servable(spec) as handle:
            signature = handle.servable.signature_def(spec.signature_name)
            if signature.method_name != method:
                raise RequestError.invalid_argument(
                    f"Expected {kind} signature method_name to be {method}. "
                    f"Was: {signature.method_name}"
                )
        raise RequestError.unimplemented(
            f"{kind} over tf.Example inputs is not implemented by tfsent.serve; use Predict"
        )
