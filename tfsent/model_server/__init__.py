"""A TensorFlow-Serving-compatible model server for development and tests (``python -m tfsent.serve``).

It serves TF Serving's own gRPC and REST APIs, so code and tests written against it work unchanged
against the real ``tensorflow_model_server``, which production uses. Its parts, one job each:

- ``server_config``: the model config / batching / monitoring files (TF Serving's text protos)
- ``servable``: one loaded SavedModel version: signatures, input checks, warmup, running it
- ``manager``: the core: versions on disk -> load / serve / unload, states, labels, routing of a
  ModelSpec, and every request's logic (predict, metadata, status) that both front ends share
- ``batching``: server-side batching of concurrent requests
- ``rest_json``: TF Serving's REST JSON <-> tensors (row and columnar formats, ``b64``)
- ``grpc_api`` / ``rest_api``: the two front ends, siblings over the manager
- ``metrics``: Prometheus metrics named after TF Serving's
- ``status``: the error type carrying TF Serving's status codes
- ``server``: options, ports, start-up and draining; ``process``: run it in a subprocess

Its dependencies are the ``serve`` extra: ``pip install "tfsent[serve]"``.
"""
