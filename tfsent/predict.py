"""Predict the sentiment of reviews with a served model, or with an exported SavedModel directly.

::

    python -m tfsent.predict --server grpc://localhost:8500 "great film" "dull"
    python -m tfsent.predict --server http://localhost:8501 --file reviews.txt --format jsonl
    cat reviews.txt | python -m tfsent.predict --saved-model exported/tfsent

Reviews come from the arguments, ``--file`` (one review per line) or stdin (``-``, or nothing
given and stdin not a terminal). Output is one line per input line, in order, so output line N
answers input line N: ``positive (confidence 0.95)  a wonderful, moving film`` (the review
shortened), or with ``--format jsonl`` one JSON object per line with ``text``, ``label``,
``confidence`` and ``probabilities``. A blank line is not scored: its output line says so
(``{"text": "", "skipped": "blank line"}`` in JSONL) and stderr lists the skipped lines.

``--server`` needs only the light client (no TensorFlow is imported); ``--saved-model`` loads
TensorFlow. TensorFlow's and gRPC's own log lines are silenced unless ``--verbose``, which also
says what was loaded or asked and how long it took.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from tfsent.cli import (
    add_model_source_options,
    add_verbose_flag,
    configure_logging,
    require_extra,
)
from tfsent.client import (
    DEFAULT_MODEL_NAME,
    DEFAULT_SIGNATURE,
    Prediction,
    SavedModelPredictor,
    SentimentClient,
    ServingError,
)
from tfsent.client.saved_model import REQUIRED_MODULES
from tfsent.errors import OneLineArgumentParser, fail, run_cli

PREVIEW_CHARS = 60
BLANK_TEXT = "(blank line: not scored)"
# The flag that sets each SentimentClient argument a server may turn down
# (ServingError.argument).
FLAGS = {
    "model_name": "--model-name",
    "version": "--version",
    "version_label": "--version-label",
    "signature_name": "--signature",
}
# Set before TensorFlow or gRPC are imported (they read them once, at start-up).


def read_texts(texts: Sequence[str], file: str | None = None) -> list[str]:
    """The input lines: arguments (``-`` = stdin), then ``file``'s lines; blank ones kept (as
    they are), so that positions match the input's line numbers."""
    if not texts and file is None:
        if sys.stdin is None or sys.stdin.isatty():
            fail("no reviews given; pass them as arguments, with --file FILE, or on stdin")
        texts = ["-"]
    reviews: list[str] = []
    for text in texts:
        reviews += _read_lines(None) if text == "-" else [text]
    if file is not None:
        reviews += _read_lines(None if file == "-" else Path(file))
    if not any(r.strip() for r in reviews):
        fail(f"no reviews in {file or 'the input'}: it is empty; give one review per line")
    return reviews


