"""The model server's API against TF Serving's: ``python -m tfsent.serve`` on loopback, offline.

One server serves a real export (``tfsent.export.export_run`` of
``tfsent.tiny_run.make_tiny_run_dir``)
as model ``tfsent`` (versions 1 and 2, labels ``stable``/``canary``), with batching and
Prometheus metrics on and the default limits. Answers are compared with the SavedModel's own
signatures run in this process; bad requests with TF Serving's codes and messages, one case
each, each followed by a good request.

With ``TFSENT_TEST_GRPC``/``TFSENT_TEST_REST`` set (see ``tfsent/model_server/process.py``) the
tests that only read run against that server (answers are compared with
``TFSENT_TEST_SAVED_MODEL``, the version folder it serves, when given); those needing this
server's config skip.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
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
    predict_pb2,
)

from tests.server_helpers import (
    EXTERNAL,
    MODEL,
    OUTPUTS,
    Stubs,
    assert_same_outputs,
    grpc_error,
    needs_local,
    outputs_of,
    predict_request,
    status_request,
)
from tfsent.model_server.process import start_server

TEXTS = [
    "A great film, I loved it.",
    "Dull and far too long.<br /><br />I wanted to leave.",
    "Café naïve 這部電影很好 😀",
    "",
    "the best " * 40,
]
PREDICT = f"/v1/models/{MODEL}:predict"


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
def model_root(tmp_path_factory, served_version) -> Path:
    root = tmp_path_factory.mktemp("models")
    for version in (1, 2):
        shutil.copytree(served_version, root / MODEL / str(version))
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
}}
"""


@pytest.fixture(scope="module")
def server(model_root, tmp_path_factory):
    """``tfsent`` v1+v2 with labels; batching and metrics on; default limits."""
    if EXTERNAL is not None:
        yield EXTERNAL
        return
    configs = tmp_path_factory.mktemp("configs")
    (configs / "models.config").write_text(models_config(model_root, stable=1, canary=2))
    (configs / "batching.config").write_text(
        "max_batch_size { value: 256 }\nenable_large_batch_splitting { value: true }\n"
        "max_execution_batch_size { value: 16 }\nbatch_timeout_micros { value: 100000 }\n"
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
    ]
    with start_server(None, MODEL, args, timeout=120) as process:
        yield process


@pytest.fixture(scope="module")
def stubs(server):
    channel = Stubs(server.grpc_address)
    yield channel.predictions, channel.models
    channel.close()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.rest_url, timeout=30) as client:
        yield client


def rest_columns(predictions: list[dict]) -> dict[str, list]:
    return {name: [row[name] for row in predictions] for name in predictions[0]}


def assert_still_serving(http, reference) -> None:
    """A good request right after a bad one gets the right answer."""
    reply = http.post(PREDICT, json={"instances": ["ok"]})
    assert reply.status_code == 200, reply.text
    assert (
        reply.json()["predictions"][0]["label"] == _expected(reference, ["ok"])["label"][0].decode()
    )


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
def test_reload_config_request_is_refused_unless_enabled(stubs, model_root):
    """Any client could otherwise replace the served models (off by default)."""
    predictions, models = stubs
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(models_config(model_root), request.config)
    request.config.model_config_list.config[0].base_path = "/etc"
    code, message = grpc_error(models.HandleReloadConfigRequest, request)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "--allow_reload_config_request" in message
    reply = predictions.Predict(predict_request(["ok"], label="stable"), timeout=30)
    assert reply.model_spec.version.value == 1


# ----------------------------------------------------------------------------------------------
# Errors: one case each, each followed by a good request


