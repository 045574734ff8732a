"""SentimentClient against fakes that speak TF Serving's protocols (a ``grpc.server`` with canned
servicers, an ``httpx.MockTransport``, a tiny HTTPS server), checking chunking, retries only on
UNAVAILABLE / 503, error mapping, timeouts, TLS and auth; then end to end against the local
server of ``tfsent/model_server/process.py`` (or a real tensorflow_model_server, see that module)."""

from __future__ import annotations

import io
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfsent.model_server.process import REPO, external_addresses, server_addresses
from tfsent.client import (
    Prediction,
    SentimentClient,
    ServingError,
    VersionStatus,
    _split_address,
    predictions_from_outputs,
)

LABELS = ("neg", "pos")


def fake_probabilities(text: str) -> list[float]:
    """Distinct per text (so order is checkable), 'great' leans positive."""
    pos = (0.9 if "great" in text else 0.2) + len(text) / 1000
    return [1.0 - pos, pos]


def fake_outputs(texts: list[str], with_classes: bool = True) -> dict[str, list]:
    """The export's outputs; without ``classes`` like exports made before it existed."""
    probs = [fake_probabilities(t) for t in texts]
    ids = [int(np.argmax(p)) for p in probs]
    outputs = {
        "probabilities": probs,
        "label_id": ids,
        "label": [LABELS[i] for i in ids],
        "logits": [[np.log(x) for x in p] for p in probs],
    }
    if with_classes:
        outputs["classes"] = [list(LABELS) for _ in texts]
    return outputs


def signature_map() -> get_model_metadata_pb2.SignatureDefMap:
    signatures = get_model_metadata_pb2.SignatureDefMap()
    sig = signatures.signature_def["serving_default"]
    sig.method_name = "tensorflow/serving/predict"
    sig.inputs["text"].dtype = types_pb2.DT_STRING
    sig.inputs["text"].tensor_shape.dim.add(size=-1)
    for name, dtype in [("probabilities", types_pb2.DT_FLOAT), ("label", types_pb2.DT_STRING),
                        ("classes", types_pb2.DT_STRING)]:
        sig.outputs[name].dtype = dtype
    return signatures


