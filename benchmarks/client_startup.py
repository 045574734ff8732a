"""Client start-up: the time to import the client and the wall time of one
``python -m tfsent.predict --server`` call, now and before the light client.

"Before" is the client of commit ``3bc78bf`` (``tfsent.serving.client``, on TensorFlow and
``tensorflow-serving-api``), extracted with ``git archive`` into a temporary folder (or
``--before-tree``); "after" is this checkout's ``tfsent.client``. Each runs in fresh interpreters
of this Python with its own tree first on ``sys.path``, against one local server
(``python -m tfsent.serve`` on a tiny export, or ``--model-base-path``), alternating, after one
untimed run of each (so both read warm files); medians over ``--repeats``. For scale, the
request itself is timed too: one review through a warm ``SentimentClient`` in this process.

    python -m benchmarks.client_startup                 # 5 repeats, tiny export
    python -m benchmarks.client_startup --quick         # 2 repeats
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.record import (
    REPO,
    make_parser,
    markdown_table,
    parse_sized_args,
    start_run,
    write_result,
)
from tfsent.errors import fail, run_cli

NAME = "client_startup"
BEFORE_REV = "3bc78bf"
BEFORE_MODULE = "tfsent.serving.client"
AFTER_MODULE = "tfsent.client"
PROTOCOLS = ("grpc", "rest")
GOALS = {"import_seconds": 1.0, "predict_seconds": 1.5}
REVIEW = "A wonderful, moving film: the best I have seen this year."
DEFAULTS = {"repeats": 5}
QUICK = {"repeats": 2}
STARTUP_SECONDS = 300
_IMPORT = ("import sys, time; start = time.perf_counter(); "
           "__import__(sys.argv[1]); print(time.perf_counter() - start); "
           "print(any(m.split('.')[0] == 'tensorflow' for m in sys.modules))")


def parse_args(argv: Sequence[str] | None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int,
                        help="Timed runs of each command (default 5; 2 with --quick).")
    parser.add_argument("--before-rev", default=BEFORE_REV,
                        help="Commit whose client is 'before' (read with git archive).")
    parser.add_argument("--before-tree",
                        help="A source tree of the 'before' code instead of --before-rev.")
    parser.add_argument("--before-module", default=BEFORE_MODULE,
                        help="The 'before' tree's client module, whose import is timed.")
    parser.add_argument("--model-base-path",
                        help="Export to serve (default: a tiny export in a temporary folder; "
                        "start-up does not depend on the model's size).")
    parser.add_argument("--model-name", default="tfsent")
    return parse_sized_args(parser, argv, DEFAULTS, QUICK, ("repeats",))


def child_env(tree: Path) -> dict[str, str]:
    """``tree``'s ``tfsent`` first on the path; offline; TF's log level as a user has it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["PYTHONPATH"] = str(tree)
    return env


def time_import(tree: Path, module: str) -> dict[str, Any]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _IMPORT, module], cwd=tree,
                          env=child_env(tree), capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        fail(f"importing {module} from {tree} failed: {proc.stderr.strip()[-500:]}")
    seconds, tensorflow = proc.stdout.split()
    return {"import_seconds": float(seconds), "process_seconds": wall,
            "tensorflow_imported": tensorflow == "True"}


def time_predict(tree: Path, address: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "tfsent.predict", "--server", address, REVIEW]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=tree, env=child_env(tree), capture_output=True, text=True,
                          timeout=300)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not proc.stdout.strip():
        fail(f"predict --server {address} from {tree} failed: {proc.stderr.strip()[-500:]}")
    # "positive (confidence 0.95)", and after it (now) the shortened review.
    return {"seconds": wall, "answer": proc.stdout.strip().split("  ")[0]}


def request_milliseconds(address: str, model_name: str, count: int = 20) -> float:
    """Median ms of one review through a warm client: what the server and wire take."""
    from tfsent.client import SentimentClient

    with SentimentClient(address, model_name=model_name) as client:
        client.predict([REVIEW])
        times = []
        for _ in range(count):
            start = time.perf_counter()
            client.predict([REVIEW])
            times.append(time.perf_counter() - start)
    return median(times) * 1000


@contextlib.contextmanager
def before_tree(args, tmp: Path) -> Iterator[Path]:
    if args.before_tree:
        yield Path(args.before_tree).resolve()
        return
    tree = tmp / "before"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before_rev],
                             capture_output=True, timeout=120)
    if archive.returncode != 0:
        fail(f"cannot read commit {args.before_rev}: {archive.stderr.decode().strip()}; "
             "pass --before-tree with a checkout of it")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    yield tree


def tiny_export(folder: Path, model_name: str) -> Path:
    from tfsent.export import export_run
    from tfsent.testing import make_tiny_run_dir

    return export_run(make_tiny_run_dir(folder / "run"), folder / "exported", model_name).parent


