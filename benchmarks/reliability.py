"""Reliability of the model server under load, hot swaps, half-written versions and bad requests.

Every cell runs ``python -m tfsent.serve`` on loopback (``tfsent.model_server.process``) over a
tiny export (``tfsent.tiny_run.make_tiny_run_dir`` + ``tfsent.export.export_run``: the server's own
work, not the model's, is what is measured):

- **load**: ``--requests`` REST then as many gRPC predict requests (one review each, raw
  ``tensorflow-serving-api`` stubs and ``httpx``, no client retries) from ``--concurrency``
  threads; failures counted, and the server's RSS (``/proc/<pid>/status``) sampled: the mean of
  the first thousand requests against the last thousand;
- **hot swap**: under gRPC + REST load, ``python -m tfsent.export`` writes version 2 (into a
  hidden folder, renamed into place), then version 1's folder is deleted; failures counted, and
  the time from the rename to the first answer by version 2;
- **half-written versions**: under load, a version folder whose ``saved_model.pb`` is cut short
  (a copy racing the poll), and an empty version folder filled later; each is served once
  complete (load retries every ``--load-retry-seconds``), the last good version meanwhile;
- **bad requests**: a corpus of REST and gRPC requests, each answered with its TF Serving code
  and followed by a good request that must succeed;
- **kill runs** (unless ``--skip-kill``): ``benchmarks.kill_runs.run_kill_cells``, SIGKILL of
  ``fit`` and ``export`` at chosen moments, when that module is present.

Long reviews (1 MB, 100 MB) through the server are ``benchmarks/long_reviews.py``'s.

    python -m benchmarks.reliability                 # 20,000 + 20,000 requests at 32, kill runs
    python -m benchmarks.reliability --quick         # 2,000 + 2,000, no kill runs
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.record import make_parser, markdown_table, number, parse_sized_args, write_result
from tfsent.errors import run_cli

NAME = "reliability"
DEFAULTS = {"requests": 20_000, "concurrency": 32}
QUICK = {"requests": 2_000, "concurrency": 32}
MODEL = "tfsent"
REVIEWS = [
    "A great film, I loved it.",
    "Dull and far too long. I wanted to leave.",
    "The acting was superb but the plot was thin.",
    "Not the best, not the worst: a film to watch once.",
]
MIB = 1024 * 1024
STARTUP_SECONDS = 300


def parse_args(argv):
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, help="Requests per protocol in the load cell "
                        "(default 20,000; 2,000 with --quick).")
    parser.add_argument("--concurrency", type=int, help="Client threads per protocol (32).")
    parser.add_argument("--swap-seconds", type=float, default=20.0,
                        help="Load kept up after the old version's folder is deleted.")
    parser.add_argument("--load-retry-seconds", type=float, default=2.0,
                        help="--load_retry_interval_micros of the half-written cell's server.")
    parser.add_argument("--skip-kill", action="store_true",
                        help="Leave out the fit/export SIGKILL cells (benchmarks.kill_runs).")
    parser.add_argument("--workdir", help="Where exports and servers' files go (default: a "
                        "temporary folder, deleted).")
    args = parse_sized_args(parser, argv, DEFAULTS, QUICK, ("requests", "concurrency"))
    if args.quick:
        args.skip_kill = True
    return args


# --- servers and clients --------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def tiny_export(folder: Path) -> tuple[Path, Path]:
    """A tiny run dir and its export: (run dir, model base path with version 1)."""
    from tfsent.export import export_run
    from tfsent.tiny_run import make_tiny_run_dir

    run = make_tiny_run_dir(folder / "run", max_length=128)
    version = export_run(run, folder / "exported", MODEL)
    return run, version.parent


class Clients:
    """Per-thread gRPC stubs and httpx clients, made on first use."""

    def __init__(self, grpc_address: str, rest_url: str) -> None:
        self.grpc_address, self.rest_url = grpc_address, rest_url
        self.local = threading.local()
        self.all: list[Any] = []
        self.lock = threading.Lock()

    def grpc(self) -> Any:
        if not hasattr(self.local, "grpc"):
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            channel = grpc.insecure_channel(self.grpc_address)
            self.local.grpc = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with self.lock:
                self.all.append(channel)
        return self.local.grpc

    def http(self) -> Any:
        if not hasattr(self.local, "http"):
            import httpx

            self.local.http = httpx.Client(base_url=self.rest_url, timeout=60)
            with self.lock:
                self.all.append(self.local.http)
        return self.local.http

    def close(self) -> None:
        for client in self.all:
            client.close()


def grpc_predict(clients: Clients, text: str) -> int:
    """One review over gRPC; the version that answered."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([text], dtype=tf.string))
    reply = clients.grpc().Predict(request, timeout=60)
    if len(reply.outputs["label"].string_val) != 1:
        raise RuntimeError("no label in the reply")
    return reply.model_spec.version.value


