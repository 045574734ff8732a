"""The light client without TensorFlow: imports (no TensorFlow, no tensorflow-serving-api), the
generated protos in their private pool, TensorProto <-> numpy, SentimentClient and
``python -m tfsent.predict --server`` against fakes that speak TF Serving's protocols (a
``grpc.server`` with canned servicers built from the generated stubs, an ``httpx.MockTransport``,
a tiny HTTPS server): chunking, retries only on UNAVAILABLE / 503, error mapping, timeouts, TLS
and auth; and a client-only install (a fresh virtualenv with ``pip install`` of this
distribution and nothing else) scoring against the local model server.

Nothing here imports TensorFlow in the test process except the last test's fixtures (the tiny
export, the server, the in-process reference answers).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
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
from google.protobuf import json_format

from tests.client.helpers import LABELS, Tty, expected_line, fake_probabilities, run_predict
from tfsent.client import (
    Prediction,
    SentimentClient,
    ServingError,
    VersionStatus,
    predictions_from_outputs,
)
from tfsent.client.predictions import status_code_name
from tfsent.client.protos.tensorflow.core.framework import tensor_pb2, types_pb2
from tfsent.client.protos.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tfsent.client.tensors import make_tensor, string_tensor, to_ndarray
from tfsent.client.tf_serving import _split_address
from tfsent.errors import UserError

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "tensorflow_serving", "tensorflow_text", "keras", "tf_keras",
         "transformers")
# The pip command it names depends on the install (tfsent.cli.install_command).
SAVED_MODEL_NEEDS_TRAIN = re.compile(
    r"error: --saved-model needs the train extra: pip install [^\n]*\[train\]'?\n")


def fake_outputs(texts: list[str], with_classes: bool = True) -> dict[str, list]:
    """The export's outputs; ``with_classes=False`` is a model without the ``classes`` output."""
    probs = [fake_probabilities(t) for t in texts]
    ids = [int(np.argmax(p)) for p in probs]
    outputs = {
        "probabilities": probs,
        "label_id": ids,
        "label": [LABELS[i] for i in ids],
        "logits": [[float(np.log(x)) for x in p] for p in probs],
    }
    if with_classes:
        outputs["classes"] = [list(LABELS) for _ in texts]
    return outputs


OUTPUT_DTYPES = {"probabilities": np.float32, "logits": np.float32, "label_id": np.int64}


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
        texts = [t.decode() for t in to_ndarray(request.inputs["text"])]
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
            response.outputs[name].CopyFrom(make_tensor(value, OUTPUT_DTYPES.get(name)))
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


def make_cert(directory: Path) -> tuple[str, str]:
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


def light_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter, so that what it imports is its own doing."""
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


# --- No TensorFlow ------------------------------------------------------------------------------


def test_importing_and_using_the_client_loads_no_tensorflow(fake, free_port):
    code = f"""
import sys
import tfsent.client, tfsent.predict
from tfsent.client import SentimentClient
for address in ("grpc://127.0.0.1:{fake.port}", "http://127.0.0.1:{free_port}"):
    with SentimentClient(address) as client:
        if address.startswith("grpc"):
            print(client.predict(["great"])[0].label)
print(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}))
"""
    result = light_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["pos", "[]"]


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_predict_cli_over_a_server_imports_no_tensorflow(fake, transport, free_port):
    """``-X importtime`` lists every module the CLI imported, on stderr."""
    if transport == "grpc":
        server = f"grpc://127.0.0.1:{fake.port}"
    else:
        server = f"http://127.0.0.1:{free_port}"  # nobody there: the import is what counts
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tfsent.predict", "--server", server,
         "--retries", "0", "great film"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    imported = {line.split("|")[-1].strip().split(".")[0]
                for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert {"tfsent", "numpy"} <= imported
    assert imported.isdisjoint(HEAVY), imported & set(HEAVY)
    if transport == "grpc":
        assert result.returncode == 0 and result.stdout.startswith("pos (confidence 0.91)")
        assert {"grpc", "google"} <= imported and "httpx" not in imported
    else:  # only the chosen transport's library, and no protos for a REST predict
        assert result.returncode == 2 and "cannot reach the server" in result.stderr
        assert "httpx" in imported and imported.isdisjoint({"grpc", "google"})


def test_generated_protos_live_in_a_private_pool():
    """A default pool that already holds other files of the same names (another TensorFlow
    release, say) does not stop the generated modules: they register in their own pool."""
    code = """
