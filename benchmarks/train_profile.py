"""Training profile: where B's steady-state training step spends its time, by kind of op.

B is tfsent's pipeline as ``benchmarks.train_speed`` measures it (``encode`` with head+tail,
length bucketing, dynamic padding, ``--precision auto``), with ``fit``'s seeded dropout reseeded
before every step. After ``--warmup-steps`` steps (the
train function traced, oneDNN's kernels picked), the TF Profiler
(``tf.profiler.experimental.start`` / ``stop``) records ``--steps`` steps. Its XSpace is turned
into TensorFlow's own op table (the profiler plugin's ``framework_op_stats`` tool, what
TensorBoard's Profile tab shows), whose self-times are added up by category: matmuls (and
batched matmuls), softmax, layer norm, GELU, the optimizer update, casts and elementwise ops,
input pipeline and idle, and the rest. Self-times are summed over every host thread, and TF's
pools hold more threads than there are cores, so the profiler's ``IDLE`` (a pool thread with no
op) dwarfs the rest. Each category is therefore given three ways: its share of all thread time
(``share``, IDLE included, as TensorBoard shows it), of the time some op ran (``busy_share``,
IDLE left out), and of the cores' wall time (``core_share``: self-time over the profiled wall
seconds times the cores; the categories' core shares add up to how busy the cores were).

    python -m benchmarks.train_profile                  # MiniLM, L=256, 20 profiled steps
    python -m benchmarks.train_profile --trace-dir runs/profile   # keep it for TensorBoard
    python -m benchmarks.train_profile --quick          # tiny model, 3 steps
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.machine import usable_cores
from benchmarks.record import (
    Skipped,
    make_parser,
    markdown_table,
    number,
    parse_sized_args,
    report_skip,
    start_run,
    write_result,
)
from benchmarks.sources import (
    describe_model,
    load_reviews,
    load_tokenizer_for,
    resolve_data,
    resolve_model,
)
from tfsent.errors import fail, run_cli

NAME = "train_profile"
TRUNCATION = "head+tail"
DEFAULTS = {"reviews": 512, "max_length": 256, "batch_size": 16, "warmup_steps": 10,
            "steps": 20}
QUICK = {"reviews": 24, "max_length": 32, "batch_size": 4, "warmup_steps": 2, "steps": 3}
HELD_OUT = 16  # load_reviews holds some out; the profile never scores them

MATMUL, SOFTMAX, LAYER_NORM, GELU = "matmul", "softmax", "layer norm", "GELU"
OPTIMIZER, ELEMENTWISE, INPUT_IDLE, OTHER = (
    "optimizer update", "casts and elementwise", "input pipeline and idle", "other")
CATEGORIES = (MATMUL, SOFTMAX, LAYER_NORM, GELU, OPTIMIZER, ELEMENTWISE, INPUT_IDLE, OTHER)
IDLE = "IDLE"  # the profiler's op for a pool thread with nothing to run
MATMUL_TYPES = {"MatMul", "_FusedMatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3",
                "_MklMatMul", "_MklBatchMatMulV2", "Einsum"}
ELEMENTWISE_TYPES = {
    "Cast", "Add", "AddV2", "AddN", "Sub", "Mul", "RealDiv", "Div", "DivNoNan", "Neg", "Abs",
    "Sqrt", "Rsqrt", "Square", "SquaredDifference", "Pow", "Exp", "Log", "Tanh", "Relu",
    "Maximum", "Minimum", "Select", "SelectV2", "Equal", "NotEqual", "Greater", "GreaterEqual",
    "Less", "LessEqual", "LogicalAnd", "LogicalNot", "BiasAdd", "BiasAddGrad", "ZerosLike",
    "OnesLike", "Fill", "_UnaryOpsComposition", "_FusedBatchNormEx", "Reciprocal",
}
# Op names under the optimizer's name scope (AdamWeightDecay/..., Adam/...), in any step.
_OPTIMIZER_SCOPE = re.compile(r"^[^/]*(Adam|Optimizer|SGD)[^/]*/")
_SOFTMAX = re.compile(r"/Softmax(/|$)")


def category(op_type: str, name: str) -> str:
    """The category of one op of the profile, from its type and its (scoped) name.

    >>> category("MatMul", "gradient_tape/model/bert/encoder/layer_._0/output/dense/MatMul")
    'matmul'
    >>> category("Mul", "model/bert/encoder/layer_._1/output/LayerNorm/batchnorm/mul")
    'layer norm'
    >>> category("ResourceApplyAdam", "AdamWeightDecay/AdamWeightDecay/update_7/ResourceApplyAdam")
    'optimizer update'
    >>> category("Erfc", "model/bert/encoder/layer_._1/intermediate/Gelu/Erfc")
    'GELU'
    >>> category("Cast", "model/bert/embeddings/Cast"), category("IDLE", "IDLE")
    ('casts and elementwise', 'input pipeline and idle')
    """
    if op_type in (IDLE, "Dataset") or op_type.startswith("Iterator") or "Iterator" in name:
        return INPUT_IDLE
    if op_type.startswith(("ResourceApply", "ResourceSparseApply")) or _OPTIMIZER_SCOPE.match(
            name):
        return OPTIMIZER
    if op_type in MATMUL_TYPES:
        return MATMUL
    if op_type == "Softmax" or _SOFTMAX.search(name):
        return SOFTMAX
    if "layernorm" in name.lower().replace("_", ""):
        return LAYER_NORM
    if op_type in ("Erf", "Erfc") or "gelu" in name.lower():
        return GELU
    if op_type in ELEMENTWISE_TYPES:
        return ELEMENTWISE
    return OTHER


def op_table(xplane: Path) -> tuple[list[dict[str, Any]], float]:
    """The profile's ops (type, name, self-time in microseconds, occurrences), idle time
    included: the profiler plugin's ``framework_op_stats`` table of an ``.xplane.pb``; and the
    share of the host's self-time they cover (the table keeps the 500 costliest ops)."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    data, ok = plugin.xspace_to_tools_data([str(xplane)], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the profiler could not read {xplane}: {data[:200]!r}")
    table = json.loads(data)[0]  # the first table counts IDLE; the second leaves it out
    columns = [c["id"] for c in table["cols"]]
    rows, covered = [], 1.0
    for row in table["rows"]:
        values = dict(zip(columns, [cell.get("v") if cell else None for cell in row["c"]],
                          strict=True))
        rows.append({"type": values["type"], "name": values["operation"],
                     "self_us": float(values["total_self_time"]),
                     "occurrences": int(values["occurrences"] or 0)})
        covered = float(values["Host_cumulative_total_self_time_percent"] or covered)
    return rows, covered


