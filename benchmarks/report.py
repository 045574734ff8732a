"""The README's "Results" section, rendered from the committed results in ``benchmarks/results/``,
and the check that every figure the README states is one of those results.

Only full runs count (``<name>.json``; never the ``*.quick.json`` smoke runs). A benchmark
without a result renders as "not measured yet", with the command that measures it::

    python -m benchmarks.report            # print the section
    python -m benchmarks.report --write    # rewrite it, the generated tables and cited figures
    python -m benchmarks.report --check    # one line per problem, exit 1 if there is any

The section lies between ``<!-- results:start -->`` and ``<!-- results:end -->``; a generated
table between ``<!-- table:<name>:start -->`` and ``<!-- table:<name>:end -->`` (the table the
benchmark ``<name>`` prints); figures in prose cite their result (``benchmarks.figures``).
``--check`` reports: a result that records no commit or no load, a commit that is not in HEAD's
history (``git merge-base --is-ancestor``) or a tree that had uncommitted changes, a section or
table out of date, a cited figure that differs from its result or cites none, and a figure
between ``<!-- figures:start -->`` and ``<!-- figures:end -->`` that cites no result. It checks
README.md and benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.figures import check_figures, update_figures
from benchmarks.machine import describe
from benchmarks.record import BENCHMARKS_DIR, REPO, RESULTS_DIR, markdown_table, number
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
    # Older results lack the preset, the precision and the whole fit's time.
    preset = r["settings"].get("preset")
    recipe = f"preset {preset}" if preset else f"{epochs} epoch(s)"
    precision = f"{r['precision_policy']}, " if "precision_policy" in r else ""
    fit = (f" ({r['fit_seconds'] / 60:.0f} min the whole fit)" if "fit_seconds" in r else "")
    return (f"**{100 * v['accuracy']:.1f}%** validation accuracy (macro F1 {v['f1_macro']:.3f}) "
            f"on {v['examples']:,} held-out reviews, {r['settings']['model']}, {recipe}, "
            f"{precision}trained in {r['train_seconds'] / 60:.0f} min{fit}{ece}; "
            f"published (test set): {published}")


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
    from benchmarks.reliability import bad_request_summary, sustained_load

    cell = sustained_load(r)
    requests = cell["rest"]["requests"] + cell["grpc"]["requests"]
    failures = (cell["rest"]["failures"] + cell["grpc"]["failures"] + r["hot_swap"]["failures"]
                + r["half_written"]["failures"])
    growth = max(abs(cell[p].get("rss_growth") or 0) for p in ("rest", "grpc"))
    return (f"**{failures} failures** in {requests:,} requests at concurrency "
            f"{r['settings']['concurrency']} and through a hot swap and half-written versions; "
            f"server RSS within {100 * growth:.1f}%; bad requests: "
            f"{bad_request_summary(r['bad_requests'])}")


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


def _train_profile(r: dict[str, Any]) -> str:
    c = r["categories"]
    top = sorted((name for name in c if c[name].get("busy_share")),
                 key=lambda name: -c[name]["busy_share"])[:3]
    shares = ", ".join(f"{name} {100 * c[name]['busy_share']:.0f}%" for name in top)
    return (f"B's training step ({r['settings']['model']}, max length "
            f"{r['settings']['max_length']}, {r['precision_policy']}): "
            f"{r['seconds_per_step']:.2f} s; of its busy time **{shares}**; the cores busy "
            f"{100 * r['busy_share_of_core_time']:.0f}% of the wall time")


def _serving_compat(r: dict[str, Any]) -> str:
    worst = max((o["max_abs_diff"] for o in r["outputs"].values() if "max_abs_diff" in o),
                default=0.0)
    verdict = "**agree**" if r["agree"] else "**DISAGREE**"
    return (f"a TF {r['exported_with']['tensorflow']} export loaded as tensorflow_model_server "
            f"loads it, in TF {r['loaded_with']['tensorflow']} + tensorflow-text "
            f"{r['loaded_with']['tensorflow_text']}: {verdict} on {r['reviews']} real reviews "
            f"(largest difference {worst:.1e})")


def _bulk_scoring(r: dict[str, Any]) -> str:
    best = max(r["scorer"].items(), key=lambda kv: kv[1]["rows_per_second"])
    big = r["big_input"]
    return (f"`tfsent.score` over gRPC: **{number(best[1]['rows_per_second'])} rows/s** at "
            f"concurrency {best[0]}, {best[1]['vs_in_process_best']:.2f}x the export's best "
            f"in-process rate; peak RSS {number(big['peak_rss_mib'], 0)} MiB on a "
            f"{number(big['input_bytes'] / 2**20, 0)} MiB input")


# name -> (title, one-line summary of its result)
BENCHMARKS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "train_speed": ("Training speed", _train_speed),
    "train_profile": ("Training profile", _train_profile),
    "accuracy": ("Accuracy", _accuracy),
    "tokenization": ("Tokenization", _tokenization),
    "serving": ("Serving", _serving),
    "calibration": ("Calibration", _calibration),
    "client_startup": ("Client start-up", _client_startup),
    "reliability": ("Reliability", _reliability),
    "long_reviews": ("Long reviews", _long_reviews),
    "serving_compat": ("Older TF Serving", _serving_compat),
    "bulk_scoring": ("Bulk scoring", _bulk_scoring),
}
EXPLANATIONS = {
    "train_speed": "A is the usual recipe (pad every review to max length, "
    "`from_tensor_slices`, float32); B is tfsent (length bucketing, dynamic padding, prefetch, "
    "bf16 where the CPU has it). Same model, reviews, seed and lr schedule, but not the same "
    "tokens of a long review: each cuts it its own way ({truncation}). {repeats}; FLOP/s "
    "against a bf16 matmul measured in the same run.",
    "train_profile": "The TensorFlow Profiler around B's steady-state training steps (the "
    "step `fit` runs), its op table summed by kind of op. Self-times are summed over every host "
    "thread, and TensorFlow's pools hold more threads than there are cores: *busy time* leaves "
    "out IDLE (a pool thread with no op), *cores x wall* is a share of the cores' wall time, "
    "*thread time* counts IDLE too.",
    "serving_compat": "A fresh export of this TensorFlow, loaded the way `tensorflow_model_server` "
    "loads a SavedModel (TF1 `loader.load`, tag `serve`; `import tensorflow_text` stands in for "
    "the ops TF Serving links statically) in this Python and in one with the older TensorFlow "
    "and tensorflow-text; both signatures run on the same real reviews.",
    "bulk_scoring": "`python -m tfsent.score` reading a CSV of real reviews and scoring it "
    "through `python -m tfsent.serve` (gRPC, server batching) on the same machine, against the "
    "export's `serving_default` called in-process at its best batch size; then its peak memory "
    "on a large input, of which it scores every K-th row.",
    "accuracy": "`tfsent.fit` on the IMDB train split minus a stratified 5,000-review "
    "validation split; the published figures are IMDB test-set accuracies.",
    "tokenization": "The exported model's in-graph tokenizer (tensorflow-text, in a "
    "`tf.function`) against the HF fast tokenizer as training uses it, on the same raw reviews.",
    "serving": "`python -m tfsent.serve` on loopback, one review per request, against the "
    "in-process SavedModel call; {repeats}.",
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
    "good one (`benchmarks/bad_requests.py`: most are answered as TF Serving answers them, the "
    "rest run into limits only tfsent has: instances per request, request size, config "
    "reloads, JSON nesting), and SIGKILL of `fit` / `export` (`benchmarks.kill_runs`).",
    "long_reviews": "One review per call or request: the median-length real review, and real "
    "reviews joined into 1 MB and 100 MB. The serving graph reads only the ends of a long text "
    "(`GraphTokenizer.trim`); in-process is the export's `serving_default` in a fresh process "
    "(peak: the kernel's RSS high-water mark the calls add); gRPC / REST go to "
    "`python -m tfsent.serve` with its request-size limits off, and *transport* is the same "
    "request to a signature the model lacks (received and parsed, then refused).",
}
# The benchmarks whose ``table(result)`` the README shows.
MODULES = ("train_speed", "train_profile", "accuracy", "tokenization", "serving", "calibration",
           "client_startup", "reliability", "long_reviews", "serving_compat", "bulk_scoring")


def benchmark_module(name: str) -> Any:
    """``benchmarks.<name>`` (imported when needed: most pull in TensorFlow)."""
    if name not in MODULES:
        raise KeyError(name)
    return importlib.import_module(f"benchmarks.{name}")


def detail_table(name: str, result: dict[str, Any]) -> str:
    return benchmark_module(name).table(result)


def explanation(name: str, result: dict[str, Any]) -> str:
    """The paragraph above a benchmark's table, with what its run did where that varies."""
    settings = result.get("settings", {})
    repeats = settings.get("repeats")
    if name == "serving":
        how = ("one round of cells (`--repeats 1`): single measurements, no medians"
               if repeats == 1 else f"medians over {repeats} rounds")
        return EXPLANATIONS[name].format(repeats=how)
    if name == "train_speed":
        how = ("One run of each (`--repeats 1`): no medians" if repeats == 1
               else f"Medians over {repeats} alternating repeats")
        cuts = settings.get("truncation", {"A": "head", "B": "head+tail"})
        truncation = "; ".join(f"{config}: {cut}" for config, cut in cuts.items())
        return EXPLANATIONS[name].format(repeats=how, truncation=truncation)
    return EXPLANATIONS[name]


