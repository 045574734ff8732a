"""Does an older TF Serving load what this TensorFlow exports, and answer the same?

TensorFlow promises backward compatibility (a newer server loads an older export), not forward
compatibility. Operators do not upgrade TF Serving the day a release ships, so this checks the
other direction for real: it exports a model with the TensorFlow installed here (the pinned
minor), then loads the export the way ``tensorflow_model_server`` does (a SavedModelBundle:
TF1 ``loader.load`` with tag ``serve`` in a fresh graph and session; TF Serving links
tensorflow-text's ops statically, which ``import tensorflow_text`` stands in for) in two
Pythons: this one, and one with an older TensorFlow + tensorflow-text (default 2.20, the minor of
``tensorflow/serving:2.20.0``). Both run ``serving_default`` on real reviews and ``token_ids`` on
their ids; the outputs must agree.

    python -m benchmarks.serving_compat                      # MiniLM, real reviews, TF 2.20 env
    python -m benchmarks.serving_compat --old-python PATH    # a Python that has the old TF
    python -m benchmarks.serving_compat --quick              # tiny model; this Python twice

Without ``--old-python`` the older environment is made once with pip in ``--env-dir``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.record import (
    Skipped,
    make_parser,
    markdown_table,
    parse_sized_args,
    report_skip,
    start_run,
    write_result,
)
from benchmarks.sources import describe_model, export_model, resolve_data, resolve_model
from tfsent.errors import fail, run_cli

NAME = "serving_compat"
DEFAULTS = {"reviews": 64}
QUICK = {"reviews": 8}
# What a version of the outputs may differ by and still be the same answer: float32 kernels of
# two TensorFlow builds may sum in another order.
TOLERANCE = 1e-4

# Runs in the other Python: load as TF Serving does, answer both signatures, print JSON.
PROBE = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (TF Serving links these ops statically)

version, feeds_path = sys.argv[1], sys.argv[2]
feeds = json.load(open(feeds_path))
graph = tf.Graph()
answers = {}
with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
    meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], version)
    for name, inputs in feeds.items():
        sig = meta.signature_def[name]
        feed = {}
        for key, value in inputs.items():
            dtype = object if sig.inputs[key].dtype == tf.string.as_datatype_enum else np.int64
            feed[sig.inputs[key].name] = np.array(value, dtype=dtype)
        out = sess.run({k: v.name for k, v in sig.outputs.items()}, feed)
        answers[name] = {k: (np.char.decode(v.astype(bytes)) if v.dtype == object else v).tolist()
                         for k, v in out.items()}
print(json.dumps({"tensorflow": tf.__version__, "tensorflow_text": tensorflow_text.__version__,
                  "signatures": answers}))
"""


def parse_args(argv: Sequence[str] | None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--model", help="Model to export: a BERT folder or 'tiny' (default: real "
                        "MiniLM; --quick: tiny)")
    parser.add_argument("--data", help="Reviews (default: the real IMDB tarball; --quick: demo)")
    parser.add_argument("--reviews", type=int, help="How many reviews to score.")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--old-python", help="A Python with the older tensorflow and "
                        "tensorflow-text (default: --env-dir's, made with pip when absent; "
                        "--quick: this Python)")
    parser.add_argument("--old-version", default="2.20",
                        help="The TensorFlow / tensorflow-text minor the made environment has.")
    parser.add_argument("--env-dir", default=str(Path(tempfile.gettempdir()) / "tfsent-tf-old"),
                        help="Where the older environment is made (reused when present).")
    return parse_sized_args(parser, argv, DEFAULTS, QUICK, positive=("reviews", "max_length"))


