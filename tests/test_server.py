"""End-to-end tests of ``python -m tfsent.serve`` against TF Serving's API, on loopback, offline.

Requests are built only from ``tensorflow_serving.apis`` + ``tf.make_tensor_proto`` (gRPC) and
TF Serving's documented JSON (REST), never with tfsent code, and answers are compared with the
SavedModel's own signatures run in this process. One server, started once, serves a real export
(``tfsent.export.export_run`` of ``tests.tiny.make_tiny_run_dir``) as model ``tfsent``
(versions 1 and 2, labels ``stable``/``canary``), and a small hand-made SavedModel as ``rolling``
(a new version gets dropped in) and ``slow`` (a signature that takes its time, for SIGTERM),
with batching and Prometheus metrics on. The SIGTERM test stops it, so it comes last.

With ``TFSENT_TEST_GRPC``/``TFSENT_TEST_REST`` set (see ``tfsent/model_server/process.py``) the tests
that only read run against that server (answers are compared with ``TFSENT_TEST_SAVED_MODEL``,
the version folder it serves, when given); those needing this server's config or process skip.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format, text_format
from prometheus_client.parser import text_string_to_metric_families
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfsent.model_server.process import REPO, external_addresses, server_env, start_server

MODEL = "tfsent"
TEXTS = [
    "A great film, I loved it.",
    "Dull and far too long.<br /><br />I wanted to leave.",
    "Café naïve 這部電影很好 😀",
    "",
    "the best " * 40,
]
OUTPUTS = {"probabilities", "label_id", "label", "logits", "classes"}
EXTERNAL = external_addresses(MODEL)
needs_local = pytest.mark.skipif(
    EXTERNAL is not None, reason="controls its own server (TFSENT_TEST_GRPC/REST are set)"
)


# ----------------------------------------------------------------------------------------------
# Models and servers


class _ToyModel(tf.Module):
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


@pytest.fixture(scope="module")
def reference(served_version):
    """The SavedModel's signatures, run in this process: the answers to expect."""
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    loaded = tf.saved_model.load(str(served_version))
    return {name: loaded.signatures[name] for name in ("serving_default", "token_ids")}


@pytest.fixture(scope="module")
def label_names(served_version) -> list[str]:
    """The export's label names, in id order (what its ``classes`` output must repeat)."""
    names = (served_version / "assets" / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert len(names) >= 2
    return names


def _expected(reference, texts: list[str]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in reference["serving_default"](text=tf.constant(texts)).items()}


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "1"
    toy = _ToyModel()
    tf.saved_model.save(
        toy, str(path), signatures={"serving_default": toy.length, "slow": toy.slow}
    )
    return path


@pytest.fixture(scope="module")
def model_root(tmp_path_factory, served_version, toy_model) -> Path:
    root = tmp_path_factory.mktemp("models")
    for version in (1, 2):
        shutil.copytree(served_version, root / MODEL / str(version))
    for name in ("rolling", "slow"):
        shutil.copytree(toy_model, root / name / "1")
    return root


def models_config(model_root: Path, **labels: int) -> str:
    """The server's text ModelServerConfig, with these version labels on ``tfsent``."""
    label_lines = "".join(f'version_labels {{ key: "{k}" value: {v} }} ' for k, v in labels.items())
    return f"""
model_config_list {{
  config {{
    name: "{MODEL}" base_path: "{model_root / MODEL}" model_platform: "tensorflow"
    model_version_policy {{ all {{}} }} {label_lines}
  }}
  config {{ name: "rolling" base_path: "{model_root / "rolling"}" model_platform: "tensorflow" }}
  config {{ name: "slow" base_path: "{model_root / "slow"}" model_platform: "tensorflow" }}
}}
"""


@pytest.fixture(scope="module")
def server(model_root, tmp_path_factory):
    """The server: ``tfsent`` v1+v2 with labels, ``rolling`` and ``slow`` v1; batching and
    metrics on."""
    if EXTERNAL is not None:
        yield EXTERNAL
        return
    configs = tmp_path_factory.mktemp("configs")
    (configs / "models.config").write_text(models_config(model_root, stable=1, canary=2))
    (configs / "batching.config").write_text(
        "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 100000 }\n"
        "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n"
    )
    (configs / "monitoring.config").write_text(
        'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'
    )
    args = [
        f"--model_config_file={configs / 'models.config'}",
        "--allow_version_labels_for_unavailable_models",
        "--enable_batching",
        "--batching_parameters_file",
        str(configs / "batching.config"),
        f"--monitoring_config_file={configs / 'monitoring.config'}",
        "--file_system_poll_wait_seconds=0.5",
        "--shutdown_grace_seconds=20",
    ]
    with start_server(None, MODEL, args, timeout=120) as process:
        yield process


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(server.grpc_address)
    yield (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.rest_url, timeout=30) as client:
        yield client


def predict_request(texts, name=MODEL, version=None, label=None, signature=""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts, dtype=tf.string))
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