def rest_predict(clients: Clients, text: str) -> int:
    reply = clients.http().post(f"/v1/models/{MODEL}:predict", json={"instances": [text]})
    if reply.status_code != 200:
        raise RuntimeError(f"HTTP {reply.status_code}: {reply.text[:200]}")
    if len(reply.json()["predictions"]) != 1:
        raise RuntimeError("not one prediction")
    return 0


class Load:
    """Threads sending requests until stopped (or ``total`` are sent); failures kept."""

    def __init__(self, call: Callable[[str], int], threads: int, total: int | None = None,
                 on_answer: Callable[[int, int], None] | None = None) -> None:
        self.call, self.total, self.on_answer = call, total, on_answer
        self.sent = self.done = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.latencies: list[float] = []
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]

    def start(self) -> Load:
        self.started = time.perf_counter()
        for thread in self.threads:
            thread.start()
        return self

    def _work(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                if self.total is not None and self.sent >= self.total:
                    return
                index = self.sent
                self.sent += 1
            begin = time.perf_counter()
            try:
                version = self.call(REVIEWS[index % len(REVIEWS)])
            except Exception as err:  # counted, the load goes on
                with self.lock:
                    self.failures.append(f"{type(err).__name__}: {str(err)[:300]}")
                version = None
            with self.lock:
                self.done += 1
                self.latencies.append(time.perf_counter() - begin)
                done = self.done
            if version is not None and self.on_answer is not None:
                self.on_answer(done, version)

    def stop(self) -> dict[str, Any]:
        self.stopping.set()
        for thread in self.threads:
            thread.join(120)
        seconds = time.perf_counter() - self.started
        ms = sorted(1000 * x for x in self.latencies)
        return {
            "requests": self.done,
            "failures": len(self.failures),
            "first_failures": self.failures[:3],
            "seconds": seconds,
            "requests_per_second": self.done / seconds if seconds else None,
            "p50_ms": ms[len(ms) // 2] if ms else None,
            "p99_ms": ms[int(len(ms) * 0.99)] if ms else None,
        }


# --- cells ----------------------------------------------------------------------------------


def load_cell(base: Path, requests: int, concurrency: int) -> dict[str, Any]:
    from tfsent.model_server.process import start_server

    out: dict[str, Any] = {}
    with start_server(base, MODEL, timeout=STARTUP_SECONDS) as server:
        pid = server.process.pid
        clients = Clients(server.grpc_address, server.rest_url)
        out["rss_mib_at_start"] = rss_bytes(pid) / MIB
        for protocol, call in (("rest", rest_predict), ("grpc", grpc_predict)):
            samples: list[tuple[int, int]] = []
            lock = threading.Lock()

            def sample(done: int, _version: int, samples=samples, lock=lock) -> None:
                if done % 100 == 0:
                    with lock:
                        samples.append((done, rss_bytes(pid)))

            load = Load(lambda text, call=call: call(clients, text), concurrency, requests,
                        sample).start()
            for thread in load.threads:
                thread.join()
            cell = load.stop()
            first = [r for d, r in samples if d <= 1000]
            last = [r for d, r in samples if d > requests - 1000]
            cell["rss_mib_first_thousand"] = statistics.mean(first) / MIB if first else None
            cell["rss_mib_last_thousand"] = statistics.mean(last) / MIB if last else None
            if first and last:
                cell["rss_growth"] = statistics.mean(last) / statistics.mean(first) - 1
                cell["rss_flat_within_10_percent"] = abs(cell["rss_growth"]) <= 0.10
            cell["rss_samples_mib"] = [[d, round(r / MIB, 1)] for d, r in samples[::10]]
            out[protocol] = cell
            print(f"  load {protocol}: {cell['requests']} requests, {cell['failures']} failures, "
                  f"{number(cell['requests_per_second'])} req/s, RSS "
                  f"{number(cell.get('rss_mib_first_thousand'))} -> "
                  f"{number(cell.get('rss_mib_last_thousand'))} MiB", file=sys.stderr)
        clients.close()
    return out


def _export_version(run: Path, exported: Path) -> subprocess.CompletedProcess:
    from tfsent.model_server.process import server_env

    return subprocess.run(
        [sys.executable, "-m", "tfsent.export", "--run-dir", str(run), "--export-dir",
         str(exported), "--model-name", MODEL],
        env=server_env(), capture_output=True, text=True, timeout=900,
    )


def hot_swap_cell(run: Path, base: Path, concurrency: int, swap_seconds: float) -> dict[str, Any]:
    """Version 2 exported and version 1 deleted, both under load."""
    from tfsent.model_server.process import start_server

    with start_server(base, MODEL, timeout=STARTUP_SECONDS) as server:
        clients = Clients(server.grpc_address, server.rest_url)
        first_v2: list[float] = []

        def seen(_done: int, version: int) -> None:
            if version == 2 and not first_v2:
                first_v2.append(time.monotonic())

        threads = max(concurrency // 2, 1)
        grpc_load = Load(lambda t: grpc_predict(clients, t), threads, on_answer=seen).start()
        rest_load = Load(lambda t: rest_predict(clients, t), threads).start()
        time.sleep(3)
        renamed: list[float] = []

        def watch() -> None:
            while not renamed and not (base / "2").is_dir():
                time.sleep(0.005)
            renamed.append(time.monotonic())

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        export_started = time.monotonic()
        export = _export_version(run, base.parent)
        watcher.join(60)
        wait_until = time.monotonic() + 120
        while not first_v2 and time.monotonic() < wait_until:
            time.sleep(0.05)
        removed_at = time.monotonic()
        shutil.rmtree(base / "1")
        time.sleep(swap_seconds)
        cells = {"grpc": grpc_load.stop(), "rest": rest_load.stop()}
        clients.close()
        log = server.log()
    return {
        "export_exit_code": export.returncode,
        "export_seconds": (renamed[0] if renamed else time.monotonic()) - export_started,
        "rename_to_first_answer_by_v2_seconds": (first_v2[0] - renamed[0])
        if first_v2 and renamed else None,
        "load_after_v1_deleted_seconds": swap_seconds,
        "v1_unloaded": "Done unloading servable version {name: tfsent version: 1}" in log,
        "served_v2_after_v1_deleted": bool(first_v2) and first_v2[0] < removed_at,
        "failures": cells["grpc"]["failures"] + cells["rest"]["failures"],
        **cells,
    }


def half_written_cell(base: Path, retry_seconds: float, concurrency: int) -> dict[str, Any]:
    """Versions that appear before they are complete are served once complete."""
    from tfsent.model_server.process import start_server

    source = base / "1"
    extra = [f"--load_retry_interval_micros={int(retry_seconds * 1e6)}",
             "--max_num_load_retries=100"]
    results: dict[str, Any] = {}
    with start_server(base, MODEL, extra, timeout=STARTUP_SECONDS) as server:
        clients = Clients(server.grpc_address, server.rest_url)
        latest: list[int] = [1]
        answered: dict[int, float] = {}

        def seen(_done: int, version: int) -> None:
            if version not in answered:
                answered[version] = time.monotonic()
            latest[0] = max(latest[0], version)

        threads = max(concurrency // 4, 1)
        grpc_load = Load(lambda t: grpc_predict(clients, t), threads, on_answer=seen).start()
        rest_load = Load(lambda t: rest_predict(clients, t), threads).start()
        for version, how in ((2, "truncated saved_model.pb"), (3, "empty folder, filled later")):
            target = base / str(version)
            if how.startswith("truncated"):
                shutil.copytree(source, target)
                data = (source / "saved_model.pb").read_bytes()
                (target / "saved_model.pb").write_bytes(data[: len(data) // 2])
            else:
                target.mkdir()
            time.sleep(3 * retry_seconds)  # several failed attempts
            still_previous = latest[0] == version - 1
            if how.startswith("truncated"):
                shutil.copy2(source / "saved_model.pb", target / "saved_model.pb")
            else:
                shutil.rmtree(target)
                shutil.copytree(source, target)
            completed = time.monotonic()
            end = completed + 10 * retry_seconds + 30
            while version not in answered and time.monotonic() < end:
                time.sleep(0.05)
            results[f"version_{version}"] = {
                "how": how,
                "previous_version_served_while_incomplete": still_previous,
                "served_once_complete": version in answered,
                "complete_to_first_answer_seconds": answered[version] - completed
                if version in answered else None,
            }
        cells = {"grpc": grpc_load.stop(), "rest": rest_load.stop()}
        clients.close()
        log = server.log()
    results["failed_load_attempts_logged"] = log.count("failed:")
    results["failures"] = cells["grpc"]["failures"] + cells["rest"]["failures"]
    results.update(cells)
    return results


def _grpc_bad_requests() -> list[tuple[str, str, Any, str]]:
    """(case, method, request, expected code)."""
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

    def predict(texts=("ok",), name=MODEL, version=None, label=None, signature="", dtype=None):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        if label is not None:
            request.model_spec.version_label = label
        request.inputs["text"].CopyFrom(
            tf.make_tensor_proto(list(texts), dtype=dtype or tf.string))
        return request

    def ids(width: int, name: str = "input_ids") -> Any:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.model_spec.signature_name = "token_ids"
        value = np.ones((1, width), np.int64)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            request.inputs[name if key == "input_ids" else key].CopyFrom(
                tf.make_tensor_proto(value))
        return request

    wrong_name = predict()
    wrong_name.inputs["txt"].CopyFrom(wrong_name.inputs.pop("text"))
    extra = predict()
    extra.inputs["more"].CopyFrom(tf.make_tensor_proto([1]))
    bad_filter = predict()
    bad_filter.output_filter.append("nope")
    twice = predict()
    twice.output_filter.extend(["label", "label"])
    corrupt = predict()
    corrupt.inputs["text"].CopyFrom(tf.make_tensor_proto(np.zeros(3, np.float32)))
    corrupt.inputs["text"].tensor_content = b"12345"
    scalar = predict()
    scalar.inputs["text"].CopyFrom(tf.make_tensor_proto("ok"))
    matrix = predict()
    matrix.inputs["text"].CopyFrom(tf.make_tensor_proto([["a", "b"]]))
    no_spec = predict_pb2.PredictRequest()
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = MODEL
    bad_field = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["nope"])
    bad_field.model_spec.name = MODEL
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = MODEL
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = MODEL
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "nope"
    reload = model_management_pb2.ReloadConfigRequest()
    reload.config.model_config_list.config.add(name="x", base_path="/etc")
    return [
        ("unknown model", "Predict", predict(name="nope"), "NOT_FOUND"),
        ("no model name", "Predict", predict(name=""), "INVALID_ARGUMENT"),
        ("no model spec", "Predict", no_spec, "INVALID_ARGUMENT"),
        ("unknown version", "Predict", predict(version=7), "NOT_FOUND"),
        ("unknown label", "Predict", predict(label="nope"), "INVALID_ARGUMENT"),
        ("unknown signature", "Predict", predict(signature="nope"), "FAILED_PRECONDITION"),
        ("wrong input name", "Predict", wrong_name, "INVALID_ARGUMENT"),
        ("wrong dtype", "Predict", predict(texts=[1.5], dtype=tf.float32), "INVALID_ARGUMENT"),
        ("extra input", "Predict", extra, "INVALID_ARGUMENT"),
        ("unknown output", "Predict", bad_filter, "INVALID_ARGUMENT"),
        ("output twice", "Predict", twice, "INVALID_ARGUMENT"),
        ("corrupt tensor", "Predict", corrupt, "INVALID_ARGUMENT"),
        ("scalar input", "Predict", scalar, "INVALID_ARGUMENT"),
        ("matrix input", "Predict", matrix, "INVALID_ARGUMENT"),
        ("257 instances", "Predict", predict(texts=["ok"] * 257), "INVALID_ARGUMENT"),
        ("9 MB message", "Predict", predict(texts=["x" * 9 * MIB]), "RESOURCE_EXHAUSTED"),
        ("token ids 5,000 wide", "Predict", ids(5000), "INVALID_ARGUMENT"),
        ("token ids misnamed", "Predict", ids(4, "ids"), "INVALID_ARGUMENT"),
        ("metadata without field", "GetModelMetadata", metadata, "INVALID_ARGUMENT"),
        ("metadata unknown field", "GetModelMetadata", bad_field, "INVALID_ARGUMENT"),
        ("classify", "Classify", classify, "INVALID_ARGUMENT"),
        ("regress", "Regress", regress, "INVALID_ARGUMENT"),
        ("status of unknown model", "GetModelStatus", status, "NOT_FOUND"),
        ("reload config (not allowed)", "HandleReloadConfigRequest", reload,
         "PERMISSION_DENIED"),
    ]


def _rest_bad_requests() -> list[tuple[str, str, str, bytes | None, int]]:
    """(case, method, path, body, expected HTTP status)."""
    p = f"/v1/models/{MODEL}:predict"

    def j(value: Any) -> bytes:
        return json.dumps(value).encode()

    return [
        ("unknown model", "POST", "/v1/models/nope:predict", j({"instances": ["ok"]}), 404),
        ("unknown version", "POST", f"/v1/models/{MODEL}/versions/7:predict",
         j({"instances": ["ok"]}), 404),
        ("unknown label", "POST", f"/v1/models/{MODEL}/labels/x:predict",
         j({"instances": ["ok"]}), 400),
        ("version past int64", "POST", f"/v1/models/{MODEL}/versions/99999999999999999999:predict",
         j({"instances": ["ok"]}), 400),
        ("status of unknown model", "GET", "/v1/models/nope", None, 404),
        ("no model name", "GET", "/v1/models", None, 400),
        ("predict with GET", "GET", p, None, 400),
        ("status with POST", "POST", f"/v1/models/{MODEL}", j({}), 400),
        ("unknown route", "GET", "/v1/nothing", None, 400),
        ("outside /v1", "GET", "/nothing", None, 404),
        ("empty body", "POST", p, b"", 400),
        ("not json", "POST", p, b"{not json", 400),
        ("not an object", "POST", p, b"[1]", 400),
        ("not utf-8", "POST", p, b'{"instances": ["\xff"]}', 400),
        ("lone surrogate", "POST", p, b'{"instances": ["\\ud800"]}', 400),
        ("100,000-deep nesting", "POST", p, b"[" * 100_000 + b"]" * 100_000, 400),
        ("500-deep instance", "POST", p, b'{"instances": ' + b"[" * 500 + b'"a"' + b"]" * 500
         + b"}", 400),
        ("4,400-digit number", "POST", p, b'{"instances": [1' + b"0" * 4400 + b"]}", 400),
        ("unknown signature", "POST", p, j({"signature_name": "x", "instances": ["ok"]}), 400),
        ("signature name a number", "POST", p, j({"signature_name": 1, "instances": ["ok"]}), 400),
        ("no inputs", "POST", p, j({}), 400),
        ("both formats", "POST", p, j({"instances": ["a"], "inputs": ["a"]}), 400),
        ("empty instances", "POST", p, j({"instances": []}), 400),
        ("instances a string", "POST", p, j({"instances": "ok"}), 400),
        ("number for text", "POST", p, j({"instances": [1.5]}), 400),
        ("null for text", "POST", p, j({"instances": [None]}), 400),
        ("wrong input name", "POST", p, j({"instances": [{"txt": "ok"}]}), 400),
        ("missing columnar input", "POST", p, j({"inputs": {"txt": ["ok"]}}), 400),
        ("bad base64", "POST", p, j({"instances": [{"text": {"b64": "%%%"}}]}), 400),
        ("ragged instances", "POST", p, j({"instances": [["a", "b"], ["c"]]}), 400),
        ("257 instances", "POST", p, j({"instances": ["ok"] * 257}), 400),
        ("300 columnar rows", "POST", p, j({"inputs": {"text": ["ok"] * 300}}), 400),
        ("9 MB body", "POST", p, j({"instances": ["x" * 9 * MIB]}), 413),
        ("token ids 5,000 wide", "POST", p, j({"signature_name": "token_ids", "inputs": {
            "input_ids": [[2] * 5000], "attention_mask": [[1] * 5000],
            "token_type_ids": [[0] * 5000]}}), 400),
        ("token ids as floats", "POST", p, j({"signature_name": "token_ids", "inputs": {
            "input_ids": [[2.5]], "attention_mask": [[1]], "token_type_ids": [[0]]}}), 400),
        ("token id past int64", "POST", p, j({"signature_name": "token_ids", "inputs": {
            "input_ids": [[2**64]], "attention_mask": [[1]], "token_type_ids": [[0]]}}), 400),
        ("classify", "POST", f"/v1/models/{MODEL}:classify", j({"examples": [{}]}), 400),
        ("regress", "POST", f"/v1/models/{MODEL}:regress", j({"examples": [{}]}), 400),
    ]


def bad_request_cell(base: Path) -> dict[str, Any]:
    import grpc
    import httpx
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    from tfsent.model_server.process import start_server

    cases: list[dict[str, Any]] = []
    with start_server(base, MODEL, timeout=STARTUP_SECONDS) as server:
        clients = Clients(server.grpc_address, server.rest_url)
        channel = grpc.insecure_channel(server.grpc_address)
        stubs = {"PredictionService": prediction_service_pb2_grpc.PredictionServiceStub(channel),
                 "ModelService": model_service_pb2_grpc.ModelServiceStub(channel)}
        http = httpx.Client(base_url=server.rest_url, timeout=60)

        def good(protocol: str) -> bool:
            try:
                if protocol == "grpc":
                    return grpc_predict(clients, "a good request") >= 1
                return rest_predict(clients, "a good request") == 0
            except Exception:
                return False

        for case, method, request, expected in _grpc_bad_requests():
            service = "ModelService" if method in (
                "GetModelStatus", "HandleReloadConfigRequest") else "PredictionService"
            began = time.perf_counter()
            try:
                getattr(stubs[service], method)(request, timeout=60)
                code, message = "OK", ""
            except grpc.RpcError as err:
                code, message = err.code().name, err.details() or ""
            cases.append({"protocol": "grpc", "case": case, "expected": expected, "got": code,
                          "message": message[:160], "ms": 1000 * (time.perf_counter() - began),
                          "good_request_after": good("grpc")})
        for case, method, path, body, expected in _rest_bad_requests():
            began = time.perf_counter()
            reply = http.request(method, path, content=body)
            try:
                message = reply.json().get("error", "")
                is_json = True
            except ValueError:
                message, is_json = reply.text, False
            cases.append({"protocol": "rest", "case": case, "expected": expected,
                          "got": reply.status_code, "json": is_json, "message": message[:160],
                          "ms": 1000 * (time.perf_counter() - began),
                          "good_request_after": good("rest")})
        http.close()
        channel.close()
        clients.close()
        alive = server.process.poll() is None
    return {
        "cases": cases,
        "count": {"grpc": sum(c["protocol"] == "grpc" for c in cases),
                  "rest": sum(c["protocol"] == "rest" for c in cases)},
        "as_expected": sum(c["got"] == c["expected"] for c in cases),
        "good_after_each": sum(c["good_request_after"] for c in cases),
        "all_rest_errors_json": all(c.get("json", True) for c in cases),
        "slowest_ms": max(c["ms"] for c in cases),
        "server_alive_after": alive,
    }


def kill_cells(workdir: Path) -> dict[str, Any]:
    try:
        from benchmarks.kill_runs import run_kill_cells
    except ImportError as err:
        return {"skipped": f"benchmarks.kill_runs is not available ({err})"}
    return run_kill_cells(workdir / "kill_runs")


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep = args.workdir is not None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tfsent-reliability-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        print("exporting the tiny model...", file=sys.stderr)
        run, base = tiny_export(workdir / "tiny")
        cells: dict[str, Any] = {}
        cells["load"] = load_cell(base, args.requests, args.concurrency)
        print("hot swap...", file=sys.stderr)
        swap_base = workdir / "swap" / "exported" / MODEL
        shutil.copytree(base, swap_base)
        cells["hot_swap"] = hot_swap_cell(run, swap_base, args.concurrency, args.swap_seconds)
        print("half-written versions...", file=sys.stderr)
        half_base = workdir / "half" / MODEL
        shutil.copytree(base, half_base)
        cells["half_written"] = half_written_cell(half_base, args.load_retry_seconds,
                                                  args.concurrency)
        print("bad requests...", file=sys.stderr)
        cells["bad_requests"] = bad_request_cell(base)
        if not args.skip_kill:
            print("kill runs (about 10 minutes)...", file=sys.stderr)
            cells["kill_runs"] = kill_cells(workdir)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    numbers = {
        "settings": {
            "requests_per_protocol": args.requests,
            "concurrency": args.concurrency,
            "model": "tiny config-built BERT (tfsent.tiny_run), exported with tfsent.export",
            "server": "python -m tfsent.serve, default flags unless a cell says otherwise",
            "client_retries": 0,
            "shared_machine": f"{os.cpu_count()} cores, shared with other jobs during the run "
            "(clients, server and other work on the same cores)",
            "long_reviews": "benchmarks/long_reviews.py",
        },
        "seconds": time.perf_counter() - started,
        **cells,
    }
    result = write_result(NAME, argv, args.quick, args.results_dir, numbers)
    print(table(result))
    return 0


def table(result: dict[str, Any]) -> str:
    rows = []
    load = result["load"]
    for protocol in ("rest", "grpc"):
        cell = load[protocol]
        growth = cell.get("rss_growth")
        rows.append([
            f"load, {protocol.upper() if protocol == 'rest' else 'gRPC'}",
            f"{cell['requests']:,} requests at concurrency {result['settings']['concurrency']}, "
            f"{number(cell['requests_per_second'])} req/s",
            cell["failures"],
            f"RSS {number(cell.get('rss_mib_first_thousand'))} -> "
            f"{number(cell.get('rss_mib_last_thousand'))} MiB "
            f"({'n/a' if growth is None else f'{100 * growth:+.1f}%'})",
        ])
    swap = result["hot_swap"]
    first = swap["rename_to_first_answer_by_v2_seconds"]
    rows.append([
        "hot swap under load",
        "version 2 exported, then version 1's folder deleted",
        swap["failures"],
        f"first answer by v2 {number(first, 2)} s after its rename; v1 unloaded: "
        f"{'yes' if swap['v1_unloaded'] else 'no'}",
    ])
    half = result["half_written"]
    for key in ("version_2", "version_3"):
        cell = half[key]
        rows.append([
            "half-written version" if key == "version_2" else "empty version folder",
            cell["how"],
            half["failures"] if key == "version_2" else "",
            f"served {number(cell['complete_to_first_answer_seconds'], 2)} s after completion; "
            f"previous version meanwhile: "
            f"{'yes' if cell['previous_version_served_while_incomplete'] else 'no'}",
        ])
    bad = result["bad_requests"]
    total = bad["count"]["grpc"] + bad["count"]["rest"]
    rows.append([
        "bad requests",
        f"{bad['count']['rest']} REST + {bad['count']['grpc']} gRPC cases",
        total - bad["as_expected"],
        f"{bad['as_expected']}/{total} with TF Serving's code, good request after each: "
        f"{bad['good_after_each']}/{total}, slowest {number(bad['slowest_ms'])} ms",
    ])
    kill = result.get("kill_runs")
    if isinstance(kill, dict) and "cells" in kill:
        rows.append(["SIGKILL of fit / export", f"{kill['cells']} moments (benchmarks.kill_runs)",
                     kill["cells"] - kill["passed"],
                     f"{kill['passed']}/{kill['cells']} cells recover on rerun"])
    return markdown_table(["cell", "what", "failures", "result"], rows)


if __name__ == "__main__":
    sys.exit(run_cli(main))
