"""Tokenization speed: the in-graph tensorflow-text tokenizer against the HF fast tokenizer.

The exported SavedModel tokenizes raw review text in the graph (``tfsent.graph_tokenizer``), so
TF Serving needs no Python. This measures what that costs, on the same raw reviews:

- **HF**: ``tfsent.features.encode`` (the Rust fast tokenizer, batched, plus ``clean_text`` and
  the head+tail cut), as training does;
- **graph**: ``GraphTokenizer.from_hf`` of the same tokenizer, called batch by batch inside one
  ``tf.function`` (traced and warmed up first), as the serving signature does.

Both runs alternate ``--repeats`` times; the figures are medians of reviews/s and their ratio.
Every review's ids are compared: the mismatch count must be 0. The ids are compared again at each
``--short-max-lengths`` (not timed), where the graph's trim (``GraphTokenizer.trim``: only the
ends of a long text are tokenized) cuts most reviews: the count of reviews it cuts is recorded
with the mismatches.

    python -m benchmarks.tokenization                 # 5,000 real reviews, max length 256
    python -m benchmarks.tokenization --quick
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from statistics import median
from typing import Any

import numpy as np

from benchmarks.record import (
    Skipped,
    make_parser,
    markdown_table,
    number,
    parse_sized_args,
    report_skip,
    start_run,
    write_result,
)
from benchmarks.sources import (
    describe_model,
    load_tokenizer_for,
    resolve_data,
    resolve_model,
)
from tfsent.errors import fail, run_cli

NAME = "tokenization"
HF = "HF fast tokenizer"
GRAPH = "in-graph tensorflow-text"
DEFAULTS = {"reviews": 5000, "repeats": 5}
QUICK = {"reviews": 64, "repeats": 2}


def parse_args(argv: Sequence[str] | None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--reviews", type=int,
                        help="Raw reviews to tokenize (default 5000; 64 with --quick).")
    parser.add_argument("--repeats", type=int,
                        help="Alternations of HF and graph (default 5; 2 with --quick).")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--truncation", default="head+tail", choices=("head", "tail", "head+tail"))
    parser.add_argument("--batch-size", type=int, default=256, help="Reviews per call.")
    parser.add_argument("--data", help="aclImdb tarball or folder, or 'demo' (default: the real "
                        "IMDB train tarball; demo with --quick when it is absent).")
    parser.add_argument("--model", help="Folder whose tokenizer to use, or 'tiny' (default: real "
                        "MiniLM; tiny with --quick when it is absent).")
    parser.add_argument("--short-max-lengths", type=int, nargs="*", default=[8],
                        help="Max lengths at which the ids are compared again (not timed), "
                        "where the graph's trim cuts most reviews.")
    parser.add_argument("--seed", type=int, default=42)
    args = parse_sized_args(parser, argv, DEFAULTS, QUICK, ("reviews", "repeats", "batch_size"))
    if min([args.max_length, *args.short_max_lengths]) < 3:
        fail("--max-length and --short-max-lengths must be at least 3")
    return args


def raw_reviews(data: str, count: int, seed: int) -> list[str]:
    """``count`` raw training reviews (``<br />`` tags and all), a seeded sample."""
    from tfsent.config import DataConfig
    from tfsent.data import read_source

    texts = read_source(data, DataConfig())["train"].texts
    if len(texts) < count:
        fail(f"{data} holds {len(texts)} reviews; pass --reviews {len(texts)} or fewer")
    chosen = np.sort(np.random.default_rng(seed).choice(len(texts), count, replace=False))
    return [texts[i] for i in chosen]


def hf_tokenize(tokenizer, texts: list[str], max_length: int, truncation: str,
                batch_size: int) -> list[np.ndarray]:
    from tfsent.data import clean_text
    from tfsent.features import encode

    cleaned = [clean_text(t) for t in texts]  # the graph does this itself
    return encode(tokenizer, cleaned, max_length, truncation, batch_size=batch_size).input_ids


def graph_tokenize_fn(tokenizer, max_length: int, truncation: str):
    """The graph tokenizer of ``tokenizer`` in a ``tf.function`` over a batch of raw texts."""
    import tensorflow as tf

    from tfsent.graph_tokenizer import GraphTokenizer

    graph = GraphTokenizer.from_hf(tokenizer, max_length=max_length, truncation=truncation)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(texts):
        return graph(texts)["input_ids"]

    def run(texts: list[str], batch_size: int) -> list[np.ndarray]:
        return [tokenize(tf.constant(texts[i : i + batch_size])).numpy()
                for i in range(0, len(texts), batch_size)]

    return run, graph.pad_id


def short_length_check(tokenizer, texts: list[str], max_length: int, truncation: str,
                       batch_size: int) -> dict[str, Any]:
    """Mismatched ids at ``max_length``, and how many texts the graph's trim cuts there."""
    import tensorflow as tf

    from tfsent.graph_tokenizer import GraphTokenizer

    graph = GraphTokenizer.from_hf(tokenizer, max_length=max_length, truncation=truncation)
    cut = sum(int(tf.reduce_sum(tf.cast(graph.trim(batch) != batch, tf.int32)))
              for batch in (tf.constant(texts[i : i + batch_size])
                            for i in range(0, len(texts), batch_size)))
    run, pad_id = graph_tokenize_fn(tokenizer, max_length, truncation)
    hf = hf_tokenize(tokenizer, texts, max_length, truncation, batch_size)
    mismatches = count_mismatches(hf, run(texts, batch_size), pad_id)
    return {"max_length": max_length, "reviews": len(texts), "cut_by_trim": cut,
            "mismatches": len(mismatches), "mismatched_review_indices": mismatches[:20]}