def _grpc_cases() -> dict[str, tuple]:
    bad_name = predict_request(["ok"])
    bad_name.inputs["txt"].CopyFrom(bad_name.inputs.pop("text"))
    bad_dtype = predict_request(["ok"])
    bad_dtype.inputs["text"].CopyFrom(tf.make_tensor_proto([1.5], dtype=tf.float32))
    extra = predict_request(["ok"])
    extra.inputs["other"].CopyFrom(tf.make_tensor_proto([1]))
    bad_filter = predict_request(["ok"])
    bad_filter.output_filter.append("nope")
    twice = predict_request(["ok"])
    twice.output_filter.extend(["label", "label"])
    no_spec = predict_pb2.PredictRequest()
    no_spec.inputs["text"].CopyFrom(tf.make_tensor_proto(["ok"]))
    corrupt = predict_request(["ok"])
    corrupt.inputs["text"].CopyFrom(tf.make_tensor_proto(np.zeros(3, np.float32)))
    corrupt.inputs["text"].tensor_content = b"12345"  # 5 bytes for 3 floats
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = MODEL
    bad_field = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["nope"])
    bad_field.model_spec.name = MODEL
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = MODEL
    INV, N, F = (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    return {
        "unknown model": ("Predict", predict_request(["ok"], name="nope"), N,
                          "Servable not found for request: Latest(nope)"),
        "unknown version": ("Predict", predict_request(["ok"], version=7), N,
                            "Servable not found for request: Specific(tfsent, 7)"),
        "unknown label": ("Predict", predict_request(["ok"], label="nope"), INV,
                          "Unrecognized servable version label: nope"),
        "unknown signature": ("Predict", predict_request(["ok"], signature="nope"), F,
                              'Serving signature key "nope" not found.'),
        "no model spec": ("Predict", no_spec, INV, "Missing ModelSpec"),
        "wrong input name": ("Predict", bad_name, INV,
                             "input tensor alias not found in signature: txt. "
                             "Inputs expected to be in the set {text}."),
        "wrong dtype": ("Predict", bad_dtype, INV,
                        "Expects arg[0] to be string but float is provided"),
        "extra input": ("Predict", extra, INV, "input size does not match signature: 2!=1"),
        "unknown output": ("Predict", bad_filter, INV,
                           "output tensor alias not found in signature: nope"),
        "output twice": ("Predict", twice, INV, "duplicate output tensor alias: label"),
        "corrupt tensor": ("Predict", corrupt, INV, "tensor parsing error: text"),
        "too many instances": ("Predict", predict_request(["ok"] * 257), INV,
                               "Request holds 257 instances, more than the 256"),
        "message too large": ("Predict", predict_request(["x" * (9 * 1024 * 1024)]),
                              grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
        "metadata without field": ("GetModelMetadata", metadata, INV,
                                   "GetModelMetadataRequest must specify at least one"),
        "metadata unknown field": ("GetModelMetadata", bad_field, INV,
                                   "Metadata field nope is not supported"),
        "classify a predict signature": (
            "Classify", classify, INV,
            "Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/predict"),
        "status of unknown model": ("GetModelStatus", status_request("nope"), N,
                                    "Could not find any versions of model nope"),
        "status of unknown version": ("GetModelStatus", status_request(version=7), N,
                                      "Could not find version 7 of model tfsent"),
    }


GRPC_CASES = _grpc_cases()


@pytest.mark.parametrize("case", GRPC_CASES)
def test_bad_grpc_request_gets_tf_serving_code(case, stubs, reference):
    method, request, code, message = GRPC_CASES[case]
    predictions, models = stubs
    if EXTERNAL is not None and case in ("too many instances", "message too large"):
        pytest.skip("limits of this server, not TF Serving's")
    call = getattr(models if method == "GetModelStatus" else predictions, method)
    got_code, got_message = grpc_error(call, request)
    assert got_code == code, got_message
    assert got_message.startswith(message), got_message
    assert_same_outputs(
        outputs_of(predictions.Predict(predict_request(TEXTS[:1]), timeout=30)),
        _expected(reference, TEXTS[:1]),
    )


DEEP = "[" * 100_000 + "]" * 100_000
REST_CASES = {
    "unknown model": ("POST", "/v1/models/nope:predict", {"instances": ["ok"]}, 404,
                      "Servable not found for request: Latest(nope)"),
    "unknown version": ("POST", f"/v1/models/{MODEL}/versions/7:predict", {"instances": ["ok"]},
                        404, "Servable not found for request: Specific(tfsent, 7)"),
    "unknown label": ("POST", f"/v1/models/{MODEL}/labels/nope:predict", {"instances": ["ok"]},
                      400, "Unrecognized servable version label: nope"),
    "status of unknown model": ("GET", "/v1/models/nope", None, 404,
                                "Could not find any versions of model nope"),
    "status of unknown version": ("GET", f"/v1/models/{MODEL}/versions/7", None, 404,
                                  "Could not find version 7 of model tfsent"),
    "version out of int64": ("GET", f"/v1/models/{MODEL}/versions/99999999999999999999", None,
                             400, "Failed to convert version: 99999999999999999999 to numeric."),
    "unknown signature": ("POST", PREDICT, {"signature_name": "nope", "instances": ["ok"]}, 400,
                          'Serving signature name: "nope" not found in signature def'),
    "signature name not a string": ("POST", PREDICT, {"signature_name": 1, "instances": ["ok"]},
                                    400, "JSON Value: "),
    "wrong input name": ("POST", PREDICT, {"instances": [{"txt": "ok"}]}, 400,
                         "Failed to process element: 0 key: txt of 'instances' list."),
    "wrong type": ("POST", PREDICT, {"instances": [1.5]}, 400,
                   "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
                   "JSON Value: 1.5 Type: Number is not of expected type: string"),
    "missing columnar input": ("POST", PREDICT, {"inputs": {"txt": ["ok"]}}, 400,
                               "Missing named input: text in 'inputs' object."),
    "not json": ("POST", PREDICT, "{not json", 400, "JSON Parse error: "),
    "empty body": ("POST", PREDICT, "", 400, "JSON Parse error: The document is empty"),
    "not an object": ("POST", PREDICT, "[1, 2]", 400, "JSON Value: [1,2] Is not object"),
    "not utf-8": ("POST", PREDICT, b'{"instances": ["\xff"]}', 400,
                  "JSON Parse error: Invalid encoding in string."),
    "lone surrogate": ("POST", PREDICT, '{"instances": ["\\ud800"]}', 400,
                       "JSON Parse error: The surrogate pair in string is invalid."),
    "lone surrogate key": ("POST", PREDICT, '{"instances": [{"\\udc00": "a"}]}', 400,
                           "JSON Parse error: The surrogate pair in string is invalid."),
    "100,000-deep nesting": ("POST", PREDICT, DEEP, 400, "JSON Parse error: "),
    "deep nesting in instances": ("POST", PREDICT,
                                  '{"instances": ' + "[" * 500 + '"a"' + "]" * 500 + "}", 400,
                                  "Failed to process element: 0 of 'instances' list."),
    "4,400-digit number": ("POST", PREDICT, '{"instances": [1' + "0" * 4400 + "]}", 400,
                           "JSON Parse error: Number too big"),
    "no inputs": ("POST", PREDICT, {"signature_name": "serving_default"}, 400,
                  "Missing 'inputs' or 'instances' key"),
    "no instances": ("POST", PREDICT, {"instances": []}, 400, "JSON Value: "),
    "instances not a list": ("POST", PREDICT, {"instances": "ok"}, 400, "JSON Value: "),
    "both formats": ("POST", PREDICT, {"instances": ["a"], "inputs": ["a"]}, 400, "JSON Value: "),
    "bad base64": ("POST", PREDICT, {"instances": [{"text": {"b64": "%%%"}}]}, 400,
                   "Failed to process"),
    "ragged instances": ("POST", PREDICT, {"instances": [["a", "b"], ["c"]]}, 400,
                         "Failed to process element: 1"),
    "too many instances": ("POST", PREDICT, {"instances": ["ok"] * 257}, 400,
                           "Request holds 257 instances, more than the 256"),
    "too many columnar rows": ("POST", PREDICT, {"inputs": {"text": ["ok"] * 300}}, 400,
                               "Request holds 300 instances"),
    "body too large": ("POST", PREDICT, {"instances": ["x" * (9 * 1024 * 1024)]}, 413,
                       "Request body of "),
    "token ids too long": ("POST", PREDICT, {"signature_name": "token_ids", "inputs": {
        "input_ids": [[2] * 5000], "attention_mask": [[1] * 5000],
        "token_type_ids": [[0] * 5000]}}, 400, ""),
    "classify a predict signature": ("POST", f"/v1/models/{MODEL}:classify",
                                     {"examples": [{"text": "ok"}]}, 400,
                                     "Expected classification signature method_name"),
    "no model name": ("GET", "/v1/models", None, 400, "Missing model name in request."),
    "predict with GET": ("GET", PREDICT, None, 400, f"Malformed request: GET {PREDICT}"),
    "status with POST": ("POST", f"/v1/models/{MODEL}", {"instances": ["ok"]}, 400,
                         "Malformed request: POST"),
    "version not a number": ("POST", f"/v1/models/{MODEL}/versions/x:predict", {}, 400,
                             "Malformed request"),
}


@pytest.mark.parametrize("case", REST_CASES)
def test_bad_rest_request_gets_tf_serving_code(case, http, reference):
    method, path, body, status, message = REST_CASES[case]
    if EXTERNAL is not None and (status == 413 or "too many" in case):
        pytest.skip("limits of this server, not TF Serving's")
    content = body if isinstance(body, str | bytes) else (
        json.dumps(body) if body is not None else None)
    reply = http.request(method, path, content=content)
    assert reply.status_code == status, (case, reply.text[:500])
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert error.startswith(message), error
    assert len(error) < 3000
    assert_still_serving(http, reference)


def test_errors_from_the_graph_name_no_node_and_no_path(http, stubs):
    """TensorFlow's message says where in the graph it failed; the client gets the reason only."""
    ids = [[2] + [7] * 4000 + [3]]
    reply = http.post(PREDICT, json={"signature_name": "token_ids", "inputs": {
        "input_ids": ids, "attention_mask": [[1] * len(ids[0])],
        "token_type_ids": [[0] * len(ids[0])]}})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert "is not in [0, " in error  # the position ids run past the embedding table
    for leak in ("node", "Detected at", "tf_bert", "File ", "/tmp", "<stack"):
        assert leak not in error, error
    predictions, _ = stubs
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "token_ids"
    ids_array = np.array(ids, np.int64)
    for name, value in (("input_ids", ids_array), ("attention_mask", np.ones_like(ids_array)),
                        ("token_type_ids", np.zeros_like(ids_array))):
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    code, message = grpc_error(predictions.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # The same cleaned message on both APIs; which out-of-range index TensorFlow's threads
    # report first varies from run to run, so the numbers are left out of the comparison.
    assert re.sub(r"\d+", "N", message) == re.sub(r"\d+", "N", error)


def test_rest_json_request_of_exactly_the_limits_is_served(http, reference):
    texts = [f"review {i}" for i in range(256)]
    reply = http.post(PREDICT, json={"instances": texts})
    assert reply.status_code == 200, reply.text[:300]
    assert [p["label"] for p in reply.json()["predictions"]] == [
        v.decode() for v in _expected(reference, texts)["label"]]


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