def _read_lines(path: Path | None) -> list[str]:
    source = str(path) if path is not None else "stdin"
    try:
        data = path.read_bytes() if path is not None else sys.stdin.buffer.read()
    except FileNotFoundError:
        fail(f"no such file: {path}; give an existing text file with one review per line")
    except OSError as err:
        fail(f"cannot read {source}: {err.strerror or err}")
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        fail(f"{source} is not UTF-8 text (byte {err.start}); re-save it as UTF-8")


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis.

    >>> preview("A  great\\tfilm.\\nLoved it.")
    'A great film. Loved it.'
    >>> preview("x" * 80, 10)
    'xxxxxxxxx…'
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def format_prediction(text: str, prediction: Prediction | None, output_format: str) -> str:
    """One output line; ``prediction`` is ``None`` for a blank input line."""
    if output_format == "jsonl":
        if prediction is None:
            return json.dumps({"text": text, "skipped": "blank line"}, ensure_ascii=False)
        return json.dumps(
            {
                "text": text,
                "label": prediction.label,
                "confidence": prediction.confidence,
                "probabilities": prediction.probabilities,
            },
            ensure_ascii=False,
        )
    if prediction is None:
        return BLANK_TEXT
    return f"{prediction.label} (confidence {prediction.confidence:.2f})  {preview(text)}"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        # "(default: None)" says nothing; those options describe their default in words.
        if action.default is None or action.default in ([], False):
            return action.help
        return super()._get_help_string(action)


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """The options of a ``SentimentClient`` (model, version, signature, timeouts, TLS, headers),
    shared by the CLIs that score over a server; :func:`client_from_args` reads them."""
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="Served model name.")
    parser.add_argument("--version", type=int, help="Model version (default: the newest).")
    parser.add_argument("--version-label", help="Served version label, e.g. stable (--server).")
    parser.add_argument("--signature", default=DEFAULT_SIGNATURE, help="Signature to call.")
    parser.add_argument(
        "--label-names",
        help="Comma-separated class names keying the probabilities, in class-id order "
        "(default: the names in the model's 'classes' output).",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds per request.")
    parser.add_argument("--retries", type=int, default=3, help="Retries when UNAVAILABLE/503.")
    parser.add_argument("--chunk-size", type=int, default=64, help="Reviews per request.")
    parser.add_argument(
        "--root-certificates", help="PEM file of trusted roots for grpcs:// or https://."
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="Request header / gRPC metadata, e.g. 'Authorization: Bearer TOKEN' (repeatable).",
    )


def check_client_options(args: argparse.Namespace) -> list[str] | None:
    """One-line errors for bad :func:`add_client_options` values; the ``--label-names`` list."""
    if args.chunk_size < 1:
        fail(f"--chunk-size must be at least 1, got {args.chunk_size}")
    if args.retries < 0:
        fail(f"--retries must be 0 or more, got {args.retries}")
    if args.timeout <= 0:
        fail(f"--timeout must be more than 0 seconds, got {args.timeout:g}")
    if args.version is not None and args.version_label is not None:
        fail("give --version or --version-label, not both")
    if args.label_names is None:
        return None
    label_names = [name.strip() for name in args.label_names.split(",")]
    if not all(label_names):
        fail(f"--label-names {args.label_names!r} has an empty name; "
             "give comma-separated class names like negative,positive")
    return label_names


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m tfsent.predict",
        description="Predict the sentiment of reviews with TF Serving or an exported SavedModel.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("texts", nargs="*", help="Reviews to predict; '-' reads stdin.")
    parser.add_argument("--file", help="Text file with one review per line ('-' for stdin).")
    add_model_source_options(
        parser, "Export directory, no server needed: a version directory, or the model's base "
        "directory (its newest integer version is used). Needs TensorFlow.",
    )
    add_client_options(parser)
    parser.add_argument("--format", choices=("text", "jsonl"), default="text", help="Output.")
    add_verbose_flag(
        parser,
        "Let TensorFlow and gRPC log, and say what was loaded or asked and how long it took.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    label_names = check_client_options(args)
    if args.saved_model is not None and args.version_label is not None:
        fail("--version-label needs a server; with --saved-model use --version")
    lines = read_texts(args.texts, args.file)
    texts = [line for line in lines if line.strip()]
    say = _say if args.verbose else _silent
    start = time.perf_counter()
    if args.saved_model is not None:
        predictor = _saved_model(args, label_names)
        say(f"loaded {predictor.version_dir} in {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        with predictor:
            predictions = _guard(args, lambda: predictor.predict(texts))
        where = "in-process"
    else:
        with client_from_args(args, label_names) as client:
            predictions = _guard(args, lambda: client.predict(texts))
        where = f"by {args.server}"
    say(f"{len(texts)} review(s) scored {where} in {time.perf_counter() - start:.2f} s")
    answers = iter(predictions)
    skipped = []
    for number, line in enumerate(lines, 1):
        blank = not line.strip()
        if blank:
            skipped.append(number)
        print(format_prediction(line, None if blank else next(answers), args.format))
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
        print(f"note: {len(skipped)} blank line(s) not scored (line {shown}); their output "
              "lines say so", file=sys.stderr)
    return 0


def _say(message: str) -> None:
    print(f"tfsent.predict: {message}", file=sys.stderr)


def _silent(message: str) -> None:
    pass


def _saved_model(args: argparse.Namespace, label_names: list[str] | None) -> SavedModelPredictor:
    require_extra("train", REQUIRED_MODULES, "--saved-model")
    predictor = SavedModelPredictor(
        args.saved_model,
        version=args.version,
        signature_name=args.signature,
        chunk_size=args.chunk_size,
        label_names=label_names,
        model_name=args.model_name,
    )
    if not args.verbose:
        # Importing TensorFlow (above) sets up its Python loggers afresh.
        import logging

        for name in ("tensorflow", "absl"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return predictor


def client_from_args(args: argparse.Namespace, label_names: list[str] | None,
                     **overrides: object) -> SentimentClient:
    """The ``SentimentClient`` of ``--server`` and the :func:`add_client_options`; ``overrides``
    replace its keyword arguments (e.g. ``retries=0`` where the caller retries itself)."""
    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            fail(f"--header {header!r} is not 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    options: dict[str, Any] = dict(
        model_name=args.model_name,
        version=args.version,
        version_label=args.version_label,
        signature_name=args.signature,
        timeout=args.timeout,
        retries=args.retries,
        root_certificates=args.root_certificates,
        headers=headers,
        chunk_size=args.chunk_size,
        label_names=label_names,
    )
    return SentimentClient(args.server, **{**options, **overrides})


def _guard(args: argparse.Namespace, call: Callable[[], list[Prediction]]) -> list[Prediction]:
    """Server and model failures as one line naming the fix."""
    try:
        return call()
    except ServingError as err:
        serving_failure(err, args)


def serving_failure(err: ServingError, args: argparse.Namespace) -> NoReturn:
    """A server's (or the SavedModel's) failure as one line naming the fix."""
    message = " ".join(err.message.split())
    server = getattr(args, "server", None)
    if err.code == "UNAVAILABLE" and server:
        fail(f"cannot reach the server at {server}: {message}; "
             "start it (see serving/README.md) or fix --server")
    if err.code == "DEADLINE_EXCEEDED":
        fail(f"no answer within --timeout {args.timeout:g}s; raise it or lower --chunk-size")
    where = f"the server at {server}" if server else "the SavedModel"
    fail(f"{where} answered {err.code}: {message}{_fix(err)}")


def _fix(err: ServingError) -> str:
    """What to pass instead, when the server turned down a flag's value.

    >>> _fix(ServingError("NOT_FOUND", "m", argument="version", available=["1", "2"]))
    '; pass --version with one the server has: 1, 2'
    >>> _fix(ServingError("NOT_FOUND", "m", argument="model_name"))
    '; pass --model-name with the name the server hosts'
    """
    if err.argument not in FLAGS:
        return ""
    flag = FLAGS[err.argument]
    if err.available:
        return f"; pass {flag} with one the server has: {', '.join(err.available)}"
    if err.argument == "model_name":
        return f"; pass {flag} with the name the server hosts"
    return f"; pass {flag} with one the server has, or leave it out"


if __name__ == "__main__":
    sys.exit(run_cli(main))
