"""Long reviews: time and peak memory of a 1 MB and a 100 MB review against an ordinary one.

The serving graph used to normalize and WordPiece-tokenize a whole text before cutting its ids
to ``max_length``: one 100 MB review took 37 s and raised a server's RSS from 1.1 to 5.7 GB. It
now reads only the ends of a long text (``GraphTokenizer.trim``). For each review this measures:

- **in-process**: the export's ``serving_default`` signature called on that one review, in a
  fresh process per review (model loaded, input tensor built, the kernel's peak-RSS mark reset
  first): median wall time over ``--repeats`` calls after a first one, and the peak resident
  memory the calls add;
- **gRPC / REST**: one request of that one review to ``python -m tfsent.serve`` on loopback
  (its request-size limits off, as TF Serving's 2 GB gRPC limit would let it through): median
  round trip (client serialization included) and the server's peak RSS above its RSS before.

The ordinary review is the median-length real review; the long ones are real reviews joined
until they are 1 MB and 100 MB. The targets: within 2x of the ordinary review's time; in-process,
memory flat (within 64 MiB of what the ordinary review adds); through a server, which must hold
the request itself, a peak within 4 bytes per request byte (the body, the decoded text, the
input tensor) over the ordinary review's.

    python -m benchmarks.long_reviews                 # MiniLM, max length 256, real reviews
    python -m benchmarks.long_reviews --model tiny    # a tiny config-built BERT instead
    python -m benchmarks.long_reviews --quick         # tiny model, 1 MB and 4 MB
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from statistics import median
from typing import Any

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
from benchmarks.sources import describe_model, export_model, resolve_data, resolve_model
from tfsent.errors import fail, run_cli
from tfsent.signatures import LABEL_ID, SERVING_SIGNATURE, TEXT_INPUT

NAME = "long_reviews"
MB = 1_000_000
MIB = 2**20
ORDINARY = "ordinary"
PATHS = ("in-process", "grpc", "rest")
DEFAULTS = {"repeats": 5, "sizes_mb": [1, 100]}
QUICK = {"repeats": 2, "sizes_mb": [1, 4]}
STARTUP_SECONDS = 300
NO_SIGNATURE = "no_such_signature"
REQUEST_SECONDS = 600

# The export's serving_default in one fresh process, on each review file given. Memory first, in
# the order given: the peak RSS one call adds (VmHWM, reset through /proc/self/clear_refs just
# before). Then time: calls alternating over the reviews, round after round.
IN_PROCESS = r"""
import json, sys, time
from pathlib import Path
import tensorflow as tf
import tensorflow_text  # noqa: F401  (its ops)

version, repeats, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
serve = tf.saved_model.load(version).signatures["serving_default"]
serve(text=tf.constant(["A warm-up review, so that nothing is traced while timing."]))
texts = [tf.constant([Path(f).read_bytes()]) for f in files]

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

def call(text):
    start = time.perf_counter()
    label = int(serve(text=text)["label_id"].numpy()[0])
    return time.perf_counter() - start, label

results = []
for text in texts:
    Path("/proc/self/clear_refs").write_text("5")
    before = status("VmRSS:")
    first, label = call(text)
    results.append({"first_seconds": first, "rss_before": before, "peak_rss": status("VmHWM:"),
                    "label_id": label, "seconds": []})
for _ in range(repeats):
    for text, result in zip(texts, results):
        result["seconds"].append(call(text)[0])
