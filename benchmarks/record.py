"""How a benchmark run is recorded: its command line, the code, the machine, its load, the numbers.

Every benchmark's ``main`` takes :func:`start_run` first (the commit and the machine's load as
the run begins), parses its options with :func:`make_parser`, measures, then calls
:func:`write_result`, which adds the load at the end and writes ``<results-dir>/<name>.json``
(``<name>.quick.json`` for smoke runs, which git ignores) and returns the record. Every result
holds ``commit`` (the git commit measured and whether the tree held uncommitted changes),
``machine`` and ``load`` (load average and the CPU share of processes outside the run, at its
start and end, and over the whole run), so that ``python -m benchmarks.report --check`` can
tell which results the code as it is can reproduce::

    >>> markdown_table(["config", "examples/s"], [["A", 12.5], ["B", 30.25]])
    '| config | examples/s |\\n|---|---|\\n| A | 12.5 |\\n| B | 30.25 |'
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfsent.errors import OneLineArgumentParser
from tfsent.files import write_json_atomic

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO = BENCHMARKS_DIR.parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
# Results are written while other benchmarks run: they change no measured code.
RESULTS_PREFIX = "benchmarks/results/"
SAMPLE_SECONDS = 1.0
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


class Skipped(Exception):
    """The benchmark cannot run here (real data or weights absent): the message says why."""


def make_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options every benchmark has: ``--quick`` and ``--results-dir``."""
    parser = OneLineArgumentParser(
        prog=f"python -m benchmarks.{name}",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true",
                        help="Smoke run: few reviews, small sizes, tiny model and generated "
                        "reviews where the real ones are absent; writes <name>.quick.json.")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR),
                        help="Where the JSON result goes.")
    return parser


def parse_sized_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                     defaults: dict[str, Any], quick: dict[str, Any],
                     positive: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; options left unset take the full or ``--quick`` defaults; the
    ``positive`` ones must be at least 1."""
    args = parser.parse_args(argv)
    for key, value in (quick if args.quick else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in positive:
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")
    return args


def command_line(name: str, argv: Sequence[str] | None) -> str:
    """The command as typed: ``python -m benchmarks.<name> <args>``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", "-m", f"benchmarks.{name}", *args])


def result_path(results_dir: str | Path, name: str, quick: bool) -> Path:
    return Path(results_dir) / f"{name}{'.quick' if quick else ''}.json"


def git_commit(repo: str | Path = REPO) -> dict[str, Any]:
    """The commit checked out in ``repo`` and whether tracked files differ from it (results
    aside): ``{"sha": ..., "clean": ..., "changed": [...]}``; ``sha`` None outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True, timeout=60).stdout

    try:
        sha = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError) as err:
        return {"sha": None, "clean": False, "error": str(err)[:200]}
    changed = sorted({line[3:].split(" -> ")[-1] for line in status.splitlines()} - {""})
    changed = [path for path in changed if not path.startswith(RESULTS_PREFIX)]
    return {"sha": sha, "clean": not changed, "changed": changed[:50]}


def _process_ticks() -> dict[int, tuple[int, str, int]]:
    """{pid: (parent pid, name, CPU ticks used so far)} of every process, from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # After the name: state, ppid, ..., utime and stime are the 12th and 13th fields.
        out[int(entry.name)] = (int(fields[1]), name, int(fields[11]) + int(fields[12]))
    return out


def _own_tree(processes: dict[int, tuple[int, str, int]]) -> set[int]:
    """This process and its descendants."""
    tree, grew = {os.getpid()}, True
    while grew:
        children = {pid for pid, (ppid, _, _) in processes.items() if ppid in tree}
        grew = bool(children - tree)
        tree |= children
    return tree


def _cpus() -> int:
    """CPUs of the machine (the other processes are not bound by this one's affinity)."""
    lines = Path("/proc/stat").read_text().splitlines()
    return sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit()) or 1


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


