"""benchmarks.train_speed's peak probe: every shape measured, the peak its best square."""

from __future__ import annotations

from pathlib import Path

from transformers import BertConfig

from benchmarks.train_speed import model_shapes, peak_probe
from tfsent.model import cpu_has_bf16


def test_model_shapes_are_the_layers_matmuls():
    config = BertConfig(hidden_size=384, intermediate_size=1536, num_attention_heads=12)
    shapes = model_shapes(config, batch_size=16, lengths=[256])
    assert [(s["a"], s["b"]) for s in shapes] == [
        ([4096, 384], [384, 384]),  # Q, K, V and the attention output
        ([4096, 384], [384, 1536]),
        ([4096, 1536], [1536, 384]),
        ([192, 256, 32], [192, 32, 256]),  # 16 reviews x 12 heads of 32 dimensions
        ([192, 256, 256], [192, 256, 32]),
    ]


def test_peak_probe_records_every_shape_and_whether_bf16_is_native():
    config = BertConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2)
    peaks = peak_probe([64, 128], model_shapes(config, 2, [16]), repeats=1)
    assert set(peaks) == {"float32", "bfloat16"}
    for dtype, peak in peaks.items():
        assert [s["shape"] for s in peak["shapes"]][:3] == [
            "[64,64]x[64,64]", "[128,128]x[128,128]", "[32,32]x[32,32]"]
        assert len(peak["shapes"]) == 2 + 5
        assert all(s["gflops"] > 0 for s in peak["shapes"])
        squares = peak["shapes"][:2]
        best = max(squares, key=lambda s: s["gflops"])
        assert peak["flops_per_second"] == best["gflops"] * 1e9
        assert peak["size"] == (64 if best is squares[0] else 128)
        assert peak["threads"] >= 1, dtype
    bf16 = peaks["bfloat16"]
    assert bf16["native"] == cpu_has_bf16()
    flags = Path("/proc/cpuinfo").read_text().split()
    assert ("avx2" in bf16["cpu_flags"]) == ("avx2" in flags)
    assert bf16["note"].startswith("native" if bf16["native"] else "emulated")
