"""Serving latency and throughput: the model server over gRPC and REST, against in-process.

Serves an export (``--model-base-path``, default ``exported/tfsent``, as written by
``python -m benchmarks.accuracy``) with ``python -m tfsent.serve`` twice on loopback, server-side
batching off and on (``--enable_batching --batching_parameters_file serving/batching.config``),
and sends one review per request with ``tfsent.client.SentimentClient`` from 1, 8 and 32
threads (one client each), over gRPC and REST. The in-process call of the same SavedModel's
``serving_default`` signature on the same reviews, from as many threads, is the limit the server
is measured against: its overhead is the ratio of latencies (and of throughputs).

Every cell sends ``--requests`` requests (and stops at ``--cell-seconds``); cells alternate over
``--repeats`` rounds and the figures are medians over rounds. Clients and servers share the
machine's cores, as they would on one host.

    python -m benchmarks.serving                        # exported/tfsent, 320 requests a cell
    python -m benchmarks.serving --model-base-path exported/tfsent --concurrency 1 8
    python -m benchmarks.serving --quick                # a tiny export in a temporary folder
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from benchmarks.record import (
    REPO,
    Skipped,
    make_parser,
    markdown_table,
    number,
    parse_sized_args,
    report_skip,
    start_run,
    write_result,
)
from benchmarks.sources import resolve_data
from tfsent.errors import fail, run_cli
from tfsent.signatures import PROBABILITIES, SERVING_SIGNATURE, TEXT_INPUT
from tfsent.versions import existing_versions

NAME = "serving"
IN_PROCESS = "in-process"
PROTOCOLS = ("grpc", "rest")
BATCHING = {"off": False, "on": True}
DEFAULT_BATCHING_FILE = REPO / "serving" / "batching.config"
STARTUP_SECONDS = 300
DEFAULTS = {"requests": 320, "repeats": 3, "reviews": 256, "cell_seconds": 60.0}
QUICK = {"requests": 32, "repeats": 1, "reviews": 32, "cell_seconds": 20.0}


def parse_args(argv: Sequence[str] | None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", default="exported/tfsent",
                        help="Export to serve: the folder of integer versions (--quick: a tiny "
                        "export in a temporary folder).")
    parser.add_argument("--model-name", default="tfsent")
    parser.add_argument("--batching-parameters-file", default=str(DEFAULT_BATCHING_FILE))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32],
                        help="Client threads sending requests at once.")
    parser.add_argument("--requests", type=int, help="Requests per cell (default 320; 32 with "
                        "--quick).")
    parser.add_argument("--cell-seconds", type=float, help="Stop a cell after this long "
                        "(default 60; 20 with --quick).")
    parser.add_argument("--repeats", type=int, help="Rounds over all cells; medians are reported "
                        "(default 3; 1 with --quick).")
    parser.add_argument("--reviews", type=int, help="Distinct reviews sent, in turn (default 256; "
                        "32 with --quick).")
    parser.add_argument("--data", help="aclImdb tarball or folder, or 'demo' (default: the real "
                        "IMDB train tarball; demo with --quick when it is absent).")
    parser.add_argument("--seed", type=int, default=42)
    args = parse_sized_args(parser, argv, DEFAULTS, QUICK, ("requests", "repeats", "reviews"))
    if min(args.concurrency) < 1:
        fail("--concurrency values must be at least 1")
    return args


# --- the server -----------------------------------------------------------------------------


@contextlib.contextmanager
def running_servers(base_path: Path, model_name: str,
                    batching_file: str) -> Iterator[dict[str, Any]]:
    """Both servers (batching off and on) on free loopback ports, stopped (SIGTERM) on exit.

    Started with ``tfsent.model_server.process.start_server``, which waits until the model is
    AVAILABLE.
    """
    from tfsent.model_server.process import start_server

    with contextlib.ExitStack() as stack:
        servers = {}
        for key, on in BATCHING.items():
            extra = ["--file_system_poll_wait_seconds=0"]  # no polling during measurements
            if on:
                extra += ["--enable_batching", f"--batching_parameters_file={batching_file}"]
            servers[key] = stack.enter_context(
                start_server(base_path.resolve(), model_name, extra, timeout=STARTUP_SECONDS))
        yield servers


def server_address(server, protocol: str) -> str:
    return f"grpc://{server.grpc_address}" if protocol == "grpc" else server.rest_url


# --- measuring ------------------------------------------------------------------------------


def measure_cell(make_call: Callable[[], Callable[[str], Any]], texts: list[str],
                 concurrency: int, requests: int, seconds: float) -> dict[str, Any]:
    """``requests`` one-review requests from ``concurrency`` threads, each with its own caller
    (made and used once before the clock starts); latency percentiles and throughput."""
    callers = [make_call() for _ in range(concurrency)]
    for i, call in enumerate(callers):
        call(texts[i % len(texts)])  # connect, warm up
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    sent = iter(range(requests))
    deadline = time.perf_counter() + seconds

    def work(call: Callable[[str], Any]) -> None:
        while time.perf_counter() < deadline:
            with lock:
                i = next(sent, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                call(texts[i % len(texts)])
            except Exception as err:  # a failed request is counted, not fatal
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")
                continue
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(work, callers))
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": wall,
        "throughput_per_second": len(latencies) / wall if wall else None,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "mean_ms": float(ms.mean()) if len(ms) else None,
    }


def in_process_caller(base_path: Path) -> tuple[Callable[[], Callable[[str], Any]], int]:
    """Callers of the latest version's ``serving_default`` signature, loaded once here."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the export's tokenizer ops)

    versions = existing_versions(base_path)
    loaded = tf.saved_model.load(str(base_path / str(versions[-1])))
    signature = loaded.signatures[SERVING_SIGNATURE]

    def make() -> Callable[[str], Any]:
        return lambda text: signature(**{TEXT_INPUT: tf.constant([text])})[PROBABILITIES].numpy()

    make.loaded = loaded  # keeps the model alive as long as the callers
    return make, versions[-1]


