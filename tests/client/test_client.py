"""The client against TensorFlow itself: its generated protos are wire-identical to
``tensorflow_serving.apis`` and live beside them in one process; its TensorProto codec matches
``tf.make_tensor_proto`` / ``tf.make_ndarray``; ``SavedModelPredictor`` and
``python -m tfsent.predict --saved-model`` on a small SavedModel; then end to end against the
local server of ``tfsent/model_server/process.py`` (or a real tensorflow_model_server, see that
module). The client's own behaviour against fakes is in ``test_client_light.py``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pb2, descriptor_pool
from tensorflow_serving.apis import get_model_metadata_pb2 as tfs_metadata
from tensorflow_serving.apis import get_model_status_pb2 as tfs_status
from tensorflow_serving.apis import model_service_pb2_grpc as tfs_model_service
from tensorflow_serving.apis import predict_pb2 as tfs_predict
from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_prediction_service

from tests.client.helpers import LABELS, Tty, expected_line, fake_probabilities, run_predict
from tfsent.client import (
    Prediction,
    SavedModelPredictor,
    SentimentClient,
    ServingError,
    VersionStatus,
)
from tfsent.client.protos._pool import POOL
from tfsent.client.protos.tensorflow.core.framework import types_pb2
from tfsent.client.protos.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tfsent.client.tensors import make_tensor, string_tensor, to_ndarray
from tfsent.errors import UserError
from tfsent.model_server.process import REPO

TEXTS = ["great film", "Café naïve 這部電影很好 😀", "", "dull " * 50]


# --- Wire identity with tensorflow_serving.apis -------------------------------------------------


def _fill_tensors(module, message, field: str) -> None:
    """The outputs the export returns, as ``tf.make_tensor_proto`` writes them."""
    outputs = {
        "probabilities": tf.make_tensor_proto([[0.25, 0.75], [0.5, 0.5]], dtype=tf.float32),
        "label_id": tf.make_tensor_proto([1, 0], dtype=tf.int64),
        "label": tf.make_tensor_proto(["pos", "neg"], dtype=tf.string),
        "classes": tf.make_tensor_proto([["neg", "pos"]] * 2, dtype=tf.string),
    }
    for name, proto in outputs.items():
        getattr(message, field)[name].ParseFromString(proto.SerializeToString())


def _messages(predict, metadata, status) -> dict[str, object]:
    """The same request and response values built from one module set or the other."""
    request = predict.PredictRequest()
    request.model_spec.name = "tfsent"
    request.model_spec.signature_name = "serving_default"
    request.model_spec.version.value = 7
    request.inputs["text"].ParseFromString(tf.make_tensor_proto(TEXTS).SerializeToString())
    request.output_filter.extend(["probabilities", "label_id", "label", "classes"])
    labelled = predict.PredictRequest()
    labelled.model_spec.name = "tfsent"
    labelled.model_spec.version_label = "stable"
    response = predict.PredictResponse()
    response.model_spec.name = "tfsent"
    response.model_spec.version.value = 7
    _fill_tensors(predict, response, "outputs")

    metadata_request = metadata.GetModelMetadataRequest()
    metadata_request.model_spec.name = "tfsent"
    metadata_request.metadata_field.append("signature_def")
    signatures = metadata.SignatureDefMap()
    sig = signatures.signature_def["serving_default"]
    sig.method_name = "tensorflow/serving/predict"
    sig.inputs["text"].name = "serving_default_text:0"
    sig.inputs["text"].dtype = types_pb2.DT_STRING
    sig.inputs["text"].tensor_shape.dim.add(size=-1)
    sig.outputs["probabilities"].dtype = types_pb2.DT_FLOAT
    metadata_response = metadata.GetModelMetadataResponse()
    metadata_response.model_spec.name = "tfsent"
    metadata_response.model_spec.version.value = 7
    metadata_response.metadata["signature_def"].Pack(signatures)

    status_request = status.GetModelStatusRequest()
    status_request.model_spec.name = "tfsent"
    status_response = status.GetModelStatusResponse()
    available = status_response.model_version_status.add(version=7)
    available.state = status.ModelVersionStatus.AVAILABLE
    failed = status_response.model_version_status.add(version=6)
    failed.state = status.ModelVersionStatus.END
    failed.status.error_code = 3
    failed.status.error_message = "bad export"
    return {
        "PredictRequest": request, "PredictRequest(label)": labelled,
        "PredictResponse": response, "GetModelMetadataRequest": metadata_request,
        "GetModelMetadataResponse": metadata_response, "GetModelStatusRequest": status_request,
        "GetModelStatusResponse": status_response,
    }


MESSAGE_NAMES = list(_messages(predict_pb2, get_model_metadata_pb2, get_model_status_pb2))


@pytest.mark.parametrize("name", MESSAGE_NAMES)
def test_generated_messages_are_wire_identical_to_tensorflow_serving(name):
    ours = _messages(predict_pb2, get_model_metadata_pb2, get_model_status_pb2)[name]
    theirs = _messages(tfs_predict, tfs_metadata, tfs_status)[name]
    assert type(ours).DESCRIPTOR.full_name == type(theirs).DESCRIPTOR.full_name
    wire = ours.SerializeToString(deterministic=True)
    assert wire == theirs.SerializeToString(deterministic=True)
    assert len(wire) >= 10
    # And each side reads the other's bytes back to an equal message.
    assert type(theirs).FromString(wire) == theirs
    assert type(ours).FromString(theirs.SerializeToString()) == ours


def test_generated_client_requests_match_tensorflow_serving_bytes():
    """What the client sends, built with TensorFlow the usual way, byte for byte."""
    ours = predict_pb2.PredictRequest()
    ours.model_spec.name = "tfsent"
    ours.inputs["text"].CopyFrom(string_tensor(TEXTS))
    theirs = tfs_predict.PredictRequest()
    theirs.model_spec.name = "tfsent"
    theirs.inputs["text"].CopyFrom(tf.make_tensor_proto(TEXTS, dtype=tf.string))
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True)


@pytest.mark.parametrize("module", [tfs_predict, tfs_metadata, tfs_status])
def test_generated_files_equal_tensorflow_servings(module):
    """Every file the real module depends on is, descriptor for descriptor, the generated one."""
    seen: dict[str, object] = {}

    def walk(file) -> None:
        if file.name not in seen and not file.name.startswith("google/protobuf/"):
            seen[file.name] = file
            for dependency in file.dependencies:
                walk(dependency)

    walk(module.DESCRIPTOR)
    assert len(seen) >= 3
    for name, file in seen.items():
        theirs = descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb)
        ours = descriptor_pb2.FileDescriptorProto.FromString(
            POOL.FindFileByName(name).serialized_pb)
        for proto in (theirs, ours):
            proto.ClearField("options")  # go/java package options may differ; wire does not
        assert ours == theirs, name


class _RecordingChannel:
    """Records the methods a stub binds: path -> the response message's full name."""

    def __init__(self) -> None:
        self.methods: dict[str, str] = {}

    def unary_unary(self, path, request_serializer=None, response_deserializer=None, **_):
        self.methods[path] = response_deserializer.__self__.DESCRIPTOR.full_name
        return lambda *a, **k: None


