"""``python -m tfsent.fit`` as one worker of the multi-worker tests, recording what it trained.

    python tests/train/worker_probe.py RECORD_DIR [fit arguments...]

runs ``tfsent.fit`` unchanged, and writes to ``RECORD_DIR`` (outside the run folder, one per
worker) what the tests compare between workers, which ``fit`` itself does not report:

- ``epoch-<e>.npz``: the model's weights at the end of epoch ``e`` (from 1), in
  ``model.get_weights()`` order;
- ``start.npz``: the weights the first step of this process started from (after Keras'
  ``BackupAndRestore`` restored a backup, if any);
- ``examples.json``: ``{"<e>": [examples of each step of epoch e on this worker]}``.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path


def install(record: Path) -> None:
    import numpy as np
    import tensorflow as tf
    import tf_keras
    from transformers.modeling_tf_utils import TFPreTrainedModel

    examples: dict[int, list[int]] = {}
    current = {"epoch": 0}

    def write_atomic(name: str, write) -> None:
        tmp = record / f".{name}.tmp"
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, record / name)

    class Probe(tf_keras.callbacks.Callback):
        started = False

        def on_train_batch_begin(self, batch, logs=None):
            if not self.started:  # after every callback's on_train_begin: restored by now
                weights = self.model.get_weights()
                write_atomic("start.npz", lambda f: np.savez(f, *weights))
                self.started = True

        def on_epoch_begin(self, epoch, logs=None):
            current["epoch"] = epoch + 1
            examples[epoch + 1] = []

        def on_epoch_end(self, epoch, logs=None):
            weights = self.model.get_weights()
            write_atomic(f"epoch-{epoch + 1}.npz", lambda f: np.savez(f, *weights))
            write_atomic("examples.json", lambda f: f.write(json.dumps(examples).encode()))

    train_step = TFPreTrainedModel.train_step

    def counting_train_step(self, data):
        labels = tf.nest.flatten(data)[-1]  # (features, labels): this replica's share

        def count(n):
            examples[current["epoch"]].append(int(n))
            return n

        tf.py_function(count, [tf.shape(labels)[0]], tf.int32)
        return train_step(self, data)

    fit = tf_keras.Model.fit

    def fit_with_probe(self, *args, callbacks=None, **kwargs):
        # First, so an epoch's weights are recorded before its backup exists.
        return fit(self, *args, callbacks=[Probe(), *(callbacks or [])], **kwargs)

    TFPreTrainedModel.train_step = counting_train_step
    tf_keras.Model.fit = fit_with_probe


if __name__ == "__main__":
    record_dir = Path(sys.argv[1])
    record_dir.mkdir(parents=True, exist_ok=True)
    install(record_dir)
    sys.argv = ["python -m tfsent.fit", *sys.argv[2:]]
    runpy.run_module("tfsent.fit", run_name="__main__")