def rest_columns(predictions: list[dict]) -> dict[str, list]:
    return {name: [row[name] for row in predictions] for name in predictions[0]}


def grpc_error(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def status_request(name=MODEL, version=None, label=None):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    return request


# ----------------------------------------------------------------------------------------------
# Status and metadata


@needs_local
def test_model_status_has_tf_serving_shape(server, http, stubs):
    ok = {"error_code": "OK", "error_message": ""}
    reply = http.get(f"/v1/models/{MODEL}")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json() == {
        "model_version_status": [
            {"version": "2", "state": "AVAILABLE", "status": ok},
            {"version": "1", "state": "AVAILABLE", "status": ok},
        ]
    }
    assert http.get(f"/v1/models/{MODEL}/versions/1").json() == {
        "model_version_status": [{"version": "1", "state": "AVAILABLE", "status": ok}]
    }
    assert (
        http.get(f"/v1/models/{MODEL}/labels/canary").json()["model_version_status"][0]["version"]
        == "2"
    )

    _, models = stubs
    reply = models.GetModelStatus(status_request(label="stable"), timeout=30)
    assert [(s.version, s.state, s.status.error_code) for s in reply.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    ]
    assert "Finished warmup of {name: tfsent version: 1}" in server.log()
    assert (
        f"Successfully loaded servable version {{name: {MODEL} version: 2}} (gRPC "
        f"127.0.0.1:{server.grpc_port}, REST 127.0.0.1:{server.rest_port})" in server.log()
    )


def _saved_signatures(served_version: Path) -> dict:
    proto = saved_model_pb2.SavedModel.FromString((served_version / "saved_model.pb").read_bytes())
    (graph,) = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags]
    return dict(graph.signature_def)