print(json.dumps(results))
"""


def parse_args(argv: Sequence[str] | None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--saved-model", help="Export to measure: a version folder "
                        "(exported/tfsent/<N>). Default: export --model at --max-length into a "
                        "temporary folder.")
    parser.add_argument("--model", help="Model to export: a BERT folder or 'tiny' (default: real "
                        "MiniLM, fresh classifier head; tiny with --quick when it is absent).")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--truncation", default="head+tail", choices=("head", "tail", "head+tail"))
    parser.add_argument("--sizes-mb", type=float, nargs="+",
                        help="Long review sizes in MB (default 1 100; 1 4 with --quick).")
    parser.add_argument("--repeats", type=int,
                        help="Timed calls per review and path (default 5; 2 with --quick).")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--data", help="aclImdb tarball or folder, or 'demo' (default: the real "
                        "IMDB train tarball; demo with --quick when it is absent).")
    args = parse_sized_args(parser, argv, DEFAULTS, QUICK, ("repeats",))
    if args.max_length < 3:
        fail("--max-length must be at least 3")
    if min(args.sizes_mb) <= 0:
        fail("--sizes-mb values must be positive")
    if args.saved_model and not (Path(args.saved_model) / "saved_model.pb").is_file():
        fail(f"--saved-model {args.saved_model} holds no saved_model.pb; pass a version folder "
             "(exported/<model>/<N>)")
    return args


# --- reviews and the export -------------------------------------------------------------------


def reviews(data: str, sizes_mb: Sequence[float]) -> tuple[list[str], dict[str, bytes]]:
    """The real texts, and {name: UTF-8 bytes}: the median-length review and, for each size,
    real reviews joined by spaces and cut (at a character start) to that many bytes."""
    from tfsent.config import DataConfig
    from tfsent.data import read_source

    texts = read_source(data, DataConfig())["train"].texts
    ordered = sorted(texts, key=len)
    cases = {ORDINARY: ordered[len(ordered) // 2].encode()}
    joined = " ".join(texts).encode()
    for size_mb in sizes_mb:
        size = int(size_mb * MB)
        repeated = (joined + b" ") * (size // (len(joined) + 1) + 1)
        cases[f"{size_mb:g} MB"] = repeated[:size].decode(errors="ignore").encode()
    return texts, cases


# --- in-process -------------------------------------------------------------------------------


def measure_in_process(version: Path, files: Sequence[Path], repeats: int) -> list[dict]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", IN_PROCESS, str(version), str(repeats),
                           *map(str, files)], capture_output=True, text=True, env=env,
                          timeout=REQUEST_SECONDS * (repeats + 2) * len(files))
    if done.returncode != 0:
        raise RuntimeError(f"in-process measurement failed:\n{done.stderr[-3000:]}")
    return [{
        "status": "OK",
        "median_ms": 1000 * median(raw["seconds"]),
        "ms": [1000 * s for s in raw["seconds"]],
        "first_ms": 1000 * raw["first_seconds"],
        "peak_extra_mib": (raw["peak_rss"] - raw["rss_before"]) / MIB,
        "label_id": raw["label_id"],
    } for raw in json.loads(done.stdout.strip().splitlines()[-1])]


# --- through the server -----------------------------------------------------------------------


def proc_status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


def grpc_caller(address: str, text: bytes,
                signature: str = SERVING_SIGNATURE) -> Callable[[], str]:
    import grpc
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1),
                                                      ("grpc.max_receive_message_length", -1)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tfsent"
    request.model_spec.signature_name = signature
    request.inputs[TEXT_INPUT].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, string_val=[text],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)])))

    def call() -> str:
        try:
            reply = stub.Predict(request, timeout=REQUEST_SECONDS)
        except grpc.RpcError as err:
            return err.code().name
        return "OK" if len(reply.outputs[LABEL_ID].int64_val) == 1 else f"no {LABEL_ID}"

    return call


def rest_caller(rest_url: str, text: bytes,
                signature: str = SERVING_SIGNATURE) -> Callable[[], str]:
    url = urllib.parse.urlsplit(rest_url)
    body = json.dumps({"signature_name": signature,
                       "inputs": {TEXT_INPUT: [text.decode()]}}).encode()

    def call() -> str:
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=REQUEST_SECONDS)
        try:
            connection.request("POST", "/v1/models/tfsent:predict", body,
                               {"Content-Type": "application/json"})
            reply = connection.getresponse()
            payload = reply.read()
        finally:
            connection.close()
        if reply.status != 200:
            return f"HTTP {reply.status}"
        outputs = json.loads(payload)["outputs"]
        return "OK" if len(outputs[LABEL_ID]) == 1 else f"no {LABEL_ID}"

    return call


def server_peak(call: Callable[[], str], pid: int | None) -> dict[str, Any]:
    """One call (the first of this review): its status, time and the server's peak RSS above
    its RSS before."""
    before = None
    if pid is not None:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            before = proc_status(pid, "VmRSS:")
    start = time.perf_counter()
    status = call()
    first = time.perf_counter() - start
    peak = None if before is None else proc_status(pid, "VmHWM:")
    return {
        "status": status,
        "first_ms": 1000 * first,
        "server_rss_before_mib": None if before is None else before / MIB,
        "peak_extra_mib": None if peak is None else (peak - before) / MIB,
    }


def timed(call: Callable[[], str]) -> tuple[str, float]:
    """The status and seconds of one call."""
    start = time.perf_counter()
    status = call()
    return status, time.perf_counter() - start


@contextlib.contextmanager
def running_server(version: Path) -> Iterator[Any]:
    from tfsent.model_server.process import start_server

    # No request-size limits (tfsent's default refuses over 8 MiB): the graph is what is measured,
    # as in TF Serving, which takes gRPC messages up to 2 GB.
    extra = ["--rest_api_max_body_bytes=0", "--grpc_max_receive_message_bytes=0",
             f"--rest_api_timeout_in_ms={REQUEST_SECONDS * 1000}",
             f"--grpc_default_timeout_in_ms={REQUEST_SECONDS * 1000}",
             "--file_system_poll_wait_seconds=0"]
    with start_server(version.parent.resolve(), "tfsent", extra, timeout=STARTUP_SECONDS) as srv:
        yield srv


# --- the run ----------------------------------------------------------------------------------


def run_benchmark(args, version: Path, cases: dict[str, bytes], folder: Path) -> dict[str, Any]:
    """Every review on every path: memory (one call each, ordinary first), then times (calls
    alternating over the reviews, ``--repeats`` rounds)."""
    files = []
    for i, text in enumerate(cases.values()):
        files.append(folder / f"review-{i}.txt")
        files[-1].write_bytes(text)
    results: dict[str, dict[str, Any]] = {
        name: {"bytes": len(text), "characters": len(text.decode())}
        for name, text in cases.items()}
    if "in-process" in args.paths:
        print("  in-process...", file=sys.stderr)
        for name, cell in zip(cases, measure_in_process(version, files, args.repeats),
                              strict=True):
            results[name]["in-process"] = cell
    protocols = [p for p in ("grpc", "rest") if p in args.paths]
    if protocols:
        with running_server(version) as server:
            pid = server.process.pid  # the python -m tfsent.serve process itself
            calls, floors = {}, {}
            for name, text in cases.items():
                for protocol in protocols:
                    caller = grpc_caller if protocol == "grpc" else rest_caller
                    address = server.grpc_address if protocol == "grpc" else server.rest_url
                    calls[name, protocol] = caller(address, text)
                    # The same request to a signature the model lacks: the server receives and
                    # parses it, then refuses it without running the graph.
                    floors[name, protocol] = caller(address, text, NO_SIGNATURE)
            for (name, protocol), call in calls.items():
                cell = results[name][protocol] = {**server_peak(call, pid), "ms": []}
                cell["transport_only"] = {**server_peak(floors[name, protocol], pid), "ms": []}
                print(f"  {protocol} {name}: {cell['status']}", file=sys.stderr)
            for _ in range(args.repeats):
                for (name, protocol), call in calls.items():
                    cell = results[name][protocol]
                    for target, fn in ((cell, call),
                                       (cell["transport_only"], floors[name, protocol])):
                        status, seconds = timed(fn)
                        if status == target["status"]:
                            target["ms"].append(1000 * seconds)
            for (name, protocol) in calls:
                for cell in (results[name][protocol], results[name][protocol]["transport_only"]):
                    cell["median_ms"] = median(cell["ms"]) if cell["ms"] else None
    for result in results.values():
        for path in args.paths:
            base, cell = results[ORDINARY][path], result[path]
            cell["vs_ordinary"] = (cell["median_ms"] / base["median_ms"]
                                   if cell["median_ms"] and base["median_ms"] else None)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_run()
    try:
        data = resolve_data(args.data, args.quick)
        model = None if args.saved_model else resolve_model(args.model, args.quick)
    except Skipped as why:
        return report_skip(NAME, str(why))
    texts, cases = reviews(data, args.sizes_mb)
    with tempfile.TemporaryDirectory(prefix="tfsent-long-reviews-") as tmp:
        folder = Path(tmp)
        if args.saved_model:
            version = Path(args.saved_model)
        else:
            print(f"exporting {model} at max length {args.max_length}...", file=sys.stderr)
            version = export_model(model, texts, data, args.max_length, args.truncation, folder)
        export_config = json.loads((version / "assets" / "export_config.json").read_text())
        results = run_benchmark(args, version, cases, folder)
    tokenizer = export_config["tokenizer"]["config"]
    numbers = {
        "settings": {
            "data": data,
            "model": describe_model(model) if model else str(args.saved_model),
            "max_length": tokenizer["max_length"], "truncation": tokenizer["truncation"],
            "trim_chars_per_token": tokenizer["trim_chars_per_token"],
            "sizes_mb": args.sizes_mb, "repeats": args.repeats, "paths": args.paths,
        },
        "reviews": results,
        "targets": targets(results, args.paths),
    }
    result = write_result(NAME, argv, args.quick, args.results_dir, numbers,
                          started=started)
    print(table(result))
    return 0


def targets(results: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """Per long review and path: within 2x of the ordinary review's time; the memory the
    review adds over the ordinary one's, in MiB and per request byte, and its target:
    in-process ``memory_flat`` (within 64 MiB), through a server
    ``memory_within_4_bytes_per_request_byte`` (plus 64 MiB)."""
    out: dict[str, Any] = {}
    for name, result in results.items():
        if name == ORDINARY:
            continue
        for path in paths:
            cell, base = result[path], results[ORDINARY][path]
            target = {
                "within_2x": None if cell["vs_ordinary"] is None else cell["vs_ordinary"] <= 2}
            added = (None if cell["peak_extra_mib"] is None or base["peak_extra_mib"] is None
                     else cell["peak_extra_mib"] - base["peak_extra_mib"])
            target["added_mib"] = added
            target["added_bytes_per_request_byte"] = (
                None if added is None else added * MIB / result["bytes"])
            if path == "in-process":
                target["memory_flat"] = None if added is None else added <= 64
            else:
                target["memory_within_4_bytes_per_request_byte"] = (
                    None if added is None else added * MIB <= 4 * result["bytes"] + 64 * MIB)
            out[f"{name}/{path}"] = target
    return out


def table(result: dict[str, Any]) -> str:
    paths = result["settings"]["paths"]
    headers = ["review", "size"]
    for path in paths:
        headers += [f"{path} ms", "vs ordinary", "peak +MiB"]
        if path != "in-process":
            headers += ["of which transport ms", "peak +MiB"]
    rows = []
    for name, r in result["reviews"].items():
        size = f"{r['bytes'] / MB:,.1f} MB" if r["bytes"] >= MB else f"{r['bytes']:,} B"
        row = [name, size]
        for path in paths:
            cell = r[path]
            ms = number(cell["median_ms"]) if cell["status"] == "OK" else cell["status"]
            ratio = "" if cell["vs_ordinary"] is None else f"{cell['vs_ordinary']:.2f}x"
            row += [ms, ratio, number(cell["peak_extra_mib"])]
            if path != "in-process":
                floor = cell["transport_only"]
                row += [number(floor["median_ms"]), number(floor["peak_extra_mib"])]
        rows.append(row)
    s = result["settings"]
    return (markdown_table(headers, rows) + f"\n\n{s['model']}, max length {s['max_length']} "
            f"({s['truncation']}), {s['trim_chars_per_token']} characters kept per token; "
            f"medians of {s['repeats']} calls after a first one. Transport: the same request to "
            "a signature the model lacks, which the server receives and parses, then refuses.")


if __name__ == "__main__":
    sys.exit(run_cli(main))