@pytest.mark.parametrize("ours, theirs", [
    (prediction_service_pb2_grpc.PredictionServiceStub,
     tfs_prediction_service.PredictionServiceStub),
    (model_service_pb2_grpc.ModelServiceStub, tfs_model_service.ModelServiceStub),
])
def test_generated_stubs_call_tensorflow_servings_methods(ours, theirs):
    channels = _RecordingChannel(), _RecordingChannel()
    ours(channels[0])
    theirs(channels[1])
    assert channels[0].methods == channels[1].methods
    assert "/tensorflow.serving.PredictionService/Predict" in channels[0].methods or (
        "/tensorflow.serving.ModelService/GetModelStatus" in channels[0].methods)


@pytest.mark.parametrize("first", ["generated", "tensorflow_serving"])
def test_generated_and_real_protos_import_in_either_order(first):
    generated = ("from tfsent.client.protos.tensorflow_serving.apis import predict_pb2 as a, "
                 "prediction_service_pb2_grpc, model_service_pb2_grpc")
    real = "import tensorflow as tf; from tensorflow_serving.apis import predict_pb2 as b"
    imports = [generated, real] if first == "generated" else [real, generated]
    code = "\n".join([*imports, "assert a.PredictRequest is not b.PredictRequest",
                      "print(b.PredictRequest.FromString(a.PredictRequest("
                      "output_filter=['x']).SerializeToString()).output_filter[0])"])
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "x\n"


