"""Score a table of reviews against TF Serving, streamed, concurrent and resumable.

::

    python -m tfsent.score --server grpc://host:8500 --input reviews.csv --output scored.csv \\
        --text-column review
    python -m tfsent.score --server grpc://host:8500 --input reviews.parquet \\
        --output scored-1.parquet --text-column review --shard 1/4

CSV, JSON lines or Parquet in and out, by extension (Parquet needs ``pip install
'tfsent[parquet]'``). The output keeps every input column, in order, and adds ``label``,
``confidence``, ``prob_<class>`` per class and ``error``. A killed run, rerun with the same
command, goes on where it stopped; ``--overwrite`` starts over. See ``tfsent.client.bulk``.

It needs only the light client: no TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import sys

from tfsent.cli import add_verbose_flag, configure_logging
from tfsent.client import ServingError
from tfsent.client.bulk import BulkOptions, Shard, score_file
from tfsent.errors import OneLineArgumentParser, run_cli
from tfsent.predict import (
    add_client_options,
    check_client_options,
    client_from_args,
    serving_failure,
)


def _shard(text: str) -> Shard:
    return Shard.parse(text)


def build_parser() -> argparse.ArgumentParser:
    defaults = BulkOptions()
    parser = OneLineArgumentParser(
        prog="python -m tfsent.score",
        description="Score a CSV, JSONL or Parquet table of reviews against TF Serving: every "
        "input column kept, label, confidence and prob_<class> added; resumable after a kill.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--server", required=True, help="TF Serving address: grpc://host:8500, "
                        "grpcs://..., http://host:8501 or https://...")
    parser.add_argument("--input", required=True, help="Reviews: .csv, .jsonl or .parquet.")
    parser.add_argument("--output", required=True, help="Scored table: .csv, .jsonl or .parquet.")
    parser.add_argument("--text-column", default=defaults.text_column,
                        help="Input column holding the review.")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency,
                        help="Requests in flight at once (each of --chunk-size reviews).")
    parser.add_argument("--shard", type=_shard, default=defaults.shard, metavar="I/N",
                        help="Score only the rows whose index is I modulo N (from 0).")
    parser.add_argument("--column-prefix", default=defaults.column_prefix,
                        help="Put before the added columns' names (for inputs that have a "
                        "'label' column, e.g. pred_).")
    parser.add_argument("--overwrite", action="store_true",
                        help="Start over: replace the output and forget a killed run's progress.")
    parser.add_argument("--quiet", action="store_true",
                        help="No progress bar and no summary line.")
    add_client_options(parser)
    # A long job outlives short outages: the scorer retries (UNAVAILABLE, RESOURCE_EXHAUSTED,
    # 503) itself, with backoff doubling from 0.5 s, so the client is built with none of its own.
    parser.set_defaults(retries=defaults.retries)
    add_verbose_flag(parser, "Let gRPC log.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    label_names = check_client_options(args)
    options = BulkOptions(
        text_column=args.text_column, concurrency=args.concurrency, shard=args.shard,
        retries=args.retries, overwrite=args.overwrite, column_prefix=args.column_prefix,
        progress=not args.quiet,
    )
    with client_from_args(args, label_names, retries=0) as client:
        try:
            summary = score_file(client, args.input, args.output, options)
        except ServingError as err:
            serving_failure(err, args)
    if not args.quiet:
        print(summary.line(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