def old_python(args) -> str:
    """The Python to load the export in: given, this one (--quick), or a made virtualenv."""
    if args.old_python:
        if not Path(args.old_python).is_file():
            fail(f"--old-python {args.old_python} does not exist; pass a Python executable")
        return args.old_python
    if args.quick:
        return sys.executable
    env = Path(args.env_dir)
    python = env / "bin" / "python"
    if not python.is_file():
        print(f"making {env} with tensorflow {args.old_version}...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q",
                        f"tensorflow=={args.old_version}.*",
                        f"tensorflow-text=={args.old_version}.*",
                        # tensorflow_text's Python package imports Keras (TF Serving's C++
                        # does not need it)
                        f"tf-keras=={args.old_version}.*"], check=True)
    return str(python)


def probe(python: str, version: Path, feeds_path: Path) -> dict[str, Any]:
    """Both signatures' outputs, as the TF Serving loader of ``python``'s TensorFlow gives them."""
    done = subprocess.run([python, "-c", PROBE, str(version), str(feeds_path)],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{python} could not load the export: "
                           f"{(done.stderr.strip().splitlines() or ['no output'])[-1][:300]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def feeds(version: Path, texts: list[str]) -> dict[str, Any]:
    """The two signatures' inputs: the texts, and their ids from the export's own tokenizer."""
    from tfsent.export import load_tokenizer_from_export

    ids = load_tokenizer_from_export(version)(np.array(texts, dtype=object))
    return {"serving_default": {"text": texts},
            "token_ids": {key: value.numpy().tolist() for key, value in ids.items()}}


def compare(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """Per signature and output: the largest absolute difference, or whether labels agree."""
    rows = {}
    for signature, outputs in new["signatures"].items():
        for key, value in outputs.items():
            other = old["signatures"][signature][key]
            if isinstance(np.asarray(value).flat[0], str):
                rows[f"{signature}/{key}"] = {"equal": value == other}
            else:
                diff = float(np.max(np.abs(np.asarray(value, float) - np.asarray(other, float))))
                rows[f"{signature}/{key}"] = {"max_abs_diff": diff, "equal": diff <= TOLERANCE}
    return rows


def run_benchmark(args, folder: Path) -> dict[str, Any]:
    from benchmarks.sources import load_reviews

    data, model = resolve_data(args.data, args.quick), resolve_model(args.model, args.quick)
    splits = load_reviews(data, train_size=max(args.reviews, 32), eval_size=args.reviews, seed=0)
    texts = list(splits.validation.texts)[: args.reviews]
    version = export_model(model, list(splits.train.texts), data, args.max_length,
                           "head+tail", folder)
    feeds_path = folder / "feeds.json"
    feeds_path.write_text(json.dumps(feeds(version, texts)))
    new = probe(sys.executable, version, feeds_path)
    old = probe(old_python(args), version, feeds_path)
    outputs = compare(new, old)
    return {
        "model": describe_model(model), "reviews": len(texts), "max_length": args.max_length,
        "exported_with": {"tensorflow": new["tensorflow"],
                          "tensorflow_text": new["tensorflow_text"]},
        "loaded_with": {"tensorflow": old["tensorflow"], "tensorflow_text": old["tensorflow_text"]},
        "loader": "tf.compat.v1.saved_model.loader.load, tag serve (as tensorflow_model_server)",
        "tolerance": TOLERANCE, "outputs": outputs,
        "agree": all(row["equal"] for row in outputs.values()),
    }


def table(result: dict[str, Any]) -> str:
    rows = [[name, "same" if row["equal"] else "DIFFERENT",
             f"{row['max_abs_diff']:.2e}" if "max_abs_diff" in row else "labels"]
            for name, row in result["outputs"].items()]
    return markdown_table(["signature/output", "verdict", "max abs difference"], rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_run()
    try:
        with tempfile.TemporaryDirectory(prefix="tfsent-compat-") as tmp:
            result = run_benchmark(args, Path(tmp))
    except Skipped as skip:
        return report_skip(NAME, str(skip))
    write_result(NAME, argv, args.quick, args.results_dir, result, started=started)
    print(f"exported with TF {result['exported_with']['tensorflow']}, loaded with TF "
          f"{result['loaded_with']['tensorflow']}: "
          f"{'agree' if result['agree'] else 'DISAGREE'}")
    print(table(result))
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
