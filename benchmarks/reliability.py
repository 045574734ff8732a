"""Reliability of the model server under load, hot swaps, half-written versions and bad requests.

Every cell talks to ``python -m tfsent.serve`` on loopback (``tfsent.model_server.process``;
one server for the load and the bad requests, one with load retries for the hot swap and then
the half-written versions) over a tiny export (``tfsent.testing.make_tiny_run_dir`` +
``tfsent.export.export_run``: the server's own work, not the model's, is what is measured):

- **load**: ``--requests`` REST then as many gRPC predict requests (one review each, raw
  ``tensorflow-serving-api`` stubs and ``httpx``, no client retries) from ``--concurrency``
  threads; failures counted, and the server's RSS (``/proc/<pid>/status``) sampled: the mean of
  the first thousand requests against the last thousand;
- **hot swap**: under gRPC + REST load, ``python -m tfsent.export`` writes version 2 (into a
  hidden folder, renamed into place), then version 1's folder is deleted; failures counted, the
  time from the rename to the first answer by version 2, and the versions that answered after
  the deletion;
- **half-written versions**: under load, a version folder whose ``saved_model.pb`` is cut short
  (a copy racing the poll), and an empty version folder filled later; each must be served once
  complete (load retries every ``--load-retry-seconds``), and meanwhile every answer must come
  from the version before it (recorded with how many answers there were);
- **bad requests**: the corpus of ``benchmarks.bad_requests`` over REST and gRPC, each answered
  with its expected code (TF Serving's own, or, for the cases marked ``tfsent_only``, that of a
  limit of tfsent's) and followed by a good request that must succeed;
- **kill runs** (unless ``--skip-kill``): ``benchmarks.kill_runs.run_kill_cells``, SIGKILL of
  ``fit`` and ``export`` at chosen moments.

Long reviews (1 MB, 100 MB) through the server are ``benchmarks/long_reviews.py``'s.

    python -m benchmarks.reliability                 # 20,000 + 20,000 requests at 32, kill runs
    python -m benchmarks.reliability --quick         # 200 + 200 at 8, short cells, no kill runs
"""

from __future__ import annotations

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

from benchmarks.bad_requests import grpc_cases, rest_cases
from benchmarks.kill_runs import run_kill_cells
from benchmarks.record import (
    make_parser,
    markdown_table,
    number,
    parse_sized_args,
    start_run,
    write_result,
)
from tfsent.errors import run_cli

NAME = "reliability"
DEFAULTS = {"requests": 20_000, "concurrency": 32, "swap_seconds": 20.0,
            "load_retry_seconds": 2.0}
QUICK = {"requests": 200, "concurrency": 8, "swap_seconds": 2.0, "load_retry_seconds": 0.5}
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
                        "(default 20,000; 200 with --quick).")
    parser.add_argument("--concurrency", type=int, help="Client threads per protocol (default "
                        "32; 8 with --quick).")
    parser.add_argument("--swap-seconds", type=float, help="Load kept up after the old "
                        "version's folder is deleted (default 20; 2 with --quick).")
    parser.add_argument("--load-retry-seconds", type=float, help="--load_retry_interval_micros "
                        "of the half-written cell's server (default 2; 0.5 with --quick).")
    parser.add_argument("--skip-kill", action="store_true",
                        help="Leave out the fit/export SIGKILL cells (benchmarks.kill_runs).")
    parser.add_argument("--workdir", help="Where exports and servers' files go (default: a "
                        "temporary folder, deleted).")
    args = parse_sized_args(parser, argv, DEFAULTS, QUICK, ("requests", "concurrency"))
    if args.swap_seconds < 0 or args.load_retry_seconds <= 0:
        parser.error("--swap-seconds must be at least 0 and --load-retry-seconds above 0")
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
    from tfsent.testing import make_tiny_run_dir

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


