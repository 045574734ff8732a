"""The older-server check: its smoke run (this Python on both sides) and its verdict logic."""

import json

from benchmarks import serving_compat


def test_quick_run_loads_the_export_as_tf_serving_and_agrees(tmp_path):
    code = serving_compat.main(["--quick", "--model", "tiny", "--data", "demo",
                                "--results-dir", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "serving_compat.quick.json").read_text())
    assert result["agree"] is True
    assert result["reviews"] == serving_compat.QUICK["reviews"]
    assert result["exported_with"] == result["loaded_with"]  # --quick: this Python twice
    assert {"serving_default/probabilities", "serving_default/label",
            "token_ids/logits", "token_ids/classes"} <= result["outputs"].keys()
    assert result["outputs"]["serving_default/logits"]["max_abs_diff"] <= serving_compat.TOLERANCE
    assert result["commit"]["sha"] and "load" in result


def answers(probabilities, labels):
    return {"signatures": {"serving_default": {"probabilities": probabilities, "label": labels}}}


def test_compare_flags_a_different_number_or_label():
    same = serving_compat.compare(answers([[0.25, 0.75]], ["b"]), answers([[0.25, 0.75]], ["b"]))
    assert all(row["equal"] for row in same.values())
    off = serving_compat.compare(answers([[0.25, 0.75]], ["b"]), answers([[0.5, 0.5]], ["a"]))
    assert off["serving_default/probabilities"] == {"max_abs_diff": 0.25, "equal": False}
    assert off["serving_default/label"] == {"equal": False}
