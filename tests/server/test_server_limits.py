"""Every request path is bounded: queue length, deadlines, body and message sizes, instances.

One ``python -m tfsent.serve`` with tiny limits (one worker and one queue place per API, 3 s
deadlines, 4 KiB bodies and messages, 4 instances) serves the toy model as ``slow``, whose
``slow`` signature busy-waits the seconds it is sent.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest

from tests.server.helpers import (
    Stubs,
    grpc_error,
    needs_local,
    predict_request,
    save_toy_model,
    slow_request,
)
from tfsent.model_server.process import start_server

pytestmark = needs_local
LIMITS = [
    "--grpc_max_threads=1",
    "--rest_api_num_threads=1",
    "--max_queued_requests=1",
    "--rest_api_timeout_in_ms=3000",
    "--grpc_default_timeout_in_ms=3000",
    "--rest_api_max_body_bytes=4096",
    "--grpc_max_receive_message_bytes=4096",
    "--max_instances_per_request=4",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    save_toy_model(root / "slow" / "1")
    with start_server(root / "slow", "slow", LIMITS, timeout=120) as process:
        yield process


@pytest.fixture(scope="module")
def stubs(server):
    channel = Stubs(server.grpc_address)
    yield channel
    channel.close()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.rest_url, timeout=30) as client:
        yield client


PREDICT = "/v1/models/slow:predict"


def rest_slow(http: httpx.Client, seconds: float) -> httpx.Response:
    return http.post(PREDICT, json={"signature_name": "slow", "instances": [seconds]})


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except grpc.RpcError as err:
        return err, time.monotonic() - started


def concurrently(calls) -> list:
    """Start ``calls`` 0.3 s apart, so the first runs, the second waits, the third finds the
    queue full; their (result, seconds) in order."""
    results: list = [None] * len(calls)

    def run(i):
        results[i] = timed(calls[i])

    threads = []
    for i in range(len(calls)):
        threads.append(threading.Thread(target=run, args=(i,)))
        threads[-1].start()
        time.sleep(0.3)
    for thread in threads:
        thread.join(30)
    return results


def test_full_grpc_queue_answers_unavailable_at_once(stubs):
    call = lambda: stubs.predictions.Predict(slow_request(1.0), timeout=10)  # noqa: E731
    (first, _), (second, _), (third, third_seconds) = concurrently([call, call, call])
    assert first.outputs["waited"].int64_val == [1]
    assert second.outputs["waited"].int64_val == [1]
    assert third.code() == grpc.StatusCode.UNAVAILABLE, third
    assert "queue" in third.details() and third_seconds < 0.5
    assert stubs.served_version("slow") == 1


def test_full_rest_queue_answers_503_at_once(http):
    call = lambda: rest_slow(http, 1.0)  # noqa: E731
    (first, _), (second, _), (third, third_seconds) = concurrently([call, call, call])
    assert (first.status_code, second.status_code) == (200, 200)
    assert third.status_code == 503 and third_seconds < 0.5
    assert "queue" in third.json()["error"]
    assert http.post(PREDICT, json={"instances": ["ok"]}).json() == {"predictions": [2]}


def test_rest_request_past_its_timeout_gets_504(http):
    reply, seconds = timed(lambda: rest_slow(http, 4.5))
    assert reply.status_code == 504 and 2.5 < seconds < 4.4, (reply.text, seconds)
    assert reply.json() == {"error": "Deadline Exceeded"}
    # It waits for the worker (busy ~1.5 s more), then runs: within its own 3 s.
    assert http.post(PREDICT, json={"instances": ["ok"]}).json() == {"predictions": [2]}


def test_grpc_request_without_deadline_gets_the_default_one(stubs):
    error, seconds = timed(lambda: stubs.predictions.Predict(slow_request(4.5)))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and 2.5 < seconds < 4.4, seconds
    time.sleep(1.6)  # the worker finishes the abandoned run
    error, seconds = timed(lambda: stubs.predictions.Predict(slow_request(3.0), timeout=1))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and seconds < 2, seconds
    time.sleep(2.1)
    assert stubs.served_version("slow") == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_rest_body_over_the_limit_gets_413_unread(http, chunked):
    body = b'{"instances": ["' + b"x" * 5000 + b'"]}'
    content = iter([body[:2000], body[2000:]]) if chunked else body
    reply = http.post(PREDICT, content=content)
    assert reply.status_code == 413, reply.text
    assert "limit of 4096 bytes" in reply.json()["error"]
    assert http.post(PREDICT, json={"instances": ["ok"]}).json() == {"predictions": [2]}


def test_grpc_message_over_the_limit_gets_resource_exhausted(stubs):
    code, _ = grpc_error(stubs.predictions.Predict, predict_request(["x" * 5000], name="slow"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stubs.served_version("slow") == 1


def test_instances_over_the_limit_get_400_and_invalid_argument(http, stubs):
    reply = http.post(PREDICT, json={"instances": ["a"] * 5})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("Request holds 5 instances, more than the 4")
    assert http.post(PREDICT, json={"instances": ["a"] * 4}).json() == {"predictions": [1] * 4}
    code, message = grpc_error(stubs.predictions.Predict,
                               predict_request(["a"] * 5, name="slow"))
    assert (code, message.split(",")[0]) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Request holds 5 instances")


def test_flags_of_tf_serving_are_accepted(tmp_path: Path):
    """The README promises TF Serving's flags; these five used to exit 2."""
    from tfsent.serve import parse_options

    options = parse_options([
        "--model_base_path=/m", f"--ssl_config_file={tmp_path / 'ssl.config'}",
        "--rest_api_timeout_in_ms=1500", "--max_num_load_retries=2",
        "--load_retry_interval_micros=250000",
        "--grpc_channel_arguments=grpc.max_concurrent_streams=10,grpc.http2.max_pings=2",
    ])
    assert (options.rest_api_timeout_in_ms, options.max_num_load_retries,
            options.load_retry_interval_micros) == (1500, 2, 250000)
    assert options.ssl_config_file.endswith("ssl.config")
    assert options.grpc_channel_arguments.count("=") == 2