class Answers:
    """When each answer came and which version gave it (gRPC replies name their version)."""

    def __init__(self) -> None:
        self.log: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    def add(self, _done: int, version: int) -> None:
        with self.lock:
            self.log.append((time.monotonic(), version))

    def first(self, version: int) -> float | None:
        """When ``version`` first answered (None: not yet)."""
        with self.lock:
            return next((t for t, v in self.log if v == version), None)

    def versions(self, start: float, end: float) -> list[int]:
        """The versions that answered between ``start`` and ``end``, in order."""
        with self.lock:
            return [v for t, v in self.log if start <= t <= end]


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


def load_cell(server: Any, requests: int, concurrency: int) -> dict[str, Any]:
    """``requests`` REST then gRPC requests from ``concurrency`` threads; the server's RSS."""
    pid = server.process.pid
    clients = Clients(server.grpc_address, server.rest_url)
    out: dict[str, Any] = {"rss_mib_at_start": rss_bytes(pid) / MIB}
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


def hot_swap_cell(server: Any, run: Path, base: Path, concurrency: int,
                  swap_seconds: float) -> dict[str, Any]:
    """Version 2 exported next to version 1, then version 1's folder deleted, under load."""
    clients = Clients(server.grpc_address, server.rest_url)
    answers = Answers()
    threads = max(concurrency // 2, 1)
    grpc_load = Load(lambda t: grpc_predict(clients, t), threads, on_answer=answers.add).start()
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
    while answers.first(2) is None and time.monotonic() < wait_until:
        time.sleep(0.05)
    removed_at = time.monotonic()
    shutil.rmtree(base / "1")
    time.sleep(swap_seconds)
    cells = {"grpc": grpc_load.stop(), "rest": rest_load.stop()}
    clients.close()
    first_v2 = answers.first(2)
    after = answers.versions(removed_at, time.monotonic())
    return {
        "export_exit_code": export.returncode,
        "export_seconds": (renamed[0] if renamed else time.monotonic()) - export_started,
        "rename_to_first_answer_by_v2_seconds": first_v2 - renamed[0]
        if first_v2 is not None and renamed else None,
        "load_after_v1_deleted_seconds": swap_seconds,
        "v1_unloaded": "Done unloading servable version {name: tfsent version: 1}"
        in server.log(),
        "grpc_answers_after_v1_deleted": len(after),
        "served_v2_after_v1_deleted": 2 in after,
        "only_v2_after_v1_deleted": bool(after) and set(after) == {2},
        "failures": cells["grpc"]["failures"] + cells["rest"]["failures"],
        **cells,
    }


HALF_WRITTEN = (("truncated", "truncated saved_model.pb"),
                ("empty", "empty folder, filled later"))


def half_written_cell(server: Any, base: Path, retry_seconds: float,
                      concurrency: int) -> dict[str, Any]:
    """Versions that appear before they are complete (after the newest complete one, which
    they copy) are served once complete, and the version before them meanwhile."""
    newest = max(int(p.name) for p in base.iterdir() if p.name.isdigit())
    source = base / str(newest)
    results: dict[str, Any] = {}
    clients = Clients(server.grpc_address, server.rest_url)
    answers = Answers()
    threads = max(concurrency // 4, 1)
    grpc_load = Load(lambda t: grpc_predict(clients, t), threads, on_answer=answers.add).start()
    rest_load = Load(lambda t: rest_predict(clients, t), threads).start()
    failed_loads = server.log().count("failed:")
    for version, (key, how) in enumerate(HALF_WRITTEN, start=newest + 1):
        target = base / str(version)
        appeared = time.monotonic()
        if key == "truncated":
            shutil.copytree(source, target)
            data = (source / "saved_model.pb").read_bytes()
            (target / "saved_model.pb").write_bytes(data[: len(data) // 2])
        else:
            target.mkdir()
        time.sleep(3 * retry_seconds)  # several failed attempts
        meanwhile = answers.versions(appeared, time.monotonic())
        if key == "truncated":
            shutil.copy2(source / "saved_model.pb", target / "saved_model.pb")
        else:
            shutil.rmtree(target)
            shutil.copytree(source, target)
        completed = time.monotonic()
        end = completed + 10 * retry_seconds + 30
        while answers.first(version) is None and time.monotonic() < end:
            time.sleep(0.05)
        first = answers.first(version)
        results[key] = {
            "version": version,
            "how": how,
            "grpc_answers_while_incomplete": len(meanwhile),
            # Answered, and only by the last complete version.
            "previous_version_served_while_incomplete": bool(meanwhile)
            and set(meanwhile) == {version - 1},
            "served_once_complete": first is not None,
            "complete_to_first_answer_seconds": None if first is None else first - completed,
        }
    cells = {"grpc": grpc_load.stop(), "rest": rest_load.stop()}
    clients.close()
    results["failed_load_attempts_logged"] = server.log().count("failed:") - failed_loads
    results["failures"] = cells["grpc"]["failures"] + cells["rest"]["failures"]
    results.update(cells)
    return results


def bad_request_cell(server: Any) -> dict[str, Any]:
    """Every case of ``benchmarks.bad_requests``, each followed by a good request."""
    import grpc
    import httpx
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    cases: list[dict[str, Any]] = []
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

    for bad in grpc_cases(MODEL):
        began = time.perf_counter()
        try:
            getattr(stubs[bad.service], bad.method)(bad.request, timeout=60)
            code, message = "OK", ""
        except grpc.RpcError as err:
            code, message = err.code().name, err.details() or ""
        cases.append({"protocol": "grpc", "case": bad.case, "expected": bad.code,
                      "got": code, "expected_message": bad.message, "message": message,
                      "tfsent_only": bad.tfsent_only or None,
                      "ms": 1000 * (time.perf_counter() - began),
                      "good_request_after": good("grpc")})
    for bad in rest_cases(MODEL):
        began = time.perf_counter()
        reply = http.request(bad.method, bad.path, content=bad.body)
        try:
            message = reply.json().get("error", "")
            is_json = True
        except ValueError:
            message, is_json = reply.text, False
        cases.append({"protocol": "rest", "case": bad.case, "expected": bad.status,
                      "got": reply.status_code, "expected_message": bad.message,
                      "json": is_json, "message": message,
                      "tfsent_only": bad.tfsent_only or None,
                      "ms": 1000 * (time.perf_counter() - began),
                      "good_request_after": good("rest")})
    http.close()
    channel.close()
    clients.close()
    alive = server.process.poll() is None
    for case in cases:
        case["as_expected"] = (case["got"] == case["expected"]
                               and case["message"].startswith(case["expected_message"]))
        case["message"] = case["message"][:160]

    def tally(group: list[dict[str, Any]]) -> dict[str, int]:
        return {"cases": len(group), "as_expected": sum(c["as_expected"] for c in group)}

    return {
        "cases": cases,
        "count": {"grpc": sum(c["protocol"] == "grpc" for c in cases),
                  "rest": sum(c["protocol"] == "rest" for c in cases)},
        "as_expected": sum(c["as_expected"] for c in cases),
        # The code TF Serving answers too, against the limits only tfsent has.
        "tf_serving_behaviour": tally([c for c in cases if not c["tfsent_only"]]),
        "tfsent_only_limits": tally([c for c in cases if c["tfsent_only"]]),
        "good_after_each": sum(c["good_request_after"] for c in cases),
        "all_rest_errors_json": all(c.get("json", True) for c in cases),
        "slowest_ms": max(c["ms"] for c in cases),
        "server_alive_after": alive,
    }


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from tfsent.model_server.process import start_server

    args = parse_args(argv)
    started = start_run()
    keep = args.workdir is not None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tfsent-reliability-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    try:
        print("exporting the tiny model...", file=sys.stderr)
        run, base = tiny_export(workdir / "tiny")
        cells: dict[str, Any] = {}
        with start_server(base, MODEL, timeout=STARTUP_SECONDS) as server:
            cells["sustained_load"] = load_cell(server, args.requests, args.concurrency)
            print("bad requests...", file=sys.stderr)
            cells["bad_requests"] = bad_request_cell(server)
        swap_base = workdir / "swap" / "exported" / MODEL
        shutil.copytree(base, swap_base)
        retries = [f"--load_retry_interval_micros={int(args.load_retry_seconds * 1e6)}",
                   "--max_num_load_retries=100"]
        with start_server(swap_base, MODEL, retries, timeout=STARTUP_SECONDS) as server:
            print("hot swap...", file=sys.stderr)
            cells["hot_swap"] = hot_swap_cell(server, run, swap_base, args.concurrency,
                                              args.swap_seconds)
            print("half-written versions...", file=sys.stderr)
            cells["half_written"] = half_written_cell(server, swap_base,
                                                      args.load_retry_seconds, args.concurrency)
        if not args.skip_kill:
            print("kill runs (about 10 minutes)...", file=sys.stderr)
            cells["kill_runs"] = run_kill_cells(workdir / "kill_runs")
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    numbers = {
        "settings": {
            "requests_per_protocol": args.requests,
            "concurrency": args.concurrency,
            "model": "tiny config-built BERT (tfsent.testing), exported with tfsent.export",
            "server": "python -m tfsent.serve: default flags for the load and the bad requests; "
            "load retries every load_retry_seconds for the hot swap and the half-written "
            "versions",
            "client_retries": 0,
            "swap_seconds": args.swap_seconds,
            "load_retry_seconds": args.load_retry_seconds,
            "long_reviews": "benchmarks/long_reviews.py",
        },
        "seconds": time.perf_counter() - began,
        **cells,
    }
    result = write_result(NAME, argv, args.quick, args.results_dir, numbers,
                          started=started)
    print(table(result))
    return 0


def bad_request_summary(bad: dict[str, Any]) -> str:
    """``54/54 answered as TF Serving answers them, 8/8 at tfsent's own limits`` (results from
    before the corpus marked tfsent's limits: how many got their expected code)."""
    ours, theirs = bad.get("tfsent_only_limits"), bad.get("tf_serving_behaviour")
    if ours is None or theirs is None:
        total = bad["count"]["grpc"] + bad["count"]["rest"]
        return f"{bad['as_expected']}/{total} with the expected code"
    return (f"{theirs['as_expected']}/{theirs['cases']} answered as TF Serving answers them, "
            f"{ours['as_expected']}/{ours['cases']} at limits of tfsent's own")


def sustained_load(result: dict[str, Any]) -> dict[str, Any]:
    """The load cell's record (``load`` before every result recorded the machine's load)."""
    return result["sustained_load"] if "sustained_load" in result else result["load"]


def table(result: dict[str, Any]) -> str:
    rows = []
    load = sustained_load(result)
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
    # Keyed by version number before the hot swap and the half-written versions shared a server.
    for key, old_key in (("truncated", "version_2"), ("empty", "version_3")):
        cell = half[key] if key in half else half[old_key]
        rows.append([
            "half-written version" if key == "truncated" else "empty version folder",
            cell["how"],
            half["failures"] if key == "truncated" else "",
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
        f"{bad_request_summary(bad)}; good request after each: {bad['good_after_each']}/{total}, "
        f"slowest {number(bad['slowest_ms'])} ms",
    ])
    kill = result.get("kill_runs")
    if isinstance(kill, dict) and "cells" in kill:
        rows.append(["SIGKILL of fit / export", f"{kill['cells']} moments (benchmarks.kill_runs)",
                     kill["cells"] - kill["passed"],
                     f"{kill['passed']}/{kill['cells']} cells recover on rerun"])
    return markdown_table(["cell", "what", "failures", "result"], rows)


if __name__ == "__main__":
    sys.exit(run_cli(main))
