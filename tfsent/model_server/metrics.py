"""Prometheus metrics of the model server, named after TF Serving's.

TF Serving exports ``/tensorflow/serving/request_count`` as ``:tensorflow:serving:request_count``,
which is not a valid Prometheus name; here the same metric is ``tensorflow_serving_request_count``
(Prometheus counters add ``_total``). Latencies are in microseconds, as TF Serving's::

    metrics = ServingMetrics()
    metrics.observe_request("tfsent", "predict", "GRPC", "OK", seconds=0.004)
    body, content_type = metrics.exposition()
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from tfsent.model_server.batching import BatchObserver

# TF Serving's request_latency buckets: 10 us growing by 1.8x, 33 of them (~2.5 hours).
LATENCY_BUCKETS_US = tuple(10 * 1.8**i for i in range(33))
BATCH_SIZE_BUCKETS = tuple(2**i for i in range(14))


class ServingMetrics:
    """The server's metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_count = Counter(
            "tensorflow_serving_request_count",
            "The number of requests, by model, API, entrypoint (GRPC/REST) and status code.",
            ["model_name", "API", "entrypoint", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "tensorflow_serving_request_latency",
            "Distribution of request latencies in microseconds, by model, API and entrypoint.",
            ["model_name", "API", "entrypoint"],
            buckets=LATENCY_BUCKETS_US,
            registry=r,
        )
        self.processed_batch_size = Histogram(
            "tensorflow_serving_batching_session_processed_batch_size",
            "Distribution of the sizes of the batches run (requests merged), without padding.",
            ["model_name"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.input_batch_size = Histogram(
            "tensorflow_serving_batching_session_input_batch_size",
            "Distribution of the sizes of the requests entering the batch queues.",
            ["model_name"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.padding_size = Histogram(
            "tensorflow_serving_batching_session_padding_size",
            "Distribution of the rows added to reach an allowed batch size.",
            ["model_name"],
            buckets=(0,) + BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.queuing_latency = Histogram(
            "tensorflow_serving_batching_session_queuing_latency",
            "Distribution of the microseconds requests wait in a batch queue.",
            ["model_name"],
            buckets=LATENCY_BUCKETS_US,
            registry=r,
        )
        self.load_attempt_count = Counter(
            "tensorflow_cc_saved_model_load_attempt_count",
            "The number of times a SavedModel was loaded, by path and status.",
            ["model_path", "status"],
            registry=r,
        )

    def observe_request(
        self, model_name: str, api: str, entrypoint: str, status: str, seconds: float
    ) -> None:
        self.request_count.labels(model_name, api, entrypoint, status).inc()
        self.request_latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def batch_observer(self, model_name: str) -> BatchObserver:
        return _BatchMetrics(self, model_name)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _BatchMetrics(BatchObserver):
    def __init__(self, metrics: ServingMetrics, model_name: str) -> None:
        self.metrics = metrics
        self.model_name = model_name

    def batch_run(self, size: int, padding: int) -> None:
        self.metrics.processed_batch_size.labels(self.model_name).observe(size)
        self.metrics.padding_size.labels(self.model_name).observe(padding)

    def task_queued(self, rows: int, wait_seconds: float) -> None:
        self.metrics.input_batch_size.labels(self.model_name).observe(rows)
        self.metrics.queuing_latency.labels(self.model_name).observe(wait_seconds * 1e6)