def summarize(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [r[key] for r in runs]
    return {"median": median(values), "min": min(values), "max": max(values), "runs": values}


def run_benchmark(args, before: Path, base_path: Path) -> dict[str, Any]:
    from tfsent.model_server.process import start_server

    trees = {"before": (before, args.before_module), "after": (REPO, AFTER_MODULE)}
    imports: dict[str, list] = {name: [] for name in trees}
    predicts: dict[str, dict[str, list]] = {p: {name: [] for name in trees} for p in PROTOCOLS}
    with start_server(base_path.resolve(), args.model_name,
                      ["--file_system_poll_wait_seconds=0"], timeout=STARTUP_SECONDS) as server:
        addresses = {"grpc": f"grpc://{server.grpc_address}", "rest": server.rest_url}
        for tree, module in trees.values():  # untimed: warm the file cache for both
            time_import(tree, module)
            for address in addresses.values():
                time_predict(tree, address)
        for repeat in range(args.repeats):
            for name, (tree, module) in trees.items():
                imports[name].append(time_import(tree, module))
                for protocol, address in addresses.items():
                    predicts[protocol][name].append(time_predict(tree, address))
            print(f"  round {repeat + 1}/{args.repeats}: import "
                  f"{imports['before'][-1]['import_seconds']:.2f} s -> "
                  f"{imports['after'][-1]['import_seconds']:.2f} s; predict --server grpc "
                  f"{predicts['grpc']['before'][-1]['seconds']:.2f} s -> "
                  f"{predicts['grpc']['after'][-1]['seconds']:.2f} s", file=sys.stderr)
        request_ms = {p: request_milliseconds(a, args.model_name) for p, a in addresses.items()}
    for protocol in PROTOCOLS:
        answers = {r["answer"] for runs in predicts[protocol].values() for r in runs}
        if len(answers) != 1:
            fail(f"before and after answered differently over {protocol}: {sorted(answers)}")
    result: dict[str, Any] = {"import": {}, "predict_server": {p: {} for p in PROTOCOLS}}
    for name, (_, module) in trees.items():
        result["import"][name] = {
            "module": module,
            "seconds": summarize(imports[name], "import_seconds"),
            "process_seconds": summarize(imports[name], "process_seconds"),
            "tensorflow_imported": any(r["tensorflow_imported"] for r in imports[name]),
        }
        for protocol in PROTOCOLS:
            result["predict_server"][protocol][name] = summarize(predicts[protocol][name],
                                                                 "seconds")
    for protocol in PROTOCOLS:
        result["predict_server"][protocol]["answer"] = predicts[protocol]["after"][0]["answer"]
    result["request_ms"] = request_ms
    result["speedup"] = {
        "import": _ratio(result["import"]["before"]["seconds"]["median"],
                         result["import"]["after"]["seconds"]["median"]),
        **{f"predict_server_{p}": _ratio(result["predict_server"][p]["before"]["median"],
                                         result["predict_server"][p]["after"]["median"])
           for p in PROTOCOLS},
    }
    result["goals"] = GOALS
    result["goals_met"] = {
        "import": result["import"]["after"]["seconds"]["median"] < GOALS["import_seconds"],
        **{f"predict_server_{p}": result["predict_server"][p]["after"]["median"]
           < GOALS["predict_seconds"] for p in PROTOCOLS},
    }
    return result


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_run()
    with tempfile.TemporaryDirectory(prefix="tfsent-client-startup-") as tmp:
        tmp = Path(tmp)
        if args.model_base_path:
            base_path = Path(args.model_base_path)
            if not base_path.is_dir():
                fail(f"--model-base-path {base_path} is not a folder; give an export like "
                     "exported/tfsent")
        else:
            base_path = tiny_export(tmp, args.model_name)
        with before_tree(args, tmp) as before:
            results = run_benchmark(args, before, base_path)
    numbers = {
        "settings": {
            "repeats": args.repeats,
            "before": args.before_tree or f"commit {args.before_rev}",
            "model_base_path": args.model_base_path or "tiny export (temporary)",
            "model_name": args.model_name,
            "review": REVIEW,
        },
        **results,
    }
    result = write_result(NAME, argv, args.quick, args.results_dir, numbers,
                          started=started)
    print(table(result))
    return 0


def table(result: dict[str, Any]) -> str:
    before = result["settings"]["before"].removeprefix("commit ")
    rows = []
    imports = result["import"]
    rows.append([f"`import {imports['after']['module']}` (before: `{imports['before']['module']}`)",
                 f"{imports['before']['seconds']['median']:.2f}",
                 f"{imports['after']['seconds']['median']:.2f}",
                 f"{result['speedup']['import']:.1f}x",
                 f"< {result['goals']['import_seconds']:g} s"])
    for protocol, scheme in (("grpc", "grpc://"), ("rest", "http://")):
        cell = result["predict_server"][protocol]
        rows.append([f"`python -m tfsent.predict --server {scheme}...` (one review, wall)",
                     f"{cell['before']['median']:.2f}", f"{cell['after']['median']:.2f}",
                     f"{result['speedup'][f'predict_server_{protocol}']:.1f}x",
                     f"< {result['goals']['predict_seconds']:g} s"])
    note = (f"\n\nMedians of {result['settings']['repeats']} runs. The request itself, through "
            f"a warm client: {result['request_ms']['grpc']:.1f} ms over gRPC, "
            f"{result['request_ms']['rest']:.1f} ms over REST. TensorFlow imported by the "
            f"client: before {'yes' if imports['before']['tensorflow_imported'] else 'no'}, "
            f"now {'yes' if imports['after']['tensorflow_imported'] else 'no'}.")
    # Start-up is disk- and CPU-bound: other jobs on the machine show in the times.
    load = result.get("load")
    if load:
        note += (f" Other processes used {100 * load['run']['others_cpu_share']:.0f}% of the "
                 f"machine's {load['cpus']} CPUs over the run; load average (1 min) "
                 f"{load['start']['loadavg'][0]:.1f} at the start, "
                 f"{load['end']['loadavg'][0]:.1f} at the end.")
    elif "load_average_1min" in result["settings"]:  # recorded before benchmarks.record did
        old = result["settings"]["load_average_1min"]
        note += (f" Load average (1 min) on the machine's {result['machine']['cores']} cores: "
                 f"{old['start']:.1f} at the start, {old['end']:.1f} at the end.")
    return markdown_table(["measurement", f"before ({before}) s", "now s", "speed-up", "goal"],
                          rows) + note


if __name__ == "__main__":
    sys.exit(run_cli(main))