# --- TensorProto codec against TensorFlow's -----------------------------------------------------


ARRAYS = {
    "float32": np.array([[0.25, -1.5, 3.0], [1e-8, 0.0, 7.0]], np.float32),
    "float32 scalar": np.float32(0.5),
    "float32 one": np.array([0.5], np.float32),
    "float64": np.array([0.1, 2.0**60], np.float64),
    "int32": np.array([[1, -2], [2**31 - 1, 0]], np.int32),
    "int64": np.array([2**62, -(2**63), 5], np.int64),
    "int64 one": np.array([[7]], np.int64),
    "bool": np.array([[True, False, True]]),
    "bool one": np.array([False]),
    "uint16": np.array([1, 65535], np.uint16),
    "float16": np.array([1.5, -2.25], np.float16),
    "empty": np.zeros((0, 2), np.float32),
    "string": ["great film", "Café 😀", ""],
    "string 2-D": [["neg", "pos"], ["neg", "pos"]],
    "string one": ["x"],
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_make_tensor_writes_what_tensorflow_writes(name):
    values = ARRAYS[name]
    ours = make_tensor(values)
    theirs = tf.make_tensor_proto(values)
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True)


@pytest.mark.parametrize("name", list(ARRAYS))
def test_to_ndarray_reads_what_tensorflow_reads(name):
    proto = tf.make_tensor_proto(ARRAYS[name])
    expected = tf.make_ndarray(proto)
    got = to_ndarray(make_tensor(ARRAYS[name]))  # same bytes, checked above
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.int32, tf.int64, tf.bool,
                                   tf.string, tf.float16])
@pytest.mark.parametrize("values", [[3, 0, 1, 1, 0, 2], [1], []])
def test_to_ndarray_reads_value_fields_like_tensorflow(dtype, values):
    """Tensors written value by value (TF Serving's ``AsProtoField``), a short list filled to
    the shape with its last value, and no values at all, decode as TensorFlow decodes them."""
    python = {tf.string: str, tf.bool: bool}.get(dtype, lambda v: v)
    tensor = tf.constant([python(v) for v in values], dtype)
    proto = tf.make_tensor_proto(tensor)
    typed = proto.__class__(dtype=proto.dtype)
    typed.tensor_shape.dim.add(size=2)
    typed.tensor_shape.dim.add(size=3)
    array = tf.make_ndarray(proto).ravel()
    field = {tf.float32: "float_val", tf.float64: "double_val", tf.int32: "int_val",
             tf.int64: "int64_val", tf.bool: "bool_val", tf.string: "string_val",
             tf.float16: "half_val"}[dtype]
    getattr(typed, field).extend(
        array.view(np.uint16).tolist() if dtype == tf.float16 else array.tolist())
    expected = tf.make_ndarray(typed)
    ours = to_ndarray(make_tensor([]).__class__.FromString(typed.SerializeToString()))
    assert ours.dtype == expected.dtype and ours.shape == expected.shape == (2, 3)
    if dtype == tf.string:  # TensorFlow fills an empty string tensor with str "", we with b""
        expected = np.vectorize(lambda v: v if isinstance(v, bytes) else v.encode(),
                                otypes=[object])(expected)
    np.testing.assert_array_equal(ours, expected)