def provenance(result: dict[str, Any]) -> str:
    """The line under a result: machine, date, commit, command and the machine's load."""
    text = f"Machine: {describe(result['machine'])}; measured {result['date'][:10]}"
    commit, load = result.get("commit"), result.get("load")
    if commit and commit.get("sha"):
        text += f" at commit {commit['sha'][:10]}" + ("" if commit.get("clean")
                                                      else " (with uncommitted changes)")
    text += f" with `{result['command']}`"
    if load and "run" in load:
        text += (f"; other processes used {100 * load['run']['others_cpu_share']:.0f}% of the "
                 f"machine's {load['cpus']} CPUs over the run (load average "
                 f"{load['start']['loadavg'][0]:.1f} at the start, "
                 f"{load['end']['loadavg'][0]:.1f} at the end)")
    else:
        text += "; its commit and the machine's load were not recorded"
    return text + "."


def load_results(results_dir: Path, names: Sequence[str] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """The full-run results present in ``results_dir`` (every ``<name>.json``, or those of
    ``names``), by benchmark name."""
    paths = ([results_dir / f"{name}.json" for name in names] if names is not None
             else sorted(p for p in results_dir.glob("*.json")
                         if not p.name.endswith(".quick.json")))
    results = {}
    for path in paths:
        if path.is_file():
            try:
                results[path.stem] = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                fail(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); rerun the "
                     "benchmark or restore the file")
    return results


