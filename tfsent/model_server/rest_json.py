"""TF Serving's REST JSON <-> tensors, with the rules and messages of its ``json_tensor.cc``.

Requests: ``{"signature_name": ..., "instances": [...]}`` (row format: one item per example,
objects keyed by input name when the signature has several inputs) or ``{"inputs": ...}``
(columnar: one value per input, or a bare value for a single input). Strings are JSON strings,
or ``{"b64": "..."}`` for binary data. Replies: ``{"predictions": [...]}`` (row; one object per
example keyed by output name when there are several outputs) or ``{"outputs": ...}``. Floats are
written with the fewest digits that round-trip, as TF Serving does; string outputs are UTF-8
text, or ``{"b64": ...}`` when their name ends in ``_bytes`` (TF Serving's rule) or when they are
not valid UTF-8 (which TF Serving would write as broken JSON)::

    >>> from tensorflow.core.protobuf import meta_graph_pb2
    >>> info = meta_graph_pb2.TensorInfo(dtype=7)  # DT_STRING
    >>> body = parse_body(b'{"instances": [{"text": "a"}, {"text": {"b64": "Yg=="}}]}')
    >>> inputs, fmt = request_tensors(body, {"text": info})
    >>> fmt, inputs["text"].tolist()
    ('row', [b'a', b'b'])
    >>> import numpy as np
    >>> response_json({"p": np.array([[0.1, 0.9]], np.float32)}, "row")
    {'predictions': [[0.1, 0.9]]}
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfsent.model_server.status import RequestError, too_many_instances

ROW = "row"
COLUMNAR = "columnar"
BYTES_SUFFIX = "_bytes"

# DataType enum -> (name, numpy dtype, kind) for the types TF Serving's JSON handles.
_DTYPES: dict[int, tuple[str, Any, str]] = {
    1: ("float", np.float32, "float"),
    2: ("double", np.float64, "double"),
    3: ("int32", np.int32, "int32"),
    4: ("uint8", np.uint8, "int32"),
    5: ("int16", np.int16, "int32"),
    6: ("int8", np.int8, "int32"),
    7: ("string", object, "string"),
    9: ("int64", np.int64, "int64"),
    10: ("bool", np.bool_, "bool"),
    22: ("uint32", np.uint32, "uint32"),
    23: ("uint64", np.uint64, "uint64"),
}
_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
# Largest integer a float type holds exactly (TF Serving's IsLosslessDecimal).
_EXACT_INT = {"float": 2**24 - 1, "double": 2**53 - 1}
_FLOAT_MAX = float(np.finfo(np.float32).max)
# TensorFlow's own limit is 254 dimensions; JSON lists nested deeper than this are refused
# before any recursion over them.
MAX_RANK = 64
MAX_QUOTED_CHARS = 256
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _invalid(message: str) -> RequestError:
    return RequestError.invalid_argument(message)


def _text(value: Any) -> str:
    """A JSON value as TF Serving quotes it in errors (cut short: a reply stays small)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (RecursionError, ValueError):
        text = "[...]"
    return text if len(text) <= MAX_QUOTED_CHARS else text[:MAX_QUOTED_CHARS] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def parse_body(body: bytes | str) -> dict[str, Any]:
    """The request body as a JSON object, or INVALID_ARGUMENT with TF Serving's message."""
    if not body:
        raise _invalid("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except UnicodeDecodeError:
        raise _invalid("JSON Parse error: Invalid encoding in string.") from None
    except json.JSONDecodeError as err:
        raise _invalid(f"JSON Parse error: {err.msg} at offset: {err.pos}") from None
    except RecursionError:
        raise _invalid("JSON Parse error: The document nests too deeply.") from None
    except ValueError:  # an integer of more than 4300 digits
        raise _invalid("JSON Parse error: Number too big to be stored in double.") from None
    _check_surrogates(body, doc)
    if not isinstance(doc, dict):
        raise _invalid(f"JSON Value: {_text(doc)} Is not object")
    return doc


def _check_surrogates(body: bytes | str, doc: Any) -> None:
    """Refuse a lone UTF-16 surrogate (``"\\ud800"``), which Python's JSON parser lets through
    but no UTF-8 text can hold, with the message of TF Serving's parser (RapidJSON)."""
    text = body if isinstance(body, str) else body.decode("utf-8", "replace")
    match = _SURROGATE_ESCAPE.search(text)
    if match is None:
        return
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(
            f"JSON Parse error: The surrogate pair in string is invalid. at offset: "
            f"{match.start()}"
        ) from None
    except (RecursionError, ValueError):
        pass


def signature_name(doc: Mapping[str, Any]) -> str:
    """The optional ``signature_name`` ("" when absent)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise _invalid(
            f"JSON Value: {_text(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def _convert(value: Any, dtype: int) -> Any:
    name, _, kind = _DTYPES[dtype]
    if isinstance(value, dict):
        if kind != "string":
            raise _type_error(value, name)
        if not _is_b64(value):
            raise _invalid(f"JSON Value: {_text(value)} not formatted correctly for base64 data")
        try:
            encoded = value["b64"]
            # absl::Base64Unescape, which TF Serving uses, also takes unpadded data.
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("Unable to base64 decode") from None
    if kind == "string":
        if not isinstance(value, str):
            raise _type_error(value, name)
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise _invalid("JSON Parse error: The surrogate pair in string is invalid.") from None
    if kind == "bool":
        if not isinstance(value, bool):
            raise _type_error(value, name)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(value, name)
    if kind in ("float", "double"):
        if math.isfinite(value) and (
            (isinstance(value, int) and abs(value) > _EXACT_INT[kind])
            or (kind == "float" and isinstance(value, float) and abs(value) > _FLOAT_MAX)
        ):
            raise _invalid(
                f"Cannot convert JSON value: {_text(value)} to {kind} without loss of precision."
            )
        return value
    low, high = _INT_RANGES[kind]
    if not isinstance(value, int) or not low <= value <= high:
        raise _type_error(value, name)
    return value


def _type_error(value: Any, dtype_name: str) -> RequestError:
    return _invalid(
        f"JSON Value: {_text(value)} Type: {_json_type(value)} "
        f"is not of expected type: {dtype_name}"
    )


def _dense_shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list) and len(shape) <= MAX_RANK:
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], dtype: int, out: list[Any]) -> None:
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise _invalid(
                f"JSON Value: {_text(value)} found at incorrect level: {level + 1} in the JSON "
                f"DOM. Expected at level: {rank}"
            )
        out.append(_convert(value, dtype))
        return
    if level >= rank:
        raise _invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise _invalid(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _tensor(value: Any, dtype: int) -> np.ndarray:
    """A dense tensor from nested JSON lists (``value`` may be a scalar)."""
    if dtype not in _DTYPES:
        from tfsent.model_server.servable import dtype_name

        raise RequestError.unimplemented(
            f"Conversion of JSON Value: {_text(value)} to type: {dtype_name(dtype)}"
        )
    shape = _dense_shape(value)
    if len(shape) > MAX_RANK:
        raise _invalid(
            f"JSON Value: lists nested more than {MAX_RANK} deep; tensors have at most "
            f"{MAX_RANK} dimensions here"
        )
    flat: list[Any] = []
    _fill(value, 0, shape, dtype, flat)
    np_dtype = _DTYPES[dtype][1]
    if np_dtype is object:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        array = np.array(flat, dtype=np_dtype)
    return array.reshape(shape)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(n) for n in shape) + "]"


def request_tensors(
    doc: Mapping[str, Any], input_infos: Mapping[str, Any], max_instances: int = 0
) -> tuple[dict[str, np.ndarray], str]:
    """The input tensors of a predict body, and its format (``"row"`` or ``"columnar"``).

    ``input_infos`` maps the signature's input names to their ``TensorInfo`` (for the dtypes).
    ``max_instances`` (0: no limit) refuses longer ``instances`` lists, or columnar inputs with
    more rows, before converting anything.
    """
    if not input_infos:
        name = doc.get("signature_name") or "DEFAULT"
        raise _invalid(f"Failed to get input map for signature: {name}")
    dtypes = {name: info.dtype for name, info in input_infos.items()}
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise _invalid(
            f"JSON Value: {_text(doc)} Not formatted correctly expecting only one of 'inputs' "
            "or 'instances' keys to exist "
        )
    if max_instances:
        _check_rows(doc["instances"] if has_instances else doc.get("inputs"), max_instances)
    if has_instances:
        return _from_instances(doc, dtypes), ROW
    if has_inputs:
        return _from_inputs(doc["inputs"], dtypes), COLUMNAR
    raise _invalid("Missing 'inputs' or 'instances' key")


def _check_rows(value: Any, limit: int) -> None:
    columns = value.values() if isinstance(value, dict) and not _is_b64(value) else [value]
    rows = max((len(c) for c in columns if isinstance(c, list)), default=0)
    if rows > limit:
        raise _invalid(too_many_instances(rows, limit))


def _from_instances(doc: Mapping[str, Any], dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise _invalid(f"JSON Value: {_text(doc)} Excepting 'instances' to be an list/array")
    if not instances:
        raise _invalid(f"JSON Value: {_text(doc)} No values in 'instances' array")
    if not isinstance(instances[0], dict) and len(dtypes) > 1:
        raise _invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    named = _is_named_object(instances[0])
    names = sorted(dtypes)
    rows: dict[str, list[np.ndarray]] = {}

    def add(name: str, value: Any, index: int, key_text: str) -> None:
        try:
            if name not in dtypes:
                raise _invalid(f"JSON object: does not have named input: {name}")
            item = _tensor(value, dtypes[name])
            if rows.get(name):
                first = rows[name][0]
                if first.size != item.size:
                    raise _invalid(f"Expecting tensor size: {first.size} but got: {item.size}")
                if first.shape != item.shape:
                    raise _invalid(
                        f"Expecting shape {_shape_text(first.shape)} but got: "
                        f"{_shape_text(item.shape)}"
                    )
        except RequestError as err:
            raise _invalid(
                f"Failed to process element: {index}{key_text} of 'instances' list. "
                f"Error: {err.code.name}: {err.message}"
            ) from None
        rows.setdefault(name, []).append(item)

    for index, element in enumerate(instances):
        if named:
            if not _is_named_object(element):
                raise _invalid(f"Expecting object but got list at item {index} of input list")
            for name, value in element.items():
                add(name, value, index, f" key: {name}")
            if sorted(element) != names:
                raise _invalid(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{_text(element)} keys must be equal to: {','.join(names)}"
                )
        else:
            if _is_named_object(element):
                raise _invalid(f"Expecting value/list but got object at item {index} of input list")
            add(names[0], element, index, "")
    return {name: np.stack(items) for name, items in rows.items()}


def _from_inputs(value: Any, dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or _is_b64(value):
        if len(dtypes) > 1:
            raise _invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        (name,) = dtypes
        return {name: _tensor(value, dtypes[name])}
    tensors = {}
    for name, dtype in dtypes.items():
        if name not in value:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _tensor(value[name], dtype)
    return tensors


# ----------------------------------------------------------------------------------------------
# Replies


def _decimal(value: Any, digits: int, parse: Any) -> float:
    """TF Serving's WriteDecimal: 6 significant digits if they round-trip, else full precision."""
    if not math.isfinite(value):
        return float(value)
    text = f"{value:g}"
    if parse(text) != value:
        text = f"{value:.{digits}g}"
    return float(text)


def _scalar_writer(array: np.ndarray, as_bytes: bool) -> Any:
    kind = array.dtype.kind
    if kind == "f":
        if array.dtype == np.float64:
            return lambda v: _decimal(float(v), 17, float)
        return lambda v: _decimal(np.float32(v), 9, np.float32)
    if kind in "iu":
        return int
    if kind == "b":
        return bool
    if kind in "OSU":

        def write_string(v: Any) -> Any:
            data = v if isinstance(v, bytes) else str(v).encode("utf-8")
            if not as_bytes:
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(data).decode("ascii")}

        return write_string
    raise _invalid(f"Failed to write JSON value for tensor type: {array.dtype}")


