"""Bulk scoring: ``python -m tfsent.score`` throughput by concurrency, and its memory on a large
input.

Exports MiniLM (all-MiniLM-L6-v2 with a fresh, untrained two-label head: throughput does not
depend on the head's weights) or ``--saved-model``, serves it with ``python -m tfsent.serve``
and server-side batching (``serving/batching.config``), and scores ``--rows`` IMDB train reviews
(resampled with replacement) from a CSV with the scorer, as a subprocess, at each
``--concurrency``. The limit it is measured against: the same export's ``serving_default``
signature called in-process on the same reviews at each of ``--batch-sizes``, the best of them.
Last, the scorer's peak RSS on a ``--big-input-mb`` CSV of the same reviews repeated: it reads
(counts, then streams) the whole file but scores only every K-th row (``--shard 0/K``), so the
time stays short while everything the file's size could grow is exercised; its peak RSS is set
next to the small input's.

    python -m benchmarks.bulk_scoring                        # MiniLM, 50,000 rows, 1 GB input
    python -m benchmarks.bulk_scoring --concurrency 1 8 --rows 5000
    python -m benchmarks.bulk_scoring --quick                # tiny model, few rows, 4 MB input
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
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
from benchmarks.sources import TINY, describe_model, export_model, resolve_data, resolve_model
from tfsent.errors import fail, run_cli

NAME = "bulk_scoring"
MIB = 2**20
BATCHING_FILE = REPO / "serving" / "batching.config"
STARTUP_SECONDS = 300
# Rows the large input's run scores (every K-th of the file): enough to reach a steady state.
BIG_INPUT_SCORED_ROWS = 2000
DEFAULTS = {"rows": 50_000, "concurrency": [1, 4, 8, 16, 32], "big_input_mb": 1024.0,
            "in_process_rows": 2048, "max_length": 256}
QUICK = {"rows": 300, "concurrency": [1, 4], "big_input_mb": 4.0, "in_process_rows": 128,
         "max_length": 64}
# Generous: the scorer shares the machine's cores with the server it waits for.
REQUEST_TIMEOUT_SECONDS = 300
# python -m tfsent.score that writes its peak RSS (VmHWM, KiB) to argv[1] as it exits. Not the
# rusage of the child: Linux carries the forked parent's high-water mark (TensorFlow loaded
# here) over the exec into it.
PEAK_RSS = r"""
import atexit, runpy, sys
from pathlib import Path

out = Path(sys.argv.pop(1))

def peak():
    status = Path("/proc/self/status").read_text().splitlines()
    out.write_text(next(line.split()[1] for line in status if line.startswith("VmHWM:")))

atexit.register(peak)
runpy.run_module("tfsent.score", run_name="__main__", alter_sys=True)
"""
SUMMARY = re.compile(r"scored ([\d,]+) rows .* in ([\d.]+) s, ([\d,.]+) rows/s")


def parse_args(argv: Sequence[str] | None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--saved-model", help="Export to serve: a version folder "
                        "(exported/tfsent/<N>). Default: export --model into a temporary folder.")
    parser.add_argument("--model", help="Model to export: a BERT folder or 'tiny' (default: real "
                        "MiniLM, fresh classifier head; tiny with --quick).")
    parser.add_argument("--max-length", type=int, help="Tokens per review in the export "
                        "(default 256; 64 with --quick).")
    parser.add_argument("--data", help="aclImdb tarball or folder, or 'demo' (default: the real "
                        "IMDB train tarball; demo with --quick when it is absent).")
    parser.add_argument("--rows", type=int, help="Rows scored per concurrency (default 50,000; "
                        "300 with --quick).")
    parser.add_argument("--concurrency", type=int, nargs="+",
                        help="Scorer --concurrency values (default 1 4 8 16 32; 1 4 with --quick).")
    parser.add_argument("--chunk-size", type=int, default=64, help="Scorer --chunk-size.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64, 128],
                        help="In-process batch sizes; the best one is the reference.")
    parser.add_argument("--in-process-rows", type=int, help="Reviews scored in-process per batch "
                        "size (default 2048; 128 with --quick).")
    parser.add_argument("--big-input-mb", type=float, help="Size of the large input whose peak "
                        "RSS is measured (default 1024; 4 with --quick).")
    parser.add_argument("--seed", type=int, default=42)
    args = parse_sized_args(parser, argv, DEFAULTS, QUICK,
                            ("rows", "in_process_rows", "chunk_size", "max_length"))
    if min(args.concurrency) < 1 or min(args.batch_sizes) < 1:
        fail("--concurrency and --batch-sizes values must be at least 1")
    if args.big_input_mb <= 0:
        fail("--big-input-mb must be positive")
    return args


# --- inputs -------------------------------------------------------------------------------------


def resampled_reviews(data: str, rows: int, seed: int) -> tuple[list[str], list[str]]:
    """All the source's train reviews, and ``rows`` of them drawn with replacement."""
    from tfsent.config import DataConfig
    from tfsent.data import read_source

    texts = read_source(data, DataConfig())["train"].texts
    chosen = np.random.default_rng(seed).integers(0, len(texts), rows)
    return texts, [texts[i] for i in chosen]