def test_metadata_matches_the_saved_model(http, stubs, served_version, label_names):
    expected = _saved_signatures(served_version)
    reply = http.get(f"/v1/models/{MODEL}/metadata")
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"model_spec", "metadata"}
    assert set(body["model_spec"]) == {"name", "signature_name", "version"}
    assert body["model_spec"]["name"] == MODEL and body["model_spec"]["signature_name"] == ""
    if EXTERNAL is None:
        assert body["model_spec"]["version"] == "2"
    served = json_format.ParseDict(
        body["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap()
    )
    assert dict(served.signature_def) == expected
    text = body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["text"]
    assert text["dtype"] == "DT_STRING"
    assert text["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    serving = expected["serving_default"]
    assert set(serving.outputs) == OUTPUTS and set(expected["token_ids"].inputs) == {
        "input_ids",
        "attention_mask",
        "token_type_ids",
    }
    assert set(expected["token_ids"].outputs) == OUTPUTS
    classes = serving.outputs["classes"]
    assert classes.dtype == tf.string.as_datatype_enum
    assert [d.size for d in classes.tensor_shape.dim] == [-1, len(label_names)]

    predictions, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    if EXTERNAL is None:
        request.model_spec.version.value = 1
    response = predictions.GetModelMetadata(request, timeout=30)
    assert response.metadata["signature_def"].type_url.endswith(
        "tensorflow.serving.SignatureDefMap"
    )
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert dict(signature_map.signature_def) == expected
    if EXTERNAL is None:
        assert response.model_spec.version.value == 1


# ----------------------------------------------------------------------------------------------
# Predict


def test_grpc_predict_equals_in_process_signature(stubs, reference, label_names):
    predictions, _ = stubs
    response = predictions.Predict(predict_request(TEXTS), timeout=30)
    assert response.model_spec.name == MODEL
    assert response.model_spec.signature_name == "serving_default"
    if EXTERNAL is None:
        assert response.model_spec.version.value == 2
    got = outputs_of(response)
    assert_same_outputs(got, _expected(reference, TEXTS))
    # One row of label names per text, naming the probability columns.
    assert got["classes"].tolist() == [[n.encode() for n in label_names]] * len(TEXTS)
    assert got["classes"].shape == got["probabilities"].shape

    request = predict_request(TEXTS[:2])
    request.output_filter.extend(["label", "probabilities", "classes"])
    filtered = outputs_of(predictions.Predict(request, timeout=30))
    assert_same_outputs(
        filtered, _expected(reference, TEXTS[:2]), {"label", "probabilities", "classes"}
    )

    ids = np.array([[2, 30, 31, 32, 3, 0], [2, 40, 3, 0, 0, 0]], np.int64)
    mask = (ids > 0).astype(np.int64)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "token_ids"
    for name, value in (
        ("input_ids", ids),
        ("attention_mask", mask),
        ("token_type_ids", np.zeros_like(ids)),
    ):
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    expected = reference["token_ids"](
        input_ids=tf.constant(ids),
        attention_mask=tf.constant(mask),
        token_type_ids=tf.zeros_like(ids),
    )
    by_ids = outputs_of(predictions.Predict(request, timeout=30))
    assert_same_outputs(by_ids, {k: v.numpy() for k, v in expected.items()})
    assert by_ids["classes"].tolist() == [[n.encode() for n in label_names]] * len(ids)


def test_rest_row_and_columnar_formats_equal_in_process_signature(http, reference, label_names):
    expected = _expected(reference, TEXTS)
    row = http.post(
        f"/v1/models/{MODEL}:predict",
        json={"signature_name": "serving_default", "instances": [{"text": t} for t in TEXTS]},
    )
    assert row.status_code == 200, row.text
    predictions = row.json()["predictions"]
    assert len(predictions) == len(TEXTS) and set(predictions[0]) == OUTPUTS
    assert all(isinstance(p["label"], str) for p in predictions)
    # Each row carries its own list of label names, aligned with its probabilities.
    assert [p["classes"] for p in predictions] == [label_names] * len(TEXTS)
    assert all(len(p["classes"]) == len(p["probabilities"]) for p in predictions)
    assert_same_outputs(rest_columns(predictions), expected)

    # A single-input signature also takes bare values, and binary strings as {"b64": ...}.
    bare = http.post(f"/v1/models/{MODEL}:predict", content=json.dumps({"instances": TEXTS}))
    assert bare.json() == row.json()
    encoded = [{"text": {"b64": base64.b64encode(t.encode()).decode()}} for t in TEXTS]
    assert (
        http.post(f"/v1/models/{MODEL}:predict", json={"instances": encoded}).json() == row.json()
    )

    columnar = http.post(f"/v1/models/{MODEL}:predict", json={"inputs": {"text": TEXTS}})
    assert columnar.status_code == 200, columnar.text
    outputs = columnar.json()["outputs"]
    assert set(outputs) == OUTPUTS
    assert_same_outputs(outputs, expected)
    assert outputs["classes"] == [label_names] * len(TEXTS)
    bare_columnar = http.post(f"/v1/models/{MODEL}:predict", json={"inputs": TEXTS[:1]})
    assert bare_columnar.json()["outputs"]["label"] == outputs["label"][:1]

    ids = [[2, 30, 31, 3], [2, 40, 3, 0]]
    mask = [[1, 1, 1, 1], [1, 1, 1, 0]]
    tokens = http.post(
        f"/v1/models/{MODEL}:predict",
        json={
            "signature_name": "token_ids",
            "instances": [
                {"input_ids": i, "attention_mask": m, "token_type_ids": [0] * 4}
                for i, m in zip(ids, mask, strict=True)
            ],
        },
    )
    assert tokens.status_code == 200, tokens.text
    want = reference["token_ids"](
        input_ids=tf.constant(ids, tf.int64),
        attention_mask=tf.constant(mask, tf.int64),
        token_type_ids=tf.zeros([2, 4], tf.int64),
    )
    assert_same_outputs(
        rest_columns(tokens.json()["predictions"]), {k: v.numpy() for k, v in want.items()}
    )


@needs_local
def test_versions_and_labels_route_requests(stubs, http):
    predictions, _ = stubs
    for version, label, served in (
        (1, None, 1),
        (2, None, 2),
        (None, "stable", 1),
        (None, "canary", 2),
        (None, None, 2),
    ):
        response = predictions.Predict(
            predict_request(["ok"], version=version, label=label), timeout=30
        )
        assert response.model_spec.version.value == served, (version, label)
    for path in ("/versions/1", "/labels/stable", "/labels/canary", ""):
        reply = http.post(f"/v1/models/{MODEL}{path}:predict", json={"instances": ["ok"]})
        assert reply.status_code == 200, (path, reply.text)
    missing = http.post(f"/v1/models/{MODEL}/versions/99:predict", json={"instances": ["ok"]})
    assert missing.status_code == 404
    assert missing.json() == {"error": "Servable not found for request: Specific(tfsent, 99)"}
    unknown = http.post(f"/v1/models/{MODEL}/labels/nope:predict", json={"instances": ["ok"]})
    assert unknown.status_code == 400
    assert unknown.json() == {"error": "Unrecognized servable version label: nope"}


@needs_local
def test_reload_config_request_moves_labels(stubs, model_root):
    predictions, models = stubs

    def reload(**labels):
        return models.HandleReloadConfigRequest(_reload_request(model_root, **labels), timeout=30)

    def served(label):
        request = predict_request(["ok"], label=label)
        return predictions.Predict(request, timeout=30).model_spec.version.value

    assert served("stable") == 1
    reload(stable=2, canary=2, old=1)
    assert (served("stable"), served("canary"), served("old")) == (2, 2, 1)
    # A label on a version that is not loaded is refused, and the config stays as it was.
    assert grpc_error(models.HandleReloadConfigRequest, _reload_request(model_root, stable=9)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "Request to assign label to version 9 of model tfsent, which is not currently "
        "available for inference",
    )
    assert served("stable") == 2
    reload(stable=1, canary=2)
    assert (served("stable"), served("canary")) == (1, 2)
    assert grpc_error(predictions.Predict, predict_request(["ok"], label="old"))[0] == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def _reload_request(model_root: Path, **labels: int):
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(models_config(model_root, **labels), request.config)
    return request


@needs_local
def test_new_version_is_served_without_restart(stubs, model_root, toy_model):
    predictions, models = stubs
    assert (
        predictions.Predict(
            predict_request(["ok"], name="rolling"), timeout=30
        ).model_spec.version.value
        == 1
    )
    # Written aside and renamed, like the exporter: the staging folder is no version.
    staging = model_root / "rolling" / ".tmp-2-1234"
    shutil.copytree(toy_model, staging)
    time.sleep(1.2)  # two polls
    versions = models.GetModelStatus(status_request("rolling"), timeout=30).model_version_status
    assert [s.version for s in versions] == [1]
    staging.rename(model_root / "rolling" / "2")

    state = get_model_status_pb2.ModelVersionStatus
    deadline = time.monotonic() + 60
    while True:
        versions = models.GetModelStatus(status_request("rolling"), timeout=30).model_version_status
        states = {s.version: s.state for s in versions}
        if states == {2: state.AVAILABLE, 1: state.END} or time.monotonic() > deadline:
            break
        # Until version 2 is up, version 1 keeps answering.
        assert predictions.Predict(predict_request(["ok"], name="rolling"), timeout=30)
        time.sleep(0.2)
    assert states == {2: state.AVAILABLE, 1: state.END}
    assert [s.version for s in versions] == [2, 1]
    response = predictions.Predict(predict_request(["ok"], name="rolling"), timeout=30)
    assert response.model_spec.version.value == 2
    code, message = grpc_error(predictions.Predict, predict_request(["ok"], "rolling", version=1))
    assert (code, message) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(rolling, 1)",
    )


# ----------------------------------------------------------------------------------------------
# Errors


def test_bad_grpc_requests_get_tf_serving_codes(stubs, reference):
    predictions, models = stubs
    bad_name = predict_request(["ok"])
    bad_name.inputs["txt"].CopyFrom(bad_name.inputs.pop("text"))
    bad_dtype = predict_request(["ok"])
    bad_dtype.inputs["text"].CopyFrom(tf.make_tensor_proto([1.5], dtype=tf.float32))
    extra = predict_request(["ok"])
    extra.inputs["other"].CopyFrom(tf.make_tensor_proto([1]))
    bad_filter = predict_request(["ok"])
    bad_filter.output_filter.append("nope")
    cases = [
        (
            predict_request(["ok"], name="nope"),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            predict_request(["ok"], version=7),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(tfsent, 7)",
        ),
        (
            predict_request(["ok"], label="nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: nope",
        ),
        (
            predict_request(["ok"], signature="nope"),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
        (
            bad_name,
            grpc.StatusCode.INVALID_ARGUMENT,
            "input tensor alias not found in signature: txt. "
            "Inputs expected to be in the set {text}.",
        ),
        (
            bad_dtype,
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expects arg[0] to be string but float is provided",
        ),
        (extra, grpc.StatusCode.INVALID_ARGUMENT, "input size does not match signature: 2!=1"),
        (
            bad_filter,
            grpc.StatusCode.INVALID_ARGUMENT,
            "output tensor alias not found in signature: nope",
        ),
    ]
    for request, code, message in cases:
        got_code, got_message = grpc_error(predictions.Predict, request)
        assert got_code == code, (message, got_message)
        assert got_message.startswith(message), got_message
    assert grpc_error(models.GetModelStatus, status_request("nope")) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model nope",
    )
    assert grpc_error(models.GetModelStatus, status_request(version=7)) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find version 7 of model tfsent",
    )
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = MODEL
    assert grpc_error(predictions.GetModelMetadata, metadata)[0] == grpc.StatusCode.INVALID_ARGUMENT
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = MODEL
    assert grpc_error(predictions.Classify, classify) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict",
    )
    # Still serving.
    assert_same_outputs(
        outputs_of(predictions.Predict(predict_request(TEXTS[:1]), timeout=30)),
        _expected(reference, TEXTS[:1]),
    )