# --- SavedModelPredictor and predict --saved-model ----------------------------------------------


def save_fake_export(path: Path, classes: tuple[str, ...] | None = LABELS) -> None:
    """A SavedModel answering like the light tests' fakes, with ``classes`` (or without it)."""

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

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def fails(self, text):
            tf.debugging.assert_equal(tf.size(text), -1, message="no texts are good texts")
            return {"probabilities": tf.zeros([tf.size(text), 2])}

    module = Fake()
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.serve, "token_ids": module.ids, "fails": module.fails})


@pytest.fixture(scope="module")
def fake_export(tmp_path_factory):
    """exported/tfsent/{1,2}: version 2 a SavedModel answering like the fakes, version 1 broken
    (so loading it instead of the newest fails), plus folders TF Serving does not take for
    versions: a temp sibling still being written and a non-ASCII digit name."""
    base = tmp_path_factory.mktemp("exported") / "tfsent"
    save_fake_export(base / "2")
    (base / "1").mkdir()
    (base / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    for name in ("3.tmp-export", "\u0663"):  # U+0663 is an Arabic-Indic three
        (base / name).mkdir()
        (base / name / "saved_model.pb").write_bytes(b"not a SavedModel")
    return base


@pytest.fixture(scope="module")
def fake_predictor(fake_export):
    with SavedModelPredictor(fake_export, chunk_size=2) as predictor:
        yield predictor


def test_saved_model_predictor_answers_like_the_client(fake_predictor, fake_export):
    texts = ["great film", "dull", "a great movie", "meh", "ok"]
    got = fake_predictor.predict(texts)
    assert fake_predictor.version_dir == fake_export / "2" and fake_predictor.version == 2
    for text, p in zip(texts, got, strict=True):
        probs = fake_probabilities(text)
        assert p.label == LABELS[int(np.argmax(probs))] and p.label_id == int(np.argmax(probs))
        assert list(p.probabilities) == list(LABELS)  # from the `classes` output
        assert p.probabilities["pos"] == pytest.approx(probs[1], abs=1e-6)
        assert p.confidence == pytest.approx(max(probs), abs=1e-6)
    assert fake_predictor.predict([]) == []
    assert fake_predictor.status() == [VersionStatus(2, "AVAILABLE")]
    meta = fake_predictor.metadata()
    assert (meta.name, meta.version) == ("tfsent", 2)
    text = meta.signature_defs["serving_default"].inputs["text"]
    assert text.dtype == types_pb2.DT_STRING and text.name.startswith("serving_default_text")
    assert set(meta.signature_defs["serving_default"].outputs) == {
        "probabilities", "label_id", "label", "logits", "classes"}
    assert set(meta.signature_defs["token_ids"].inputs) == {"input_ids"}


def test_saved_model_predictor_label_names_and_classes(tmp_path):
    save_fake_export(tmp_path / "new" / "1", classes=("served-neg", "served-pos"))
    (got,) = SavedModelPredictor(tmp_path / "new").predict(["great"])
    assert list(got.probabilities) == ["served-neg", "served-pos"]
    (got,) = SavedModelPredictor(tmp_path / "new", label_names=["a", "b"]).predict(["great"])
    assert list(got.probabilities) == ["a", "b"] and got.label == "pos"

    save_fake_export(tmp_path / "no_classes" / "1", classes=None)
    with pytest.raises(ServingError, match="no 'classes' output"):
        SavedModelPredictor(tmp_path / "no_classes").predict(["great"])
    (got,) = SavedModelPredictor(tmp_path / "no_classes", label_names=LABELS).predict(["great"])
    assert list(got.probabilities) == list(LABELS)


def test_saved_model_predictor_errors(fake_export):
    failing = SavedModelPredictor(fake_export, signature_name="fails")
    with pytest.raises(ServingError) as err:
        failing.predict(["x"])
    assert err.value.code == "INVALID_ARGUMENT" and "no texts are good texts" in err.value.message
    with pytest.raises(UserError, match="not one string"):
        failing.predict("x")
    failing.close()
    with pytest.raises(UserError, match="closed"):
        failing.predict(["x"])


@pytest.mark.parametrize("kwargs, message", [
    ({"version": 9}, "no version 9"),
    ({"version": 1}, "cannot load the SavedModel"),
    ({"signature_name": "nope"}, "has no signature 'nope'"),
    ({"signature_name": "token_ids"}, "not texts"),
    ({"chunk_size": 0}, "chunk_size must be at least 1"),
])
def test_saved_model_predictor_bad_arguments(fake_export, kwargs, message):
    with pytest.raises(UserError, match=message):
        SavedModelPredictor(fake_export, **kwargs)


def test_cli_saved_model_reads_file_and_stdin(fake_export, tmp_path, capsys, monkeypatch):
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("great film\n\n  \ndull and long\n", encoding="utf-8")
    code, out, err = run_predict(["--saved-model", str(fake_export), "--file", str(reviews),
                                  "--format", "jsonl"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == ["great film", "", "  ", "dull and long"]
    assert rows[1] == rows[2] | {"text": ""} == {"text": "", "skipped": "blank line"}
    assert list(rows[0]["probabilities"]) == list(LABELS)
    assert rows[0]["probabilities"]["pos"] == pytest.approx(fake_probabilities("great film")[1])
    assert "2 blank line(s) not scored (line 2, 3)" in err

    code, out, _ = run_predict(["--saved-model", str(fake_export / "2")], capsys,
                               stdin="great!!\nmeh\n", monkeypatch=monkeypatch)
    assert code == 0 and out.splitlines() == [expected_line("great!!"), expected_line("meh")]


SAVED_MODEL_CASES = {
    "no texts": ([], "no reviews given"),
    "no versions": (["--saved-model", "{tmp}/no_versions", "x"], "no SavedModel versions"),
    "no directory": (["--saved-model", "{tmp}/nope", "x"], "no such directory"),
    "missing version": (["--version", "9", "x"], "no version 9"),
    "broken version": (["--version", "1", "x"], "cannot load the SavedModel"),
    "bad signature": (["--signature", "token_ids", "x"], "not texts"),
    "failing model": (["--signature", "fails", "x"], "the SavedModel answered INVALID_ARGUMENT: "),
    "version label": (["--version-label", "stable", "x"], "--version-label needs a server"),
}


@pytest.mark.parametrize("case", list(SAVED_MODEL_CASES))
def test_cli_saved_model_bad_input_is_one_line_exit_2(case, fake_export, tmp_path, capsys,
                                                      monkeypatch):
    (tmp_path / "no_versions" / "tmp").mkdir(parents=True)
    argv, message = SAVED_MODEL_CASES[case]
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--saved-model" not in argv:
        argv = ["--saved-model", str(fake_export), *argv]
    monkeypatch.setattr("sys.stdin", Tty())
    code, out, err = run_predict(argv, capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err


@pytest.mark.parametrize("verbose", [False, True])
def test_cli_saved_model_is_quiet_unless_verbose(fake_export, verbose):
    """TensorFlow's start-up log lines (CPU features, CUDA probing) only with --verbose."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "GRPC_"))}
    result = subprocess.run(
        [sys.executable, "-m", "tfsent.predict", "--saved-model", str(fake_export), "great film",
         *(["--verbose"] if verbose else [])],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [expected_line("great film")]
    if verbose:
        ours = [line for line in result.stderr.splitlines() if line.startswith("tfsent.predict")]
        assert re.fullmatch(rf"tfsent.predict: loaded {re.escape(str(fake_export))}/2 in "
                            r"\d+\.\d\d s", ours[0]), ours
        assert re.fullmatch(r"tfsent.predict: 1 review\(s\) scored in-process in \d+\.\d\d s",
                            ours[1]), ours
        assert len(result.stderr.splitlines()) > len(ours)  # TensorFlow's own lines too
    else:
        assert result.stderr == ""


def test_cli_module_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tfsent.predict", "--saved-model", str(tmp_path), "x"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert result.returncode == 2
    assert result.stderr == (f"error: no SavedModel versions in {tmp_path}: expected "
                             "<version>/saved_model.pb; export one with tfsent.export\n")


# --- End to end: a real export behind python -m tfsent.serve (or TFSENT_TEST_GRPC/REST) ---------

E2E_TEXTS = [
    "A great film, I loved it.",
    "Dull and far too long.<br /><br />I wanted to leave.",
    "Café naïve 這部電影很好 😀",
    "the best " * 40,
] + [f"review {i}: {'superb acting' if i % 3 else 'boring plot'}" for i in range(36)]


@pytest.fixture(scope="module")
def in_process(served_version):
    """The served export in this process, and its answers to ``E2E_TEXTS``."""
    predictor = SavedModelPredictor(served_version, chunk_size=16)
    return predictor, predictor.predict(E2E_TEXTS)


def assert_same_predictions(got: list[Prediction], expected: list[Prediction]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert (g.label, g.label_id) == (e.label, e.label_id)
        assert g.confidence == pytest.approx(e.confidence, abs=1e-5)
        assert g.probabilities.keys() == e.probabilities.keys()
        assert list(g.probabilities.values()) == pytest.approx(list(e.probabilities.values()),
                                                               abs=1e-5)


def address_of(served, transport: str) -> str:
    return f"grpc://{served.grpc_address}" if transport == "grpc" else served.rest_url


@pytest.mark.parametrize("transport", ["grpc", "rest-instances", "rest-inputs"])
def test_e2e_client_equals_in_process_saved_model(served, in_process, transport):
    predictor, expected = in_process
    assert list(expected[0].probabilities) == ["negative", "positive"]  # from `classes`
    options = {"rest_format": transport.split("-")[1]} if transport != "grpc" else {}
    # No label_names: the served `classes` output names the probabilities.
    with SentimentClient(address_of(served, transport), chunk_size=7, **options) as client:
        got = client.predict(E2E_TEXTS)
        assert_same_predictions(got, expected)
        (status,) = client.status()
        assert status.state == "AVAILABLE" and status.error_code == "OK"
        meta = client.metadata()
    assert meta.name == "tfsent" and meta.version == status.version
    assert predictor.status() == [VersionStatus(status.version, "AVAILABLE")]
    text_input = meta.signature_defs["serving_default"].inputs["text"]
    assert text_input.dtype == types_pb2.DT_STRING
    for name in ("serving_default", "token_ids"):
        assert set(meta.signature_defs[name].outputs) == {
            "probabilities", "label_id", "label", "logits", "classes"}
        # The in-process predictor reads the same signatures from saved_model.pb.
        assert meta.signature_defs[name] == predictor.metadata().signature_defs[name]
    assert set(meta.signature_defs["token_ids"].inputs) == {
        "input_ids", "attention_mask", "token_type_ids"}


WRONG = {"model_name": "no_such_model", "version": 999, "version_label": "no_such_label",
         "signature_name": "nope"}


def served_versions_and_signatures(address: str) -> tuple[list[str], list[str]]:
    with SentimentClient(address) as client:
        versions = [str(s.version) for s in client.status() if s.state == "AVAILABLE"]
        names = client.metadata().signature_defs
        return versions, sorted(name for name in names if not name.startswith("__"))


@pytest.mark.parametrize("transport, code", [("grpc", "NOT_FOUND"), ("rest", "HTTP 404")])
@pytest.mark.parametrize("option", list(WRONG))
def test_e2e_server_errors(served, transport, code, option):
    """Something the server does not have: the error names the argument and what it has."""
    value = WRONG[option]
    address = address_of(served, transport)
    with SentimentClient(address, retries=3, **{option: value}) as client:
        with pytest.raises(ServingError) as err:
            client.predict(["x"])
    if option in ("model_name", "version"):
        assert err.value.code == code and not err.value.retryable
    assert str(value) in err.value.message
    assert err.value.argument == option
    versions, signatures = served_versions_and_signatures(address)
    assert signatures == ["serving_default", "token_ids"] and versions
    assert list(err.value.available) == {"version": versions,
                                         "signature_name": signatures}.get(option, [])


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_e2e_status_and_metadata_name_a_wrong_model(served, transport):
    with SentimentClient(address_of(served, transport), model_name="nope") as client:
        for call in (client.status, client.metadata):
            with pytest.raises(ServingError) as err:
                call()
            assert err.value.argument == "model_name"
            assert err.value.message.startswith("model 'nope' not found on the server (")


@pytest.mark.parametrize("where", ["grpc", "rest", "saved"])
def test_e2e_cli_server_and_saved_model_agree(where, served, served_version, in_process,
                                              capsys):
    _, expected = in_process
    texts = E2E_TEXTS[:5]
    if where == "saved":
        argv = ["--saved-model", str(served_version.parent)]
    else:
        argv = ["--server", address_of(served, where)]
    # No --label-names: the names come from the served `classes` output.
    for fmt in ("text", "jsonl") if where != "saved" else ("jsonl",):  # loading is slow
        code, out, err = run_predict([*argv, "--format", fmt, *texts], capsys)
        assert (code, err) == (0, "")
        lines = out.splitlines()
        if fmt == "text":
            assert [line.split("  ")[0] for line in lines] == [
                f"{p.label} (confidence {p.confidence:.2f})" for p in expected[:5]]
            continue
        for line, p, text in zip(lines, expected, texts, strict=False):
            row = json.loads(line)
            assert (row["text"], row["label"]) == (text, p.label)
            assert row["confidence"] == pytest.approx(p.confidence, abs=1e-5)
            assert list(row["probabilities"]) == ["negative", "positive"]
            assert row["probabilities"] == pytest.approx(p.probabilities, abs=1e-5)


CLI_SERVER_ERRORS = {
    "model": (["--model-name", "nope"],
              "model 'nope' not found on the server (Servable not found for request: ",
              "; pass --model-name with the name the server hosts"),
    "version": (["--version", "999"],
                "version 999 of model 'tfsent' is not available on the server (",
                "; pass --version with one the server has: {versions}"),
    "label": (["--version-label", "nope"],
              "version label 'nope' of model 'tfsent' not found on the server (",
              "; pass --version-label with one the server has, or leave it out"),
    "signature": (["--signature", "nope"], "model 'tfsent' has no signature 'nope' (",
                  "; pass --signature with one the server has: serving_default, token_ids"),
}


@pytest.mark.parametrize("transport", ["grpc", "rest"])
@pytest.mark.parametrize("case", list(CLI_SERVER_ERRORS))
def test_e2e_cli_server_error_is_one_line(served, capsys, transport, case):
    """What the server does not have, and the flag to fix it with, on one line."""
    address = address_of(served, transport)
    argv, problem, fix = CLI_SERVER_ERRORS[case]
    code, out, err = run_predict(["--server", address, *argv, "x"], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith(f"error: the server at {address} answered "), err
    if case == "model" and transport == "rest":
        assert err.startswith(f"error: the server at {served.rest_url} answered HTTP 404")
    assert problem in err, err
    versions, _ = served_versions_and_signatures(address)
    assert err.endswith(fix.format(versions=", ".join(versions)) + "\n"), err


def test_descriptor_pools_stay_apart():
    """The real packages' files are in the default pool, ours only in the private one."""
    default = descriptor_pool.Default()
    assert default.FindFileByName("tensorflow_serving/apis/predict.proto") is (
        tfs_predict.DESCRIPTOR)
    assert POOL.FindFileByName("tensorflow_serving/apis/predict.proto") is predict_pb2.DESCRIPTOR
    assert predict_pb2.DESCRIPTOR is not tfs_predict.DESCRIPTOR