class FakeServing(
    prediction_service_pb2_grpc.PredictionServiceServicer,
    model_service_pb2_grpc.ModelServiceServicer,
):
    """Canned TF Serving: records each request and its metadata, fails on demand."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: list = []
        self.call_metadata: list[dict[str, str]] = []
        self.fail_with: list[grpc.StatusCode] = []
        self.delay = 0.0
        self.with_classes = True

    def _enter(self, request, context) -> None:
        self.requests.append(request)
        self.call_metadata.append(dict(context.invocation_metadata()))
        if self.fail_with:
            code = self.fail_with.pop(0)
            context.abort(code, f"fake {code.name} from the server")
        time.sleep(self.delay)

    def Predict(self, request, context):  # noqa: N802 (gRPC method names)
        self._enter(request, context)
        texts = [t.decode() for t in tf.make_ndarray(request.inputs["text"])]
        outputs = fake_outputs(texts, self.with_classes)
        for alias in request.output_filter:  # as TF Serving filters, with its message
            if alias not in outputs:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"output tensor alias not found in signature: {alias} Outputs "
                              f"expected to be in the set {{{','.join(sorted(outputs))}}}.")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 7
        for name, value in outputs.items():
            if request.output_filter and name not in request.output_filter:
                continue
            dtype = {"label_id": tf.int64, "label": tf.string, "classes": tf.string}.get(
                name, tf.float32)
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        self._enter(request, context)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 7
        response.metadata["signature_def"].Pack(signature_map())
        return response

    def GetModelStatus(self, request, context):  # noqa: N802
        self._enter(request, context)
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add(version=7)
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response


def make_cert(directory) -> tuple[str, str]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def fake_grpc(cert_files):
    """One fake servicer behind a plain port and a TLS port."""
    servicer = FakeServing()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    cert, key = cert_files
    with open(cert, "rb") as c, open(key, "rb") as k:
        credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
    tls_port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    servicer.port, servicer.tls_port = port, tls_port
    yield servicer
    server.stop(None)


@pytest.fixture
def fake(fake_grpc):
    fake_grpc.reset()
    return fake_grpc


def grpc_client(fake: FakeServing, **kwargs) -> SentimentClient:
    kwargs.setdefault("backoff", 0.01)
    return SentimentClient(f"grpc://127.0.0.1:{fake.port}", **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- gRPC ---------------------------------------------------------------------------------------


def test_grpc_predict_chunks_in_order(fake):
    texts = [f"great film {i}" if i % 2 else f"dull {'x' * i}" for i in range(7)]
    with grpc_client(fake, chunk_size=3, label_names=LABELS) as client:
        results = client.predict(texts)
    assert [len(tf.make_ndarray(r.inputs["text"])) for r in fake.requests] == [3, 3, 1]
    assert len(results) == 7
    for text, got in zip(texts, results, strict=True):
        probs = fake_probabilities(text)
        assert got.label == ("pos" if "great" in text else "neg")
        assert got.label_id == int(np.argmax(probs))
        assert got.confidence == pytest.approx(max(probs), abs=1e-6)
        assert list(got.probabilities) == ["neg", "pos"]
        assert got.probabilities["pos"] == pytest.approx(probs[1], abs=1e-6)
    spec = fake.requests[0].model_spec
    assert (spec.name, spec.signature_name, spec.HasField("version")) == (
        "tfsent", "serving_default", False)
    assert list(fake.requests[0].output_filter) == [
        "probabilities", "label_id", "label", "classes"]


def test_grpc_model_spec_options(fake):
    with grpc_client(fake, model_name="m", version=3, signature_name="sig") as client:
        client.predict(["a"])
    with grpc_client(fake, version_label="stable") as client:
        client.predict(["a"])
    first, second = (r.model_spec for r in fake.requests)
    assert (first.name, first.version.value, first.signature_name) == ("m", 3, "sig")
    assert second.version_label == "stable" and not second.HasField("version")
    with pytest.raises(ValueError, match="not both"):
        SentimentClient("localhost:8500", version=1, version_label="stable")


def test_grpc_probabilities_keyed_by_served_classes(fake):
    with grpc_client(fake) as client:
        (got,) = client.predict(["great"])
    assert list(got.probabilities) == ["neg", "pos"]  # from the `classes` output
    assert got.probabilities["pos"] == pytest.approx(fake_probabilities("great")[1], abs=1e-6)
    with grpc_client(fake, label_names=["bad", "good"]) as client:
        (got,) = client.predict(["great"])
    assert list(got.probabilities) == ["bad", "good"]  # given names win
    assert got.label == "pos"  # the predicted name always comes from the server's `label`


def test_grpc_export_without_classes_falls_back_to_class_ids(fake):
    fake.with_classes = False
    with grpc_client(fake) as client:
        (first,) = client.predict(["great"])
        (second,) = client.predict(["dull"])
    assert first.label == "pos" and second.label == "neg"
    assert list(first.probabilities) == list(second.probabilities) == ["0", "1"]
    assert first.probabilities["1"] == pytest.approx(fake_probabilities("great")[1], abs=1e-6)
    # Refused once with classes, asked again without, and not asked for it any more.
    assert [list(r.output_filter) for r in fake.requests] == [
        ["probabilities", "label_id", "label", "classes"],
        ["probabilities", "label_id", "label"],
        ["probabilities", "label_id", "label"],
    ]
    with grpc_client(fake, label_names=LABELS) as client:
        assert list(client.predict(["great"])[0].probabilities) == list(LABELS)

    fake.reset()
    fake.fail_with = [grpc.StatusCode.INVALID_ARGUMENT]  # any other refusal is no fallback
    with grpc_client(fake) as client, pytest.raises(ServingError):
        client.predict(["great"])
    assert len(fake.requests) == 1


def test_grpc_retries_unavailable_with_backoff(fake):
    fake.fail_with = [grpc.StatusCode.UNAVAILABLE] * 2
    with grpc_client(fake, retries=2, backoff=0.05) as client:
        start = time.monotonic()
        (got,) = client.predict(["great"])
        elapsed = time.monotonic() - start
    assert got.label == "pos" and len(fake.requests) == 3
    assert elapsed >= 0.05 + 0.1  # backoff doubled between the two retries

    fake.reset()
    fake.fail_with = [grpc.StatusCode.UNAVAILABLE] * 5
    with grpc_client(fake, retries=1) as client, pytest.raises(ServingError) as err:
        client.predict(["great"])
    assert err.value.code == "UNAVAILABLE" and len(fake.requests) == 2


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
             grpc.StatusCode.FAILED_PRECONDITION],
)
def test_grpc_other_errors_are_not_retried(fake, code):
    fake.fail_with = [code]
    with grpc_client(fake, retries=3) as client, pytest.raises(ServingError) as err:
        client.predict(["x"])
    assert len(fake.requests) == 1
    assert err.value.code == code.name
    assert err.value.message == f"fake {code.name} from the server"
    assert str(err.value) == f"{code.name}: fake {code.name} from the server"


def test_grpc_unreachable_server_is_one_error_after_retries():
    start = time.monotonic()
    client = SentimentClient(f"127.0.0.1:{free_port()}", retries=1, backoff=0.01, timeout=5)
    with client, pytest.raises(ServingError) as err:
        client.status()
    assert err.value.code == "UNAVAILABLE"
    assert time.monotonic() - start < 10


def test_grpc_timeout_is_the_deadline(fake):
    fake.delay = 1.0
    with grpc_client(fake, timeout=0.2, retries=3) as client, pytest.raises(ServingError) as err:
        client.predict(["x"])
    assert err.value.code == "DEADLINE_EXCEEDED" and len(fake.requests) == 1


def test_grpc_auth_headers_become_metadata(fake):
    with grpc_client(fake, headers={"Authorization": "Bearer s3cret", "X-Team": "nlp"}) as c:
        c.predict(["x"])
        c.status()
    for seen in fake.call_metadata:
        assert seen["authorization"] == "Bearer s3cret" and seen["x-team"] == "nlp"


def test_grpc_max_message_size_applies(fake):
    with grpc_client(fake, max_message_bytes=1000) as client:
        client.predict(["short"])
        with pytest.raises(ServingError) as err:
            client.predict(["long " * 500])
    assert err.value.code == "RESOURCE_EXHAUSTED"


def test_grpc_status_and_metadata(fake):
    with grpc_client(fake, version=7) as client:
        assert client.status() == [VersionStatus(7, "AVAILABLE", "OK", "")]
        meta = client.metadata()
    assert (meta.name, meta.version) == ("tfsent", 7)
    sig = meta.signature_defs["serving_default"]
    assert sig.inputs["text"].dtype == types_pb2.DT_STRING
    assert list(fake.requests[1].metadata_field) == ["signature_def"]
    assert fake.requests[0].model_spec.version.value == 7


def test_grpcs_with_root_certificate(fake, cert_files):
    cert, _ = cert_files
    with SentimentClient(f"grpcs://localhost:{fake.tls_port}", root_certificates=cert) as client:
        assert client.predict(["great"])[0].label == "pos"
    untrusted = SentimentClient(f"grpcs://localhost:{fake.tls_port}", retries=0, timeout=5)
    with untrusted, pytest.raises(ServingError) as err:
        untrusted.predict(["great"])
    assert err.value.code == "UNAVAILABLE"


@pytest.mark.parametrize("address, protocol", [
    ("localhost:9000", "grpc"), ("localhost", "grpc"), ("grpc://[::1]:8500", "grpc"),
    ("http://localhost:8501", "rest"), ("https://tfs.example.com/prefix/", "rest"),
])
def test_address_picks_the_transport(address, protocol):
    with SentimentClient(address) as client:
        assert client.protocol == protocol


def test_address_targets():
    assert _split_address("localhost") == ("grpc", "localhost:8500")
    assert _split_address("grpcs://tfs:443") == ("grpcs", "tfs:443")
    assert _split_address("https://gw.test/tfs/") == ("https", "https://gw.test/tfs")
    fake_rest = FakeRest()
    with SentimentClient("http://gw.test/tfs", http_transport=httpx.MockTransport(fake_rest)) as c:
        c.status()
    assert str(fake_rest.requests[0].url) == "http://gw.test/tfs/v1/models/tfsent"


def test_bad_options():
    with pytest.raises(ValueError, match="grpc://host:8500"):
        SentimentClient("ftp://localhost:1")
    with pytest.raises(ValueError, match="chunk_size"):
        SentimentClient("localhost:1", chunk_size=0)


def test_predict_input_shapes(fake):
    with grpc_client(fake) as client:
        assert client.predict([]) == []
        with pytest.raises(TypeError):
            client.predict("one string")
    assert fake.requests == []


def test_predictions_from_outputs_checks_label_count():
    outputs = {"probabilities": [[0.1, 0.9]], "label_id": [1]}
    (p,) = predictions_from_outputs(outputs, 1, ["a", "b"])
    assert p == Prediction("b", pytest.approx(0.9), {"a": pytest.approx(0.1),
                                                     "b": pytest.approx(0.9)}, 1)
    with pytest.raises(ServingError, match="3 label names"):
        predictions_from_outputs(outputs, 1, ["a", "b", "c"])
    with pytest.raises(ServingError, match="no 'probabilities'"):
        predictions_from_outputs({"logits": [[0.0, 1.0]]}, 1)


def test_predictions_from_outputs_keys_by_classes():
    probs = np.array([[0.2, 0.8], [0.7, 0.3]], np.float32)
    classes = np.array([[b"bad", "caf\u00e9".encode()]] * 2, dtype=object)  # as over gRPC
    got = predictions_from_outputs({"probabilities": probs, "classes": classes}, 2)
    assert [(p.label, list(p.probabilities)) for p in got] == [
        ("caf\u00e9", ["bad", "caf\u00e9"]), ("bad", ["bad", "caf\u00e9"])]
    rest = predictions_from_outputs({"probabilities": probs.tolist(),
                                     "classes": [["bad", "good"]] * 2}, 2)
    assert list(rest[0].probabilities) == ["bad", "good"]
    named = predictions_from_outputs({"probabilities": probs, "classes": classes}, 2, ["x", "y"])
    assert list(named[0].probabilities) == ["x", "y"] and named[0].label == "y"
    assert list(predictions_from_outputs({"probabilities": probs}, 2)[0].probabilities) == [
        "0", "1"]
    with pytest.raises(ServingError, match="'classes' output names 3"):
        predictions_from_outputs({"probabilities": probs, "classes": [["a", "b", "c"]] * 2}, 2)


# --- REST ---------------------------------------------------------------------------------------


class FakeRest:
    """TF Serving's REST API in an httpx.MockTransport handler."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses: list[int] = []  # answer these HTTP statuses first
        self.raise_error: Exception | None = None
        self.with_classes = True

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.raise_error is not None:
            raise self.raise_error
        if self.statuses:
            status = self.statuses.pop(0)
            return httpx.Response(status, json={"error": f"fake {status}"})
        path = request.url.path
        if path.endswith(":predict"):
            body = json.loads(request.content)
            if "instances" in body:
                texts = [row["text"] for row in body["instances"]]
                out = fake_outputs(texts, self.with_classes)
                rows = [{k: v[i] for k, v in out.items()} for i in range(len(texts))]
                return httpx.Response(200, json={"predictions": rows})
            outputs = fake_outputs(body["inputs"]["text"], self.with_classes)
            return httpx.Response(200, json={"outputs": outputs})
        if path.endswith("/metadata"):
            sigs = json_format.MessageToDict(signature_map(), preserving_proto_field_name=True)
            return httpx.Response(200, json={
                "model_spec": {"name": "tfsent", "signature_name": "", "version": "7"},
                "metadata": {"signature_def": sigs},
            })
        if "/v1/models/" in path:
            return httpx.Response(200, json={"model_version_status": [{
                "version": "7", "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""}}]})
        return httpx.Response(404, text="Not Found")


def rest_client(fake_rest: FakeRest, **kwargs) -> SentimentClient:
    kwargs.setdefault("backoff", 0.01)
    return SentimentClient(
        "http://tfs.test:8501", http_transport=httpx.MockTransport(fake_rest), **kwargs
    )


@pytest.mark.parametrize("rest_format", ["instances", "inputs"])
def test_rest_predict_chunks_in_order(rest_format):
    fake_rest = FakeRest()
    texts = ["great a", "dull", "great movie!", "meh", "ok"]
    with rest_client(fake_rest, chunk_size=2, rest_format=rest_format) as c:
        results = c.predict(texts)
    assert [r.url.path for r in fake_rest.requests] == ["/v1/models/tfsent:predict"] * 3
    bodies = [json.loads(r.content) for r in fake_rest.requests]
    assert all(b["signature_name"] == "serving_default" for b in bodies)
    if rest_format == "instances":
        assert bodies[2]["instances"] == [{"text": "ok"}]
    else:
        assert bodies[2]["inputs"] == {"text": ["ok"]}
    for text, got in zip(texts, results, strict=True):
        probs = fake_probabilities(text)
        assert got.label == LABELS[int(np.argmax(probs))]
        assert list(got.probabilities) == list(LABELS)  # from `classes`, no label_names given
        assert got.probabilities["pos"] == pytest.approx(probs[1])
        assert got.confidence == pytest.approx(max(probs))


@pytest.mark.parametrize("rest_format", ["instances", "inputs"])
def test_rest_export_without_classes_falls_back(rest_format):
    fake_rest = FakeRest()
    fake_rest.with_classes = False
    with rest_client(fake_rest, rest_format=rest_format) as c:
        (got,) = c.predict(["great"])
    assert got.label == "pos" and list(got.probabilities) == ["0", "1"]
    assert len(fake_rest.requests) == 1
    with rest_client(fake_rest, rest_format=rest_format, label_names=["a", "b"]) as c:
        assert list(c.predict(["great"])[0].probabilities) == ["a", "b"]


def test_rest_paths_for_version_and_label():
    fake_rest = FakeRest()
    with rest_client(fake_rest, model_name="m", version=3) as c:
        c.predict(["a"])
        c.metadata()
        c.status()
    with rest_client(fake_rest, version_label="canary") as c:
        c.predict(["a"])
    assert [r.url.path for r in fake_rest.requests] == [
        "/v1/models/m/versions/3:predict", "/v1/models/m/versions/3/metadata",
        "/v1/models/m/versions/3", "/v1/models/tfsent/labels/canary:predict"]


def test_rest_status_and_metadata():
    with rest_client(FakeRest()) as c:
        assert c.status() == [VersionStatus(7, "AVAILABLE", "OK", "")]
        meta = c.metadata()
    assert (meta.name, meta.version) == ("tfsent", 7)
    assert meta.signature_defs["serving_default"].inputs["text"].dtype == types_pb2.DT_STRING


def test_rest_retries_503_only():
    fake_rest = FakeRest()
    fake_rest.statuses = [503, 503]
    with rest_client(fake_rest, retries=2) as c:
        assert c.predict(["great"])[0].label == "pos"
    assert len(fake_rest.requests) == 3

    for status in (400, 404, 500):
        fake_rest = FakeRest()
        fake_rest.statuses = [status]
        with rest_client(fake_rest, retries=3) as c, pytest.raises(ServingError) as err:
            c.predict(["x"])
        assert len(fake_rest.requests) == 1
        assert (err.value.code, err.value.message) == (f"HTTP {status}", f"fake {status}")

    fake_rest = FakeRest()
    fake_rest.statuses = [503] * 4
    with rest_client(fake_rest, retries=2) as c, pytest.raises(ServingError) as err:
        c.status()
    assert err.value.code == "HTTP 503" and len(fake_rest.requests) == 3


def test_rest_transport_failures():
    fake_rest = FakeRest()
    fake_rest.raise_error = httpx.ConnectError("connection refused")
    with rest_client(fake_rest, retries=2) as c, pytest.raises(ServingError) as err:
        c.predict(["x"])
    assert err.value.code == "UNAVAILABLE" and len(fake_rest.requests) == 3

    fake_rest = FakeRest()
    fake_rest.raise_error = httpx.ReadTimeout("slow")
    with rest_client(fake_rest, retries=2, timeout=1.5) as c, pytest.raises(ServingError) as err:
        c.predict(["x"])
    assert err.value.code == "DEADLINE_EXCEEDED" and len(fake_rest.requests) == 1
    assert fake_rest.requests[0].extensions["timeout"]["read"] == 1.5


def test_rest_unreachable_server():
    client = SentimentClient(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01)
    with client, pytest.raises(ServingError) as err:
        client.status()
    assert err.value.code == "UNAVAILABLE"


def test_https_with_root_certificate_and_bearer_token(cert_files):
    cert, key = cert_files
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"model_version_status": [{"version": "2", "state": "AVAILABLE"}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://localhost:{server.server_address[1]}"
        auth = {"Authorization": "Bearer t0ken"}
        with SentimentClient(url, root_certificates=cert, headers=auth) as client:
            assert client.status() == [VersionStatus(2, "AVAILABLE")]
        assert seen == ["Bearer t0ken"]
        with SentimentClient(url, retries=0) as client, pytest.raises(ServingError):
            client.status()  # self-signed: not trusted by the system roots
    finally:
        server.shutdown()
        server.server_close()


# --- CLI: python -m tfsent.predict --------------------------------------------------------------


def save_fake_export(path: Path, classes: tuple[str, ...] | None = LABELS) -> None:
    """A SavedModel answering like the fakes, with ``classes`` (or none, as older exports),
    and assets/labels.txt naming LABELS."""

    class Fake(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            great = tf.strings.regex_full_match(text, ".*great.*")
            pos = tf.where(great, 0.9, 0.2) + tf.cast(tf.strings.length(text), tf.float32) / 1000
            probs = tf.stack([1.0 - pos, pos], axis=1)
            ids = tf.argmax(probs, axis=1)
            outputs = {"probabilities": probs, "label_id": ids,
                       "label": tf.gather(tf.constant(LABELS), ids), "logits": tf.math.log(probs)}
            if classes is not None:
                outputs["classes"] = tf.tile(tf.constant([classes]), [tf.size(text), 1])
            return outputs

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64, name="input_ids")])
        def ids(self, input_ids):
            return {"probabilities": tf.zeros([tf.shape(input_ids)[0], 2])}

    module = Fake()
    tf.saved_model.save(module, str(path),
                        signatures={"serving_default": module.serve, "token_ids": module.ids})
    (path / "assets").mkdir(exist_ok=True)
    (path / "assets" / "labels.txt").write_text("\n".join(LABELS) + "\n")


@pytest.fixture(scope="module")
def fake_export(tmp_path_factory):
    """exported/tfsent/{1,2}: version 2 a SavedModel answering like the fakes, version 1 broken
    (so loading it instead of the newest fails), plus a temp sibling still being written."""
    base = tmp_path_factory.mktemp("exported") / "tfsent"
    save_fake_export(base / "2")
    (base / "1").mkdir()
    (base / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    (base / "3.tmp-export").mkdir()
    return base


def run_predict(argv, capsys, stdin: str | bytes | None = None, monkeypatch=None):
    from tfsent.errors import run_cli
    from tfsent.predict import main

    if stdin is not None:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    code = run_cli(main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def expected_text_lines(texts):
    return [f"{LABELS[int(np.argmax(fake_probabilities(t)))]} "
            f"(confidence {max(fake_probabilities(t)):.2f})" for t in texts]


def test_cli_server_text_and_jsonl(fake, capsys):
    texts = ["great film", "dull", "a great, great movie"]
    server = f"grpc://127.0.0.1:{fake.port}"
    code, out, _ = run_predict(["--server", server, "--chunk-size", "2", *texts], capsys)
    assert code == 0 and out.splitlines() == expected_text_lines(texts)
    assert [len(tf.make_ndarray(r.inputs["text"])) for r in fake.requests] == [2, 1]

    code, out, _ = run_predict(["--server", server, "--format", "jsonl", "--version", "7",
                                "--header", "Authorization: Bearer x", *texts], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == texts
    for row, text in zip(rows, texts, strict=True):
        probs = fake_probabilities(text)
        assert row["label"] == LABELS[int(np.argmax(probs))]
        assert row["confidence"] == pytest.approx(max(probs), abs=1e-6)
        assert row["probabilities"] == pytest.approx(dict(zip(LABELS, probs, strict=True)),
                                                        abs=1e-6)
    assert fake.requests[-1].model_spec.version.value == 7
    assert fake.call_metadata[-1]["authorization"] == "Bearer x"

    code, out, _ = run_predict(["--server", server, "--format", "jsonl", "--label-names",
                                "bad,good", "great"], capsys)
    assert list(json.loads(out)["probabilities"]) == ["bad", "good"]


def test_cli_saved_model_reads_file_and_stdin(fake_export, tmp_path, capsys, monkeypatch):
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("great film\n\n  \ndull and long\n", encoding="utf-8")
    code, out, err = run_predict(["--saved-model", str(fake_export), "--file", str(reviews),
                                  "--format", "jsonl"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == ["great film", "dull and long"]
    assert list(rows[0]["probabilities"]) == list(LABELS)  # names from assets/labels.txt
    assert rows[0]["probabilities"]["pos"] == pytest.approx(fake_probabilities("great film")[1])

    # stdin: implicit when no texts are given and it is not a terminal, or explicit "-"
    code, out, _ = run_predict(["--saved-model", str(fake_export / "2")], capsys,
                               stdin="great!!\nmeh\n", monkeypatch=monkeypatch)
    assert code == 0 and out.splitlines() == expected_text_lines(["great!!", "meh"])
    code, out, _ = run_predict(["--saved-model", str(fake_export), "first one", "-"], capsys,
                               stdin="great!!\n", monkeypatch=monkeypatch)
    assert out.splitlines() == expected_text_lines(["first one", "great!!"])


def test_saved_model_names_come_from_classes_then_labels_txt(tmp_path):
    from tfsent.predict import SavedModelPredictor

    # `classes` names the columns even where labels.txt says otherwise (it never does in a
    # real export: both are written from the same list).
    save_fake_export(tmp_path / "new" / "1", classes=("served-neg", "served-pos"))
    (got,) = SavedModelPredictor(tmp_path / "new").predict(["great"])
    assert list(got.probabilities) == ["served-neg", "served-pos"]
    (got,) = SavedModelPredictor(tmp_path / "new", label_names=["a", "b"]).predict(["great"])
    assert list(got.probabilities) == ["a", "b"]

    # Exports from before `classes`: labels.txt, else class ids.
    old = tmp_path / "old" / "1"
    save_fake_export(old, classes=None)
    (got,) = SavedModelPredictor(old).predict(["great"])
    assert list(got.probabilities) == list(LABELS) and got.label == "pos"
    (old / "assets" / "labels.txt").unlink()
    predictor = SavedModelPredictor(old)
    assert predictor.label_names is None
    assert list(predictor.predict(["great"])[0].probabilities) == ["0", "1"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def bad_cli_cases(fake, fake_export, tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("très bien\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    no_versions = tmp_path / "no_versions"
    (no_versions / "tmp").mkdir(parents=True)
    saved = ["--saved-model", str(fake_export)]
    server = ["--server", f"grpc://127.0.0.1:{fake.port}"]
    return {
        "no texts": (saved, "no reviews given"),
        "missing file": (saved + ["--file", str(tmp_path / "nope.txt")], "no such file"),
        "non-UTF-8": (saved + ["--file", str(latin1)], "not UTF-8"),
        "empty file": (saved + ["--file", str(empty)], "empty"),
        "no versions": (["--saved-model", str(no_versions), "x"], "no SavedModel versions"),
        "missing version": (saved + ["--version", "9", "x"], "no version 9"),
        "bad signature": (saved + ["--signature", "token_ids", "x"], "not texts"),
        "both": (saved + server + ["x"], "not allowed with"),
        "neither": (["x"], "one of the arguments --server --saved-model is required"),
        "label count": (server + ["--label-names", "a,b,c", "x"], "3 label names"),
        "unreachable": (["--server", f"127.0.0.1:{free_port()}", "--retries", "0", "x"],
                        "cannot reach the server"),
        "server error": (server + ["x"], "answered INVALID_ARGUMENT: fake INVALID_ARGUMENT"),
        "bad address": (["--server", "ftp://h:1", "x"], "cannot use server address"),
    }


def test_cli_bad_input_is_one_line_exit_2(fake, fake_export, tmp_path, capsys, monkeypatch):
    for case, (argv, message) in bad_cli_cases(fake, fake_export, tmp_path).items():
        monkeypatch.setattr("sys.stdin", _Tty())
        fake.reset()
        if case == "server error":
            fake.fail_with = [grpc.StatusCode.INVALID_ARGUMENT]
        code, out, err = run_predict(argv, capsys)
        assert (code, out) == (2, ""), case
        assert err.startswith("error: ") and err.count("\n") == 1, (case, err)
        assert message in err, (case, err)


def test_cli_module_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tfsent.predict", "--saved-model", str(tmp_path), "x"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: no SavedModel versions")
    assert "Traceback" not in result.stderr


# --- End to end: a real export behind python -m tfsent.serve (or TFSENT_TEST_GRPC/REST) ---------

E2E_TEXTS = [
    "A great film, I loved it.",
    "Dull and far too long.<br /><br />I wanted to leave.",
    "Café naïve 這部電影很好 😀",
    "the best " * 40,
] + [f"review {i}: {'superb acting' if i % 3 else 'boring plot'}" for i in range(36)]


@pytest.fixture(scope="module")
def loading_predictor(served_version):
    """The in-process SavedModel, loaded in a thread while the server starts (saves ~10 s)."""
    from tfsent.predict import SavedModelPredictor

    def load():
        predictor = SavedModelPredictor(served_version, chunk_size=16)
        return predictor, predictor.predict(E2E_TEXTS)

    with futures.ThreadPoolExecutor(1) as pool:
        yield pool.submit(load)


@pytest.fixture(scope="module")
def in_process(loading_predictor):
    return loading_predictor.result()


@pytest.fixture(scope="module")
def served(served_version, loading_predictor, tmp_path_factory):
    """The local server run with serving/'s own batching and monitoring configs and a copy of
    models.config pointing base_path at the export (in the container it is /models/tfsent)."""
    if external_addresses() is not None:
        with server_addresses() as addresses:
            yield addresses
        return
    config = (REPO / "serving" / "models.config").read_text()
    assert 'base_path: "/models/tfsent"' in config
    models_config = tmp_path_factory.mktemp("config") / "models.config"
    models_config.write_text(
        config.replace('"/models/tfsent"', json.dumps(str(served_version.parent)))
    )
    args = [
        f"--model_config_file={models_config}",
        "--enable_batching",
        f"--batching_parameters_file={REPO / 'serving' / 'batching.config'}",
        f"--monitoring_config_file={REPO / 'serving' / 'monitoring.config'}",
    ]
    with server_addresses(None, "tfsent", args, timeout=120) as addresses:
        yield addresses


def assert_same_predictions(got: list[Prediction], expected: list[Prediction]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert (g.label, g.label_id) == (e.label, e.label_id)
        assert g.confidence == pytest.approx(e.confidence, abs=1e-5)
        assert g.probabilities.keys() == e.probabilities.keys()
        assert list(g.probabilities.values()) == pytest.approx(list(e.probabilities.values()),
                                                               abs=1e-5)


@pytest.mark.parametrize("transport", ["grpc", "rest-instances", "rest-inputs"])
def test_e2e_client_equals_in_process_saved_model(served, in_process, transport):
    predictor, expected = in_process
    assert predictor.label_names == ["negative", "positive"]  # from assets/labels.txt
    assert list(expected[0].probabilities) == predictor.label_names  # from `classes`
    if transport == "grpc":
        address, options = f"grpc://{served.grpc_address}", {}
    else:
        address, options = served.rest_url, {"rest_format": transport.split("-")[1]}
    # No label_names: the served `classes` output names the probabilities.
    with SentimentClient(address, chunk_size=7, **options) as client:
        got = client.predict(E2E_TEXTS)
        assert all(list(p.probabilities) == predictor.label_names for p in got)
        assert_same_predictions(got, expected)
        (status,) = client.status()
        assert status.state == "AVAILABLE" and status.error_code == "OK"
        meta = client.metadata()
    assert meta.name == "tfsent" and meta.version == status.version
    text_input = meta.signature_defs["serving_default"].inputs["text"]
    assert text_input.dtype == types_pb2.DT_STRING
    for name in ("serving_default", "token_ids"):
        assert set(meta.signature_defs[name].outputs) == {
            "probabilities", "label_id", "label", "logits", "classes"}
    assert set(meta.signature_defs["token_ids"].inputs) == {
        "input_ids", "attention_mask", "token_type_ids"}


def test_e2e_server_errors(served):
    for address, code in [(f"grpc://{served.grpc_address}", "NOT_FOUND"),
                          (served.rest_url, "HTTP 404")]:
        with SentimentClient(address, model_name="no_such_model", retries=3) as client:
            with pytest.raises(ServingError) as err:
                client.predict(["x"])
            assert err.value.code == code and "no_such_model" in err.value.message
        with SentimentClient(address, version=999) as client, pytest.raises(ServingError) as err:
            client.predict(["x"])
        assert err.value.code == code
        with SentimentClient(address, signature_name="nope") as client:
            with pytest.raises(ServingError) as err:
                client.predict(["x"])
            assert "nope" in err.value.message


def test_e2e_cli_server_and_saved_model_agree(served, served_version, in_process, capsys):
    _, expected = in_process
    texts = E2E_TEXTS[:5]
    outputs = {}
    # No --label-names: the names come from the served `classes` output.
    for name, where in [("grpc", ["--server", f"grpc://{served.grpc_address}"]),
                        ("rest", ["--server", served.rest_url]),
                        ("saved", ["--saved-model", str(served_version.parent)])]:
        # The text format of --saved-model is checked on the fake export; loading is slow.
        for fmt in ("text", "jsonl") if name != "saved" else ("jsonl",):
            code, out, err = run_predict([*where, "--format", fmt, *texts], capsys)
            assert code == 0, err
            outputs[name, fmt] = out.splitlines()
    for name in ("grpc", "rest", "saved"):
        if name != "saved":
            assert outputs[name, "text"] == [
                f"{p.label} (confidence {p.confidence:.2f})" for p in expected[:5]]
        for line, p, text in zip(outputs[name, "jsonl"], expected, texts, strict=False):
            row = json.loads(line)
            assert (row["text"], row["label"]) == (text, p.label)
            assert row["confidence"] == pytest.approx(p.confidence, abs=1e-5)
            assert list(row["probabilities"]) == ["negative", "positive"]
            assert row["probabilities"] == pytest.approx(p.probabilities, abs=1e-5)

    code, out, err = run_predict(["--server", served.rest_url, "--model-name", "nope", "x"],
                                 capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith(f"error: the server at {served.rest_url} answered HTTP 404")
