"""The corpus of bad requests: each with the code and message the model server must answer.

One corpus for the server's tests (``tests/server/test_server_api.py``, one test case each) and
for the reliability benchmark (``benchmarks/reliability.py``, all in a row, a good request after
each). A case whose ``tfsent_only`` is empty is answered with TF Serving's own code (and, where
tfsent reproduces it, the start of TF Serving's message); one whose ``tfsent_only`` names a limit
runs into a limit TF Serving does not have (an instance count, a request size, a refused config
reload, a nesting depth), so a real TF Serving answers it otherwise::

    >>> cases = rest_cases()
    >>> len({c.case for c in cases}) == len(cases)
    True
    >>> sorted(c.case for c in cases if c.tfsent_only)[:2]
    ['100,000-deep document', '257 instances']

The gRPC requests are ``tensorflow_serving.apis`` protos built with ``tf.make_tensor_proto``; the
REST ones are TF Serving's documented JSON API, as bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MODEL = "tfsent"
MIB = 1024 * 1024
# Methods of ModelService; every other one is PredictionService's.
MODEL_SERVICE = ("GetModelStatus", "HandleReloadConfigRequest")

INSTANCES = "instance count over --max_instances_per_request (256)"
GRPC_SIZE = "message over --grpc_max_receive_message_bytes (8 MiB; TF Serving takes 2 GB)"
REST_SIZE = "body over --rest_api_max_body_bytes (8 MiB)"
RELOAD = "config reloads refused unless --allow_reload_config_request"
DEPTH = "JSON nesting deeper than tfsent's parser takes"


@dataclass(frozen=True)
class GrpcCase:
    """One bad gRPC request: ``method`` of its service, the status code and message start."""

    case: str
    method: str
    request: Any
    code: str  # a grpc.StatusCode name
    message: str
    tfsent_only: str = ""  # the tfsent limit it runs into; empty: TF Serving's own answer

    @property
    def service(self) -> str:
        return "ModelService" if self.method in MODEL_SERVICE else "PredictionService"


@dataclass(frozen=True)
class RestCase:
    """One bad REST request: HTTP ``method``, ``path``, raw ``body``; status and message start."""

    case: str
    method: str
    path: str
    body: bytes | None
    status: int
    message: str
    tfsent_only: str = ""


def predict_request(texts=("ok",), name: str = MODEL, version: int | None = None,
                    label: str | None = None, signature: str = ""):
    """A ``PredictRequest`` of ``texts`` for ``name`` (and a version, label or signature)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(list(texts), dtype=tf.string))
    return request


