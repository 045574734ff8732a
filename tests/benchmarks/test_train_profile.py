"""benchmarks.train_profile: the op categories, and a --quick smoke run (tiny model, 3 steps)."""

from __future__ import annotations

import pytest

from benchmarks.train_profile import CATEGORIES, breakdown, category
from tests.benchmarks.test_benchmarks import run_quick


def test_ops_fall_into_their_categories():
    scope = "tf_bert_for_sequence_classification/bert/encoder/layer_._0"
    assert category("BatchMatMulV2", f"{scope}/attention/self/MatMul") == "matmul"
    assert category("Softmax", f"{scope}/attention/self/Softmax") == "softmax"
    assert category("Mul", f"gradient_tape/{scope}/attention/self/Softmax/mul") == "softmax"
    assert category("SquaredDifference",
                    f"{scope}/output/LayerNorm/moments/SquaredDifference") == "layer norm"
    assert category("_UnaryOpsComposition",
                    f"gradient_tape/{scope}/intermediate/Gelu/Exp/unary_ops_composition") == "GELU"
    assert category("AssignSubVariableOp",
                    "AdamWeightDecay/AdamWeightDecay/update_2/AssignSubVariableOp") == (
        "optimizer update")
    assert category("Dataset", "Iterator::Root::Prefetch::BatchV2") == "input pipeline and idle"
    assert category("SelectV2", f"{scope}/attention/self/SelectV2") == "casts and elementwise"
    assert category("RandomUniform", f"{scope}/output/dropout/random_uniform") == "other"


def test_breakdown_adds_up_self_times():
    rows = [{"type": "MatMul", "name": "m/dense/MatMul", "self_us": 60.0},
            {"type": "BatchMatMulV2", "name": "m/self/MatMul", "self_us": 20.0},
            {"type": "IDLE", "name": "IDLE", "self_us": 15.0},
            {"type": "Transpose", "name": "m/self/transpose", "self_us": 5.0}]
    parts = breakdown(rows, core_microseconds=100.0)
    assert list(parts) == list(CATEGORIES)
    assert parts["matmul"]["microseconds"] == 80.0 and parts["matmul"]["share"] == 0.8
    assert [o["type"] for o in parts["matmul"]["top_ops"]] == ["MatMul", "BatchMatMulV2"]
    assert parts["input pipeline and idle"]["share"] == 0.15
    assert parts["other"]["share"] == 0.05 and parts["GELU"]["microseconds"] == 0
    # Busy time leaves IDLE out: 80 of the 85 microseconds some op ran were matmuls.
    assert parts["matmul"]["busy_share"] == pytest.approx(80 / 85)
    assert parts["input pipeline and idle"]["busy_share"] == 0
    assert parts["matmul"]["core_share"] == pytest.approx(0.8)
    assert sum(c["busy_share"] for c in parts.values()) == pytest.approx(1.0)


def test_train_profile_quick(tmp_path):
    result, out = run_quick("train_profile", tmp_path, "--model", "tiny", "--data", "demo",
                            "--steps", "3")
    assert result["steps_profiled"] == 3 and result["settings"]["max_length"] == 32
    assert result["seconds_per_step"] > 0 and 10 < result["ops"] <= 500
    assert 0.9 < result["ops_cover_share_of_host_self_time"] <= 1
    parts = result["categories"]
    assert list(parts) == list(CATEGORIES)
    assert sum(c["share"] for c in parts.values()) == pytest.approx(1.0)
    assert sum(c["busy_share"] for c in parts.values()) == pytest.approx(1.0)
    assert result["cores"] >= 1
    assert result["busy_share_of_core_time"] == pytest.approx(
        sum(c["core_share"] for c in parts.values()))
    assert 0 < result["busy_share_of_core_time"]
    # A training step multiplies matrices, updates weights and normalises layers.
    for name in ("matmul", "optimizer update", "layer norm", "softmax", "GELU"):
        assert parts[name]["microseconds"] > 0, name
    assert {o["type"] for o in parts["matmul"]["top_ops"]} & {"MatMul", "BatchMatMulV2",
                                                              "_FusedMatMul"}
    assert "| matmul |" in out and "of busy time" in out