def breakdown(rows: list[dict[str, Any]], core_microseconds: float,
              top: int = 5) -> dict[str, Any]:
    """Self-time per category: microseconds, its share of all thread time, of busy time (the
    ``IDLE`` op left out) and of ``core_microseconds`` (wall time times cores), each with its
    ``top`` op types.

    >>> rows = [{"type": "MatMul", "name": "m", "self_us": 60.0},
    ...         {"type": "Cast", "name": "c", "self_us": 20.0},
    ...         {"type": "IDLE", "name": "IDLE", "self_us": 320.0}]
    >>> out = breakdown(rows, core_microseconds=100.0)
    >>> [round(out["matmul"][k], 2) for k in ("share", "busy_share", "core_share")]
    [0.15, 0.75, 0.6]
    >>> round(out["input pipeline and idle"]["busy_share"], 2)
    0.0
    """
    per_type: dict[str, dict[str, float]] = {c: defaultdict(float) for c in CATEGORIES}
    for row in rows:
        per_type[category(row["type"], row["name"])][row["type"]] += row["self_us"]
    total = sum(sum(types.values()) for types in per_type.values())
    idle = per_type[INPUT_IDLE].get(IDLE, 0.0)
    busy = total - idle
    out = {}
    for name in CATEGORIES:
        types = per_type[name]
        spent = sum(types.values())
        working = spent - (idle if name == INPUT_IDLE else 0.0)
        out[name] = {
            "microseconds": spent,
            "share": spent / total if total else 0.0,
            "busy_share": working / busy if busy else 0.0,
            "core_share": working / core_microseconds if core_microseconds else 0.0,
            "top_ops": [{"type": t, "microseconds": us}
                        for t, us in sorted(types.items(), key=lambda kv: -kv[1])[:top]],
        }
    return out


def parse_args(argv: Sequence[str] | None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--reviews", type=int, help="Reviews the batches are drawn from "
                        "(default 512; 24 with --quick).")
    parser.add_argument("--max-length", type=int, help="Max length (default 256; 32 with "
                        "--quick).")
    parser.add_argument("--batch-size", type=int, help="Batch size (default 16; 4 with --quick).")
    parser.add_argument("--warmup-steps", type=int, help="Steps before the profiler starts "
                        "(default 10; 2 with --quick).")
    parser.add_argument("--steps", type=int, help="Steps profiled (default 20; 3 with --quick).")
    parser.add_argument("--precision", default="auto",
                        choices=("auto", "no", "mixed_bfloat16", "mixed_float16"),
                        help="B's --mixed-precision (auto: bf16 on CPUs with native bf16).")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--trace-dir", help="Keep the profile here (TensorBoard's Profile tab "
                        "reads it); default: a temporary folder, removed.")
    parser.add_argument("--data", help="aclImdb tarball or folder, or 'demo' (default: the real "
                        "IMDB train tarball; demo with --quick when it is absent).")
    parser.add_argument("--model", help="BERT folder or 'tiny' (default: real MiniLM; tiny "
                        "with --quick when it is absent).")
    parser.add_argument("--seed", type=int, default=42)
    args = parse_sized_args(parser, argv, DEFAULTS, QUICK,
                            ("reviews", "batch_size", "warmup_steps", "steps"))
    if args.max_length < 8:
        fail("--max-length must be at least 8")
    return args