def test_bad_rest_requests_get_tf_serving_codes(http, reference):
    predict = f"/v1/models/{MODEL}:predict"
    cases = [
        (
            "POST",
            "/v1/models/nope:predict",
            {"instances": ["ok"]},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "POST",
            f"/v1/models/{MODEL}/versions/7:predict",
            {"instances": ["ok"]},
            404,
            "Servable not found for request: Specific(tfsent, 7)",
        ),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        (
            "GET",
            f"/v1/models/{MODEL}/versions/7",
            None,
            404,
            "Could not find version 7 of model tfsent",
        ),
        (
            "POST",
            predict,
            {"signature_name": "nope", "instances": ["ok"]},
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        (
            "POST",
            predict,
            {"instances": [{"txt": "ok"}]},
            400,
            "Failed to process element: 0 key: txt of 'instances' list.",
        ),
        (
            "POST",
            predict,
            {"instances": [1.5]},
            400,
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON Value: 1.5 Type: Number is not of expected type: string",
        ),
        (
            "POST",
            predict,
            {"inputs": {"txt": ["ok"]}},
            400,
            "Missing named input: text in 'inputs' object.",
        ),
        ("POST", predict, "{not json", 400, "JSON Parse error: "),
        ("POST", predict, "", 400, "JSON Parse error: The document is empty"),
        (
            "POST",
            predict,
            {"signature_name": "serving_default"},
            400,
            "Missing 'inputs' or 'instances' key",
        ),
        ("POST", predict, {"instances": []}, 400, "JSON Value: "),
        ("POST", predict, {"instances": ["a"], "inputs": ["a"]}, 400, "JSON Value: "),
        ("POST", predict, {"instances": [{"text": {"b64": "%%%"}}]}, 400, "Failed to process"),
        ("POST", predict, {"instances": [["a", "b"], ["c"]]}, 400, "Failed to process element: 1"),
        (
            "POST",
            f"/v1/models/{MODEL}:classify",
            {"examples": [{"text": "ok"}]},
            400,
            "Expected classification signature method_name",
        ),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("GET", predict, None, 400, f"Malformed request: GET {predict}"),
        ("POST", f"/v1/models/{MODEL}", {"instances": ["ok"]}, 400, "Malformed request: POST"),
        ("POST", f"/v1/models/{MODEL}/versions/x:predict", {}, 400, "Malformed request"),
    ]
    for method, path, body, status, message in cases:
        content = (
            body if isinstance(body, str) else (json.dumps(body) if body is not None else None)
        )
        reply = http.request(method, path, content=content)
        assert reply.status_code == status, (path, body, reply.text)
        assert reply.headers["content-type"].startswith("application/json")
        assert reply.json()["error"].startswith(message), (body, reply.json())
    reply = http.post(predict, json={"instances": ["ok"]})
    assert reply.status_code == 200
    assert (
        reply.json()["predictions"][0]["label"] == _expected(reference, ["ok"])["label"][0].decode()
    )


def test_rest_json_writes_values_like_tf_serving():
    from tfsent.model_server.rest_json import response_json

    outputs = {
        "x": np.array([0.1, 1.0, 1 / 3, np.nan], np.float32),
        "d": np.array([0.1, 2.5], np.float64)[:1].repeat(4),
        "raw_bytes": np.array([b"\xff", b"a", b"", b"b"], object),
        "s": np.array(["café".encode(), b"\xff\xfe", b"", b"x"], object),
    }
    columnar = response_json(outputs, "columnar")["outputs"]
    assert columnar["x"][:3] == [0.1, 1.0, 0.333333343] and np.isnan(columnar["x"][3])
    assert columnar["d"] == [0.1] * 4
    assert columnar["raw_bytes"] == [{"b64": "/w=="}, {"b64": "YQ=="}, {"b64": ""}, {"b64": "Yg=="}]
    # Not valid UTF-8: sent as b64 rather than as broken JSON.
    assert columnar["s"] == ["café", {"b64": "//4="}, "", "x"]
    rows = response_json({"y": np.array([[1, 2], [3, 4]], np.int64)}, "row")
    assert rows == {"predictions": [[1, 2], [3, 4]]}


def test_batch_scheduler_pads_to_allowed_sizes_and_never_mixes_widths():
    from tfsent.model_server.batching import BatchScheduler
    from tfsent.model_server.server_config import BatchingParameters

    shapes = []

    def run(signature, inputs):
        shapes.append(inputs["ids"].shape)
        return {"sum": inputs["ids"].sum(axis=1), "first": inputs["ids"][:, 0]}

    params = BatchingParameters(
        max_batch_size=8,
        batch_timeout_micros=200_000,
        num_batch_threads=1,
        allowed_batch_sizes=(4, 8),
    )
    scheduler = BatchScheduler(run, params)
    requests = [np.full((1, 4), i) for i in range(3)] + [np.arange(12).reshape(2, 6)]
    try:
        futures = [scheduler.submit("sig", {"ids": r}) for r in requests]
        results = [f.result(10) for f in futures]
    finally:
        scheduler.stop()
    assert sorted(shapes) == [(4, 4), (4, 6)]  # 3 rows and 2 rows, each padded to 4
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["sum"], request.sum(axis=1))
        np.testing.assert_array_equal(result["first"], request[:, 0])


