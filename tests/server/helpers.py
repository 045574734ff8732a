"""What the model-server tests share: TF Serving request builders, answer checks, a toy
SavedModel, and launching ``python -m tfsent.serve`` with a config.

Requests are built only from ``tensorflow_serving.apis`` + ``tf.make_tensor_proto`` (gRPC) and
TF Serving's documented JSON (REST), never with tfsent code.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from benchmarks.bad_requests import predict_request
from tfsent.model_server.process import external_addresses

MODEL = "tfsent"
OUTPUTS = {"probabilities", "label_id", "label", "logits", "classes"}
EXTERNAL = external_addresses(MODEL)
needs_local = pytest.mark.skipif(
    EXTERNAL is not None, reason="controls its own server (TFSENT_TEST_GRPC/REST are set)"
)
State = get_model_status_pb2.ModelVersionStatus


class ToyModel(tf.Module):
    """``serving_default``: ``text`` -> ``length``; ``slow``: ``seconds`` -> ``waited`` (1s),
    after busy-waiting that many seconds."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def length(self, text):
        return {"length": tf.strings.length(text, unit="UTF8_CHAR")}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="seconds")])
    def slow(self, seconds):
        deadline = tf.timestamp() + tf.cast(tf.reduce_max(seconds), tf.float64)
        (now,) = tf.while_loop(lambda t: t < deadline, lambda t: [tf.timestamp()], [tf.timestamp()])
        return {"waited": tf.fill(tf.shape(seconds), tf.cast(now > 0, tf.int64))}


def save_toy_model(path: Path) -> Path:
    toy = ToyModel()
    tf.saved_model.save(
        toy, str(path), signatures={"serving_default": toy.length, "slow": toy.slow}
    )
    return path


def copy_version(source: Path, base: Path, version: int | str) -> Path:
    """Copy a version folder in as the exporter does: aside, then renamed into place."""
    staging = base / f".tmp-{version}"
    shutil.copytree(source, staging)
    return staging.rename(base / str(version))


def slow_request(seconds: float, name: str = "slow"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "slow"
    request.inputs["seconds"].CopyFrom(tf.make_tensor_proto([seconds], dtype=tf.float32))
    return request


def status_request(name=MODEL, version=None, label=None):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    return request


def outputs_of(response) -> dict[str, np.ndarray]:
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def assert_same_outputs(got, expected, names=OUTPUTS) -> None:
    assert set(got) == set(names)
    for name in names:
        want = expected[name]
        have = np.asarray(got[name])
        if want.dtype == object:
            assert [w.decode() for w in want.reshape(-1)] == [
                h.decode() if isinstance(h, bytes) else h for h in have.reshape(-1)
            ], name
        elif want.dtype.kind == "f":
            np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(have, want, err_msg=name)


def grpc_error(call, request, timeout: float = 30) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=timeout)
    return info.value.code(), info.value.details()


class Stubs:
    """A channel to a server and TF Serving's two stubs on it."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None,
                 options: list | None = None) -> None:
        options = options or []
        self.channel = (grpc.secure_channel(address, credentials, options) if credentials
                        else grpc.insecure_channel(address, options))
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def versions(self, name: str) -> dict[int, int]:
        """``{version: state}`` of a model."""
        reply = self.models.GetModelStatus(status_request(name), timeout=30)
        return {s.version: s.state for s in reply.model_version_status}

    def served_version(self, name: str, **spec) -> int:
        reply = self.predictions.Predict(predict_request(["ok"], name=name, **spec), timeout=30)
        return reply.model_spec.version.value

    def close(self) -> None:
        self.channel.close()


def wait_until(condition: Callable[[], object], timeout: float = 60, every: float = 0.2,
               what: str = "condition") -> object:
    """Poll ``condition`` until it is truthy; its value, or AssertionError after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def toy_config(root: Path, models: dict[str, str]) -> str:
    """A text ModelServerConfig: ``{name: extra config fields}``, base paths under ``root``."""
    entries = "".join(
        f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" '
        f"{extra} }}\n"
        for name, extra in models.items()
    )
    return f"model_config_list {{\n{entries}}}\n"
