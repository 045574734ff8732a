"""Training speed: tfsent's pipeline against the usual recipe, same model, same reviews.

- **A, the usual recipe** (the Hugging Face TF fine-tuning tutorial): ``tokenizer(texts,
  padding="max_length", truncation=True, max_length=L, return_tensors="np")`` ->
  ``tf.data.Dataset.from_tensor_slices((dict(...), labels)).shuffle(N).batch(B)`` ->
  ``model.fit`` in float32, compiled with the model's built-in loss.
- **B, tfsent**: ``tfsent.features.encode`` (head+tail) + ``make_dataset`` (length bucketing,
  dynamic padding, prefetch), ``mixed_bfloat16`` where the CPU has native bf16
  (``--precision auto``), and ``fit``'s step: dropout drawn from seeded generators, reseeded
  before every step (``tfsent.callbacks.ReseedDropout``); with ``--jit-compile`` also
  **B+XLA** (XLA, batches padded to bucket boundaries).

Each config trains a fresh model (same seed, same AdamW schedule) for one epoch of the same
reviews; the clock runs from the end of batch ``--warmup-batches`` to the end of the epoch
(B+XLA: a first epoch compiles every shape, the second is timed). A and B alternate
``--repeats`` times; the figures are medians and the ratio B/A. Training FLOPs are counted from
the model config and the padded shapes each step received (``benchmarks.flops``) and set against
each precision's peak, measured in the same process (the threads training uses) by
:func:`peak_probe`: the best of large square ``tf.linalg.matmul`` s (2048, 4096, 8192), next to
the model's own matmul shapes (projections, feed-forward, attention's batched matmuls) under
``peak.<dtype>.shapes``. Whether the CPU computes bfloat16 natively (``avx512_bf16`` /
``amx_bf16``) is recorded with it: without, bf16 is emulated in software. After the first
repeat each model is scored on ``--eval-samples`` held-out reviews, so a speed-up that cost
accuracy shows.

    python -m benchmarks.train_speed                  # 1,024 reviews, L=256 and 512, 3 repeats
    python -m benchmarks.train_speed --jit-compile --max-length 256
    python -m benchmarks.train_speed --quick          # smoke run, well under a minute
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

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

NAME = "train_speed"
USUAL = "A"
TFSENT = "B"
TFSENT_XLA = "B+XLA"
TRUNCATION = "head+tail"
WARMUP_RATIO = 0.1
WEIGHT_DECAY = 0.01
EVAL_BATCH_SIZE = 64
# Full-run defaults, then --quick's.
DEFAULTS = {"reviews": 1024, "eval_samples": 1000, "max_length": [256, 512], "batch_size": 16,
            "repeats": 3, "warmup_batches": 3, "peak_size": [2048, 4096, 8192]}
QUICK = {"reviews": 32, "eval_samples": 16, "max_length": [32], "batch_size": 4,
         "repeats": 1, "warmup_batches": 2, "peak_size": [256, 512]}


@dataclass
class Config:
    """One way to train: who prepares the inputs, in which precision, with or without XLA."""

    name: str
    description: str
    policy: str
    jit_compile: bool = False

    @property
    def epochs(self) -> int:
        return 2 if self.jit_compile else 1  # XLA: compile every shape, then time


# /proc/cpuinfo flags that decide how fast each precision can be.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
PEAK_DTYPES = ("float32", "bfloat16")
# A warm-up this long (seconds) is timed once more, not ``repeats`` times.
LONG_MATMUL = 10.0


def matmul_seconds(a_shape: Sequence[int], b_shape: Sequence[int], dtype: str,
                   repeats: int) -> float:
    """The best wall time of ``tf.linalg.matmul`` of two random tensors of these shapes (2-D,
    or 3-D: a batched matmul) in ``dtype``, after a warm-up that lets oneDNN pick its kernel."""
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_uniform(a_shape, seed=[1, 2]), dtype)
    b = tf.cast(tf.random.stateless_uniform(b_shape, seed=[3, 4]), dtype)

    @tf.function
    def corner(a, b):
        # One element out: the whole product is computed, no 256 MB copy to numpy is timed.
        return tf.linalg.matmul(a, b)[..., 0, 0]

    start = time.perf_counter()
    corner(a, b).numpy()
    warmup = time.perf_counter() - start
    seconds = []
    for _ in range(1 if warmup > LONG_MATMUL else repeats):
        start = time.perf_counter()
        corner(a, b).numpy()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def model_config(model_name: str, tokenizer):
    """The transformers config of ``--model`` (a folder, or ``tiny``) without loading weights."""
    from transformers import AutoConfig

    from tfsent.model import tiny_config, tiny_family

    family = tiny_family(model_name)
    return tiny_config(family, len(tokenizer)) if family else AutoConfig.from_pretrained(model_name)


def model_shapes(config, batch_size: int, lengths: Sequence[int]) -> list[dict[str, Any]]:
    """The matmuls of one training batch of ``batch_size`` reviews of each length: the
    projections and feed-forward on ``batch * length`` tokens, attention's batched matmuls."""
    h, i, heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    shapes = []
    for length in lengths:
        tokens, rows, d = batch_size * length, batch_size * heads, h // heads
        shapes += [
            {"what": f"Q/K/V/output projection, L={length}", "a": [tokens, h], "b": [h, h]},
            {"what": f"feed-forward in, L={length}", "a": [tokens, h], "b": [h, i]},
            {"what": f"feed-forward out, L={length}", "a": [tokens, i], "b": [i, h]},
            {"what": f"attention scores QK^T, L={length}", "a": [rows, length, d],
             "b": [rows, d, length]},
            {"what": f"attention x V, L={length}", "a": [rows, length, length],
             "b": [rows, length, d]},
        ]
    return shapes


