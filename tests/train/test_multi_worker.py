"""``--strategy multi_worker``: two ``python -m tfsent.fit`` workers on localhost, one run.

One scenario, in two phases, proves the whole contract (a second, uninterrupted run would cost
another minute of CI for nothing the second phase does not already show):

1. both workers start a new run, sharing ``--output-dir`` and ``--export-dir`` as on a shared
   filesystem; once the first epoch's backup is written, both are killed (SIGKILL);
2. both are started again with the same command: they resume from the backup, train the last
   two epochs, and exit 0; the chief saves, evaluates and exports.

Each worker runs under ``tests/train/worker_probe.py``, which records its weights at every
epoch's end and the examples of each of its steps in a folder of its own. Worker 1 runs under
``strace`` (when it can), which lists every file it creates, changes or removes. Without
strace (or ptrace) the tests that need it skip, except under ``TFSENT_REQUIRE_STRACE=1``
(CI), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfsent.distribute import check_tf_config, make_strategy
from tfsent.errors import UserError, run_cli
from tfsent.fit import main

REPO = Path(__file__).resolve().parents[2]
PROBE = REPO / "tests" / "train" / "worker_probe.py"
EPOCHS = 3
TRAIN_EXAMPLES = 400
FIT_ARGS = [
    "--dataset", "demo", "--model", "tiny", "--max-train-samples", str(TRAIN_EXAMPLES),
    "--max-eval-samples", "100", "--max-length", "64", "--tiny-vocab-size", "400",
    "--epochs", str(EPOCHS), "--batch-size", "32", "--learning-rate", "3e-3", "--seed", "1",
    "--progress", "2", "--strategy", "multi_worker",
]
# The system calls that create, change or remove a file or folder.
WRITE_CALLS = ("open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,"
               "rmdir,link,linkat,symlink,symlinkat,truncate")
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")


# CI sets it (.ci/run): there the strace tests fail, instead of skipping, when strace cannot run.
REQUIRE_STRACE_ENV = "TFSENT_REQUIRE_STRACE"


def strace_missing() -> str | None:
    """Why strace cannot trace here, or None."""
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace)"
    done = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "true"], capture_output=True)
    if done.returncode != 0:  # ptrace may be forbidden (containers)
        return f"strace cannot trace here ({done.stderr.decode(errors='replace').strip()[:200]})"
    return None


def can_strace() -> bool:
    return strace_missing() is None


def skip_without_strace() -> None:
    """Skip the calling test when strace cannot run, unless TFSENT_REQUIRE_STRACE=1: then fail."""
    missing = strace_missing()
    if missing is None:
        return
    if os.environ.get(REQUIRE_STRACE_ENV) == "1":
        pytest.fail(f"{REQUIRE_STRACE_ENV}=1 but {missing}")
    pytest.skip(missing)


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Cluster:
    """Two workers of one run, each started as its own process group (so a kill reaches every
    process of it, strace included)."""

    def __init__(self, root: Path, strace: bool) -> None:
        self.root, self.strace = root, strace
        self.run, self.exported = root / "shared" / "run", root / "shared" / "exported"
        self.ports = free_ports(2)
        self.procs: list[subprocess.Popen] = []

    def probe(self, index: int) -> Path:
        return self.root / f"probe-{index}"

    def start(self, phase: str) -> None:
        cluster = {"worker": [f"localhost:{p}" for p in self.ports]}
        self.procs = []
        for index in range(2):
            tmp = self.root / f"tmp-{phase}-{index}"  # where the worker's private folder goes
            tmp.mkdir()
            env = {**os.environ, "TMPDIR": str(tmp), "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}})}
            argv = [sys.executable, str(PROBE), str(self.probe(index)), *FIT_ARGS,
                    "--output-dir", str(self.run), "--export-dir", str(self.exported)]
            if index == 1 and self.strace:
                argv = ["strace", "-f", "-qq", "-y", "-e", f"trace={WRITE_CALLS}",
                        "-o", str(self.root / f"strace-{phase}.log"), *argv]
            log = open(self.root / f"worker-{phase}-{index}.log", "w")  # noqa: SIM115
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                               cwd=self.root, env=env,
                                               start_new_session=True))
            log.close()

    def output(self, phase: str, index: int) -> str:
        return (self.root / f"worker-{phase}-{index}.log").read_text()

    def wait(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        try:
            return [p.wait(timeout=max(deadline - time.monotonic(), 1)) for p in self.procs]
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for p in self.procs:
            p.wait()


def wait_for(condition, timeout: float, cluster: Cluster, phase: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        exited = [p.poll() for p in cluster.procs if p.poll() is not None]
        if exited or time.monotonic() > deadline:
            cluster.kill()
            logs = "\n".join(cluster.output(phase, i)[-3000:] for i in range(2))
            pytest.fail(f"{'a worker exited' if exited else 'timed out'} in {phase}:\n{logs}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_worker")
    cluster = Cluster(root, can_strace())

    # Phase 1: killed once epoch 1 is backed up (and both probes recorded its weights).
    cluster.start("killed")
    backup = cluster.run / "backup" / "chief" / "checkpoint"
    wait_for(lambda: backup.is_file() and all(
        (cluster.probe(i) / "epoch-1.npz").is_file() for i in range(2)), 300, cluster, "killed")
    cluster.kill()
    assert not (cluster.run / "metrics.json").exists()
    killed_history = (cluster.run / "history.csv").read_text()

    # Phase 2: the same command again.
    cluster.start("resumed")
    codes = cluster.wait(timeout=400)
    cluster.killed_history = killed_history
    assert codes == [0, 0], "\n".join(cluster.output("resumed", i)[-3000:] for i in range(2))
    return cluster


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def max_abs_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [w.shape for w in a] == [w.shape for w in b]
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_both_workers_end_with_the_same_weights_and_the_chief_saved_them(scenario):
    from transformers import TFAutoModelForSequenceClassification

    probe0, probe1 = scenario.probe(0), scenario.probe(1)
    for epoch in range(1, EPOCHS + 1):
        a, b = weights(probe0 / f"epoch-{epoch}.npz"), weights(probe1 / f"epoch-{epoch}.npz")
        assert max_abs_difference(a, b) <= 1e-6, epoch
        if epoch > 1:  # trained: the weights moved
            assert max_abs_difference(a, weights(probe0 / f"epoch-{epoch - 1}.npz")) > 1e-3
    metrics = json.loads((scenario.run / "metrics.json").read_text())
    best = metrics["best_epoch"]
    saved = TFAutoModelForSequenceClassification.from_pretrained(scenario.run / "model")
    # What the chief saved is what the other worker computed for that epoch.
    assert max_abs_difference(saved.get_weights(), weights(probe1 / f"epoch-{best}.npz")) <= 1e-6
    assert metrics["validation"]["accuracy"] > 0.85  # generated reviews are learnable
    assert metrics["test"]["accuracy"] > 0.85


@pytest.mark.slow
def test_each_worker_trains_on_its_share_of_every_batch(scenario):
    seen = [json.loads((scenario.probe(i) / "examples.json").read_text()) for i in range(2)]
    trained = json.loads((scenario.run / "checkpoints" / "trained.json").read_text())
    for epoch in ("2", "3"):
        steps = [seen[0][epoch], seen[1][epoch]]
        assert len(steps[0]) == len(steps[1]) == trained["steps_per_epoch"]
        # Every global batch of 32 is split between the two workers; together they see each
        # training example once an epoch.
        assert sum(steps[0]) + sum(steps[1]) == TRAIN_EXAMPLES
        assert all(abs(a - b) <= 1 and a + b <= 32 for a, b in zip(*steps, strict=True))


@pytest.mark.slow
def test_a_killed_cluster_restarted_with_the_same_command_resumes_from_the_backup(scenario):
    for index in range(2):
        out = scenario.output("resumed", index)
        assert "resuming at epoch 2 of 3" in out, out[-2000:]
        # Only epochs 2 and 3 were trained again, starting from epoch 1's backed-up weights.
        seen = json.loads((scenario.probe(index) / "examples.json").read_text())
        assert sorted(seen) == ["2", "3"]
        start = weights(scenario.probe(index) / "start.npz")
        assert max_abs_difference(start, weights(scenario.probe(index) / "epoch-1.npz")) == 0
    assert [line.split(",")[0] for line in scenario.killed_history.splitlines()[1:]] == ["0"]
    rows = (scenario.run / "history.csv").read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in rows] == ["0", "1", "2"]
    assert not (scenario.run / "backup").exists(), "removed once training is over"


@pytest.mark.slow
def test_the_chief_alone_writes_the_run_and_the_export(scenario):
    run, exported = scenario.run, scenario.exported
    for name in ("config.json", "tokenizer/vocab.txt", "model/tf_model.h5", "metrics.json",
                 "history.csv", "confusion_matrix.png", "training_curves.png",
                 "reliability_diagram.png", "README.md", "checkpoints/trained.json"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in exported.iterdir()) == ["tfsent"]
    assert sorted(p.name for p in (exported / "tfsent").iterdir()) == ["1"]
    assert (exported / "tfsent" / "1" / "saved_model.pb").is_file()
    assert json.loads((run / "metrics.json").read_text())["export"] == str(exported / "tfsent/1")
    assert not [p for p in run.rglob("*") if "workertemp" in p.name or ".tmp" in p.name]
    summary = scenario.output("resumed", 1).strip().splitlines()[-1]
    assert summary == f"worker:     worker 1 done; the chief writes the run to {run}/"
    assert "export:" in scenario.output("resumed", 0)
    # Worker 1's private folder (backups, best-epoch weights) is gone once it is done.
    assert not list((scenario.root / "tmp-resumed-1").glob("tfsent-worker-*"))


def written_paths(strace_log: Path, cwd: Path) -> list[str]:
    """Every path a successful (or unfinished) call of ``strace -y -e trace=WRITE_CALLS``
    created, changed or removed, from a process started in ``cwd``."""
    paths = []
    for line in strace_log.read_text().splitlines():
        match = re.match(r"\d+\s+(\w+)\((.*)", line)
        if not match or re.search(r"\) = -1 ", line):
            continue
        call, args = match.groups()
        if call in ("open", "openat") and not any(flag in args for flag in WRITE_FLAGS):
            continue  # read only
        # -y prints a folder's descriptor with its path: unlinkat(9</tmp/run>, "x", 0)
        quoted = re.findall(r'(?:(?:\d+|AT_FDCWD)<([^>]*)>, )?"((?:[^"\\]|\\.)*)"', args)
        if call in ("symlink", "symlinkat"):
            quoted = quoted[1:]  # the link's target is not written
        for folder, path in quoted:
            paths.append(os.path.join(folder or str(cwd), path))  # path if absolute
    return paths


@pytest.mark.slow
def test_the_other_worker_writes_nothing_into_the_run_or_the_export(scenario):
    skip_without_strace()
    assert scenario.strace, "strace works now but did not when the workers started"
    shared = str(scenario.root / "shared")
    for phase in ("killed", "resumed"):
        paths = written_paths(scenario.root / f"strace-{phase}.log", scenario.root)
        assert any("tfsent-worker-" in p for p in paths), "the trace saw the worker's writes"
        assert [p for p in paths if p.startswith(shared)] == [], phase


def test_the_write_trace_sees_every_kind_of_write(tmp_path):
    # The check above passes vacuously if the trace misses writes: here it must see them all.
    skip_without_strace()
    (tmp_path / "read.txt").write_text("x")
    (tmp_path / "removed.txt").write_text("x")
    code = ("import os, shutil\n"
            "open('read.txt').read()\n"
            "open('new.txt', 'w').write('x')\n"
            "os.replace('new.txt', 'renamed.txt')\n"
            "os.makedirs('folder/sub')\n"
            "open('folder/sub/f', 'a').close()\n"
            "shutil.rmtree('folder')\n"
            "os.symlink('/elsewhere', 'link')\n"
            "os.unlink('removed.txt')\n")
    log = tmp_path / "strace.log"
    subprocess.run(["strace", "-f", "-qq", "-y", "-e", f"trace={WRITE_CALLS}", "-o", str(log),
                    sys.executable, "-c", code], cwd=tmp_path, check=True)
    written = written_paths(log, tmp_path)
    mine = {os.path.relpath(p, tmp_path) for p in written if p.startswith(f"{tmp_path}/")}
    assert mine == {"new.txt", "renamed.txt", "folder", "folder/sub", "folder/sub/f", "link",
                    "removed.txt"}
    assert "/elsewhere" not in written  # a link's target is not written

def test_without_strace_the_trace_tests_skip_except_in_ci_where_they_fail(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without strace
    monkeypatch.delenv(REQUIRE_STRACE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="strace is not installed"):
        skip_without_strace()
    monkeypatch.setenv(REQUIRE_STRACE_ENV, "1")
    with pytest.raises(pytest.fail.Exception,
                       match="TFSENT_REQUIRE_STRACE=1 but strace is not installed"):
        skip_without_strace()
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(rf"^export .*\b{REQUIRE_STRACE_ENV}=1\b", ci, re.M), "CI requires strace"


BAD_TF_CONFIG = [
    (None, "needs the TF_CONFIG environment variable"),
    ("{'cluster': 1}", "TF_CONFIG is not valid JSON"),
    ('["worker"]', "TF_CONFIG must be a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG has no "cluster"'),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
     'TF_CONFIG cluster "worker" must be a list'),
    ('{"cluster": {"worker": ["a:1"]}}', 'TF_CONFIG has no "task"'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     "TF_CONFIG task type 'ps' is not one of chief, worker"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}',
     "TF_CONFIG task index '0' must be a whole number"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "TF_CONFIG task worker 2 is not in its cluster, which has 2 worker address(es)"),
]


@pytest.mark.parametrize("tf_config,message", BAD_TF_CONFIG)
def test_bad_tf_config_is_one_line_and_exit_2(tf_config, message, tmp_path, capsys,
                                              monkeypatch):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    out = tmp_path / "run"
    argv = ["--dataset", "demo", "--model", "tiny", "--strategy", "multi_worker",
            "--output-dir", str(out)]
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not out.exists(), "nothing written"


def test_strategies_by_name():
    import tensorflow as tf

    assert make_strategy("default") is tf.distribute.get_strategy()
    # Fewer than two GPUs here: auto is the default strategy.
    assert make_strategy("auto") is tf.distribute.get_strategy()
    with pytest.raises(UserError, match="unknown --strategy 'gpus'"):
        make_strategy("gpus")


def test_tf_config_names_the_task():
    cluster = {"chief": ["a:1"], "worker": ["b:2", "c:3"]}
    text = json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}})
    assert check_tf_config(text) == ("chief", 0)
    text = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})
    assert check_tf_config(text) == ("worker", 1)
