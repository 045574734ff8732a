"""Predict the sentiment of reviews with a served model, or with an exported SavedModel directly.

::

    python -m tfsent.predict --server grpc://localhost:8500 "great film" "dull"
    python -m tfsent.predict --server http://localhost:8501 --file reviews.txt --format jsonl
    cat reviews.txt | python -m tfsent.predict --saved-model exported/tfsent

Reviews come from the arguments, ``--file`` (one review per line) or stdin (``-``, or nothing
given and stdin not a terminal); blank lines are skipped. Output is one line per review, in
order: ``positive (confidence 0.95)``, or with ``--format jsonl`` one JSON object per line with
``text``, ``label``, ``confidence`` and ``probabilities``.

The probabilities are keyed by ``--label-names`` when given, else by the label names the export
returns in its ``classes`` output (over ``--server`` and ``--saved-model`` alike). Exports from
before ``classes`` fall back to the export's ``assets/labels.txt`` with ``--saved-model`` and to
the class ids ``"0"``, ``"1"``, ... over ``--server`` (TF Serving does not serve assets).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tfsent.errors import OneLineArgumentParser, fail, run_cli
from tfsent.client import (
    CLASSES_OUTPUT,
    DEFAULT_MODEL_NAME,
    DEFAULT_SIGNATURE,
    TEXT_INPUT,
    Prediction,
    SentimentClient,
    ServingError,
    predictions_from_outputs,
    status_code_name,
)

LABELS_ASSET = Path("assets") / "labels.txt"


def read_texts(texts: Sequence[str], file: str | None = None) -> list[str]:
    """The reviews to predict: arguments (``-`` = stdin), then ``file``'s lines; blanks dropped."""
    if not texts and file is None:
        if sys.stdin is None or sys.stdin.isatty():
            fail("no reviews given; pass them as arguments, with --file FILE, or on stdin")
        texts = ["-"]
    reviews: list[str] = []
    for text in texts:
        reviews += _read_lines(None) if text == "-" else [text]
    if file is not None:
        reviews += _read_lines(None if file == "-" else Path(file))
    reviews = [r for r in reviews if r.strip()]
    if not reviews:
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


def find_version_dir(path: str | Path, version: int | None = None) -> Path:
    """``path`` itself if it holds a SavedModel, else its newest (or the given) integer version."""
    path = Path(path)
    if not path.is_dir():
        fail(f"no such directory: {path}; give an export like exported/tfsent")
    if (path / "saved_model.pb").is_file():
        if version is not None and path.name != str(version):
            fail(f"{path} is version {path.name}, not {version}; give the model's base directory")
        return path
    # Non-integer siblings are exports still being written (see tfsent.export).
    versions = {
        int(p.name): p
        for p in path.iterdir()
        if p.name.isdigit() and (p / "saved_model.pb").is_file()
    }
    if not versions:
        fail(f"no SavedModel versions in {path}: expected <version>/saved_model.pb; "
             "export one with tfsent.export")
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        fail(f"no version {version} in {path}; it has {sorted(versions)}")
    return versions[version]


def read_label_names(version_dir: Path) -> list[str] | None:
    labels = version_dir / LABELS_ASSET
    if not labels.is_file():
        return None
    return [line for line in labels.read_text(encoding="utf-8").splitlines() if line]


class SavedModelPredictor:
    """The export's serving signature called in-process, answering like ``SentimentClient``.

    ``probabilities`` is keyed by ``label_names`` if given, else by the signature's ``classes``
    output, else (older exports) by ``assets/labels.txt``, else by class id. ``label_names`` holds
    the given names, else those of ``assets/labels.txt`` (``None`` if neither).

    >>> predictor = SavedModelPredictor("exported/tfsent")  # doctest: +SKIP
    >>> predictor.predict(["great film"])[0].label  # doctest: +SKIP
    'positive'
    """

    def __init__(
        self,
        path: str | Path,
        *,
        version: int | None = None,
        signature_name: str = DEFAULT_SIGNATURE,
        chunk_size: int = 64,
        label_names: Sequence[str] | None = None,
    ) -> None:
        self.version_dir = find_version_dir(path, version)
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)

        self._tf = tf
        try:
            self._loaded = tf.saved_model.load(str(self.version_dir))
        except (OSError, ValueError, tf.errors.OpError) as err:
            fail(f"cannot load the SavedModel in {self.version_dir}: {_one_line(str(err))}")
        if signature_name not in self._loaded.signatures:
            fail(f"the SavedModel has no signature {signature_name!r}; "
                 f"it has {sorted(self._loaded.signatures)}")
        self._signature = self._loaded.signatures[signature_name]
        inputs = set(self._signature.structured_input_signature[1])
        if inputs != {TEXT_INPUT}:
            fail(f"signature {signature_name!r} takes {sorted(inputs)}, not texts; "
                 f"use --signature {DEFAULT_SIGNATURE}")
        self.chunk_size = chunk_size
        self._given_names = list(label_names) if label_names is not None else None
        self.label_names = (
            self._given_names
            if self._given_names is not None
            else read_label_names(self.version_dir)
        )

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        result: list[Prediction] = []
        for start in range(0, len(texts), self.chunk_size):
            chunk = list(texts[start : start + self.chunk_size])
            try:
                outputs = self._signature(**{TEXT_INPUT: self._tf.constant(chunk)})
            except self._tf.errors.OpError as err:
                # Same error type as over a server, so callers handle one.
                raise ServingError(status_code_name(err.error_code), err.message) from None
            numpy = {name: tensor.numpy() for name, tensor in outputs.items()}
            # As over a server: given names, else the served ``classes``; labels.txt only
            # stands in for ``classes`` on exports from before it.
            names = self._given_names
            if names is None and CLASSES_OUTPUT not in numpy:
                names = self.label_names
            result += predictions_from_outputs(numpy, len(chunk), names)
        return result


