"""A TensorFlow-Serving-compatible model server for development and tests.

``python -m tfsent.serve`` serves TF Serving's own gRPC and REST APIs, so code and tests written
against it work unchanged against the real ``tensorflow_model_server``, which production uses.
Its parts, one job each:

- ``server_config``: the model config / batching / monitoring / SSL files (TF Serving's text
  protos) and ``--grpc_channel_arguments``
- ``servable``: one loaded SavedModel version: signatures, input checks, running a signature
- ``core``: the server core (TF Serving's ServerCore + AspiredVersionsManager): versions on
  disk -> load (with retries, warmup) / serve / unload, states and status, labels, config
  reloads, the version a ModelSpec names
- ``service``: the request service (TF Serving's PredictionServiceImpl): the one predict path
  (checks, instance limit, batching), which warmup uses too; classify/regress checks; metadata
- ``executor``: the bounded request queues (worker threads + a queue of limited length)
- ``batching``: server-side batching of concurrent requests
- ``rest_json``: TF Serving's REST JSON <-> tensors (row and columnar formats, ``b64``)
- ``grpc_api`` / ``rest_api``: the two front ends, siblings over the service and the core
- ``metrics``: Prometheus metrics named after TF Serving's
- ``status``: the error type carrying TF Serving's status codes; cleaning of TF messages
- ``server``: options (the CLI's flags), ports, TLS, start-up and draining; ``process``: run it
  in a subprocess

Its dependencies are the ``serve`` extra: ``pip install -e ".[serve]"`` in a clone. Nothing
outside this package imports fastapi, uvicorn or prometheus-client.
"""