def _to_json(array: np.ndarray, name: str) -> Any:
    write = _scalar_writer(array, name.endswith(BYTES_SUFFIX))
    flat = np.empty(array.size, dtype=object)
    flat[:] = [write(v) for v in array.reshape(-1)]
    return flat.reshape(array.shape).tolist()


def response_json(outputs: Mapping[str, np.ndarray], fmt: str) -> dict[str, Any]:
    """The reply body for predict outputs in the request's format."""
    if not outputs:
        raise _invalid("Cannot convert empty tensor map to JSON")
    if fmt == COLUMNAR:
        values = {name: _to_json(np.asarray(v), name) for name, v in outputs.items()}
        if len(values) == 1:
            return {"outputs": next(iter(values.values()))}
        return {"outputs": values}
    batch_size = None
    for name, value in outputs.items():
        if np.ndim(value) == 0:
            raise _invalid(f"Tensor name: {name} has no shape information ")
        if batch_size is not None and len(value) != batch_size:
            raise _invalid(
                f"Tensor name: {name} has inconsistent batch size: {len(value)} "
                f"expecting: {batch_size}"
            )
        batch_size = len(value)
    columns = {name: _to_json(np.asarray(v), name) for name, v in outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    return {
        "predictions": [
            {name: col[i] for name, col in columns.items()} for i in range(batch_size or 0)
        ]
    }