def _own_cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # those waited for
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load_now(seconds: float = SAMPLE_SECONDS) -> dict[str, Any]:
    """The machine's load now: load averages, and the share of all CPUs that processes outside
    this process tree used over ``seconds`` (with the three busiest)::

        >>> sorted(load_now(0.1))
        ['busiest_others', 'loadavg', 'others_cpu_share']
    """
    before = _process_ticks()
    start = time.monotonic()
    time.sleep(seconds)
    after = _process_ticks()
    elapsed = time.monotonic() - start
    own = _own_tree(after) | _own_tree(before)
    used = {pid: ticks - before.get(pid, (0, "", 0))[2]
            for pid, (_, _, ticks) in after.items() if pid not in own}
    capacity = elapsed * TICKS_PER_SECOND * _cpus()
    busiest = sorted(used, key=used.get, reverse=True)[:3]
    return {
        "loadavg": [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]],
        # Ticks are counted in 10 ms steps while the processes are read: clip the rounding.
        "others_cpu_share": round(min(sum(max(v, 0) for v in used.values()) / capacity, 1.0), 3),
        "busiest_others": [[_command(pid, after[pid][1]), round(used[pid] / capacity, 3)]
                           for pid in busiest if used[pid] > 0],
    }


def _command(pid: int, name: str, limit: int = 80) -> str:
    """A process's command line, cut short (its name when that is unreadable)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return name
    return " ".join(a.decode(errors="replace") for a in argv if a)[:limit] or name


@dataclass
class RunStart:
    """What :func:`write_result` needs from the start of a run: the code, the load, the
    clocks."""

    commit: dict[str, Any]
    load: dict[str, Any]
    monotonic: float = field(default_factory=time.monotonic)
    machine_ticks: tuple[int, int] = field(default_factory=_machine_ticks)
    own_cpu_seconds: float = field(default_factory=_own_cpu_seconds)


def start_run() -> RunStart:
    """Take first thing in a benchmark's ``main``: the commit and the load as the run begins."""
    return RunStart(commit=git_commit(), load=load_now())


def run_load(started: RunStart) -> dict[str, Any]:
    """The load at the start and end of the run, and over it: the share of all CPUs the machine
    used, this run's own share (its process and the children it waited for), the others'."""
    busy0, total0 = started.machine_ticks
    busy1, total1 = _machine_ticks()
    seconds = time.monotonic() - started.monotonic
    machine = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
    own = (_own_cpu_seconds() - started.own_cpu_seconds) / (max(seconds, 1e-9) * _cpus())
    return {
        "cpus": _cpus(),
        "start": started.load,
        "end": load_now(),
        "run": {"seconds": round(seconds, 1), "machine_cpu_share": round(machine, 3),
                "own_cpu_share": round(min(own, 1.0), 3),
                "others_cpu_share": round(max(machine - own, 0.0), 3)},
    }


def write_result(name: str, argv: Sequence[str] | None, quick: bool, results_dir: str | Path,
                 numbers: dict[str, Any], *, started: RunStart) -> dict[str, Any]:
    """Write the record of one run (command, commit, machine, load, date, ``numbers``) whole or
    not at all; return it."""
    from benchmarks.machine import machine_info

    reserved = {"benchmark", "command", "quick", "date", "commit", "machine", "load"}
    if reserved & set(numbers):
        raise ValueError(f"a result's numbers may not be named {sorted(reserved & set(numbers))}: "
                         "those keys describe the run")
    record = {
        "benchmark": name,
        "command": command_line(name, argv),
        "quick": quick,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": started.commit,
        "machine": machine_info(),
        "load": run_load(started),
        **numbers,
    }
    path = result_path(results_dir, name, quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return record


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table (also what the benchmarks print)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def number(value: float | None, digits: int = 1) -> str:
    """``1234.5`` -> ``1,234.5``; ``None`` -> ``n/a``."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def report_skip(name: str, reason: str) -> int:
    """Say why ``name`` did not run; no result is written. Exit code 0: absent real data is a
    property of the machine, not a failure (the report shows the benchmark as not measured)."""
    print(f"skipped benchmarks.{name}: {reason}", file=sys.stderr)
    return 0
