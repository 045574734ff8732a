"""The model server's API against TF Serving's: ``python -m tfsent.serve`` on loopback, offline.

One server serves a real export (``tfsent.export.export_run`` of
``tfsent.testing.make_tiny_run_dir``)
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
import urllib.error
import urllib.request
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
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    predict_pb2,
)

from benchmarks.bad_requests import grpc_cases, rest_cases
from tests.server.helpers import (
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


GRPC_CASES = {c.case: c for c in grpc_cases(MODEL)}
REST_CASES = {c.case: c for c in rest_cases(MODEL)}


@pytest.mark.parametrize("case", GRPC_CASES)
def test_bad_grpc_request_gets_tf_serving_code(case, stubs, reference):
    bad = GRPC_CASES[case]
    predictions, models = stubs
    if EXTERNAL is not None and bad.tfsent_only:
        pytest.skip(f"a limit of this server, not TF Serving's: {bad.tfsent_only}")
    call = getattr(models if bad.service == "ModelService" else predictions, bad.method)
    got_code, got_message = grpc_error(call, bad.request)
    assert got_code.name == bad.code, got_message
    assert got_message.startswith(bad.message), got_message
    assert_same_outputs(
        outputs_of(predictions.Predict(predict_request(TEXTS[:1]), timeout=30)),
        _expected(reference, TEXTS[:1]),
    )


@pytest.mark.parametrize("case", REST_CASES)
def test_bad_rest_request_gets_tf_serving_code(case, http, reference):
    bad = REST_CASES[case]
    if EXTERNAL is not None and bad.tfsent_only:
        pytest.skip(f"a limit of this server, not TF Serving's: {bad.tfsent_only}")
    reply = http.request(bad.method, bad.path, content=bad.body)
    assert reply.status_code == bad.status, (case, reply.text[:500])
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert error.startswith(bad.message), error
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


def test_tensor_shapes_decode_as_tensorflow_decodes_them(stubs, reference):
    """TF Serving's Tensor::FromProto: a shape with more elements than values repeats the last
    value; a negative dimension is refused (tf.make_ndarray alone would read [-5] as [1])."""
    predictions, _ = stubs
    repeated = predict_request(["A great film, I loved it."])
    repeated.inputs["text"].tensor_shape.dim[0].size = 3
    got = outputs_of(predictions.Predict(repeated, timeout=30))
    assert got["label"].shape == (3,)
    assert_same_outputs(got, _expected(reference, ["A great film, I loved it."] * 3))
    for shape in ([-5], [-1], [1, -2]):
        negative = predict_request(["ok"])
        negative.inputs["text"].tensor_shape.Clear()
        for size in shape:
            negative.inputs["text"].tensor_shape.dim.add(size=size)
        assert grpc_error(predictions.Predict, negative) == (
            grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: text"), shape
    assert_same_outputs(
        outputs_of(predictions.Predict(predict_request(TEXTS[:1]), timeout=30)),
        _expected(reference, TEXTS[:1]),
    )


@needs_local
@pytest.mark.parametrize("method, path, status, error", [
    ("TRACE", f"/v1/models/{MODEL}", 400, f"Malformed request: TRACE /v1/models/{MODEL}"),
    ("OPTIONS", PREDICT, 400, f"Malformed request: OPTIONS {PREDICT}"),
    ("PUT", f"/v1/models/{MODEL}/metadata", 400, "Malformed request: PUT"),
    ("TRACE", "/", 404, "Not found: TRACE /"),
    ("GET", "/v2/models", 404, "Not found: GET /v2/models"),
    ("DELETE", "/docs", 404, "Not found: DELETE /docs"),
    ("POST", "/openapi.json", 404, "Not found: POST /openapi.json"),
    ("BREW", f"/v1/models/{MODEL}", 405, "Method Not Allowed"),
])
def test_every_rest_error_body_is_tf_servings_shape(http, reference, method, path, status,
                                                    error):
    """Errors the web framework makes by itself (no route, a method it does not route) come
    as {"error": ...} too, never {"detail": ...}."""
    reply = http.request(method, path)
    assert reply.status_code == status, reply.text[:300]
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"error"} and body["error"].startswith(error), body
    assert_still_serving(http, reference)


@needs_local
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_limit_reaches_a_client_that_sends_it_all_first(server, http, reference,
                                                                      chunked):
    """urllib writes the whole body before it reads: the server reads and drops the rest of a
    body it refused (a lingering close), so the client gets the 413, not a connection reset."""
    body = b'{"instances": ["' + b"x" * (20 * 1024 * 1024) + b'"]}'
    data = iter([body[i : i + 1024 * 1024] for i in range(0, len(body), 1024 * 1024)])
    request = urllib.request.Request(
        f"{server.rest_url}{PREDICT}", data=data if chunked else body,
        headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    assert info.value.code == 413
    assert info.value.headers["content-type"] == "application/json"
    answer = json.loads(info.value.read())
    assert set(answer) == {"error"}
    assert answer["error"].startswith("Request body of ")
    assert "limit of 8388608 bytes" in answer["error"]
    assert_still_serving(http, reference)


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