def profile_steps(logdir: str, warmup: int, steps: int):
    """A callback that profiles batches ``warmup .. warmup + steps - 1`` into ``logdir`` and
    times them."""
    import tensorflow as tf
    import tf_keras

    class ProfileSteps(tf_keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == warmup:
                tf.profiler.experimental.start(logdir)
                self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if batch == warmup + steps - 1:
                self.seconds = time.perf_counter() - self.started
                tf.profiler.experimental.stop()

    return ProfileSteps()


def profile(args, model_name: str, splits, tokenizer, logdir: str) -> dict[str, Any]:
    """Train B for ``warmup + steps`` steps, profiling the last ``steps``; the op breakdown."""
    import tf_keras

    from tfsent.callbacks import ReseedDropout
    from tfsent.features import encode, make_dataset
    from tfsent.model import (
        build_model,
        generator_dropout,
        make_optimizer,
        precision_policy,
        resolve_precision,
    )

    train = splits.train
    encoded = encode(tokenizer, train.texts, args.max_length, TRUNCATION, train.labels)
    total = args.warmup_steps + args.steps
    dataset = make_dataset(encoded, args.batch_size, shuffle=True, seed=args.seed,
                           max_length=args.max_length).repeat()
    policy = resolve_precision(args.precision)
    # fit's step: dropout from seeded generators, reseeded before every step.
    with precision_policy(policy), generator_dropout():
        tf_keras.utils.set_random_seed(args.seed)
        model = build_model(model_name, splits.label_names, tokenizer)
        model.compile(optimizer=make_optimizer(args.learning_rate, total, 0.1, 0.01))
        callback = profile_steps(logdir, args.warmup_steps, args.steps)
        model.fit(dataset, epochs=1, steps_per_epoch=total,
                  callbacks=[ReseedDropout(args.seed), callback], verbose=0)
    xplanes = sorted(Path(logdir).rglob("*.xplane.pb"))
    if not xplanes:
        raise RuntimeError(f"the profiler wrote no .xplane.pb under {logdir}")
    rows, covered = op_table(xplanes[-1])
    cores = usable_cores()
    categories = breakdown(rows, callback.seconds * cores * 1e6)
    return {"precision_policy": policy, "steps_profiled": args.steps,
            "seconds": callback.seconds, "seconds_per_step": callback.seconds / args.steps,
            "cores": cores,
            # How busy the cores were while the steps ran: what a faster step can still win.
            "busy_share_of_core_time": sum(c["core_share"] for c in categories.values()),
            "ops": len(rows), "ops_cover_share_of_host_self_time": covered,
            "categories": categories}


def table(result: dict[str, Any]) -> str:
    rows = [[name, number(c["microseconds"] / 1e3), f"{100 * c['busy_share']:.1f}%",
             f"{100 * c['core_share']:.1f}%", f"{100 * c['share']:.1f}%",
             ", ".join(o["type"] for o in c["top_ops"][:3]) or "-"]
            for name, c in result["categories"].items()]
    s = result["settings"]
    return (markdown_table(["category", "self time (ms)", "of busy time", "of cores x wall",
                            "of thread time", "top op types"], rows)
            + f"\n\n{s['model']}, max length {s['max_length']}, batch {s['batch_size']}, "
            f"{result['precision_policy']}: {result['steps_profiled']} steps after "
            f"{s['warmup_steps']}, {number(1e3 * result['seconds_per_step'])} ms per step. "
            "Self-times summed over host threads; busy time leaves out IDLE (pool threads with "
            f"no op), thread time counts it. The {result['cores']} cores were busy "
            f"{100 * result['busy_share_of_core_time']:.0f}% of the profiled wall time.")


def main(argv: list[str] | None = None) -> int:
    started = start_run()
    args = parse_args(argv)
    try:
        data = resolve_data(args.data, args.quick)
        model_name = resolve_model(args.model, args.quick)
    except Skipped as why:
        return report_skip(NAME, str(why))
    splits = load_reviews(data, args.reviews, HELD_OUT, args.seed)
    tokenizer = load_tokenizer_for(model_name, splits.train.texts)
    if args.trace_dir:
        measured = profile(args, model_name, splits, tokenizer, args.trace_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="tfsent-profile-") as logdir:
            measured = profile(args, model_name, splits, tokenizer, logdir)
    numbers = {
        "settings": {"data": data, "model": describe_model(model_name),
                     "reviews": len(splits.train), "max_length": args.max_length,
                     "batch_size": args.batch_size, "warmup_steps": args.warmup_steps,
                     "truncation": TRUNCATION, "seed": args.seed,
                     "trace_dir": args.trace_dir},
        **measured,
        "note": "self-times summed over every host thread; share: of all thread time (IDLE, "
                "thread-pool time with no op running, included); busy_share: of the time some "
                "op ran; core_share: of the profiled wall time times the cores",
    }
    result = write_result(NAME, argv, args.quick, args.results_dir, numbers, started=started)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