def format_prediction(text: str, prediction: Prediction, output_format: str) -> str:
    if output_format == "jsonl":
        return json.dumps(
            {
                "text": text,
                "label": prediction.label,
                "confidence": prediction.confidence,
                "probabilities": prediction.probabilities,
            },
            ensure_ascii=False,
        )
    return f"{prediction.label} (confidence {prediction.confidence:.2f})"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        # "(default: None)" says nothing; those options describe their default in words.
        if action.default is None or action.default == []:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m tfsent.predict",
        description="Predict the sentiment of reviews with TF Serving or an exported SavedModel.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("texts", nargs="*", help="Reviews to predict; '-' reads stdin.")
    parser.add_argument("--file", help="Text file with one review per line ('-' for stdin).")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--server",
        help="TF Serving address: grpc://host:8500, grpcs://..., http://host:8501 or https://...",
    )
    where.add_argument(
        "--saved-model",
        help="Export directory, no server needed: a version directory, or the model's base "
        "directory (its newest integer version is used).",
    )
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="Served model name.")
    parser.add_argument("--version", type=int, help="Model version (default: the newest).")
    parser.add_argument("--version-label", help="Served version label, e.g. stable (--server).")
    parser.add_argument("--signature", default=DEFAULT_SIGNATURE, help="Signature to call.")
    parser.add_argument(
        "--label-names",
        help="Comma-separated class names keying the probabilities, in class-id order "
        "(default: the names in the model's 'classes' output; for exports without it, "
        "labels.txt with --saved-model and class ids with --server).",
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
    parser.add_argument("--format", choices=("text", "jsonl"), default="text", help="Output.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.chunk_size < 1:
        fail(f"--chunk-size must be at least 1, got {args.chunk_size}")
    if args.version is not None and args.version_label is not None:
        fail("give --version or --version-label, not both")
    label_names = args.label_names.split(",") if args.label_names else None
    texts = read_texts(args.texts, args.file)
    if args.saved_model is not None:
        if args.version_label is not None:
            fail("--version-label needs a server; with --saved-model use --version")
        predictor = SavedModelPredictor(
            args.saved_model,
            version=args.version,
            signature_name=args.signature,
            chunk_size=args.chunk_size,
            label_names=label_names,
        )
        predictions = _guard(args, lambda: predictor.predict(texts))
    else:
        predictions = _predict_with_server(args, texts, label_names)
    for text, prediction in zip(texts, predictions, strict=True):
        print(format_prediction(text, prediction, args.format))
    return 0


def _predict_with_server(
    args: argparse.Namespace, texts: list[str], label_names: list[str] | None
) -> list[Prediction]:
    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            fail(f"--header {header!r} is not 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    try:
        client = SentimentClient(
            args.server,
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
    except (ValueError, OSError) as err:
        fail(_one_line(str(err)))
    with client:
        return _guard(args, lambda: client.predict(texts))


def _guard(args: argparse.Namespace, call: Callable[[], list[Prediction]]) -> list[Prediction]:
    """Server and model failures as one line naming the fix."""
    try:
        return call()
    except ServingError as err:
        message = _one_line(err.message)
        if err.code == "UNAVAILABLE":
            fail(f"cannot reach the server at {args.server}: {message}; "
                 "start it (see serving/README.md) or fix --server")
        if err.code == "DEADLINE_EXCEEDED":
            fail(f"no answer within --timeout {args.timeout:g}s; raise it or lower --chunk-size")
        where = f"the server at {args.server}" if args.server else "the SavedModel"
        fail(f"{where} answered {err.code}: {message}")


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(run_cli(main))