def render(results_dir: Path) -> str:
    """The Results section, markers excluded."""
    results = load_results(results_dir, list(BENCHMARKS))
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
        "exact command, the commit, the machine and its load are in "
        "`benchmarks/results/*.json`. This section is generated: "
        "`python -m benchmarks.report --write`.",
        "",
        markdown_table(["benchmark", "result", "command"], rows),
    ]
    for name, (title, _) in BENCHMARKS.items():
        if name not in results:
            continue
        result = results[name]
        lines += ["", f"### {title}", "", explanation(name, result), "",
                  detail_table(name, result), "", provenance(result)]
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


_TABLE = re.compile(r"(<!-- table:(\w+):start -->\n)(.*?)(<!-- table:\2:end -->)", re.S)


def update_tables(text: str, results: dict[str, dict[str, Any]]) -> str:
    """Every generated table (``<!-- table:<name>:start -->`` ... ``end``) rendered anew."""
    def replace(match: re.Match) -> str:
        name = match[2]
        if name not in MODULES:  # left as it is; --check names it
            return match[0]
        body = (detail_table(name, results[name]) if name in results
                else f"{NOT_MEASURED}: `python -m benchmarks.{name}`")
        return f"{match[1]}{body}\n{match[4]}"

    return _TABLE.sub(replace, text)


def _table_problems(text: str, results: dict[str, dict[str, Any]], label: str) -> list[str]:
    problems = []
    for match in _TABLE.finditer(text):
        if match[2] not in MODULES:
            problems.append(f"{label}: <!-- table:{match[2]} --> names no benchmark")
        elif update_tables(match[0], results) != match[0]:
            problems.append(f"{label}: the {match[2]} table is out of date; run python -m "
                            "benchmarks.report --write")
    return problems