def write_csv(path: Path, texts: Sequence[str], target_bytes: int | None = None) -> int:
    """``id,review`` rows: ``texts`` once, or over and over until the file has
    ``target_bytes``; the row count (written a row at a time, never held whole)."""
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review"])
        while True:
            for text in texts:
                writer.writerow([rows, text])
                rows += 1
                if target_bytes is not None and rows % 1000 == 0 and f.tell() >= target_bytes:
                    return rows
            if target_bytes is None:
                return rows


# --- measuring ----------------------------------------------------------------------------------


def in_process(version: Path, texts: list[str], batch_sizes: Sequence[int]) -> dict[str, Any]:
    """Rows/s of the export's ``serving_default`` on ``texts`` at each batch size (after one
    warm-up batch of that size)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the export's tokenizer ops)

    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    out: dict[str, Any] = {}
    for size in batch_sizes:
        serve(text=tf.constant(texts[:size]))
        start = time.perf_counter()
        for i in range(0, len(texts), size):
            serve(text=tf.constant(texts[i : i + size]))["probabilities"].numpy()
        seconds = time.perf_counter() - start
        out[str(size)] = {"rows": len(texts), "seconds": seconds,
                          "rows_per_second": len(texts) / seconds}
        print(f"  in-process batch {size}: {number(len(texts) / seconds)} rows/s",
              file=sys.stderr)
    return out


def run_scorer(argv: Sequence[str]) -> dict[str, Any]:
    """``python -m tfsent.score`` as a child: its summary's numbers, wall time and peak RSS."""
    paths = [str(REPO), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", PEAK_RSS, str(peak_file), *argv], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        peak_kib = int(peak_file.read_text()) if peak_file.is_file() else None
    lines = proc.stderr.replace("\r", "\n").strip().splitlines()
    match = SUMMARY.search(lines[-1]) if lines else None
    if proc.returncode != 0 or match is None or peak_kib is None:
        raise RuntimeError(f"the scorer failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {
        "rows": int(match[1].replace(",", "")),
        "seconds": float(match[2]),
        "rows_per_second": float(match[3].replace(",", "")),
        "wall_seconds": wall,
        "peak_rss_mib": peak_kib * 1024 / MIB,
    }


def scorer_runs(args, server, folder: Path, source: Path) -> dict[str, Any]:
    base = ["--server", f"grpc://{server.grpc_address}", "--input", str(source),
            "--text-column", "review", "--chunk-size", str(args.chunk_size), "--overwrite",
            "--timeout", str(REQUEST_TIMEOUT_SECONDS)]
    runs: dict[str, Any] = {}
    for c in args.concurrency:
        cell = run_scorer([*base, "--output", str(folder / f"scored-{c}.csv"),
                           "--concurrency", str(c)])
        runs[str(c)] = cell
        print(f"  scorer x{c}: {number(cell['rows_per_second'])} rows/s, peak RSS "
              f"{number(cell['peak_rss_mib'])} MiB", file=sys.stderr)
    return runs


def big_input_run(args, server, folder: Path, texts: list[str]) -> dict[str, Any]:
    """The scorer on a ``--big-input-mb`` file, scoring every K-th row of it."""
    path = folder / "big.csv"
    rows = write_csv(path, texts, int(args.big_input_mb * MIB))
    scored = min(BIG_INPUT_SCORED_ROWS, args.rows)
    shard = max(1, rows // scored)
    cell = run_scorer(["--server", f"grpc://{server.grpc_address}", "--input", str(path),
                       "--output", str(folder / "big-scored.csv"), "--text-column", "review",
                       "--chunk-size", str(args.chunk_size), "--concurrency", "8",
                       "--shard", f"0/{shard}", "--overwrite",
                       "--timeout", str(REQUEST_TIMEOUT_SECONDS)])
    cell.update(input_bytes=path.stat().st_size, input_rows=rows, shard=f"0/{shard}")
    path.unlink()
    print(f"  big input ({number(cell['input_bytes'] / MIB)} MiB, {rows:,} rows, {cell['rows']:,}"
          f" scored): peak RSS {number(cell['peak_rss_mib'])} MiB", file=sys.stderr)
    return cell


def run_benchmark(args, version: Path, texts: list[str], sample: list[str],
                  folder: Path) -> dict[str, Any]:
    from tfsent.model_server.process import start_server

    print("in-process...", file=sys.stderr)
    reference = in_process(version, sample[: args.in_process_rows], args.batch_sizes)
    best = max(reference, key=lambda b: reference[b]["rows_per_second"])
    source = folder / "reviews.csv"
    write_csv(source, sample)
    extra = ["--enable_batching", f"--batching_parameters_file={BATCHING_FILE}",
             "--file_system_poll_wait_seconds=0"]
    with start_server(version.parent.resolve(), "tfsent", extra, timeout=STARTUP_SECONDS) as srv:
        runs = scorer_runs(args, srv, folder, source)
        big = big_input_run(args, srv, folder, texts)
    best_rate = reference[best]["rows_per_second"]
    for cell in runs.values():
        cell["vs_in_process_best"] = cell["rows_per_second"] / best_rate
    small_peak = max(cell["peak_rss_mib"] for cell in runs.values())
    return {
        "in_process": reference,
        "in_process_best": {"batch_size": int(best), "rows_per_second": best_rate},
        "scorer": runs,
        "big_input": big,
        "memory_flat": big["peak_rss_mib"] <= small_peak + 64,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_run()
    try:
        data = resolve_data(args.data, args.quick)
        # A smoke run scores with the tiny model even where MiniLM is installed.
        wanted = args.model if args.model or not args.quick else TINY
        model = None if args.saved_model else resolve_model(wanted, args.quick)
    except Skipped as why:
        return report_skip(NAME, str(why))
    texts, sample = resampled_reviews(data, args.rows, args.seed)
    with tempfile.TemporaryDirectory(prefix="tfsent-bulk-scoring-") as tmp:
        folder = Path(tmp)
        if args.saved_model:
            version = Path(args.saved_model)
        else:
            print(f"exporting {model} at max length {args.max_length}...", file=sys.stderr)
            version = export_model(model, texts, data, args.max_length, "head+tail", folder)
        results = run_benchmark(args, version, texts, sample, folder)
    numbers = {
        "settings": {
            "data": data, "model": describe_model(model) if model else str(args.saved_model),
            "max_length": args.max_length, "rows": args.rows, "concurrency": args.concurrency,
            "chunk_size": args.chunk_size, "batch_sizes": args.batch_sizes,
            "in_process_rows": args.in_process_rows, "big_input_mb": args.big_input_mb,
            "server": "python -m tfsent.serve --enable_batching (serving/batching.config)",
        },
        **results,
    }
    result = write_result(NAME, argv, args.quick, args.results_dir, numbers, started=started)
    print(table(result))
    return 0


def table(result: dict[str, Any]) -> str:
    best = result["in_process_best"]
    rows = [[f"in-process, batch {best['batch_size']} (best)", "", number(best["rows_per_second"]),
             "1.00x", ""]]
    for c, cell in result["scorer"].items():
        rows.append(["tfsent.score over gRPC", c, number(cell["rows_per_second"]),
                     f"{cell['vs_in_process_best']:.2f}x", number(cell["peak_rss_mib"])])
    big = result["big_input"]
    rows.append([f"tfsent.score, {number(big['input_bytes'] / MIB, 0)} MiB input "
                 f"({big['rows']:,} of {big['input_rows']:,} rows scored)", "8",
                 number(big["rows_per_second"]), "", number(big["peak_rss_mib"])])
    s = result["settings"]
    return (markdown_table(["path", "concurrency", "rows/s", "vs in-process", "peak RSS MiB"],
                           rows)
            + f"\n\n{s['model']}, max length {s['max_length']}, {s['rows']:,} rows, chunks of "
            f"{s['chunk_size']}; the server batches requests (serving/batching.config) and "
            "shares the machine's cores with the scorer.")


if __name__ == "__main__":
    sys.exit(run_cli(main))