from google.protobuf import descriptor_pb2, descriptor_pool
clash = descriptor_pb2.FileDescriptorProto(
    name="tensorflow/core/framework/tensor.proto", package="tensorflow", syntax="proto3")
clash.message_type.add(name="TensorProto").field.add(
    name="other", number=1, type=9, label=1)  # a different TensorProto
descriptor_pool.Default().Add(clash)
from tfsent.client.protos import _pool
from tfsent.client.protos.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
request = predict_pb2.PredictRequest()
request.inputs["text"].string_val.append(b"x")
assert predict_pb2.DESCRIPTOR.pool is _pool.POOL
assert predict_pb2.DESCRIPTOR.pool is not descriptor_pool.Default()
print(request.inputs["text"].DESCRIPTOR.fields_by_name["string_val"].number)
print(descriptor_pool.Default().FindMessageTypeByName("tensorflow.TensorProto").fields[0].name)
"""
    result = light_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["8", "other"]
    assert result.stderr == ""  # no gencode/runtime version warning either


def test_generated_sources_are_recorded():
    from tfsent.client.protos import _source

    assert _source.SERVING["tag"] == "2.21.0"
    assert _source.SERVING["wheel"] == "tensorflow-serving-api==2.21.0"
    assert _source.TENSORFLOW == {"wheel": "tensorflow==2.21.0", "tag": "v2.21.0",
                                  "repository": "https://github.com/tensorflow/tensorflow"}
    protos = REPO / "tfsent" / "client" / "protos"
    generated = {str(p.relative_to(protos))[: -len("_pb2.py")] + ".proto"
                 for p in protos.rglob("*_pb2.py")}
    assert generated == set(_source.FILES)
    for name in ("predict", "model", "get_model_metadata", "get_model_status", "model_service",
                 "prediction_service"):
        assert f"tensorflow_serving/apis/{name}.proto" in generated


# --- TensorProto <-> numpy ----------------------------------------------------------------------


@pytest.mark.parametrize("values, dtype", [
    ([[0.25, -1.5], [3.0, 1e-8]], np.float32),
    ([0.1, 2.0**60], np.float64),
    ([[1, -2, 2**31 - 1]], np.int32),
    ([2**62, -(2**63)], np.int64),
    ([[True, False, True]], np.bool_),
    ([1.5], np.float16),
    ([7], np.int64),
    (3.5, np.float32),
    ([], np.float32),
])
def test_numeric_tensors_round_trip(values, dtype):
    array = np.asarray(values, dtype=dtype)
    proto = make_tensor(array)
    got = to_ndarray(tensor_pb2.TensorProto.FromString(proto.SerializeToString()))
    assert got.dtype == dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("texts", [
    ["great film", "Café naïve 這部電影很好 😀", ""],
    [["a", "b"], ["c", "d"]],
])
def test_string_tensors_round_trip(texts):
    proto = make_tensor(texts)
    assert proto.dtype == types_pb2.DT_STRING
    got = to_ndarray(proto)
    assert got.shape == np.shape(texts)
    assert [b.decode() for b in got.ravel()] == list(np.ravel(texts))
    if np.ndim(texts) == 1:
        assert string_tensor(texts) == proto


@pytest.mark.parametrize("field, dtype, values", [
    ("float_val", types_pb2.DT_FLOAT, [0.5, 0.25, 0.125, 2.0]),
    ("double_val", types_pb2.DT_DOUBLE, [0.1, 0.2, 0.3, 0.4]),
    ("int_val", types_pb2.DT_INT32, [1, 2, 3, -4]),
    ("int64_val", types_pb2.DT_INT64, [2**40, 2, 3, 4]),
    ("bool_val", types_pb2.DT_BOOL, [True, False, False, True]),
    ("string_val", types_pb2.DT_STRING, [b"a", b"b", b"c", b"d"]),
])
def test_typed_value_fields_decode(field, dtype, values):
    """TF Serving writes outputs value by value (``Tensor::AsProtoField``), not as content."""
    proto = tensor_pb2.TensorProto(dtype=dtype)
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=2)
    getattr(proto, field).extend(values)
    got = to_ndarray(proto)
    assert got.shape == (2, 2) and got.ravel().tolist() == pytest.approx(values)
    # One value fills the shape, as in TensorFlow.
    del getattr(proto, field)[1:]
    assert to_ndarray(proto).ravel().tolist() == pytest.approx([values[0]] * 4)


def test_undecodable_tensors_are_serving_errors():
    with pytest.raises(ServingError, match="DT_VARIANT"):
        to_ndarray(tensor_pb2.TensorProto(dtype=types_pb2.DT_VARIANT))
    proto = make_tensor(np.zeros(4, np.float32))
    proto.tensor_shape.dim[0].size = 2
    with pytest.raises(ServingError, match=r"shape \[2\] holds 4 values"):
        to_ndarray(proto)


def test_status_code_names():
    assert [status_code_name(c) for c in (0, 3, 5, 14, 16, 42)] == [
        "OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE", "UNAUTHENTICATED", "42"]


# --- gRPC ---------------------------------------------------------------------------------------


def test_grpc_predict_chunks_in_order(fake):
    texts = [f"great film {i}" if i % 2 else f"dull {'x' * i}" for i in range(7)]
    with grpc_client(fake, chunk_size=3, label_names=LABELS) as client:
        results = client.predict(texts)
    assert [len(to_ndarray(r.inputs["text"])) for r in fake.requests] == [3, 3, 1]
    assert [t.decode() for r in fake.requests for t in to_ndarray(r.inputs["text"])] == texts
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
    # Given label names: the served `classes` need not travel.
    assert list(fake.requests[0].output_filter) == ["probabilities", "label_id", "label"]


def test_grpc_model_spec_options(fake):
    with grpc_client(fake, model_name="m", version=3, signature_name="sig") as client:
        client.predict(["a"])
    with grpc_client(fake, version_label="stable") as client:
        client.predict(["a"])
    first, second = (r.model_spec for r in fake.requests)
    assert (first.name, first.version.value, first.signature_name) == ("m", 3, "sig")
    assert second.version_label == "stable" and not second.HasField("version")


def test_grpc_probabilities_keyed_by_served_classes(fake):
    with grpc_client(fake) as client:
        (got,) = client.predict(["great"])
    assert list(fake.requests[0].output_filter) == [
        "probabilities", "label_id", "label", "classes"]
    assert list(got.probabilities) == ["neg", "pos"]  # from the `classes` output
    assert got.probabilities["pos"] == pytest.approx(fake_probabilities("great")[1], abs=1e-6)
    with grpc_client(fake, label_names=["bad", "good"]) as client:
        (got,) = client.predict(["great"])
    assert list(got.probabilities) == ["bad", "good"]  # given names win
    assert got.label == "pos"  # the predicted name always comes from the server's `label`


def test_grpc_model_without_classes_needs_label_names(fake):
    fake.with_classes = False
    with grpc_client(fake) as client, pytest.raises(ServingError) as err:
        client.predict(["great"])
    assert err.value.code == "INVALID_ARGUMENT" and "classes" in err.value.message
    assert len(fake.requests) == 1  # refused, and not asked again some other way
    with grpc_client(fake, label_names=LABELS) as client:
        (got,) = client.predict(["great"])
    assert got.label == "pos" and list(got.probabilities) == list(LABELS)


def test_grpc_retries_unavailable_with_backoff(fake):
    fake.fail_with = [grpc.StatusCode.UNAVAILABLE] * 2
    with grpc_client(fake, retries=2, backoff=0.05) as client:
        start = time.monotonic()
        (got,) = client.predict(["great"])
        elapsed = time.monotonic() - start
    assert got.label == "pos" and len(fake.requests) == 3
    assert elapsed >= 0.05 + 0.1  # backoff doubled between the two retries


def test_grpc_gives_up_after_the_retries(fake):
    fake.fail_with = [grpc.StatusCode.UNAVAILABLE] * 5
    with grpc_client(fake, retries=1) as client, pytest.raises(ServingError) as err:
        client.predict(["great"])
    assert err.value.code == "UNAVAILABLE" and err.value.retryable and len(fake.requests) == 2


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
             grpc.StatusCode.FAILED_PRECONDITION],
)
def test_grpc_other_errors_are_not_retried(fake, code):
    fake.fail_with = [code]
    with grpc_client(fake, retries=3) as client, pytest.raises(ServingError) as err:
        client.predict(["x"])
    # After a NOT_FOUND the client asks for the model's status, to say what is missing.
    predicts = [r for r in fake.requests if isinstance(r, predict_pb2.PredictRequest)]
    assert len(predicts) == 1
    assert err.value.code == code.name
    assert err.value.message == f"fake {code.name} from the server"
    assert str(err.value) == f"{code.name}: fake {code.name} from the server"


@pytest.mark.parametrize("failures, option, argument, available", [
    (2, {"model_name": "m"}, "model_name", ()),  # the status probe is NOT_FOUND too
    (1, {"version": 3}, "version", ("7",)),  # the model is there, at version 7 only
    (1, {}, None, ()),  # the model and its newest version are there: nothing to add
])
def test_grpc_not_found_says_what_is_missing(fake, failures, option, argument, available):
    fake.fail_with = [grpc.StatusCode.NOT_FOUND] * failures
    with grpc_client(fake, **option) as client, pytest.raises(ServingError) as err:
        client.predict(["x"])
    probe = fake.requests[1]
    assert isinstance(probe, get_model_status_pb2.GetModelStatusRequest)
    assert probe.model_spec.name == option.get("model_name", "tfsent")
    assert not probe.model_spec.HasField("version")  # what the server has of the model
    assert len(fake.requests) == 2
    assert (err.value.code, err.value.argument, err.value.available) == (
        "NOT_FOUND", argument, available)
    assert "fake NOT_FOUND from the server" in err.value.message
    if argument == "model_name":
        assert err.value.message.startswith("model 'm' not found on the server (")


def test_grpc_unreachable_server_is_one_error_after_retries(free_port):
    client = SentimentClient(f"127.0.0.1:{free_port}", retries=1, backoff=0.01, timeout=5)
    with client, pytest.raises(ServingError) as err:
        client.status()
    assert err.value.code == "UNAVAILABLE"


def test_grpc_timeout_is_the_deadline(fake):
    fake.delay = 1.0
    with grpc_client(fake, timeout=0.2, retries=3) as client, pytest.raises(ServingError) as err:
        client.predict(["x"])
    assert err.value.code == "DEADLINE_EXCEEDED" and len(fake.requests) == 1


def test_grpc_auth_headers_become_metadata(fake):
    with grpc_client(fake, headers={"Authorization": "Bearer s3cret", "X-Team": "nlp"}) as c:
        c.predict(["x"])
        c.status()
    assert len(fake.call_metadata) == 2
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
    assert sig == signature_map().signature_def["serving_default"]
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
    ("grpcs://tfs:443", "grpc"), ("http://localhost:8501", "rest"),
    ("https://tfs.example.com/prefix/", "rest"),
])
def test_address_picks_the_transport(address, protocol):
    with SentimentClient(address) as client:
        assert client.protocol == protocol


@pytest.mark.parametrize("address, expected", [
    ("localhost", ("grpc", "localhost:8500")),
    ("grpcs://tfs:443", ("grpcs", "tfs:443")),
    ("GRPC://tfs", ("grpc", "tfs:8500")),
    ("https://gw.test/tfs/", ("https", "https://gw.test/tfs")),
])
def test_address_targets(address, expected):
    assert _split_address(address) == expected


def test_rest_base_url_keeps_its_path():
    fake_rest = FakeRest()
    with SentimentClient("http://gw.test/tfs", http_transport=httpx.MockTransport(fake_rest)) as c:
        c.status()
    assert str(fake_rest.requests[0].url) == "http://gw.test/tfs/v1/models/tfsent"


@pytest.mark.parametrize("args, kwargs, message", [
    (("ftp://localhost:1",), {}, "grpc://host:8500"),
    (("grpc://host:port",), {}, "cannot use server address"),
    (("http://",), {}, "cannot use server address"),
    (("localhost:1",), {"chunk_size": 0}, "chunk_size must be at least 1"),
    (("localhost:1",), {"retries": -1}, "retries must be 0 or more"),
    (("localhost:1",), {"timeout": 0}, "timeout must be more than 0"),
    (("localhost:1",), {"version": 1, "version_label": "stable"}, "not both"),
    (("localhost:1",), {"rest_format": "rows"}, "'instances' or 'inputs'"),
    (("localhost:1",), {"label_names": "neg,pos"}, "list of class names"),
    (("localhost:1",), {"client_key": "key.pem"}, "client_key needs client_cert"),
    (("grpcs://localhost:1",), {"root_certificates": "/no/such.pem"}, "no such file"),
    (("https://localhost:1",), {"root_certificates": "/no/such.pem"}, "no such file"),
])
def test_bad_options_are_user_errors(args, kwargs, message):
    with pytest.raises(UserError, match=message):
        SentimentClient(*args, **kwargs)


@pytest.mark.parametrize("texts, message", [
    ("one string", "not one string"),
    ([b"bytes"], "got a bytes"),
    (["ok", None], "got a NoneType"),
])
def test_predict_takes_a_list_of_texts(fake, texts, message):
    with grpc_client(fake) as client, pytest.raises(UserError, match=message):
        client.predict(texts)
    assert fake.requests == []


def test_predict_of_nothing_asks_nothing(fake):
    with grpc_client(fake) as client:
        assert client.predict([]) == []
    assert fake.requests == []


# --- predictions_from_outputs -------------------------------------------------------------------


def test_predictions_from_outputs_checks_label_count():
    outputs = {"probabilities": [[0.1, 0.9]], "label_id": [1]}
    (p,) = predictions_from_outputs(outputs, 1, ["a", "b"])
    assert p == Prediction("b", pytest.approx(0.9), {"a": pytest.approx(0.1),
                                                     "b": pytest.approx(0.9)}, 1)
    with pytest.raises(ServingError, match="3 label names"):
        predictions_from_outputs(outputs, 1, ["a", "b", "c"])
    with pytest.raises(ServingError, match="no 'probabilities'"):
        predictions_from_outputs({"logits": [[0.0, 1.0]]}, 1)
    with pytest.raises(ServingError, match="no 'classes' output"):
        predictions_from_outputs(outputs, 1)
    with pytest.raises(ServingError, match="not a class id"):
        predictions_from_outputs({"probabilities": [[0.1, 0.9]], "label_id": [2]}, 1, "ab")


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
def test_rest_model_without_classes_needs_label_names(rest_format):
    fake_rest = FakeRest()
    fake_rest.with_classes = False
    with rest_client(fake_rest, rest_format=rest_format) as c:
        with pytest.raises(ServingError, match="no 'classes' output"):
            c.predict(["great"])
    with rest_client(fake_rest, rest_format=rest_format, label_names=["a", "b"]) as c:
        (got,) = c.predict(["great"])
    assert got.label == "pos" and list(got.probabilities) == ["a", "b"]


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
    assert meta.signature_defs["serving_default"] == signature_map().signature_def[
        "serving_default"]


def test_rest_retries_503():
    fake_rest = FakeRest()
    fake_rest.statuses = [503, 503]
    with rest_client(fake_rest, retries=2) as c:
        assert c.predict(["great"])[0].label == "pos"
    assert len(fake_rest.requests) == 3

    fake_rest = FakeRest()
    fake_rest.statuses = [503] * 4
    with rest_client(fake_rest, retries=2) as c, pytest.raises(ServingError) as err:
        c.status()
    assert err.value.code == "HTTP 503" and len(fake_rest.requests) == 3


@pytest.mark.parametrize("status", [400, 404, 500])
def test_rest_other_statuses_are_not_retried(status):
    fake_rest = FakeRest()
    fake_rest.statuses = [status]
    with rest_client(fake_rest, retries=3) as c, pytest.raises(ServingError) as err:
        c.predict(["x"])
    predicts = [r for r in fake_rest.requests if r.url.path.endswith(":predict")]
    assert len(predicts) == 1
    assert (err.value.code, err.value.message) == (f"HTTP {status}", f"fake {status}")


def test_rest_connection_failures_are_retried():
    fake_rest = FakeRest()
    fake_rest.raise_error = httpx.ConnectError("connection refused")
    with rest_client(fake_rest, retries=2) as c, pytest.raises(ServingError) as err:
        c.predict(["x"])
    assert err.value.code == "UNAVAILABLE" and len(fake_rest.requests) == 3


def test_rest_timeout_is_not_retried():
    fake_rest = FakeRest()
    fake_rest.raise_error = httpx.ReadTimeout("slow")
    with rest_client(fake_rest, retries=2, timeout=1.5) as c, pytest.raises(ServingError) as err:
        c.predict(["x"])
    assert err.value.code == "DEADLINE_EXCEEDED" and len(fake_rest.requests) == 1
    assert fake_rest.requests[0].extensions["timeout"]["read"] == 1.5


def test_rest_unreachable_server(free_port):
    client = SentimentClient(f"http://127.0.0.1:{free_port}", retries=1, backoff=0.01)
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


# --- CLI: python -m tfsent.predict --server -----------------------------------------------------


def test_cli_server_text_and_jsonl(fake, capsys):
    texts = ["great film", "dull", "a great, great movie"]
    server = f"grpc://127.0.0.1:{fake.port}"
    code, out, err = run_predict(["--server", server, "--chunk-size", "2", *texts], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == [expected_line(t) for t in texts]
    assert [len(to_ndarray(r.inputs["text"])) for r in fake.requests] == [2, 1]

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
                                "bad, good", "great"], capsys)
    assert list(json.loads(out)["probabilities"]) == ["bad", "good"]


def test_cli_text_output_shortens_long_reviews(fake, capsys):
    review = "A great film,\tone\nof the best " + "and longest " * 5
    code, out, _ = run_predict(["--server", f"grpc://127.0.0.1:{fake.port}", review], capsys)
    label, shown = out.rstrip("\n").split("  ", 1)
    assert code == 0 and label == f"pos (confidence {max(fake_probabilities(review)):.2f})"
    assert shown == "A great film, one of the best and longest and longest and l…"
    assert len(shown) == 60


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_cli_file_keeps_blank_lines_aligned(fake, tmp_path, capsys, fmt):
    """4 lines in, 4 lines out: a blank line is not sent, but its output line says so."""
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("great film\n\n  \ndull and long\n", encoding="utf-8")
    code, out, err = run_predict(["--server", f"grpc://127.0.0.1:{fake.port}", "--file",
                                  str(reviews), "--format", fmt], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 4
    assert [t.decode() for t in to_ndarray(fake.requests[0].inputs["text"])] == [
        "great film", "dull and long"]
    if fmt == "text":
        assert lines == [expected_line("great film"), "(blank line: not scored)",
                         "(blank line: not scored)", expected_line("dull and long")]
    else:
        rows = [json.loads(line) for line in lines]
        assert [r["text"] for r in rows] == ["great film", "", "  ", "dull and long"]
        assert rows[1] == {"text": "", "skipped": "blank line"}
        assert rows[3]["label"] == "neg"
    assert err == "note: 2 blank line(s) not scored (line 2, 3); their output lines say so\n"


def test_cli_reads_stdin(fake, capsys, monkeypatch):
    server = ["--server", f"grpc://127.0.0.1:{fake.port}"]
    # stdin: implicit when no texts are given and it is not a terminal, or explicit "-"
    code, out, _ = run_predict(server, capsys, stdin="great!!\nmeh\n", monkeypatch=monkeypatch)
    assert code == 0 and out.splitlines() == [expected_line("great!!"), expected_line("meh")]
    code, out, _ = run_predict([*server, "first one", "-"], capsys, stdin="great!!\n",
                               monkeypatch=monkeypatch)
    assert out.splitlines() == [expected_line("first one"), expected_line("great!!")]


def _bad_cli_cases() -> dict[str, tuple[list[str], str]]:
    server = ["--server", "grpc://127.0.0.1:{port}"]
    return {
        "no texts": (server, "no reviews given"),
        "missing file": ([*server, "--file", "{tmp}/nope.txt"], "no such file"),
        "non-UTF-8": ([*server, "--file", "{tmp}/latin1.txt"], "not UTF-8"),
        "empty file": ([*server, "--file", "{tmp}/empty.txt"], "empty"),
        "neither": (["x"], "one of the arguments --server --saved-model is required"),
        "both": ([*server, "--saved-model", "{tmp}", "x"], "not allowed with"),
        "label count": ([*server, "--label-names", "a,b,c", "x"], "3 label names"),
        "empty label": ([*server, "--label-names", "a,,c", "x"], "has an empty name"),
        "chunk size": ([*server, "--chunk-size", "0", "x"], "--chunk-size must be at least 1"),
        "retries": ([*server, "--retries", "-1", "x"], "--retries must be 0 or more"),
        "timeout": ([*server, "--timeout", "0", "x"], "--timeout must be more than 0"),
        "version and label": ([*server, "--version", "1", "--version-label", "a", "x"],
                              "not both"),
        "bad header": ([*server, "--header", "no colon", "x"], "is not 'NAME: VALUE'"),
        "missing certificate": (["--server", "grpcs://localhost:1", "--root-certificates",
                                 "{tmp}/nope.pem", "x"], "no such file"),
        "unreachable": (["--server", "127.0.0.1:{free}", "--retries", "0", "x"],
                        "cannot reach the server"),
        "server error": ([*server, "x"], "answered INVALID_ARGUMENT: fake INVALID_ARGUMENT"),
        "deadline": ([*server, "--timeout", "0.2", "x"], "no answer within --timeout 0.2s"),
        "bad address": (["--server", "ftp://h:1", "x"], "cannot use server address"),
    }


@pytest.mark.parametrize("case", list(_bad_cli_cases()))
def test_cli_bad_input_is_one_line_exit_2(case, fake, tmp_path, capsys, monkeypatch,
                                          free_port):
    (tmp_path / "latin1.txt").write_bytes("très bien\n".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("\n  \n")
    argv, message = _bad_cli_cases()[case]
    argv = [a.format(port=fake.port, tmp=tmp_path, free=free_port) for a in argv]
    monkeypatch.setattr("sys.stdin", Tty())
    if case == "server error":
        fake.fail_with = [grpc.StatusCode.INVALID_ARGUMENT]
    if case == "deadline":
        fake.delay = 1.0
    code, out, err = run_predict(argv, capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err


@pytest.mark.parametrize("verbose", [False, True])
def test_cli_is_quiet_unless_verbose(fake, verbose):
    """A real process: gRPC's and the client's own start-up print nothing to stderr."""
    argv = ["--server", f"grpc://127.0.0.1:{fake.port}", "great film", "dull"]
    result = subprocess.run(
        [sys.executable, "-m", "tfsent.predict", *argv, *(["--verbose"] if verbose else [])],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [expected_line("great film"), expected_line("dull")]
    if verbose:
        assert re.fullmatch(rf"tfsent.predict: 2 review\(s\) scored by grpc://127.0.0.1:"
                            rf"{fake.port} in \d+\.\d\d s\n", result.stderr), result.stderr
    else:
        assert result.stderr == ""


# --- A client-only install ----------------------------------------------------------------------


def base_requirements() -> list[str]:
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    return [r.strip() for r in setup["options"]["install_requires"].splitlines() if r.strip()]


@pytest.fixture(scope="module")
def client_only_python(tmp_path_factory) -> Path:
    """A fresh virtualenv where ``pip install`` put this distribution's base install only
    (from a copy of the sources, so nothing is built inside the checkout)."""
    requirements = base_requirements()
    heavy = [r for r in requirements if re.match(r"(tensorflow|tf-keras|transformers)\b", r)]
    assert not heavy, f"the base install must be the client only; setup.cfg requires {heavy}"
    root = tmp_path_factory.mktemp("client-only")
    source = root / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "tfsent", source / "tfsent",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         str(source)],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return python


def test_client_only_install_scores_like_the_saved_model(client_only_python, served,
                                                         served_version, tmp_path):
    from tfsent.client import SavedModelPredictor

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = subprocess.run(
        [str(client_only_python), "-c",
         "import importlib.util as u, sys, tfsent, tfsent.client; "
         "print(tfsent.__file__); "
         f"print([m for m in {HEAVY!r} if u.find_spec(m) is not None])"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0, check.stderr
    location, importable = check.stdout.splitlines()
    assert Path(location).is_relative_to(client_only_python.parents[1])  # not this checkout
    assert importable == "[]"  # no TensorFlow to fall back on

    texts = ["A great film, I loved it.", "Dull and far too long.", "Café naïve 😀",
             "the best " * 40, "boring plot"]
    with SavedModelPredictor(served_version) as predictor:
        expected = predictor.predict(texts)
    for server in (f"grpc://{served.grpc_address}", served.rest_url):
        result = subprocess.run(
            [str(client_only_python), "-m", "tfsent.predict", "--server", server,
             "--format", "jsonl", *texts],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["text"] for r in rows] == texts
        assert [r["label"] for r in rows] == [p.label for p in expected]
        for row, p in zip(rows, expected, strict=True):
            assert row["confidence"] == pytest.approx(p.confidence, abs=1e-5)
            assert row["probabilities"] == pytest.approx(p.probabilities, abs=1e-5)

    # In-process scoring needs TensorFlow: one line naming the extra, not a traceback.
    result = subprocess.run(
        [str(client_only_python), "-m", "tfsent.predict", "--saved-model",
         str(served_version.parent), "x"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert SAVED_MODEL_NEEDS_TRAIN.fullmatch(result.stderr), result.stderr


@pytest.mark.parametrize("missing", ["tensorflow", "tensorflow_text"])
def test_predict_saved_model_without_tensorflow_is_one_line(missing, tmp_path):
    """As in a client-only install: the module cannot be imported (``sys.modules[name] = None``
    makes ``import`` fail and ``find_spec`` find nothing, as when it is not installed)."""
    code = (f"import sys; sys.modules[{missing!r}] = None; "
            "from tfsent.errors import run_cli; from tfsent.predict import main; "
            "sys.exit(run_cli(main, sys.argv[1:]))")
    result = light_python(code, "--saved-model", str(tmp_path), "a review")
    assert (result.returncode, result.stdout) == (2, "")
    assert SAVED_MODEL_NEEDS_TRAIN.fullmatch(result.stderr), result.stderr