def _is_ancestor(sha: str, repo: Path) -> bool:
    done = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", sha, "HEAD"],
                          capture_output=True, timeout=60)
    return done.returncode == 0


def result_problems(results_dir: Path, repo: Path) -> list[str]:
    """Results the code as it is cannot be said to reproduce."""
    problems = []
    rerun = "rerun python -m benchmarks.{}"
    for name, result in load_results(results_dir).items():
        where = f"{results_dir / name}.json"
        commit, load = result.get("commit"), result.get("load")
        if not (isinstance(commit, dict) and commit.get("sha")):
            problems.append(f"{where}: records no commit; {rerun.format(name)}")
        elif not _is_ancestor(commit["sha"], repo):
            problems.append(f"{where}: commit {commit['sha'][:10]} is not in HEAD's history; "
                            f"{rerun.format(name)}")
        elif not commit.get("clean"):
            problems.append(f"{where}: measured with uncommitted changes "
                            f"({', '.join(commit.get('changed', [])[:3])}); commit them and "
                            f"{rerun.format(name)}")
        if not (isinstance(load, dict) and "start" in load and "end" in load):
            problems.append(f"{where}: records no load of the machine; {rerun.format(name)}")
    return problems


def _blank_section(readme: str) -> str:
    """``readme`` with the Results section's lines emptied (line numbers kept)."""
    section = current_section(readme)
    if section is None:
        return readme
    before, rest = readme.split(START, 1)
    return before + START + "\n" * rest.split(END, 1)[0].count("\n") + END + rest.split(END, 1)[1]


def check(readme_path: Path, docs: Sequence[Path], results_dir: Path, repo: Path) -> list[str]:
    """Every problem, one line each (none: the README states only what the results hold)."""
    results = load_results(results_dir)
    problems = result_problems(results_dir, repo)
    readme = readme_path.read_text(encoding="utf-8")
    if current_section(readme) != render(results_dir):
        problems.append(f"{readme_path}: the Results section is out of date or missing; run "
                        "python -m benchmarks.report --write")
    for path in [readme_path, *docs]:
        text = path.read_text(encoding="utf-8")
        if path == readme_path:  # the generated section is checked whole, above
            text = _blank_section(text)
        problems += _table_problems(text, results, str(path))
        problems += [p.message for p in check_figures(text, results, str(path))]
    return problems


def write(readme_path: Path, docs: Sequence[Path], results_dir: Path) -> list[Path]:
    """Rewrite the Results section, the generated tables and the cited figures; the files
    changed."""
    results = load_results(results_dir)
    changed = []
    for path in [readme_path, *docs]:
        text = path.read_text(encoding="utf-8")
        updated = update_figures(update_tables(text, results), results)
        if path == readme_path:
            updated = replace_section(updated, render(results_dir))
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.error = lambda message: fail(f"{message} (see --help)")  # one line, exit 2
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="Print every problem, one line each; exit 1 if there is any.")
    mode.add_argument("--write", action="store_true",
                      help="Rewrite the Results section, generated tables and cited figures.")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--readme", default=str(REPO / "README.md"),
                        help="The markdown file holding the Results section.")
    parser.add_argument("--doc", action="append", default=None,
                        help="Further markdown whose tables and figures are checked and "
                        "written (repeatable; default: benchmarks/README.md).")
    parser.add_argument("--repo", default=str(REPO),
                        help="The git repository whose HEAD the results' commits must be in.")
    args = parser.parse_args(argv)

    results_dir = Path(args.results_dir)
    if not (args.check or args.write):
        print(render(results_dir), end="")
        return 0
    readme_path = Path(args.readme)
    docs = [Path(d) for d in (args.doc if args.doc is not None
                              else [BENCHMARKS_DIR / "README.md"])]
    for path in [readme_path, *docs]:
        if not path.is_file():
            fail(f"{path} does not exist; pass --readme / --doc")
    if args.check:
        problems = check(readme_path, docs, results_dir, Path(args.repo))
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            return 1
        print(f"{readme_path}: every result and figure checks out")
        return 0
    changed = write(readme_path, docs, results_dir)
    print(f"wrote {', '.join(map(str, changed))}" if changed else "nothing to rewrite")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