def count_mismatches(hf_rows: list[np.ndarray], graph_batches: list[np.ndarray],
                     pad_id: int) -> list[int]:
    """Indices of the reviews whose graph ids differ from HF's (padding aside)."""
    graph_rows = [row for batch in graph_batches for row in batch]
    if len(graph_rows) != len(hf_rows):
        return list(range(len(hf_rows)))
    bad = []
    for i, (hf_row, graph_row) in enumerate(zip(hf_rows, graph_rows, strict=True)):
        n = len(hf_row)
        if (len(graph_row) < n or not np.array_equal(graph_row[:n], hf_row)
                or np.any(graph_row[n:] != pad_id)):
            bad.append(i)
    return bad


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_run()
    try:
        data = resolve_data(args.data, args.quick)
        model_name = resolve_model(args.model, args.quick)
    except Skipped as why:
        return report_skip(NAME, str(why))

    texts = raw_reviews(data, args.reviews, args.seed)
    tokenizer = load_tokenizer_for(model_name, texts)
    graph_run, pad_id = graph_tokenize_fn(tokenizer, args.max_length, args.truncation)
    runs = {
        HF: lambda: hf_tokenize(tokenizer, texts, args.max_length, args.truncation,
                                args.batch_size),
        GRAPH: lambda: graph_run(texts, args.batch_size),
    }
    outputs = {name: run() for name, run in runs.items()}  # warm-up: tracing, thread pools
    mismatches = count_mismatches(outputs[HF], outputs[GRAPH], pad_id)

    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    speeds = {name: [len(texts) / s for s in times] for name, times in seconds.items()}
    medians = {name: median(values) for name, values in speeds.items()}
    lengths = np.array([len(r) for r in outputs[HF]])
    short = [short_length_check(tokenizer, texts, length, args.truncation, args.batch_size)
             for length in args.short_max_lengths]
    short_mismatches = sum(check["mismatches"] for check in short)
    numbers: dict[str, Any] = {
        "settings": {
            "data": data, "model": describe_model(model_name), "reviews": len(texts),
            "max_length": args.max_length, "truncation": args.truncation,
            "batch_size": args.batch_size, "repeats": args.repeats, "seed": args.seed,
            "short_max_lengths": args.short_max_lengths,
        },
        "tokenizers": {
            name: {"reviews_per_second": speeds[name],
                   "reviews_per_second_median": medians[name], "seconds": seconds[name]}
            for name in runs
        },
        "ratio_graph_over_hf": medians[GRAPH] / medians[HF],
        "mismatches": len(mismatches),
        "mismatched_review_indices": mismatches[:20],
        "mean_tokens_per_review": float(lengths.mean()),
        "short_max_lengths": short,
    }
    result = write_result(NAME, argv, args.quick, args.results_dir, numbers,
                          started=started)
    print(table(result))
    if mismatches or short_mismatches:
        print(f"error: {len(mismatches)} of {len(texts)} reviews got different ids in the graph "
              f"at max length {args.max_length}, {short_mismatches} at the short max lengths",
              file=sys.stderr)
        return 1
    return 0


def table(result: dict[str, Any]) -> str:
    hf = result["tokenizers"][HF]["reviews_per_second_median"]
    rows = [[name, number(t["reviews_per_second_median"]),
             f"{t['reviews_per_second_median'] / hf:.2f}x"]
            for name, t in result["tokenizers"].items()]
    table_text = markdown_table(["tokenizer", "reviews/s", "vs HF"], rows)
    total = result["settings"]["reviews"]
    text = f"{table_text}\n\nid mismatches: {result['mismatches']} of {total}"
    for check in result.get("short_max_lengths", []):  # recorded since the trim check
        text += (f"; at max length {check['max_length']}: {check['mismatches']} of "
                 f"{check['reviews']:,}, {check['cut_by_trim']:,} of them cut by the graph's trim")
    return text


if __name__ == "__main__":
    sys.exit(run_cli(main))
