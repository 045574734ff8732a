"""The optimizer's recipe options: layer-wise learning-rate decay and gradient accumulation.

Both live in :class:`RecipeAdamW`, transformers' ``AdamWeightDecay`` (the AdamW that
``transformers.create_optimizer`` makes, with its warmup + linear decay schedule) extended in
the two places the Keras optimizer leaves open:

- **layer-wise learning-rate decay** (Sun et al. 2019, ``--layerwise-lr-decay``): encoder layer
  ``l`` of ``L`` (from 0 at the bottom) learns at ``lr * factor ** (L - l)``, the embeddings at
  ``lr * factor ** (L + 1)``, the pooler and classifier head at ``lr``. Adam is invariant to
  the scale of a gradient, so the *learning rate* is scaled per variable: each variable's
  update and weight decay read a copy of the optimizer's per-step coefficients with ``lr_t``
  (and ``lr``, its bias-corrected form) multiplied by the variable's factor;
- **gradient accumulation** (``--gradient-accumulation-steps K``): ``apply_gradients`` adds the
  batch's gradients into transformers' ``GradientAccumulator`` and applies their mean when
  :attr:`RecipeAdamW.apply_now` is set (every K batches and at each epoch's last batch:
  :class:`tfsent.callbacks.AccumulationBoundary` sets it). The optimizer's ``iterations``, which
  the learning-rate schedule reads, counts applied steps only. This works with the models'
  built-in loss and Keras ``fit``, since their ``train_step`` ends in ``optimizer.minimize``.

    >>> layer_lr_multiplier("tf_bert/bert/encoder/layer_._1/output/dense/kernel:0", 2, 0.5)
    0.5
    >>> layer_lr_multiplier("tf_bert/bert/encoder/layer_._0/output/dense/kernel:0", 2, 0.5)
    0.25
    >>> layer_lr_multiplier("tf_bert/bert/embeddings/word_embeddings/weight:0", 2, 0.5)
    0.125
    >>> layer_lr_multiplier("tf_bert/classifier/kernel:0", 2, 0.5)
    1.0
"""

from __future__ import annotations

import re
from typing import Any

import tensorflow as tf
from transformers.optimization_tf import AdamWeightDecay, GradientAccumulator

# transformers names the encoder blocks ``layer_._<i>`` in every supported family.
_LAYER = re.compile(r"/layer_\._(\d+)/")
_EMBEDDINGS = re.compile(r"/embeddings(_project)?/")


def layer_lr_multiplier(name: str, num_layers: int, factor: float) -> float:
    """The learning-rate factor of the variable ``name`` in a model of ``num_layers`` encoder
    layers under layer-wise decay ``factor``: 1 for the head and pooler."""
    match = _LAYER.search(name)
    if match:
        return factor ** (num_layers - int(match.group(1)))
    if _EMBEDDINGS.search(name):
        return factor ** (num_layers + 1)
    return 1.0


class RecipeAdamW(AdamWeightDecay):
    """``AdamWeightDecay`` with per-layer learning rates and gradient accumulation.

    With ``layerwise_lr_decay=1`` and ``accumulation_steps=1`` it computes what
    ``AdamWeightDecay`` computes.
    """

    def __init__(self, *args: Any, layerwise_lr_decay: float = 1.0, num_layers: int = 0,
                 accumulation_steps: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layerwise_lr_decay = float(layerwise_lr_decay)
        self.num_layers = int(num_layers)
        self.accumulation_steps = int(accumulation_steps)
        self._accumulator = None
        if self.accumulation_steps > 1:
            self._accumulator = GradientAccumulator()
            # Set from outside the train step (a callback) before each batch: a plain flag,
            # so a resumed run needs no counter of its own to know where a group ends.
            self.apply_now = tf.Variable(True, trainable=False, name="apply_now")

    def lr_multiplier(self, var: tf.Variable) -> float:
        if self.layerwise_lr_decay == 1.0:
            return 1.0
        return layer_lr_multiplier(var.name, self.num_layers, self.layerwise_lr_decay)

    def _scaled_state(self, var: tf.Variable, apply_state: dict | None) -> dict | None:
        """``apply_state`` whose learning rates are ``var``'s: Adam reads ``lr_t`` (dense
        kernel) or ``lr`` (sparse path), AdamWeightDecay's decay reads ``lr_t``."""
        factor = self.lr_multiplier(var)
        if factor == 1.0:
            return apply_state
        key = (var.device, var.dtype.base_dtype)
        coefficients = (apply_state or {}).get(key) or self._fallback_apply_state(*key)
        scaled = dict(coefficients)
        for name in ("lr_t", "lr"):
            scaled[name] = coefficients[name] * tf.cast(factor, coefficients[name].dtype)
        return {key: scaled}

    def _resource_apply_dense(self, grad, var, apply_state=None):
        return super()._resource_apply_dense(grad, var, self._scaled_state(var, apply_state))

    def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
        return super()._resource_apply_sparse(grad, var, indices,
                                              self._scaled_state(var, apply_state))

    def create_accumulators(self, variables) -> None:
        """Make the slots and the accumulated gradients of ``variables`` now, before the train
        step runs: an XLA-compiled step cannot create variables."""
        self._create_all_weights(variables)
        if self._accumulator is not None and not self._accumulator._gradients:
            self._accumulator([tf.zeros_like(v) for v in variables])
            self._accumulator.reset()

    def apply_gradients(self, grads_and_vars, name=None, **kwargs):
        if self._accumulator is None:
            return super().apply_gradients(grads_and_vars, name=name, **kwargs)
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise ValueError("gradient accumulation runs on one device; use --strategy default")
        grads, variables = zip(*grads_and_vars, strict=True)
        # Embedding gradients arrive as IndexedSlices, which a variable cannot add up.
        self._accumulator([None if g is None else tf.convert_to_tensor(g) for g in grads])
        self._create_all_weights(variables)  # slots outside the branch below, once

        def apply():
            count = tf.cast(self._accumulator.step, tf.float32)
            mean = [None if g is None else g / tf.cast(count, g.dtype)
                    for g in self._accumulator.gradients]
            pairs = [(m, v) for m, g, v in zip(mean, grads, variables, strict=True)
                     if g is not None and m is not None]
            with tf.control_dependencies(
                    [super(RecipeAdamW, self).apply_gradients(pairs, name=name, **kwargs)]):
                self._accumulator.reset()
            return tf.constant(True)

        return tf.cond(self.apply_now, apply, lambda: tf.constant(False))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "layerwise_lr_decay": self.layerwise_lr_decay,
                "num_layers": self.num_layers, "accumulation_steps": self.accumulation_steps}


def recipe_adamw(schedule, weight_decay: float, *, layerwise_lr_decay: float = 1.0,
                 num_layers: int = 0, accumulation_steps: int = 1) -> RecipeAdamW:
    """:class:`RecipeAdamW` set as ``transformers.create_optimizer`` sets its AdamW (its
    defaults: betas 0.9 / 0.999, epsilon 1e-8, no decay on LayerNorm and biases), on the
    learning-rate ``schedule`` it made."""
    return RecipeAdamW(
        learning_rate=schedule,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        weight_decay_rate=weight_decay,
        exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"],
        layerwise_lr_decay=layerwise_lr_decay,
        num_layers=num_layers,
        accumulation_steps=accumulation_steps,
    )
