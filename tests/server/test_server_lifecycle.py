"""The model server over time: versions appearing, failing and coming back, config reloads,
start-up errors and SIGTERM, with ``python -m tfsent.serve`` subprocesses serving a toy
SavedModel (``tests.server.helpers.ToyModel``: loads in a second, no tokenizer).

One server (``life``) polls every 0.3 s and retries failed loads every 0.3 s; each test works
on its own model so the order does not matter. SIGTERM tests start their own servers.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2

from tests.server.helpers import (
    State,
    Stubs,
    grpc_error,
    needs_local,
    predict_request,
    save_toy_model,
    slow_request,
    status_request,
    toy_config,
    wait_until,
)
from tfsent.model_server.process import server_env, start_server

pytestmark = needs_local

LIFE_MODELS = {
    "rolling": "",
    "retry": "",
    "readd": "",
    "labels": 'model_version_policy { all {} } version_labels { key: "stable" value: 1 } '
    'version_labels { key: "canary" value: 2 }',
}


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Path:
    return save_toy_model(tmp_path_factory.mktemp("toy") / "1")


def broken_copy(toy_model: Path, target: Path) -> Path:
    """A version folder caught half-way through a copy: saved_model.pb cut short."""
    shutil.copytree(toy_model, target)
    data = (target / "saved_model.pb").read_bytes()
    (target / "saved_model.pb").write_bytes(data[: len(data) // 2])
    return target


@pytest.fixture(scope="module")
def life_root(tmp_path_factory, toy_model) -> Path:
    root = tmp_path_factory.mktemp("life")
    for name in LIFE_MODELS:
        shutil.copytree(toy_model, root / name / "1")
    shutil.copytree(toy_model, root / "labels" / "2")
    broken_copy(toy_model, root / "readd" / "2")  # newest version broken from the start
    return root


@pytest.fixture(scope="module")
def life(life_root, tmp_path_factory):
    config = tmp_path_factory.mktemp("life-config") / "models.config"
    config.write_text(toy_config(life_root, LIFE_MODELS))
    args = [
        f"--model_config_file={config}",
        "--file_system_poll_wait_seconds=0.3",
        "--load_retry_interval_micros=300000",
        "--max_num_load_retries=1000",
        "--allow_reload_config_request=true",
        "--allow_version_labels_for_unavailable_models",
    ]
    with start_server(None, "rolling", args, timeout=120) as server:
        yield server


@pytest.fixture(scope="module")
def stubs(life):
    channel = Stubs(life.grpc_address)
    yield channel
    channel.close()


def reload(stubs: Stubs, root: Path, models: dict[str, str]) -> None:
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(toy_config(root, models), request.config)
    stubs.models.HandleReloadConfigRequest(request, timeout=30)


# ----------------------------------------------------------------------------------------------
# Versions on disk


def test_new_version_is_served_without_restart(stubs, life_root, toy_model):
    assert stubs.served_version("rolling") == 1
    # Written aside and renamed, like the exporter: the staging folder is no version.
    staging = life_root / "rolling" / ".tmp-2-1234"
    shutil.copytree(toy_model, staging)
    time.sleep(1)  # three polls
    assert stubs.versions("rolling") == {1: State.AVAILABLE}
    staging.rename(life_root / "rolling" / "2")

    def swapped():
        # Until version 2 is up, version 1 keeps answering.
        assert stubs.served_version("rolling") in (1, 2)
        return stubs.versions("rolling") == {2: State.AVAILABLE, 1: State.END}

    wait_until(swapped, what="version 2 to replace version 1")
    assert stubs.served_version("rolling") == 2
    assert grpc_error(stubs.predictions.Predict, predict_request(["ok"], "rolling", version=1)) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(rolling, 1)",
    )


@pytest.mark.parametrize("name", ["٣٣", "45\n", "²", " 7", "+8", "1e3", "0x10"])
def test_only_ascii_digit_folders_are_versions(name, stubs, life_root, toy_model):
    """TF Serving reads none of these as a version; neither may this server."""
    before = stubs.versions("rolling")
    folder = life_root / "rolling" / name
    shutil.copytree(toy_model, folder)
    try:
        time.sleep(1)  # three polls
        assert stubs.versions("rolling") == before
        assert stubs.served_version("rolling") == max(before)
    finally:
        shutil.rmtree(folder)


def test_failed_load_is_retried_until_the_version_is_complete(stubs, life_root, toy_model):
    """A copy racing the poll fails to load; once complete it is served, and the last good
    version answers throughout."""
    version = broken_copy(toy_model, life_root / "retry" / "2")
    failed = wait_until(
        lambda: [s for s in stubs.models.GetModelStatus(status_request("retry"), timeout=30)
                 .model_version_status if s.version == 2 and s.status.error_message],
        what="the failed load of version 2",
    )
    assert failed[0].state == State.END
    message = failed[0].status.error_message
    assert str(life_root) not in message and "/tmp" not in message, message
    for _ in range(5):  # several retries fail meanwhile; version 1 keeps answering
        assert stubs.served_version("retry") == 1
        time.sleep(0.3)
    shutil.copy2(toy_model / "saved_model.pb", version / "saved_model.pb")
    wait_until(lambda: stubs.versions("retry").get(2) == State.AVAILABLE,
               what="version 2 loaded after being completed")
    assert stubs.served_version("retry") == 2
    wait_until(lambda: stubs.versions("retry").get(1) == State.END, what="version 1 unloaded")


def test_model_dropped_and_readded_serves_its_last_good_version(stubs, life_root):
    """Re-adding a model whose newest version is broken serves the newest good one: no
    outage until someone deletes the bad folder."""
    assert stubs.served_version("readd") == 1
    without = {k: v for k, v in LIFE_MODELS.items() if k != "readd"}
    reload(stubs, life_root, without)
    wait_until(lambda: grpc.StatusCode.NOT_FOUND == grpc_error(
        stubs.predictions.Predict, predict_request(["ok"], "readd"))[0], what="readd removed")
    reload(stubs, life_root, LIFE_MODELS)
    assert wait_until(lambda: _served_or_none(stubs, "readd"), timeout=30,
                      what="readd served again") == 1
    assert stubs.versions("readd")[2] == State.END  # still retried, still broken


def _served_or_none(stubs: Stubs, name: str) -> int | None:
    try:
        return stubs.served_version(name)
    except grpc.RpcError:
        return None


def test_reload_config_request_moves_labels(stubs, life_root):
    def with_labels(**labels: int) -> dict[str, str]:
        extra = "model_version_policy { all {} } " + "".join(
            f'version_labels {{ key: "{k}" value: {v} }} ' for k, v in labels.items())
        return {**LIFE_MODELS, "labels": extra}

    assert stubs.served_version("labels", label="stable") == 1
    reload(stubs, life_root, with_labels(stable=2, canary=2, old=1))
    assert [stubs.served_version("labels", label=x) for x in ("stable", "canary", "old")] == [
        2, 2, 1]
    # A label on a version that is not loaded is refused, and the config stays as it was.
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(toy_config(life_root, with_labels(stable=9)), request.config)
    assert grpc_error(stubs.models.HandleReloadConfigRequest, request) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "Request to assign label to version 9 of model labels, which is not currently "
        "available for inference",
    )
    assert stubs.served_version("labels", label="stable") == 2
    reload(stubs, life_root, with_labels(stable=1, canary=2))
    assert stubs.served_version("labels", label="stable") == 1
    code, _ = grpc_error(stubs.predictions.Predict, predict_request(["ok"], "labels", label="old"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


# ----------------------------------------------------------------------------------------------
# Start-up


def _run_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfsent.serve", *args],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def taken_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def _startup_cases(tmp: Path, toy: Path, port: int) -> dict[str, tuple[str, list[str]]]:
    good = tmp / "good"
    if not good.exists():
        shutil.copytree(toy, good / "1")
    arabic = tmp / "arabic"
    if not arabic.exists():
        shutil.copytree(toy, arabic / "٣٣")
    broken = tmp / "broken"
    if not broken.exists():
        broken_copy(toy, broken / "1")
    files = {
        "bad.config": "model_config_list { config { name: 'x' base_path: '/x' nope: 1 } }",
        "batching.config": "max_batch_size { value: 0 }",
        "ssl_path.config": 'server_key: "/etc/key.pem" server_cert: "/etc/cert.pem"',
        "ssl_verify.config": 'server_key: "-----BEGIN KEY" server_cert: "-----BEGIN CERT" '
        "client_verify: true",
        "ssl_garbage.config": 'server_key: "-----BEGIN PRIVATE KEY-----\\nnope" '
        'server_cert: "-----BEGIN CERTIFICATE-----\\nnope"',
    }
    for name, text in files.items():
        (tmp / name).write_text(text)
    base = f"--model_base_path={good}"
    return {
        "missing base path": ("does not exist", [f"--model_base_path={tmp / 'missing'}"]),
        "no version folder": ("no version folders", [f"--model_base_path={tmp}"]),
        "only a non-ASCII version": ("no version folders", [f"--model_base_path={arabic}"]),
        "broken only version": ("did not become available",
                                [f"--model_base_path={broken}", "--max_num_load_retries=1",
                                 "--load_retry_interval_micros=1000"]),
        "bad model config": ("bad --model_config_file",
                             [f"--model_config_file={tmp / 'bad.config'}"]),
        "bad batching": ("max_batch_size must be at least 1",
                         [base, "--enable_batching",
                          f"--batching_parameters_file={tmp / 'batching.config'}"]),
        "ssl config with paths": ("must hold the PEM text itself",
                                  [base, f"--ssl_config_file={tmp / 'ssl_path.config'}"]),
        "client_verify without CA": ("client_verify needs custom_ca",
                                     [base, f"--ssl_config_file={tmp / 'ssl_verify.config'}"]),
        "unusable key": ("unusable key or certificate",
                         [base, f"--ssl_config_file={tmp / 'ssl_garbage.config'}"]),
        "missing ssl config": ("cannot read --ssl_config_file",
                               [base, f"--ssl_config_file={tmp / 'nope.config'}"]),
        "bad channel arguments": ("is not key=value", [base, "--grpc_channel_arguments=oops"]),
        "negative queue": ("--max_queued_requests must be at least 0",
                           [base, "--max_queued_requests=-1"]),
        "bad boolean": ("expected true or false", [base, "--enable_batching=maybe"]),
        "port in use": ("port in use", [base, f"--port={port}"]),
        "unknown flag": ("unrecognized arguments", [base, "--no_such_flag=1"]),
        "dashed flag": ("did you mean --model_base_path?", ["--model-base-path", str(good)]),
    }


STARTUP_CASES = [
    "missing base path", "no version folder", "only a non-ASCII version", "broken only version",
    "bad model config", "bad batching", "ssl config with paths", "client_verify without CA",
    "unusable key", "missing ssl config", "bad channel arguments", "negative queue",
    "bad boolean", "port in use", "unknown flag", "dashed flag",
]


@pytest.mark.parametrize("case", STARTUP_CASES)
def test_bad_startup_input_exits_2_with_one_line(case, tmp_path_factory, toy_model, taken_port):
    tmp = tmp_path_factory.getbasetemp() / "startup"
    tmp.mkdir(exist_ok=True)
    needle, args = _startup_cases(tmp, toy_model, taken_port)[case]
    result = _run_serve(*args)
    lines = result.stderr.strip().splitlines()
    if case == "broken only version":  # found while loading: the load log comes first
        assert "retry 1 of 1" in result.stderr
        lines = lines[-1:]
    assert result.returncode == 2, (args, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert needle in lines[0], lines[0]


# ----------------------------------------------------------------------------------------------
# SIGTERM


@pytest.fixture
def slow_server(tmp_path, toy_model, request):
    """A server of the toy model as ``slow``; ``request.param`` is the grace period."""
    shutil.copytree(toy_model, tmp_path / "slow" / "1")
    args = [f"--shutdown_grace_seconds={request.param}", "--rest_api_timeout_in_ms=60000"]
    server = start_server(tmp_path / "slow", "slow", args, timeout=120)
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def _send_slow(server, seconds: float, results: dict) -> list[threading.Thread]:
    def over_grpc():
        stubs = Stubs(server.grpc_address)
        try:
            try:
                reply = stubs.predictions.Predict(slow_request(seconds), timeout=60)
                results["grpc"] = tf.make_ndarray(reply.outputs["waited"]).tolist()
            except grpc.RpcError as err:
                results["grpc"] = (err.code(), err.details())
        finally:
            stubs.close()

    def over_rest():
        reply = httpx.post(f"{server.rest_url}/v1/models/slow:predict",
                           json={"signature_name": "slow", "instances": [seconds]}, timeout=60)
        results["rest"] = (reply.status_code, reply.headers.get("content-type"), reply.json())

    threads = [threading.Thread(target=over_grpc), threading.Thread(target=over_rest)]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.parametrize("slow_server", [20], indirect=True)
def test_sigterm_lets_in_flight_requests_finish_then_exits_0(slow_server):
    results: dict[str, object] = {}
    threads = _send_slow(slow_server, 2.0, results)
    time.sleep(0.8)
    started = time.monotonic()
    slow_server.process.send_signal(signal.SIGTERM)
    code = slow_server.process.wait(60)
    for thread in threads:
        thread.join(5)
    assert code == 0, slow_server.log()[-2000:]
    assert time.monotonic() - started > 0.5  # it waited for the requests
    assert results["grpc"] == [1]
    assert results["rest"] == (200, "application/json", {"predictions": [1]})
    log = slow_server.log()
    assert "Received SIGTERM" in log and "Server stopped" in log
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", slow_server.rest_port)) != 0


@pytest.mark.parametrize("slow_server", [1], indirect=True)
def test_sigterm_past_the_grace_period_answers_unavailable(slow_server):
    """Requests still running when the grace period ends get UNAVAILABLE / a JSON 503, which
    clients retry elsewhere, not a dropped connection or a plain-text 500."""
    results: dict[str, object] = {}
    threads = _send_slow(slow_server, 8.0, results)
    time.sleep(0.8)
    started = time.monotonic()
    slow_server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(20)
    answered = time.monotonic() - started
    code = slow_server.process.wait(30)
    assert code == 0, slow_server.log()[-2000:]
    assert answered < 6, answered  # long before the 8 s requests would have finished
    assert results["grpc"][0] == grpc.StatusCode.UNAVAILABLE, results
    status, content_type, body = results["rest"]
    assert (status, content_type) == (503, "application/json"), results
    assert "shutting down" in body["error"]
    assert "answered UNAVAILABLE" in slow_server.log()


def _predict_in_flight(address: str, request, count: int, codes: list) -> list[threading.Thread]:
    def send():
        stubs = Stubs(address)
        try:
            stubs.predictions.Predict(request, timeout=120)
            codes.append("OK")
        except grpc.RpcError as err:
            codes.append(err.code().name)
        finally:
            stubs.close()

    threads = [threading.Thread(target=send) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_sigterm_under_load_exits_0_soon_after_server_stopped(tiny_export):
    """SIGTERM with a short grace period while 32 requests of 600 reviews run: requests whose
    model runs outlast it are answered UNAVAILABLE, and the process exits 0 right after "Server
    stopped", rather than tearing TensorFlow down under the runs still going (which crashed
    with SIGSEGV, or waited for them) or hanging. A few rounds: the crash was a race."""
    reviews = [f"review {i}: " + "a long and winding film, " * 20 for i in range(600)]
    request = predict_request(reviews)
    args = ["--shutdown_grace_seconds=1", "--max_instances_per_request=600",
            "--grpc_max_threads=32"]  # 4 per CPU on 8 CPUs: every request runs at once
    for round_ in range(3):
        server = start_server(tiny_export.parent, "tfsent", args, timeout=120)
        codes: list[str] = []
        try:
            threads = _predict_in_flight(server.grpc_address, request, 32, codes)
            time.sleep(1.0)  # the requests reach the model
            server.process.send_signal(signal.SIGTERM)
            stopped = None
            deadline = time.monotonic() + 120
            while server.process.poll() is None and time.monotonic() < deadline:
                if stopped is None and "Server stopped" in server.log():
                    stopped = time.monotonic()
                time.sleep(0.05)
            code = server.process.wait(1)
            exited = time.monotonic()
            for thread in threads:
                thread.join(30)
        finally:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()
        log = server.log()
        assert code == 0, (round_, code, log[-3000:])  # a signal would be negative
        assert "Grace period over" in log, log[-3000:]  # runs outlasted the grace period
        assert (stopped or exited) and exited - (stopped or exited) < 5, (round_, log[-3000:])
        assert "Server stopped" in log
        assert len(codes) == 32 and set(codes) <= {"OK", "UNAVAILABLE"}, codes
        shutil.rmtree(server.log_path.parent, ignore_errors=True)  # kept only on failure