def grpc_cases(model: str = MODEL) -> list[GrpcCase]:
    """The gRPC corpus against a server of ``model`` (serving_default: ``text`` -> ...,
    token_ids: ``input_ids``, ``attention_mask``, ``token_type_ids``; no version 7)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_management_pb2,
        predict_pb2,
        regression_pb2,
    )

    def predict(texts=("ok",), name=model, version=None, label=None, signature=""):
        return predict_request(texts, name, version, label, signature)

    def with_input(name: str, value: Any, request: Any = None) -> Any:
        request = request if request is not None else predict()
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        return request

    def token_ids(width: int, ids_name: str = "input_ids") -> Any:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = "token_ids"
        value = np.ones((1, width), np.int64)
        for key in (ids_name, "attention_mask", "token_type_ids"):
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        return request

    def status(name: str = model, version: int | None = None) -> Any:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        return request

    def metadata(*fields: str) -> Any:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
        request.model_spec.name = model
        return request

    wrong_name = predict()
    wrong_name.inputs["txt"].CopyFrom(wrong_name.inputs.pop("text"))
    no_spec = predict_pb2.PredictRequest()
    no_spec.inputs["text"].CopyFrom(tf.make_tensor_proto(["ok"]))
    bad_filter = predict()
    bad_filter.output_filter.append("nope")
    twice = predict()
    twice.output_filter.extend(["label", "label"])
    corrupt = with_input("text", np.zeros(3, np.float32))
    corrupt.inputs["text"].tensor_content = b"12345"  # 5 bytes for 3 floats
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = model
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = model
    reload = model_management_pb2.ReloadConfigRequest()
    reload.config.model_config_list.config.add(name="x", base_path="/etc")
    inv, not_found = "INVALID_ARGUMENT", "NOT_FOUND"
    return [
        GrpcCase("unknown model", "Predict", predict(name="nope"), not_found,
                 "Servable not found for request: Latest(nope)"),
        GrpcCase("no model name", "Predict", predict(name=""), inv,
                 "ModelSpec has no name specified."),
        GrpcCase("no model spec", "Predict", no_spec, inv, "Missing ModelSpec"),
        GrpcCase("unknown version", "Predict", predict(version=7), not_found,
                 f"Servable not found for request: Specific({model}, 7)"),
        GrpcCase("unknown label", "Predict", predict(label="nope"), inv,
                 "Unrecognized servable version label: nope"),
        GrpcCase("unknown signature", "Predict", predict(signature="nope"),
                 "FAILED_PRECONDITION", 'Serving signature key "nope" not found.'),
        GrpcCase("wrong input name", "Predict", wrong_name, inv,
                 "input tensor alias not found in signature: txt. "
                 "Inputs expected to be in the set {text}."),
        GrpcCase("wrong dtype", "Predict", with_input("text", np.array([1.5], np.float32)), inv,
                 "Expects arg[0] to be string but float is provided"),
        GrpcCase("extra input", "Predict", with_input("more", [1]), inv,
                 "input size does not match signature: 2!=1"),
        GrpcCase("unknown output", "Predict", bad_filter, inv,
                 "output tensor alias not found in signature: nope"),
        GrpcCase("output twice", "Predict", twice, inv, "duplicate output tensor alias: label"),
        GrpcCase("corrupt tensor", "Predict", corrupt, inv, "tensor parsing error: text"),
        GrpcCase("scalar input", "Predict", with_input("text", "ok"), inv,
                 "input tensor alias text has shape []"),
        GrpcCase("matrix input", "Predict", with_input("text", [["a", "b"]]), inv,
                 "input tensor alias text has shape [1,2]"),
        GrpcCase("token ids 5,000 wide", "Predict", token_ids(5000), inv, ""),
        GrpcCase("token ids misnamed", "Predict", token_ids(4, "ids"), inv,
                 "input tensor alias not found in signature: ids."),
        GrpcCase("metadata without field", "GetModelMetadata", metadata(), inv,
                 "GetModelMetadataRequest must specify at least one"),
        GrpcCase("metadata unknown field", "GetModelMetadata", metadata("nope"), inv,
                 "Metadata field nope is not supported"),
        GrpcCase("classify a predict signature", "Classify", classify, inv,
                 "Expected classification signature method_name to be "
                 "tensorflow/serving/classify. Was: tensorflow/serving/predict"),
        GrpcCase("regress a predict signature", "Regress", regress, inv,
                 "Expected regression signature method_name to be tensorflow/serving/regress."),
        GrpcCase("status of unknown model", "GetModelStatus", status("nope"), not_found,
                 "Could not find any versions of model nope"),
        GrpcCase("status of unknown version", "GetModelStatus", status(version=7), not_found,
                 f"Could not find version 7 of model {model}"),
        GrpcCase("257 instances", "Predict", predict(["ok"] * 257), inv,
                 "Request holds 257 instances, more than the 256", INSTANCES),
        GrpcCase("9 MB message", "Predict", predict(["x" * 9 * MIB]), "RESOURCE_EXHAUSTED", "",
                 GRPC_SIZE),
        GrpcCase("reload config", "HandleReloadConfigRequest", reload, "PERMISSION_DENIED",
                 "HandleReloadConfigRequest is disabled on this server", RELOAD),
    ]


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def rest_cases(model: str = MODEL) -> list[RestCase]:
    """The REST corpus against a server of ``model`` (see :func:`grpc_cases`)."""
    p = f"/v1/models/{model}:predict"
    ok = _json({"instances": ["ok"]})
    big = "99999999999999999999"

    def ids(**inputs: Any) -> bytes:
        return _json({"signature_name": "token_ids", "inputs": inputs})

    return [
        RestCase("unknown model", "POST", "/v1/models/nope:predict", ok, 404,
                 "Servable not found for request: Latest(nope)"),
        RestCase("unknown version", "POST", f"/v1/models/{model}/versions/7:predict", ok, 404,
                 f"Servable not found for request: Specific({model}, 7)"),
        RestCase("unknown label", "POST", f"/v1/models/{model}/labels/nope:predict", ok, 400,
                 "Unrecognized servable version label: nope"),
        RestCase("version past int64", "POST", f"/v1/models/{model}/versions/{big}:predict", ok,
                 400, f"Failed to convert version: {big} to numeric."),
        RestCase("version not a number", "POST", f"/v1/models/{model}/versions/x:predict",
                 _json({}), 400, "Malformed request"),
        RestCase("status of unknown model", "GET", "/v1/models/nope", None, 404,
                 "Could not find any versions of model nope"),
        RestCase("status of unknown version", "GET", f"/v1/models/{model}/versions/7", None, 404,
                 f"Could not find version 7 of model {model}"),
        RestCase("status of version past int64", "GET", f"/v1/models/{model}/versions/{big}",
                 None, 400, f"Failed to convert version: {big} to numeric."),
        RestCase("no model name", "GET", "/v1/models", None, 400,
                 "Missing model name in request."),
        RestCase("predict with GET", "GET", p, None, 400, f"Malformed request: GET {p}"),
        RestCase("status with POST", "POST", f"/v1/models/{model}", ok, 400,
                 "Malformed request: POST"),
        RestCase("unknown route", "GET", "/v1/nothing", None, 400,
                 "Malformed request: GET /v1/nothing"),
        RestCase("outside /v1", "GET", "/nothing", None, 404, "Not found: GET /nothing"),
        RestCase("empty body", "POST", p, b"", 400, "JSON Parse error: The document is empty"),
        RestCase("not json", "POST", p, b"{not json", 400, "JSON Parse error: "),
        RestCase("not an object", "POST", p, b"[1, 2]", 400, "JSON Value: [1,2] Is not object"),
        RestCase("not utf-8", "POST", p, b'{"instances": ["\xff"]}', 400,
                 "JSON Parse error: Invalid encoding in string."),
        RestCase("lone surrogate", "POST", p, b'{"instances": ["\\ud800"]}', 400,
                 "JSON Parse error: The surrogate pair in string is invalid."),
        RestCase("lone surrogate key", "POST", p, b'{"instances": [{"\\udc00": "a"}]}', 400,
                 "JSON Parse error: The surrogate pair in string is invalid."),
        RestCase("4,400-digit number", "POST", p, b'{"instances": [1' + b"0" * 4400 + b"]}", 400,
                 "JSON Parse error: Number too big"),
        RestCase("unknown signature", "POST", p,
                 _json({"signature_name": "nope", "instances": ["ok"]}), 400,
                 'Serving signature name: "nope" not found in signature def'),
        RestCase("signature name a number", "POST", p,
                 _json({"signature_name": 1, "instances": ["ok"]}), 400, "JSON Value: "),
        RestCase("no inputs", "POST", p, _json({"signature_name": "serving_default"}), 400,
                 "Missing 'inputs' or 'instances' key"),
        RestCase("both formats", "POST", p, _json({"instances": ["a"], "inputs": ["a"]}), 400,
                 "JSON Value: "),
        RestCase("empty instances", "POST", p, _json({"instances": []}), 400, "JSON Value: "),
        RestCase("instances a string", "POST", p, _json({"instances": "ok"}), 400,
                 "JSON Value: "),
        RestCase("number for text", "POST", p, _json({"instances": [1.5]}), 400,
                 "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
                 "JSON Value: 1.5 Type: Number is not of expected type: string"),
        RestCase("null for text", "POST", p, _json({"instances": [None]}), 400,
                 "Failed to process element: 0 of 'instances' list."),
        RestCase("wrong input name", "POST", p, _json({"instances": [{"txt": "ok"}]}), 400,
                 "Failed to process element: 0 key: txt of 'instances' list."),
        RestCase("missing columnar input", "POST", p, _json({"inputs": {"txt": ["ok"]}}), 400,
                 "Missing named input: text in 'inputs' object."),
        RestCase("bad base64", "POST", p, _json({"instances": [{"text": {"b64": "%%%"}}]}), 400,
                 "Failed to process"),
        RestCase("ragged instances", "POST", p, _json({"instances": [["a", "b"], ["c"]]}), 400,
                 "Failed to process element: 1"),
        RestCase("token ids 5,000 wide", "POST", p, ids(
            input_ids=[[2] * 5000], attention_mask=[[1] * 5000], token_type_ids=[[0] * 5000]),
            400, ""),
        RestCase("token ids as floats", "POST", p, ids(
            input_ids=[[2.5]], attention_mask=[[1]], token_type_ids=[[0]]), 400,
            "JSON Value: 2.5 Type: Number is not of expected type: int64"),
        RestCase("token id past int64", "POST", p, ids(
            input_ids=[[2**64]], attention_mask=[[1]], token_type_ids=[[0]]), 400,
            "JSON Value: 18446744073709551616 Type: Number is not of expected type: int64"),
        RestCase("classify a predict signature", "POST", f"/v1/models/{model}:classify",
                 _json({"examples": [{"text": "ok"}]}), 400,
                 "Expected classification signature method_name"),
        RestCase("regress a predict signature", "POST", f"/v1/models/{model}:regress",
                 _json({"examples": [{"text": "ok"}]}), 400,
                 "Expected regression signature method_name"),
        RestCase("257 instances", "POST", p, _json({"instances": ["ok"] * 257}), 400,
                 "Request holds 257 instances, more than the 256", INSTANCES),
        RestCase("300 columnar rows", "POST", p, _json({"inputs": {"text": ["ok"] * 300}}), 400,
                 "Request holds 300 instances", INSTANCES),
        RestCase("9 MB body", "POST", p, _json({"instances": ["x" * 9 * MIB]}), 413,
                 "Request body of ", REST_SIZE),
        RestCase("100,000-deep document", "POST", p, b"[" * 100_000 + b"]" * 100_000, 400,
                 "JSON Parse error: ", DEPTH),
        RestCase("500-deep instance", "POST", p,
                 b'{"instances": ' + b"[" * 500 + b'"a"' + b"]" * 500 + b"}", 400,
                 "Failed to process element: 0 of 'instances' list.", DEPTH),
    ]
