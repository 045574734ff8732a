"""The README's "Results" section, rendered from the committed results in ``benchmarks/results/``.

Only full runs count (``<name>.json``; never the ``*.quick.json`` smoke runs). A benchmark
without a result renders as "not measured yet", with the command that measures it::

    python -m benchmarks.report            # print the section
    python -m benchmarks.report --write    # replace it in README.md (appended if missing)
    python -m benchmarks.report --check    # exit 1 if README.md's section is out of date

The section lies between ``<!-- results:start -->`` and ``<!-- results:end -->``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.machine import describe
from benchmarks.record import REPO, RESULTS_DIR, markdown_table, number
from tfsent.errors import fail, run_cli

START = "<!-- results:start -->"
END = "<!-- results:end -->"
NOT_MEASURED = "not measured yet"


def _train_speed(r: dict[str, Any]) -> str:
    parts = []
    for entry in r["lengths"]:
        a = entry["configs"]["A"]["examples_per_second_median"]
        b = entry["configs"]["B"]["examples_per_second_median"]
        parts.append(f"**{entry['ratio_B_over_A']:.2f}x** at max length {entry['max_length']} "
                     f"({number(b)} vs {number(a)} examples/s)")
    return "tfsent (B) over the usual recipe (A): " + "; ".join(parts)


def _accuracy(r: dict[str, Any]) -> str:
    v = r["validation"]
    published = ", ".join(f"{p['model'].split(',')[0]} {100 * p['imdb_test_accuracy']:.1f}%"
                          for p in r["published"])
    epochs = r["settings"]["fit_config"]["train"]["epochs"]
    c = r.get("calibration")  # results recorded before calibration have none
    ece = (f"; ECE {100 * c['ece_before']:.1f}% raw, {100 * c['ece_after']:.1f}% at T = "
           f"{c['temperature']:.2f}" if c else "")
    return (f"**{100 * v['accuracy']:.1f}%** validation accuracy (macro F1 {v['f1_macro']:.3f}) "
            f"on {v['examples']:,} held-out reviews, {r['settings']['model']}, {epochs} "
            f"epoch(s) in {r['train_seconds'] / 60:.0f} min{ece}; published (test set): "
            f"{published}")


def _calibration(r: dict[str, Any]) -> str:
    c, held_out = r["calibration"], r["test"]["calibration"]
    train = r["settings"]["fit_config"]["data"]["max_train_samples"]
    return (f"reduced run ({train:,} training reviews): temperature **{c['temperature']:.2f}** "
            f"takes the ECE on {r['test']['examples']:,} unseen reviews from "
            f"{100 * held_out['ece_before']:.1f}% to **{100 * held_out['ece_after']:.1f}%** "
            f"(validation {100 * c['ece_before']:.1f}% to {100 * c['ece_after']:.1f}%), "
            f"accuracy {100 * r['test']['accuracy']:.1f}% unchanged")


def _tokenization(r: dict[str, Any]) -> str:
    return (f"in-graph tokenizer at **{r['ratio_graph_over_hf']:.2f}x** the HF fast tokenizer's "
            f"reviews/s; {r['mismatches']} id mismatches in {r['settings']['reviews']:,} reviews")


def _serving(r: dict[str, Any]) -> str:
    c = str(r["settings"]["concurrency"][0])
    base = r["in-process"][c]["p50_ms"]
    grpc = r["batching_off"]["grpc"][c]["p50_ms"]
    rest = r["batching_off"]["rest"][c]["p50_ms"]
    return (f"one review at concurrency {c}: p50 **{number(grpc)} ms** over gRPC, "
            f"{number(rest)} ms over REST, {number(base)} ms in-process")


def _client_startup(r: dict[str, Any]) -> str:
    imports, grpc, rest = r["import"], r["predict_server"]["grpc"], r["predict_server"]["rest"]
    return (f"client import **{imports['after']['seconds']['median']:.2f} s** (was "
            f"{imports['before']['seconds']['median']:.2f} s); `predict --server` one review "
            f"**{grpc['after']['median']:.2f} s** wall over gRPC (was "
            f"{grpc['before']['median']:.2f} s), {rest['after']['median']:.2f} s over REST")


def _reliability(r: dict[str, Any]) -> str:
    load, bad = r["load"], r["bad_requests"]
    requests = load["rest"]["requests"] + load["grpc"]["requests"]
    failures = (load["rest"]["failures"] + load["grpc"]["failures"] + r["hot_swap"]["failures"]
                + r["half_written"]["failures"])
    growth = max(abs(load[p].get("rss_growth") or 0) for p in ("rest", "grpc"))
    total = bad["count"]["rest"] + bad["count"]["grpc"]
    return (f"**{failures} failures** in {requests:,} requests at concurrency "
            f"{r['settings']['concurrency']} and through a hot swap and half-written versions; "
            f"server RSS within {100 * growth:.1f}%; {bad['as_expected']}/{total} bad requests "
            "answered with TF Serving's code")


def _long_reviews(r: dict[str, Any]) -> str:
    reviews = r["reviews"]
    longest = max(reviews, key=lambda name: reviews[name]["bytes"])
    local, grpc = reviews[longest]["in-process"], reviews[longest].get("grpc")
    text = (f"a {longest} review: **{local['vs_ordinary']:.2f}x** an ordinary review's time "
            f"in-process, peak memory +{number(local['peak_extra_mib'])} MiB")
    if grpc and grpc["vs_ordinary"] is not None:
        text += (f"; {grpc['vs_ordinary']:.1f}x over gRPC, of which "
                 f"{number(grpc['transport_only']['median_ms'], 0)} ms receiving and parsing it")
    return f"{text} ({r['settings']['model']})"


# name -> (title, one-line summary of its result)
BENCHMARKS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "train_speed": ("Training speed", _train_speed),
    "accuracy": ("Accuracy", _accuracy),
    "tokenization": ("Tokenization", _tokenization),
    "serving": ("Serving", _serving),
    "calibration": ("Calibration", _calibration),
    "client_startup": ("Client start-up", _client_startup),
    "reliability": ("Reliability", _reliability),
    "long_reviews": ("Long reviews", _long_reviews),
}
EXPLANATIONS = {
    "train_speed": "A is the usual recipe (pad every review to max length, "
    "`from_tensor_slices`, float32); B is tfsent (length bucketing, dynamic padding, prefetch, "
    "bf16 where the CPU has it). Same model, reviews, seed and lr schedule; medians over "
    "alternating repeats; FLOP/s against a bf16 matmul measured in the same run.",
    "accuracy": "`tfsent.fit` on the IMDB train split minus a stratified 5,000-review "
    "validation split; the published figures are IMDB test-set accuracies.",
    "tokenization": "The exported model's in-graph tokenizer (tensorflow-text, in a "
    "`tf.function`) against the HF fast tokenizer as training uses it, on the same raw reviews.",
    "serving": "`python -m tfsent.serve` on loopback, one review per request, against the "
    "in-process SavedModel call; medians over rounds.",
    "calibration": "A reduced real run, not the full accuracy run: `tfsent.fit` fits one "
    "temperature T on the validation split (temperature scaling, Guo et al. 2017); the held-out "
    "reviews, from the same train tarball but neither trained on nor used to fit T, are scored "
    "at that T. ECE: expected calibration error over 15 equal-width confidence bins; dividing "
    "the logits by T leaves every argmax, so accuracy is unchanged.",
    "client_startup": "Fresh interpreters importing the client, and running one "
    "`python -m tfsent.predict --server` call against a local server, with the light client "
    "(no TensorFlow) and with the client of commit 3bc78bf (TensorFlow and "
    "tensorflow-serving-api), alternating; medians.",
    "reliability": "`python -m tfsent.serve` over a tiny export on loopback, clients without "
    "retries: a long load per protocol (server RSS compared between the first and the last "
    "thousand requests), a new version exported and the old one deleted under load, version "
    "folders that appear before they are complete, a corpus of bad requests each followed by a "
    "good one, and SIGKILL of `fit` / `export` (`benchmarks.kill_runs`).",
    "long_reviews": "One review per call or request: the median-length real review, and real "
    "reviews joined into 1 MB and 100 MB. The serving graph reads only the ends of a long text "
    "(`GraphTokenizer.trim`); in-process is the export's `serving_default` in a fresh process "
    "(peak: the kernel's RSS high-water mark the calls add); gRPC / REST go to "
    "`python -m tfsent.serve` with its request-size limits off, and *transport* is the same "
    "request to a signature the model lacks (received and parsed, then refused).",
}


def detail_table(name: str, result: dict[str, Any]) -> str:
    from benchmarks import (
        accuracy,
        calibration,
        client_startup,
        long_reviews,
        reliability,
        serving,
        tokenization,
        train_speed,
    )

    modules = {"train_speed": train_speed, "accuracy": accuracy, "tokenization": tokenization,
               "serving": serving, "calibration": calibration, "client_startup": client_startup,
               "reliability": reliability, "long_reviews": long_reviews}
    return modules[name].table(result)


def load_results(results_dir: Path) -> dict[str, dict[str, Any]]:
    """The full-run results present in ``results_dir``, by benchmark name."""
    results = {}
    for name in BENCHMARKS:
        path = results_dir / f"{name}.json"
        if path.is_file():
            try:
                results[name] = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                fail(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); rerun the "
                     "benchmark or restore the file")
    return results


def render(results_dir: Path) -> str:
    """The Results section, markers excluded."""
    results = load_results(results_dir)
    rows = []
    for name, (title, summary) in BENCHMARKS.items():
        command = f"`python -m benchmarks.{name}`"
        if name in results:
            rows.append([title, summary(results[name]), f"`{results[name]['command']}`"])
        else:
            rows.append([title, NOT_MEASURED, command])
    lines = [
        "## Results",
        "",
        "Measured by the scripts in [`benchmarks/`](benchmarks/README.md); every number, the "
        "exact command and the machine are in `benchmarks/results/*.json`. This section is "
        "generated: `python -m benchmarks.report --write`.",
        "",
        markdown_table(["benchmark", "result", "command"], rows),
    ]
    for name, (title, _) in BENCHMARKS.items():
        if name not in results:
            continue
        result = results[name]
        lines += [
            "",
            f"### {title}",
            "",
            EXPLANATIONS[name],
            "",
            detail_table(name, result),
            "",
            f"Machine: {describe(result['machine'])}; measured {result['date'][:10]} with "
            f"`{result['command']}`.",
        ]
    return "\n".join(lines) + "\n"


def replace_section(readme: str, section: str) -> str:
    """``readme`` with the text between the markers replaced (markers appended if missing)."""
    block = f"{START}\n{section}{END}"
    if START in readme and END in readme and readme.index(START) < readme.index(END):
        before, rest = readme.split(START, 1)
        after = rest.split(END, 1)[1]
        return before + block + after
    return readme.rstrip("\n") + "\n\n" + block + "\n"


def current_section(readme: str) -> str | None:
    if START not in readme or END not in readme:
        return None
    return readme.split(START, 1)[1].split(END, 1)[0].lstrip("\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.error = lambda message: fail(f"{message} (see --help)")  # one line, exit 2
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="Exit 1 if README.md's Results section differs from the rendering.")
    mode.add_argument("--write", action="store_true", help="Rewrite that section in place.")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    args = parser.parse_args(argv)

    section = render(Path(args.results_dir))
    if not (args.check or args.write):
        print(section, end="")
        return 0
    readme_path = Path(args.readme)
    if not readme_path.is_file():
        fail(f"{readme_path} does not exist; pass --readme")
    readme = readme_path.read_text(encoding="utf-8")
    if args.check:
        if current_section(readme) != section:
            print(f"{readme_path}: the Results section is out of date or missing; run "
                  "python -m benchmarks.report --write", file=sys.stderr)
            return 1
        print(f"{readme_path}: the Results section is up to date")
        return 0
    updated = replace_section(readme, section)
    if updated != readme:
        readme_path.write_text(updated, encoding="utf-8")
    print(f"wrote the Results section of {readme_path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
