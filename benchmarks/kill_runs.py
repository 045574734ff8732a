"""Kill runs: SIGKILL ``python -m tfsent.fit`` and ``python -m tfsent.export`` at chosen moments,
rerun the same command, and compare with an uninterrupted run.

Every process is a real ``python -m ...`` subprocess on the offline demo (``--config demo``), so
what is measured is what a user's rerun does after ``kill -9``. Moments are detected from what
the run itself writes, with no test hook in tfsent: Keras' progress output (``Epoch 2/4``, the
step counter) and the files of the run directory and the export::

    fit, mid-epoch          epoch 2 at step 15 or later (a step backup every 10 steps exists)
    fit, between epochs     "Epoch 3/4" printed: epoch 2's end (validation, best, backup) is done
    fit, after last epoch   checkpoints/trained.json written; model/ and metrics.json not yet
    fit, during evaluate    confusion_matrix.png written; metrics.json not yet
    fit, during export      the export's hidden staging folder exists under exported/tfsent/

    export, starting            the staging folder exists
    export, writing variables   its variables/ folder exists
    export, variables written   its variables/variables.index exists (the checkpoint is whole)
    export, graph written       its saved_model.pb exists (the warmup requests come next)
    export, renamed             the version folder exists (the process is about to end)

(The warmup requests are written and the folder renamed within milliseconds of saved_model.pb:
too fast to catch by polling, so no cell sits between them.)

A fit cell passes when the rerun trains none of the epochs finished (backed up) before the kill,
ends with the reference's epochs in ``history.csv`` and its ``metrics.json`` (timings and the
export path aside, the same numbers to the last bit), exactly one export version, and nothing
left behind. An export cell passes when, after the kill, every version folder present loads
(no half version) and, after the rerun, there is exactly one more complete version and no
staging folder.

    python -m benchmarks.kill_runs [--workdir DIR]    # all ten cells: about 10 minutes
    python -m benchmarks.kill_runs --quick            # one export cell on a tiny run dir

:func:`run_kill_cells` returns the record (``benchmarks/reliability.py`` commits it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.record import make_parser, start_run, write_result
from tfsent.errors import run_cli

NAME = "kill_runs"
REPO = Path(__file__).resolve().parents[1]
EPOCHS = 4
BACKUP_EVERY_STEPS = 10
MID_EPOCH_STEP = 15  # > BACKUP_EVERY_STEPS: a step backup of this epoch exists
# --progress 1: the cells watch Keras' per-step bars, which fit prints to a pipe only when asked.
FIT_ARGS = ["--config", "demo", "--epochs", str(EPOCHS), "--progress", "1",
            "--backup-every-steps", str(BACKUP_EVERY_STEPS), "--model-name", "tfsent"]
# Keys of metrics.json that differ between identical runs.
VOLATILE = ("train_seconds", "train_examples_per_second", "export")
TIMEOUT = 900
_STEP = re.compile(r"^\s*(\d+)/(\d+) \[")
_EPOCH = re.compile(r"^Epoch (\d+)/(\d+)")


@dataclass
class Process:
    """A ``python -m`` subprocess whose output lines (split at ``\\r`` too) are collected."""

    argv: list[str]
    cwd: Path
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "MPLBACKEND": "Agg"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", *self.argv], cwd=self.cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = ""
        while chunk := self.proc.stdout.read(1):
            if chunk in "\r\n":
                if buffer:
                    self.lines.append(buffer)
                buffer = ""
            else:
                buffer += chunk
        if buffer:
            self.lines.append(buffer)

    def wait(self) -> int:
        code = self.proc.wait(timeout=TIMEOUT)
        self._reader.join(timeout=10)
        self.seconds = time.perf_counter() - self.started
        return code

    def kill_when(self, moment: Callable[[Process], bool], poll: float = 0.01) -> bool:
        """SIGKILL as soon as ``moment(self)`` holds; False if the process ended first."""
        deadline = time.monotonic() + TIMEOUT
        while self.proc.poll() is None and time.monotonic() < deadline:
            if moment(self):
                self.proc.send_signal(signal.SIGKILL)
                self.wait()
                return True
            time.sleep(poll)
        self.wait()
        return False

    def epochs_started(self) -> list[int]:
        """The epochs (from 1) whose ``Epoch k/N`` line Keras printed."""
        return [int(m[1]) for line in self.lines if (m := _EPOCH.match(line))]

    def first_step(self) -> int | None:
        """The first step counter (from 1) the progress bar printed."""
        return next((int(m[1]) for line in self.lines if (m := _STEP.match(line))), None)

    def tail(self, n: int = 5) -> list[str]:
        return self.lines[-n:]


# --- fit ------------------------------------------------------------------------------------


def _mid_epoch(p: Process) -> bool:
    seen_epoch_2 = False
    for line in p.lines:
        if line.startswith("Epoch 2/"):
            seen_epoch_2 = True
        elif seen_epoch_2 and (m := _STEP.match(line)) and int(m[1]) >= MID_EPOCH_STEP:
            return True
    return False


def _between_epochs(p: Process) -> bool:
    return any(line.startswith("Epoch 3/") for line in p.lines)


def _staging(base: Path) -> list[Path]:
    return sorted(base.glob(".tmp-*")) if base.is_dir() else []


@dataclass
class FitCell:
    moment: str
    detect: str
    when: Callable[[Process, Path, Path], bool]
    # Epochs (from 1) the rerun may train: those the kill kept from being finished.
    rerun_epochs: list[int]


FIT_CELLS = [
    FitCell("mid-epoch", f"epoch 2 at step {MID_EPOCH_STEP} or later (step backups every "
            f"{BACKUP_EVERY_STEPS} steps)", lambda p, run, exp: _mid_epoch(p), [2, 3, 4]),
    FitCell("between epochs", '"Epoch 3/4" printed (epoch 2 backed up)',
            lambda p, run, exp: _between_epochs(p), [3, 4]),
    FitCell("after the last epoch", "checkpoints/trained.json written",
            lambda p, run, exp: (run / "checkpoints" / "trained.json").is_file(), []),
    FitCell("during evaluate", "confusion_matrix.png written",
            lambda p, run, exp: (run / "confusion_matrix.png").is_file(), []),
    FitCell("during export", "the export's staging folder exists",
            lambda p, run, exp: bool(_staging(exp / "tfsent")), []),
]


def fit_argv(run: Path, exported: Path) -> list[str]:
    return ["tfsent.fit", *FIT_ARGS, "--output-dir", str(run), "--export-dir", str(exported)]


def read_history(run: Path) -> list[dict[str, str]]:
    import csv

    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _validation_columns(rows: list[dict[str, str]]) -> list[list[str]]:
    return [[r["epoch"], r["val_accuracy"], r["val_loss"], r["val_f1_macro"]] for r in rows]


def comparable_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics.json`` without its timings, which no two runs share: what a resumed run must
    reproduce exactly."""
    return {k: {n: x for n, x in v.items() if n != "reviews_per_second"}
            if isinstance(v, dict) else v for k, v in metrics.items() if k not in VOLATILE}


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON values differ (paths like ``validation.loss``), exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b))
                for d in _differences(a.get(k), b.get(k), f"{path}.{k}" if path else k)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [path or "."]