# ----------------------------------------------------------------------------------------------
# Batching and metrics


def _metric(text: str, family: str, sample: str, **labels) -> float:
    for metric in text_string_to_metric_families(text):
        if metric.name != family:
            continue
        total = 0.0
        for s in metric.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
        return total
    return 0.0


@needs_local
def test_batching_merges_concurrent_requests_and_splits_answers(server, stubs, http, reference):
    predictions, _ = stubs
    batch_family = "tensorflow_serving_batching_session_processed_batch_size"

    def batches() -> tuple[float, float]:
        text = http.get("/monitoring/prometheus/metrics").text
        return (
            _metric(text, batch_family, f"{batch_family}_count", model_name=MODEL),
            _metric(text, batch_family, f"{batch_family}_sum", model_name=MODEL),
        )

    count_before, rows_before = batches()
    requests = [TEXTS[i % len(TEXTS) : i % len(TEXTS) + 1 + i % 2] for i in range(12)]
    barrier = threading.Barrier(len(requests))

    def send(i: int):
        barrier.wait()
        if i % 3 == 2:  # REST requests join the same queue
            reply = http.post(f"/v1/models/{MODEL}:predict", json={"inputs": {"text": requests[i]}})
            return reply.json()["outputs"]
        return outputs_of(predictions.Predict(predict_request(requests[i]), timeout=30))

    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(send, range(len(requests))))
    for texts, answer in zip(requests, answers, strict=True):
        assert_same_outputs(answer, _expected(reference, texts))

    count_after, rows_after = batches()
    runs, rows = count_after - count_before, rows_after - rows_before
    assert rows == sum(len(r) for r in requests)
    assert runs < len(requests), "no two requests were merged"
    assert rows / runs > 1

    # token_ids requests of different widths are not padded together: still exact answers.
    def send_ids(width: int):
        ids = np.array([[2] + [30 + width] * width + [3]], np.int64)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.model_spec.signature_name = "token_ids"
        for name, value in (
            ("input_ids", ids),
            ("attention_mask", np.ones_like(ids)),
            ("token_type_ids", np.zeros_like(ids)),
        ):
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        got = outputs_of(predictions.Predict(request, timeout=30))
        want = reference["token_ids"](
            input_ids=tf.constant(ids),
            attention_mask=tf.ones_like(ids),
            token_type_ids=tf.zeros_like(ids),
        )
        assert_same_outputs(got, {k: v.numpy() for k, v in want.items()})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send_ids, [1, 2, 3, 1]))


