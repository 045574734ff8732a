"""Where training runs: the ``tf.distribute`` strategy of ``--strategy``, and what training on
several machines (``--strategy multi_worker``, ``MultiWorkerMirroredStrategy``) needs besides.

``auto`` is ``MirroredStrategy`` over all GPUs when there are several, else the default
strategy; ``tpu`` connects to the TPU cluster of this machine.

For ``multi_worker``, every machine runs the same ``python -m tfsent.fit`` command with the
same ``--output-dir`` (a shared filesystem) and its own ``TF_CONFIG``::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}'

All workers train (each step's batch is split between them and the gradients are summed), but
only the chief writes: the run folder and the export are the chief's, as in Keras' multi-worker
tutorial. The chief is the ``chief`` task, or worker 0 when the cluster has none. The others
read the run folder (to resume from the chief's backup) and write only to a private temporary
folder that they remove.

    >>> check_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", '
    ...                 '"index": 1}}')
    ('worker', 1)
    >>> check_tf_config('{"cluster": {"worker": ["a:1"]}}')
    Traceback (most recent call last):
    ...
    tfsent.errors.UserError: TF_CONFIG has no "task" of this worker: {"type": "worker", "index": N}
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tfsent.errors import fail, first_line
from tfsent.rundir import RunDir

if TYPE_CHECKING:
    import tensorflow as tf

TASK_TYPES = ("chief", "worker")  # what MultiWorkerMirroredStrategy trains with
EXAMPLE = '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", ' \
          '"index": 0}}'


def check_tf_config(text: str | None) -> tuple[str, int]:
    """``(task type, task index)`` of a ``TF_CONFIG`` value, or a one-line error saying what is
    wrong with it: TensorFlow's own messages for a bad one come much later, as a traceback, or
    never (a worker waiting for a cluster that cannot form)."""
    if text is None:
        fail("--strategy multi_worker needs the TF_CONFIG environment variable on each worker, "
             f"e.g. TF_CONFIG='{EXAMPLE}'")
    try:
        value = json.loads(text)
    except ValueError as err:
        fail(f"TF_CONFIG is not valid JSON ({err}); set it to e.g. '{EXAMPLE}'")
    if not isinstance(value, dict):
        fail(f"TF_CONFIG must be a JSON object, e.g. '{EXAMPLE}'")
    cluster, task = value.get("cluster"), value.get("task")
    if not isinstance(cluster, dict) or not any(cluster.get(t) for t in TASK_TYPES):
        fail('TF_CONFIG has no "cluster" with a "worker" list of host:port addresses; '
             f"set it to e.g. '{EXAMPLE}'")
    for name, addresses in cluster.items():
        if not (isinstance(addresses, list) and all(isinstance(a, str) for a in addresses)):
            fail(f'TF_CONFIG cluster "{name}" must be a list of "host:port" strings')
    if not isinstance(task, dict):
        fail('TF_CONFIG has no "task" of this worker: {"type": "worker", "index": N}')
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in TASK_TYPES:
        fail(f'TF_CONFIG task type {task_type!r} is not one of {", ".join(TASK_TYPES)}; '
             "multi_worker trains with chief and worker tasks only")
    if isinstance(index, bool) or not isinstance(index, int):
        fail(f'TF_CONFIG task index {index!r} must be a whole number')
    if not 0 <= index < len(cluster.get(task_type) or []):
        fail(f'TF_CONFIG task {task_type} {index} is not in its cluster, which has '
             f'{len(cluster.get(task_type) or [])} {task_type} address(es)')
    return task_type, index


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy for ``--strategy``."""
    import tensorflow as tf

    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return make_multi_worker_strategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.NotFoundError) as err:
            fail(f"--strategy tpu found no TPU ({first_line(err)}); use --strategy auto")
        return tf.distribute.TPUStrategy(resolver)
    fail(f"unknown --strategy {name!r}")


def make_multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """The strategy of ``--strategy multi_worker``, from a checked ``TF_CONFIG``.

    It must be made before TensorFlow runs any op in this process (TensorFlow configures its
    collective ops when its runtime starts), which is why :func:`tfsent.fit.fit` makes it first.
    """
    import tensorflow as tf

    check_tf_config(os.environ.get("TF_CONFIG"))
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run: always, except for the workers of a multi-worker
    cluster that are not its chief (the ``chief`` task, or worker 0 when there is none)."""
    resolver = strategy.cluster_resolver if is_multi_worker(strategy) else None
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = bool(resolver.cluster_spec().as_dict().get("chief"))
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_name(strategy: tf.distribute.Strategy) -> str:
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type} {resolver.task_id}"


def shard_by_examples(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` for Keras under a multi-worker strategy: each global batch is split between
    the workers. Our datasets are built from ``Dataset.range``, not files, so tf.data's
    default (shard by file, then fall back with a warning) is replaced by sharding the data."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def private_run(run: RunDir) -> tuple[RunDir, Callable[[], Any]]:
    """A run folder of this worker's own, outside ``run``, for a worker other than the chief,
    and the function that removes it (called by the caller, else when the process exits).

    A multi-worker save needs every worker (its variables are read collectively), so every
    worker saves what the chief saves: the best epoch's weights, Keras' ``BackupAndRestore``
    backups. The chief saves into ``run``; the others into this folder. Its ``backup/chief`` is
    a link to ``run``'s: ``BackupAndRestore`` restores every worker from ``backup/chief`` (the
    chief's saves), and writes the other workers' saves to ``backup/workertemp_<id>``.
    """
    private = RunDir(tempfile.mkdtemp(prefix="tfsent-worker-"))
    private.checkpoints_dir.mkdir()
    private.backup_dir.mkdir()
    (private.backup_dir / "chief").symlink_to(run.backup_dir.resolve() / "chief",
                                              target_is_directory=True)
    return private, weakref.finalize(private, shutil.rmtree, private.path, True)


def wait_for_all(strategy: tf.distribute.Strategy) -> None:
    """Return once every worker of a multi-worker strategy got here (at once elsewhere): what
    the chief wrote before, every worker can read after."""
    import tensorflow as tf

    if not is_multi_worker(strategy):
        return
    one = strategy.run(lambda: tf.constant(1.0))
    strategy.reduce(tf.distribute.ReduceOp.SUM, one, axis=None)