def client_caller(address: str, model_name: str) -> Callable[[], Callable[[str], Any]]:
    from tfsent.client import SentimentClient

    def make() -> Callable[[str], Any]:
        client = SentimentClient(address, model_name=model_name, retries=0, timeout=60)
        return lambda text: client.predict([text])

    return make


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-round figures and their medians over rounds."""
    keys = ("throughput_per_second", "p50_ms", "p99_ms", "mean_ms")
    out: dict[str, Any] = {"rounds": rounds}
    for key in keys:
        values = [r[key] for r in rounds if r[key] is not None]
        out[key] = median(values) if values else None
    out["errors"] = sum(r["errors"] for r in rounds)
    out["first_error"] = next((r["first_error"] for r in rounds if r["first_error"]), None)
    return out


def overheads(results: dict[str, Any], concurrency: list[int]) -> dict[str, Any]:
    """Server over in-process: latency ratio (p50) and throughput ratio, per cell."""
    base = results[IN_PROCESS]
    out: dict[str, Any] = {}
    for batching in BATCHING:
        for protocol in PROTOCOLS:
            cells = results[f"batching_{batching}"][protocol]
            out[f"batching_{batching}/{protocol}"] = {
                str(c): {
                    "p50_latency_ratio": _ratio(cells[str(c)]["p50_ms"], base[str(c)]["p50_ms"]),
                    "throughput_ratio": _ratio(cells[str(c)]["throughput_per_second"],
                                               base[str(c)]["throughput_per_second"]),
                }
                for c in concurrency
            }
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def review_texts(args) -> tuple[str, list[str]]:
    """``--reviews`` raw reviews, as a client would send them."""
    from tfsent.config import DataConfig
    from tfsent.data import read_source

    data = resolve_data(args.data, args.quick)
    texts = read_source(data, DataConfig())["train"].texts
    chosen = np.random.default_rng(args.seed).choice(len(texts), min(args.reviews, len(texts)),
                                                     replace=False)
    return data, [texts[i] for i in sorted(chosen)]


def tiny_export(folder: Path, model_name: str) -> Path:
    """A tiny model exported for the smoke run (tests' run-dir builder + ``export_run``)."""
    from tfsent.export import export_run
    from tfsent.testing import make_tiny_run_dir

    run = make_tiny_run_dir(folder / "run", max_length=128)
    return export_run(run, folder / "exported", model_name).parent


def run_benchmark(args, base_path: Path, texts: list[str]) -> dict[str, Any]:
    make_in_process, version = in_process_caller(base_path)
    rounds: dict[str, dict[str, list]] = {}
    with running_servers(base_path, args.model_name, args.batching_parameters_file) as servers:
        targets: dict[str, Callable[[], Callable[[str], Any]]] = {IN_PROCESS: make_in_process}
        for batching, server in servers.items():
            for protocol in PROTOCOLS:
                targets[f"batching_{batching}/{protocol}"] = client_caller(
                    server_address(server, protocol), args.model_name)
        for repeat in range(args.repeats):
            for target, make in targets.items():
                for c in args.concurrency:
                    cell = measure_cell(make, texts, c, args.requests, args.cell_seconds)
                    rounds.setdefault(target, {}).setdefault(str(c), []).append(cell)
                    print(f"  round {repeat + 1}/{args.repeats} {target} x{c}: "
                          f"{number(cell['throughput_per_second'])} req/s, "
                          f"p50 {number(cell['p50_ms'])} ms", file=sys.stderr)
    results: dict[str, Any] = {IN_PROCESS: {c: medians(r) for c, r in rounds[IN_PROCESS].items()}}
    for batching in BATCHING:
        results[f"batching_{batching}"] = {
            protocol: {c: medians(r) for c, r in rounds[f"batching_{batching}/{protocol}"].items()}
            for protocol in PROTOCOLS
        }
    results["overhead"] = overheads(results, args.concurrency)
    results["version"] = version
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_run()
    if not Path(args.batching_parameters_file).is_file():
        fail(f"--batching-parameters-file {args.batching_parameters_file} does not exist")
    base_path = Path(args.model_base_path)
    if not (args.quick or existing_versions(base_path)):
        return report_skip(NAME, f"no export at {base_path}; run python -m benchmarks.accuracy "
                           "first (it exports to exported/tfsent), or pass --model-base-path")
    try:
        data, texts = review_texts(args)
    except Skipped as why:
        return report_skip(NAME, str(why))
    with tempfile.TemporaryDirectory(prefix="tfsent-serving-bench-") as tmp:
        if args.quick:
            base_path = tiny_export(Path(tmp), args.model_name)
        results = run_benchmark(args, base_path, texts)
    numbers = {
        "settings": {
            "data": data, "reviews": len(texts), "model_base_path": str(args.model_base_path)
            if not args.quick else "tiny export (temporary)", "model_name": args.model_name,
            "batching_parameters_file": args.batching_parameters_file,
            "concurrency": args.concurrency, "requests_per_cell": args.requests,
            "cell_seconds": args.cell_seconds, "repeats": args.repeats,
        },
        **results,
    }
    result = write_result(NAME, argv, args.quick, args.results_dir, numbers,
                          started=started)
    print(table(result))
    return 0


def table(result: dict[str, Any]) -> str:
    rows = []
    concurrency = result["settings"]["concurrency"]
    base = result[IN_PROCESS]
    for c in concurrency:
        cell = base[str(c)]
        rows.append([IN_PROCESS, "", c, number(cell["throughput_per_second"]),
                     number(cell["p50_ms"]), number(cell["p99_ms"]), "1.00x"])
    for batching in BATCHING:
        for protocol in PROTOCOLS:
            cells = result[f"batching_{batching}"][protocol]
            ratios = result["overhead"][f"batching_{batching}/{protocol}"]
            for c in concurrency:
                cell, ratio = cells[str(c)], ratios[str(c)]["p50_latency_ratio"]
                rows.append([protocol, batching, c, number(cell["throughput_per_second"]),
                             number(cell["p50_ms"]), number(cell["p99_ms"]),
                             "n/a" if ratio is None else f"{ratio:.2f}x"])
    return markdown_table(["path", "batching", "concurrency", "requests/s", "p50 ms", "p99 ms",
                           "p50 vs in-process"], rows)


if __name__ == "__main__":
    sys.exit(run_cli(main))