def _versions(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []


def run_fit_cell(cell: FitCell, workdir: Path, reference: dict[str, Any]) -> dict[str, Any]:
    cell_dir = workdir / re.sub(r"\W+", "-", cell.moment).strip("-")
    shutil.rmtree(cell_dir, ignore_errors=True)
    cell_dir.mkdir(parents=True)
    run, exported = cell_dir / "run", cell_dir / "exported"
    first = Process(fit_argv(run, exported), cell_dir)
    killed = first.kill_when(lambda p: cell.when(p, run, exported))
    left = sorted(p.name for p in run.iterdir()) if run.is_dir() else []
    history_after_kill = len(read_history(run)) if (run / "history.csv").is_file() else 0
    rerun = Process(fit_argv(run, exported), cell_dir)
    code = rerun.wait()
    result: dict[str, Any] = {
        "moment": cell.moment,
        "killed_when": cell.detect,
        "killed": killed and first.proc.returncode == -signal.SIGKILL,
        "seconds_to_kill": round(first.seconds, 1),
        "left_by_kill": left,
        "history_rows_after_kill": history_after_kill,
        "rerun_exit_code": code,
        "rerun_seconds": round(rerun.seconds, 1),
        "rerun_trained_epochs": rerun.epochs_started(),
        "expected_rerun_epochs": cell.rerun_epochs,
    }
    if cell.moment == "mid-epoch":
        result["rerun_first_step"] = rerun.first_step()
    if code != 0:
        result |= {"ok": False, "rerun_output": rerun.tail(8)}
        return result
    metrics = json.loads((run / "metrics.json").read_text())
    rows = read_history(run)
    differences = _differences(comparable_metrics(metrics),
                               comparable_metrics(reference["metrics"]))
    base = exported / "tfsent"
    result |= {
        "history_epochs": [int(r["epoch"]) for r in rows],
        "history_equal": _validation_columns(rows) == reference["validation_columns"],
        "metrics_equal": not differences,
        "metrics_differences": differences[:10],
        "best_epoch": metrics.get("best_epoch"),
        "export": Path(metrics.get("export", "")).name,
        "export_versions": _versions(base),
        "left_behind": [p.name for p in _staging(base)]
        + sorted(p.name for p in run.glob(".*tmp*")) + (["backup"] if (run / "backup").exists()
                                                         else []),
    }
    no_repeat = set(result["rerun_trained_epochs"]) <= set(cell.rerun_epochs)
    if cell.moment == "mid-epoch":  # resumed inside epoch 2, after its step backup
        no_repeat = no_repeat and (result["rerun_first_step"] or 0) > BACKUP_EVERY_STEPS
    result["no_finished_epoch_repeated"] = no_repeat
    result["ok"] = bool(result["killed"] and no_repeat and result["history_equal"]
                        and result["metrics_equal"] and result["export_versions"] == ["1"]
                        and not result["left_behind"])
    return result


# --- export ---------------------------------------------------------------------------------


@dataclass
class ExportCell:
    moment: str
    detect: str
    when: Callable[[Path], bool]  # given the base folder exported/tfsent


def _in_staging(relative: str) -> Callable[[Path], bool]:
    return lambda base: any((s / relative).exists() for s in _staging(base))


EXPORT_CELLS = [
    ExportCell("starting", "staging folder exists", lambda base: bool(_staging(base))),
    ExportCell("writing variables", "staging variables/ exists", _in_staging("variables")),
    ExportCell("variables written", "staging variables/variables.index exists",
               _in_staging("variables/variables.index")),
    ExportCell("graph written", "staging saved_model.pb exists", _in_staging("saved_model.pb")),
    ExportCell("renamed", "version folder 1 exists", lambda base: (base / "1").is_dir()),
]


def loadable(version: Path) -> bool:
    """Whether TF loads the SavedModel and its serving signature runs on a review."""
    code = ("import sys, tensorflow as tf, tensorflow_text\n"
            "m = tf.saved_model.load(sys.argv[1])\n"
            "out = m.signatures['serving_default'](text=tf.constant(['a great film']))\n"
            "assert out['probabilities'].shape[0] == 1\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code, str(version)], capture_output=True,
                          env=env, timeout=TIMEOUT)
    return done.returncode == 0


def run_export_cell(cell: ExportCell, workdir: Path, run: Path) -> dict[str, Any]:
    exported = workdir / ("export-" + re.sub(r"\W+", "-", cell.moment).strip("-"))
    shutil.rmtree(exported, ignore_errors=True)
    exported.mkdir(parents=True)
    base = exported / "tfsent"
    argv = ["tfsent.export", "--run-dir", str(run), "--export-dir", str(exported),
            "--model-name", "tfsent"]
    first = Process(argv, workdir)
    killed = first.kill_when(lambda p: cell.when(base))
    after_kill = _versions(base)
    stale_after_kill = [p.name for p in _staging(base)]
    half = [v for v in after_kill if not loadable(base / v)]
    rerun = Process(argv, workdir)
    code = rerun.wait()
    versions = _versions(base)
    expected = [*after_kill, str(len(after_kill) + 1)]
    result = {
        "moment": cell.moment,
        "killed_when": cell.detect,
        "killed": killed and first.proc.returncode == -signal.SIGKILL,
        "versions_after_kill": after_kill,
        "half_versions_after_kill": half,
        "staging_after_kill": stale_after_kill,
        "rerun_exit_code": code,
        "rerun_seconds": round(rerun.seconds, 1),
        "versions_after_rerun": versions,
        "all_loadable_after_rerun": code == 0 and all(loadable(base / v) for v in versions),
        "left_behind": [p.name for p in _staging(base)],
    }
    result["ok"] = bool(result["killed"] and not half and code == 0
                        and versions == expected and result["all_loadable_after_rerun"]
                        and not result["left_behind"])
    return result


# --- all cells ------------------------------------------------------------------------------


def reference_fit(workdir: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The uninterrupted fit every fit cell is compared with: (its run dir, what the cells
    compare, its summary)."""
    ref_run, ref_exported = workdir / "reference" / "run", workdir / "reference" / "exported"
    shutil.rmtree(workdir / "reference", ignore_errors=True)
    (workdir / "reference").mkdir()
    reference_process = Process(fit_argv(ref_run, ref_exported), workdir / "reference")
    if reference_process.wait() != 0:
        raise RuntimeError("the reference fit failed: " + " | ".join(reference_process.tail(8)))
    metrics = json.loads((ref_run / "metrics.json").read_text())
    rows = read_history(ref_run)
    summary = {
        "epochs": [int(r["epoch"]) + 1 for r in rows],
        "best_epoch": metrics["best_epoch"],
        "validation_accuracy": metrics["validation"]["accuracy"],
        "validation_loss": metrics["validation"]["loss"],
        "seconds": round(reference_process.seconds, 1),
    }
    return ref_run, {"metrics": metrics, "validation_columns": _validation_columns(rows)}, summary


def run_kill_cells(workdir: Path, quick: bool = False) -> dict[str, Any]:
    """Run the reference fit, the five fit kill cells and the five export kill cells under
    ``workdir`` (created; about 10 minutes on 2 CPU cores); return the record. ``quick``: only
    the first export cell, on a tiny run dir (no fit)."""
    from tfsent.testing import make_tiny_run_dir

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if quick:
        run, summary, fit_cells = make_tiny_run_dir(workdir / "tiny-run"), None, []
        export_cells = [run_export_cell(EXPORT_CELLS[0], workdir, run)]
    else:
        run, reference, summary = reference_fit(workdir)
        fit_cells = [run_fit_cell(cell, workdir, reference) for cell in FIT_CELLS]
        export_cells = [run_export_cell(cell, workdir, run) for cell in EXPORT_CELLS]
    return {
        "fit_command": "python -m tfsent.fit " + " ".join(FIT_ARGS)
        + " --output-dir RUN --export-dir EXPORTED",
        "reference": summary,
        "fit_cells": fit_cells,
        "export_cells": export_cells,
        "passed": sum(c["ok"] for c in fit_cells + export_cells),
        "cells": len(fit_cells) + len(export_cells),
        "ok": all(c["ok"] for c in fit_cells + export_cells),
        "seconds": round(time.perf_counter() - started, 1),
    }


def format_table(record: dict[str, Any]) -> str:
    lines = ["fit, SIGKILL at             rerun trained   history  metrics  versions  ok"]
    for c in record["fit_cells"]:
        lines.append(f"{c['moment']:28}{str(c['rerun_trained_epochs']):16}"
                     f"{str(c.get('history_equal')):9}{str(c.get('metrics_equal')):9}"
                     f"{str(c.get('export_versions')):10}{c['ok']}")
    lines.append("export, SIGKILL at          after kill      half     after rerun  stale  ok")
    for c in record["export_cells"]:
        lines.append(f"{c['moment']:28}{str(c['versions_after_kill']):16}"
                     f"{str(c['half_versions_after_kill']):9}{str(c['versions_after_rerun']):13}"
                     f"{str(c['left_behind']):7}{c['ok']}")
    lines.append(f"{record['passed']} of {record['cells']} cells pass "
                 f"({record['seconds']:.0f} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=None,
                        help="Where the runs go (default: a temporary folder, removed after).")
    args = parser.parse_args(argv)
    started = start_run()
    with tempfile.TemporaryDirectory(prefix="kill-runs-") as tmp:
        record = run_kill_cells(Path(args.workdir or tmp), quick=args.quick)
    write_result(NAME, argv, args.quick, args.results_dir, record, started=started)
    print(format_table(record))
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