@needs_local
def test_prometheus_endpoint_counts_requests(http, stubs):
    predictions, _ = stubs
    before = http.get("/monitoring/prometheus/metrics").text
    family = "tensorflow_serving_request_count"
    sample = f"{family}_total"
    labels = {"model_name": MODEL, "API": "predict", "status": "OK"}
    grpc_before = _metric(before, family, sample, entrypoint="GRPC", **labels)
    rest_before = _metric(before, family, sample, entrypoint="REST", **labels)
    for _ in range(3):
        predictions.Predict(predict_request(["ok"]), timeout=30)
    http.post(f"/v1/models/{MODEL}:predict", json={"instances": ["ok"]})
    http.post("/v1/models/nope:predict", json={"instances": ["ok"]})
    reply = http.get("/monitoring/prometheus/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    after = reply.text
    assert _metric(after, family, sample, entrypoint="GRPC", **labels) == grpc_before + 3
    assert _metric(after, family, sample, entrypoint="REST", **labels) == rest_before + 1
    assert _metric(after, family, sample, model_name="nope", status="NOT_FOUND") >= 1
    assert (
        _metric(
            after,
            "tensorflow_serving_request_latency",
            "tensorflow_serving_request_latency_count",
            model_name=MODEL,
        )
        >= 4
    )


# ----------------------------------------------------------------------------------------------
# Shutdown and start-up


def _run_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfsent.serve", "--host=127.0.0.1", *args],
        cwd=REPO,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_local
def test_bad_startup_input_exits_2_with_one_line(tmp_path, model_root):
    empty = tmp_path / "empty"
    (empty / ".tmp-1").mkdir(parents=True)
    bad_config = tmp_path / "bad.config"
    bad_config.write_text("model_config_list { config { name: 'x' base_path: '/x' nope: 1 } }")
    bad_batching = tmp_path / "batching.config"
    bad_batching.write_text("max_batch_size { value: 0 }")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = {
            "does not exist": ["--model_base_path", str(tmp_path / "missing")],
            "no version folders": [f"--model_base_path={empty}"],
            "bad --model_config_file": [f"--model_config_file={bad_config}"],
            "max_batch_size must be at least 1": [
                f"--model_base_path={model_root / MODEL}",
                "--enable_batching",
                f"--batching_parameters_file={bad_batching}",
            ],
            "port in use": [f"--model_base_path={model_root / MODEL}", f"--port={port}"],
            "unrecognized arguments": ["--model_base_path=/x", "--no_such_flag=1"],
        }
        for needle, args in cases.items():
            result = _run_serve(*args)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2, (args, result.stderr[-2000:])
            assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
            assert needle in lines[0], lines[0]


@needs_local
def test_sigterm_lets_in_flight_requests_finish_then_exits_0(server):
    """Last: it stops the module's server."""
    results: dict[str, object] = {}

    def over_grpc():
        with grpc.insecure_channel(server.grpc_address) as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "slow"
            request.model_spec.signature_name = "slow"
            request.inputs["seconds"].CopyFrom(tf.make_tensor_proto([2.0], dtype=tf.float32))
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            results["grpc"] = tf.make_ndarray(stub.Predict(request, timeout=30).outputs["waited"])

    def over_rest():
        reply = httpx.post(
            f"{server.rest_url}/v1/models/slow:predict",
            json={"signature_name": "slow", "instances": [2.0]},
            timeout=30,
        )
        results["rest"] = (reply.status_code, reply.json())

    threads = [threading.Thread(target=over_grpc), threading.Thread(target=over_rest)]
    for thread in threads:
        thread.start()
    time.sleep(0.8)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(60)
    for thread in threads:
        thread.join(5)
    assert code == 0, server.log()[-2000:]
    assert time.monotonic() - started > 0.5  # it waited for the requests
    assert results["grpc"].tolist() == [1]
    assert results["rest"] == (200, {"predictions": [1]})
    log = server.log()
    assert "Received SIGTERM" in log and "Server stopped" in log
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.rest_port)) != 0
