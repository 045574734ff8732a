"""``tensorflow.TensorProto`` <-> numpy, without TensorFlow: what the gRPC client sends and reads.

Encodes like ``tf.make_tensor_proto`` (numeric arrays of more than one element as little-endian
``tensor_content``, the rest in the typed ``*_val`` fields, strings as UTF-8 ``string_val``) and
decodes like ``tf.make_ndarray`` (either representation, a short value list filled to the shape
with its last element, as TensorFlow does), so the bytes match TensorFlow's:

>>> proto = make_tensor(["great film", "dull"])
>>> proto.dtype == types_pb2.DT_STRING, [d.size for d in proto.tensor_shape.dim]
(True, [2])
>>> to_ndarray(proto).tolist()
[b'great film', b'dull']
>>> to_ndarray(make_tensor(np.array([[0.25, 0.75]], np.float32)))
array([[0.25, 0.75]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tfsent.client.predictions import ServingError
from tfsent.client.protos.tensorflow.core.framework import tensor_pb2, types_pb2

# DataType -> (numpy dtype, the TensorProto field holding its values one by one).
_TYPES: dict[int, tuple[np.dtype, str]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    types_pb2.DT_HALF: (np.dtype(np.float16), "half_val"),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    types_pb2.DT_STRING: (np.dtype(object), "string_val"),
}
_DATA_TYPES = {dtype: data_type for data_type, (dtype, _) in _TYPES.items()}
# tf.make_tensor_proto writes these one value at a time even when there are many.
_TYPED_FIELD_ONLY = (np.dtype(np.bool_), np.dtype(np.uint16))


def make_tensor(values: Any, dtype: Any = None) -> tensor_pb2.TensorProto:
    """A TensorProto of ``values`` (nested lists or an array; ``str``/``bytes`` make a string
    tensor), as ``tf.make_tensor_proto`` writes it."""
    if _is_strings(values):
        array = np.array(values, dtype=object)
        proto = _empty(types_pb2.DT_STRING, array.shape)
        proto.string_val.extend(
            v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.ravel()
        )
        return proto
    array = np.asarray(values, dtype=dtype)
    if array.dtype not in _DATA_TYPES:
        raise TypeError(f"cannot make a TensorProto of {array.dtype} values")
    data_type = _DATA_TYPES[array.dtype]
    proto = _empty(data_type, array.shape)
    if array.dtype not in _TYPED_FIELD_ONLY and array.size > 1:
        proto.tensor_content = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        return proto
    flat = array.ravel()
    if data_type == types_pb2.DT_HALF:
        flat = flat.view(np.uint16)
    getattr(proto, _TYPES[data_type][1]).extend(flat.tolist())
    return proto


def string_tensor(texts: Sequence[str]) -> tensor_pb2.TensorProto:
    """The ``[len(texts)]`` string tensor the ``text`` input takes."""
    proto = _empty(types_pb2.DT_STRING, (len(texts),))
    proto.string_val.extend(t.encode("utf-8") for t in texts)
    return proto


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The numpy array of a TensorProto (string tensors: an object array of ``bytes``)."""
    if proto.dtype not in _TYPES:
        raise ServingError("INVALID_RESPONSE", "cannot decode a tensor of type "
                           f"{types_pb2.DataType.Name(proto.dtype)}")
    dtype, field_name = _TYPES[proto.dtype]
    if proto.tensor_shape.unknown_rank:
        shape: tuple[int, ...] | None = None
    else:
        shape = tuple(d.size for d in proto.tensor_shape.dim)
    size = int(np.prod(shape)) if shape is not None else None
    if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
        values = np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<"))
        values = values.astype(dtype)
    elif proto.dtype == types_pb2.DT_STRING:
        values = np.empty(len(proto.string_val), dtype=object)
        values[:] = list(proto.string_val)
    elif proto.dtype == types_pb2.DT_HALF:
        values = np.array(proto.half_val, dtype=np.uint16).view(np.float16)
    else:
        values = np.array(getattr(proto, field_name), dtype=dtype)
    if shape is None:
        return values
    if values.size == size:
        return values.reshape(shape)
    if values.size == 0:
        return np.full(shape, b"" if proto.dtype == types_pb2.DT_STRING else 0, dtype=dtype)
    if values.size < size:  # TensorFlow repeats the last value to fill the shape
        return np.pad(values, (0, size - values.size), mode="edge").reshape(shape)
    raise ServingError("INVALID_RESPONSE", f"a tensor of shape {list(shape)} holds "
                       f"{values.size} values")


def _empty(data_type: int, shape: Sequence[int]) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=data_type)
    proto.tensor_shape.SetInParent()  # a scalar's shape is there, and empty, as TF writes it
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def _is_strings(values: Any) -> bool:
    """Whether ``values`` (nested lists or an array) holds text."""
    if isinstance(values, np.ndarray):
        return values.dtype == object or values.dtype.kind in "SU"
    while isinstance(values, (list, tuple)) and values:
        values = values[0]
    return isinstance(values, (str, bytes))