def cpu_flags() -> list[str]:
    """Which of :data:`CPU_FLAGS` this CPU has."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [flag for flag in CPU_FLAGS if flag in words]


def peak_probe(sizes: Sequence[int], shapes: list[dict[str, Any]],
               repeats: int = 3) -> dict[str, dict[str, Any]]:
    """Per precision: GFLOP/s of square matmuls of ``sizes`` and of the model's ``shapes``
    (``shapes``: every one as ``{shape, what, gflops}``), on the intra-op threads training
    uses (this process's); the peak (``flops_per_second``, ``size``) is the best square."""
    import tensorflow as tf

    from benchmarks.machine import usable_cores
    from tfsent.model import cpu_has_bf16

    threads = tf.config.threading.get_intra_op_parallelism_threads() or usable_cores()
    squares = [{"what": f"square {n}", "a": [n, n], "b": [n, n]} for n in sizes]
    flags, native = cpu_flags(), cpu_has_bf16()
    peaks = {}
    for dtype in PEAK_DTYPES:
        measured = []
        for entry in squares + shapes:
            a, b = entry["a"], entry["b"]
            flops = 2.0 * math.prod(a) * b[-1]
            seconds = matmul_seconds(a, b, dtype, repeats)
            measured.append({"shape": f"{a}x{b}".replace(" ", ""), "what": entry["what"],
                             "gflops": flops / seconds / 1e9})
            print(f"  peak {dtype} {entry['what']}: {measured[-1]['gflops']:.1f} GFLOP/s",
                  file=sys.stderr)
        best = max(range(len(squares)), key=lambda k: measured[k]["gflops"])
        peaks[dtype] = {"dtype": dtype, "threads": threads, "size": sizes[best],
                        "flops_per_second": measured[best]["gflops"] * 1e9,
                        "repeats": repeats, "shapes": measured}
    peaks["bfloat16"]["native"] = native
    peaks["bfloat16"]["cpu_flags"] = flags
    peaks["bfloat16"]["note"] = (
        "native: the CPU multiplies bfloat16 (avx512_bf16/amx_bf16)" if native else
        "emulated: no avx512_bf16/amx_bf16 in /proc/cpuinfo (flags: "
        f"{', '.join(flags) or 'none of ' + ', '.join(CPU_FLAGS)}): TensorFlow runs bfloat16 "
        "matmuls without hardware support (emulated), so these figures are no native bf16 peak")
    return peaks


def parse_args(argv: Sequence[str] | None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--reviews", type=int, help="Training reviews per run (default 1024; "
                        "32 with --quick).")
    parser.add_argument("--eval-samples", type=int, help="Held-out reviews scored after the "
                        "first repeat (default 1000; 16 with --quick).")
    parser.add_argument("--max-length", type=int, nargs="+", help="Max lengths to measure "
                        "(default 256 512; 32 with --quick).")
    parser.add_argument("--batch-size", type=int, help="Training batch size (default 16; 4 "
                        "with --quick).")
    parser.add_argument("--repeats", type=int, help="A/B alternations; medians are reported "
                        "(default 3; 1 with --quick).")
    parser.add_argument("--warmup-batches", type=int, help="Batches before the clock starts: "
                        "tracing happens there (default 3; 2 with --quick).")
    parser.add_argument("--learning-rate", type=float, default=5e-5,
                        help="Peak lr of the AdamW schedule, the same for every config.")
    parser.add_argument("--precision", default="auto",
                        choices=("auto", "no", "mixed_bfloat16", "mixed_float16"),
                        help="B's --mixed-precision (auto: bf16 on CPUs with native bf16).")
    parser.add_argument("--jit-compile", action="store_true",
                        help="Also measure B with XLA (batches padded to bucket boundaries).")
    parser.add_argument("--peak-size", type=int, nargs="+", help="Sides of the square matmuls "
                        "whose best is the peak (default 2048 4096 8192; 256 512 with --quick).")
    parser.add_argument("--data", help="aclImdb tarball or folder, or 'demo' (default: the real "
                        "IMDB train tarball; demo with --quick when it is absent).")
    parser.add_argument("--model", help="BERT folder or 'tiny' (default: real MiniLM; tiny "
                        "with --quick when it is absent).")
    parser.add_argument("--seed", type=int, default=42)
    args = parse_sized_args(parser, argv, DEFAULTS, QUICK,
                            ("reviews", "eval_samples", "batch_size", "repeats"))
    if min(args.peak_size) < 1:
        fail("--peak-size must be at least 1")
    if args.warmup_batches < 1:
        fail("--warmup-batches must be at least 1: the first batch traces the train step")
    if min(args.max_length) < 8:
        fail("--max-length must be at least 8")
    if args.warmup_batches >= math.ceil(args.reviews / args.batch_size):
        fail(f"--warmup-batches {args.warmup_batches} leaves no batch to time out of "
             f"{math.ceil(args.reviews / args.batch_size)}; pass more --reviews")
    return args


def make_timer(stats, start_epoch: int, warmup_batches: int):
    """A callback that starts the clock after ``warmup_batches`` batches of ``start_epoch``
    (at the start of ``start_epoch`` when 0) and stops it at the end of the last batch."""
    import tf_keras

    class Timer(tf_keras.callbacks.Callback):
        started = None
        at_start = None

        def _start(self) -> None:
            self.at_start = stats.numpy().copy()
            self.traces_at_start = self.model.train_function.experimental_get_tracing_count()
            self.started = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            if epoch == start_epoch and warmup_batches == 0:
                self._start()

        def on_train_batch_end(self, batch, logs=None):
            self.last_batch_end = time.perf_counter()
            if self.epoch == start_epoch and batch + 1 == warmup_batches:
                self._start()

        def on_train_end(self, logs=None):
            # Up to the last batch: not the end-of-data probe a dataset of unknown length makes.
            self.seconds = self.last_batch_end - self.started
            self.counted = stats.numpy() - self.at_start
            self.retraces = (self.model.train_function.experimental_get_tracing_count()
                             - self.traces_at_start)

    return Timer()


def count_steps(model):
    """Wrap ``model.train_step`` to add up, per step, the rows, padded tokens, squared padded
    lengths and real tokens it received: exactly what the FLOP count needs."""
    import tensorflow as tf

    stats = tf.Variable(tf.zeros([4], tf.int64), trainable=False)
    inner = model.train_step

    def train_step(data):
        features = data[0]
        shape = tf.cast(tf.shape(features["input_ids"]), tf.int64)
        rows, length = shape[0], shape[1]
        real = tf.reduce_sum(tf.cast(features["attention_mask"], tf.int64))
        stats.assign_add(tf.stack([rows, rows * length, rows * length * length, real]))
        return inner(data)

    model.train_step = train_step
    return stats


def usual_inputs(tokenizer, texts: list[str], labels: np.ndarray, max_length: int):
    """The tutorial's preprocessing: every review padded to ``max_length``."""
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="np")
    return dict(encoded), labels


def usual_dataset(inputs, batch_size: int, seed: int, shuffle: bool):
    import tensorflow as tf

    features, labels = inputs
    ds = tf.data.Dataset.from_tensor_slices((features, labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed)
    return ds.batch(batch_size)


def train_once(config: Config, args, model_name: str, label_names: list[str], tokenizer,
               train_ds_fn, eval_ds_fn, steps_per_epoch: int, evaluate: bool) -> dict[str, Any]:
    """Train a fresh model with ``config`` for its epochs; time it; score it if ``evaluate``."""
    import tf_keras

    from tfsent.callbacks import ReseedDropout
    from tfsent.evaluate import predict_logits
    from tfsent.model import build_model, generator_dropout, make_optimizer, precision_policy

    tf_keras.backend.clear_session()
    ours = config.name != USUAL
    try:
        # tfsent's step is fit's: dropout drawn from seeded generators, reseeded every step
        # (what makes a resumed run draw what an uninterrupted one drew); the tutorial's is not.
        with precision_policy(config.policy), (generator_dropout() if ours else nullcontext()):
            tf_keras.utils.set_random_seed(args.seed)
            model = build_model(model_name, label_names, tokenizer)
            optimizer = make_optimizer(args.learning_rate, steps_per_epoch * config.epochs,
                                       WARMUP_RATIO, WEIGHT_DECAY)
            model.compile(optimizer=optimizer, jit_compile=config.jit_compile)  # built-in loss
            stats = count_steps(model)
            timer = make_timer(stats, start_epoch=config.epochs - 1,
                               warmup_batches=0 if config.jit_compile else args.warmup_batches)
            callbacks = [ReseedDropout(args.seed), timer] if ours else [timer]
            model.fit(train_ds_fn(), epochs=config.epochs, callbacks=callbacks, verbose=0)
        rows, tokens, squared, real = (int(v) for v in timer.counted)
        run = {"seconds": timer.seconds, "examples": rows, "padded_tokens": tokens,
               "squared_tokens": squared, "real_tokens": real, "retraces": int(timer.retraces)}
        if evaluate:
            labels, logits = predict_logits(model, eval_ds_fn())
            run["validation_accuracy"] = float(np.mean(logits.argmax(-1) == labels))
        run["model_config"] = model.config
        return run
    finally:
        tf_keras.backend.clear_session()


def summarize(config: Config, runs: list[dict[str, Any]], tokenize_seconds: float,
              peaks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats, FLOP/s and the share of the measured matmul peaks."""
    from benchmarks.flops import training_flops

    speeds, flop_rates = [], []
    for run in runs:
        flops = training_flops(run["model_config"], run["examples"], run["padded_tokens"],
                               run["squared_tokens"])
        speeds.append(run["examples"] / run["seconds"])
        flop_rates.append(flops / run["seconds"])
    first = runs[0]
    flops_per_second = median(flop_rates)
    return {
        "description": config.description,
        "precision_policy": config.policy,
        "jit_compile": config.jit_compile,
        "tokenize_seconds": tokenize_seconds,
        "examples_per_second": speeds,
        "examples_per_second_median": median(speeds),
        "timed_seconds": [r["seconds"] for r in runs],
        "timed_examples": first["examples"],
        "padded_tokens_per_example": first["padded_tokens"] / first["examples"],
        "real_tokens_per_example": first["real_tokens"] / first["examples"],
        "padding_fraction": 1 - first["real_tokens"] / first["padded_tokens"],
        "retraces_in_timed_window": max(r["retraces"] for r in runs),
        "train_flops_per_example": training_flops(
            first["model_config"], first["examples"], first["padded_tokens"],
            first["squared_tokens"]) / first["examples"],
        "train_flops_per_second_median": flops_per_second,
        "fraction_of_bf16_peak": flops_per_second / peaks["bfloat16"]["flops_per_second"],
        "fraction_of_float32_peak": flops_per_second / peaks["float32"]["flops_per_second"],
        "validation_accuracy": first.get("validation_accuracy"),
    }


def measure_length(args, max_length: int, model_name: str, splits, tokenizer,
                   configs: list[Config], peaks) -> dict[str, Any]:
    """Every config at one max length, alternating, ``args.repeats`` times."""
    from tfsent.features import encode, make_dataset

    train, valid = splits.train, splits.validation
    start = time.perf_counter()
    usual_train = usual_inputs(tokenizer, train.texts, train.labels, max_length)
    usual_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ours_train = encode(tokenizer, train.texts, max_length, TRUNCATION, train.labels)
    ours_seconds = time.perf_counter() - start
    usual_valid = usual_inputs(tokenizer, valid.texts, valid.labels, max_length)
    usual_valid = ({k: v.astype(np.int32) for k, v in usual_valid[0].items()}, usual_valid[1])
    ours_valid = encode(tokenizer, valid.texts, max_length, TRUNCATION, valid.labels)

    def datasets(config: Config):
        if config.name == USUAL:
            return (lambda: usual_dataset(usual_train, args.batch_size, args.seed, True),
                    lambda: usual_dataset(usual_valid, EVAL_BATCH_SIZE, args.seed, False))
        pad = config.jit_compile
        return (lambda: make_dataset(ours_train, args.batch_size, shuffle=True, seed=args.seed,
                                     pad_to_bucket_boundary=pad, max_length=max_length),
                lambda: make_dataset(ours_valid, EVAL_BATCH_SIZE, shuffle=False, seed=args.seed,
                                     pad_to_bucket_boundary=pad, max_length=max_length))

    steps = math.ceil(len(train) / args.batch_size)
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in configs}
    for repeat in range(args.repeats):
        for config in configs:
            train_fn, eval_fn = datasets(config)
            run = train_once(config, args, model_name, splits.label_names, tokenizer, train_fn,
                             eval_fn, steps, evaluate=repeat == 0 and not config.jit_compile)
            runs[config.name].append(run)
            print(f"  L={max_length} repeat {repeat + 1}/{args.repeats} {config.name}: "
                  f"{run['examples'] / run['seconds']:.1f} examples/s", file=sys.stderr)
    tokenize = {USUAL: usual_seconds, TFSENT: ours_seconds, TFSENT_XLA: ours_seconds}
    results = {c.name: summarize(c, runs[c.name], tokenize[c.name], peaks) for c in configs}
    base = results[USUAL]["examples_per_second_median"]
    for result in results.values():
        result["speedup_over_A"] = result["examples_per_second_median"] / base
    return {"max_length": max_length, "configs": results,
            "ratio_B_over_A": results[TFSENT]["examples_per_second_median"] / base}


def table(result: dict[str, Any]) -> str:
    rows = []
    for entry in result["lengths"]:
        for name, c in entry["configs"].items():
            acc = c["validation_accuracy"]
            rows.append([entry["max_length"], name, c["precision_policy"],
                         number(c["examples_per_second_median"]),
                         f"{c['speedup_over_A']:.2f}x",
                         f"{100 * c['padding_fraction']:.0f}%",
                         number(c["train_flops_per_second_median"] / 1e9),
                         f"{100 * c['fraction_of_bf16_peak']:.0f}%",
                         f"{100 * c['fraction_of_float32_peak']:.0f}%",
                         "n/a" if acc is None else f"{100 * acc:.1f}%"])
    text = markdown_table(["max length", "config", "precision", "train examples/s", "vs A",
                           "padding", "GFLOP/s", "of bf16 peak", "of f32 peak", "val accuracy"],
                          rows)
    peaks = result["peak"]
    s = result["settings"]
    f32, bf16 = peaks["float32"], peaks["bfloat16"]
    native = "native" if bf16.get("native") else "emulated, no native bf16 on this CPU"
    repeats = ("one run of each (--repeats 1), no medians" if s["repeats"] == 1
               else f"medians of {s['repeats']} alternating repeats")
    return (f"{text}\n\n{s['model']}, {s['reviews']:,} training reviews, batch {s['batch_size']}, "
            f"{repeats}; accuracy on {s['eval_samples']:,} "
            f"held-out reviews. Matmul peak (best square): float32 "
            f"{number(f32['flops_per_second'] / 1e9)} GFLOP/s ({f32['size']}), bfloat16 "
            f"{number(bf16['flops_per_second'] / 1e9)} GFLOP/s ({bf16['size']}; {native}).")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_run()
    try:
        data = resolve_data(args.data, args.quick)
        model_name = resolve_model(args.model, args.quick)
    except Skipped as why:
        return report_skip(NAME, str(why))
    from tfsent.model import resolve_precision

    splits = load_reviews(data, args.reviews, args.eval_samples, args.seed)
    if len(splits.train) < args.reviews:
        fail(f"{data} holds only {len(splits.train)} training reviews after holding out "
             f"{args.eval_samples}; pass fewer --reviews")
    tokenizer = load_tokenizer_for(model_name, splits.train.texts)
    policy = resolve_precision(args.precision)
    configs = [
        Config(USUAL, "tutorial: pad to max length, from_tensor_slices, float32", "float32"),
        Config(TFSENT, "tfsent: encode + length bucketing, dynamic padding, prefetch", policy),
    ]
    if args.jit_compile:
        configs.append(Config(TFSENT_XLA, "tfsent with XLA, padded to bucket boundaries",
                              policy, jit_compile=True))
    peaks = peak_probe(args.peak_size, model_shapes(model_config(model_name, tokenizer),
                                                    args.batch_size, args.max_length),
                       repeats=2 if args.quick else 3)
    lengths = [measure_length(args, length, model_name, splits, tokenizer, configs, peaks)
               for length in args.max_length]
    numbers = {
        "settings": {
            "data": data, "model": describe_model(model_name), "reviews": len(splits.train),
            "eval_samples": len(splits.validation), "batch_size": args.batch_size,
            "repeats": args.repeats, "warmup_batches": args.warmup_batches,
            "learning_rate": args.learning_rate, "seed": args.seed,
            "truncation": {USUAL: "head (tokenizer truncation=True)", TFSENT: TRUNCATION},
        },
        "peak": peaks,
        "lengths": lengths,
    }
    result = write_result(NAME, argv, args.quick, args.results_dir, numbers,
                          started=started)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
