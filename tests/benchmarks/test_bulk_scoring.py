"""``python -m benchmarks.bulk_scoring --quick``: a tiny export served with batching, the scorer
at two concurrencies, the in-process reference, and the peak RSS on a larger input."""

from __future__ import annotations

from tests.benchmarks.test_benchmarks import run_quick


def test_bulk_scoring_quick(tmp_path):
    result, out = run_quick("bulk_scoring", tmp_path, "--data", "demo", "--rows", "200",
                            "--big-input-mb", "2", "--batch-sizes", "8", "32", timeout=900)
    settings = result["settings"]
    assert settings["model"] == "tiny" and settings["rows"] == 200
    assert settings["concurrency"] == [1, 4]
    assert set(result["in_process"]) == {"8", "32"}
    best = result["in_process_best"]
    assert best["rows_per_second"] == max(c["rows_per_second"]
                                          for c in result["in_process"].values())
    for c in ("1", "4"):
        cell = result["scorer"][c]
        assert cell["rows"] == 200 and cell["rows_per_second"] > 0
        assert cell["vs_in_process_best"] == cell["rows_per_second"] / best["rows_per_second"]
        assert cell["peak_rss_mib"] > 10
    big = result["big_input"]
    assert big["input_bytes"] >= 2 * 2**20 and big["input_rows"] > big["rows"] > 0
    shard = int(big["shard"].split("/")[1])
    assert big["rows"] == len(range(0, big["input_rows"], shard))  # every K-th row, once
    assert isinstance(result["memory_flat"], bool)
    assert "tfsent.score over gRPC | 4 |" in out and "(best)" in out
