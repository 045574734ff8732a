"""Server-side batching: concurrent requests to one signature run as one batch, like TF Serving's
batching session (``--enable_batching``).

A request joins the open batch of its queue if it fits in ``max_batch_size`` rows; a batch runs
when it is full or ``batch_timeout_micros`` after it opened, on one of ``num_batch_threads``
threads. Its inputs are concatenated along dimension 0, padded up to the next
``allowed_batch_sizes`` entry by repeating the first row (as TF Serving pads), run once, and the
outputs are split back per request. A queue holds at most ``max_enqueued_batches`` batches;
beyond that requests fail with UNAVAILABLE, as TF Serving's do.

Only requests whose inputs have the same names, dtypes and shapes past dimension 0 share a queue,
so token-id requests of different widths are never padded together (padding ``input_ids`` would
change what the model sees)::

    scheduler = BatchScheduler(servable.run, BatchingParameters(max_batch_size=32))
    outputs = scheduler.submit("serving_default", {"text": texts}).result()
    scheduler.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from tfsent.model_server.server_config import BatchingParameters
from tfsent.model_server.status import RequestError

log = logging.getLogger(__name__)

RunFunction = Callable[[str, Mapping[str, np.ndarray]], dict[str, np.ndarray]]
# (signature, ((input name, dtype, shape past dim 0), ...)): requests that can be concatenated.
QueueKey = tuple[str, tuple[tuple[str, str, tuple[int, ...]], ...]]


class BatchObserver:
    """What the scheduler reports (metrics); the default reports nothing."""

    def batch_run(self, size: int, padding: int) -> None:
        """A batch of ``size`` real rows (+ ``padding`` rows) ran."""

    def task_queued(self, rows: int, wait_seconds: float) -> None:
        """A request of ``rows`` rows waited ``wait_seconds`` before its batch started."""


@dataclass
class _Task:
    inputs: Mapping[str, np.ndarray]
    rows: int
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class _Batch:
    signature: str
    tasks: list[_Task] = field(default_factory=list)
    rows: int = 0
    opened: float = field(default_factory=time.monotonic)
    closed: bool = False


def batch_rows(inputs: Mapping[str, np.ndarray]) -> int:
    """Rows of a request: the common size of every input's dimension 0 (TF Serving's rule)."""
    sizes = set()
    for array in inputs.values():
        if array.ndim == 0:
            raise RequestError.invalid_argument(
                "Batching Run() input tensors must have at least one dimension"
            )
        sizes.add(array.shape[0])
    if len(sizes) != 1:
        raise RequestError.invalid_argument(
            "Batching Run() input tensors must have equal 0th-dimension size"
        )
    return sizes.pop()


class BatchScheduler:
    """Batches ``run(signature, inputs)`` calls; thread-safe; ``stop`` drains what is queued."""

    def __init__(
        self,
        run: RunFunction,
        params: BatchingParameters,
        observer: BatchObserver | None = None,
        name: str = "batch",
    ) -> None:
        self._run = run
        self.params = params
        self._observer = observer or BatchObserver()
        self._timeout = params.batch_timeout_micros / 1e6
        self._max_rows = params.execution_batch_size
        self._queues: dict[QueueKey, deque[_Batch]] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(
                target=self._work, name=f"{name}-{params.thread_pool_name}-{i}", daemon=True
            )
            for i in range(params.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, signature: str, inputs: Mapping[str, np.ndarray]) -> Future:
        """Queue a request; the future gives all its outputs, or raises its ``RequestError``."""
        rows = batch_rows(inputs)
        if rows > self.params.max_batch_size:
            raise RequestError.invalid_argument(
                f"Task size {rows} is larger than maximum input batch size "
                f"{self.params.max_batch_size}"
            )
        if rows > self._max_rows:  # large batch splitting: run in pieces, join the outputs
            pieces = [
                self.submit(
                    signature, {k: v[start : start + self._max_rows] for k, v in inputs.items()}
                )
                for start in range(0, rows, self._max_rows)
            ]
            return _joined(pieces)
        key: QueueKey = (
            signature,
            tuple(sorted((k, str(v.dtype), tuple(v.shape[1:])) for k, v in inputs.items())),
        )
        task = _Task(inputs, rows)
        with self._cond:
            if self._stopping:
                raise RequestError.unavailable("The batch scheduler is shutting down")
            queue = self._queues.setdefault(key, deque())
            batch = queue[-1] if queue and not queue[-1].closed else None
            if batch is not None and batch.rows + rows > self._max_rows:
                batch.closed = True
                batch = None
            if batch is None:
                if len(queue) >= self.params.max_enqueued_batches:
                    raise RequestError.unavailable(
                        "The batch scheduling queue to which this task was submitted is full"
                    )
                batch = _Batch(signature)
                queue.append(batch)
            batch.tasks.append(task)
            batch.rows += rows
            if batch.rows >= self._max_rows:
                batch.closed = True
            self._cond.notify_all()
        return task.future

    def stop(self, timeout: float | None = None) -> bool:
        """Run what is queued now (no more waiting for timeouts), then end the threads; False
        if one still runs a batch after ``timeout`` seconds."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        end = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if end is None else max(end - time.monotonic(), 0.0))
        return not any(thread.is_alive() for thread in self._threads)

    def _next_batch(self) -> _Batch | None:
        """Under the lock: take a batch that is due, or wait until one may be."""
        while True:
            now = time.monotonic()
            wake_at = None
            for key, queue in list(self._queues.items()):
                if not queue:
                    del self._queues[key]
                    continue
                batch = queue[0]
                due = batch.opened + self._timeout
                if batch.closed or len(queue) > 1 or self._stopping or now >= due:
                    return queue.popleft()
                wake_at = due if wake_at is None else min(wake_at, due)
            if self._stopping:
                return None
            self._cond.wait(None if wake_at is None else max(wake_at - now, 0.0))

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            self._process(batch)

    def _process(self, batch: _Batch) -> None:
        # Callers that gave up (deadline) cancelled their futures: leave their rows out.
        batch.tasks = [t for t in batch.tasks if t.future.set_running_or_notify_cancel()]
        batch.rows = sum(t.rows for t in batch.tasks)
        if not batch.tasks:
            return
        started = time.monotonic()
        for task in batch.tasks:
            self._observer.task_queued(task.rows, started - task.enqueued)
        try:
            outputs, padding = self._run_merged(batch)
        except RequestError as err:
            for task in batch.tasks:
                task.future.set_exception(err)
            return
        except Exception as err:  # a bug must not leave callers waiting forever
            log.exception("batch of %s failed", batch.signature)
            for task in batch.tasks:
                task.future.set_exception(
                    RequestError.internal(f"{type(err).__name__} while running the batch")
                )
            return
        self._observer.batch_run(batch.rows, padding)
        if any(v.ndim == 0 or v.shape[0] != batch.rows + padding for v in outputs.values()):
            # Outputs without a batch dimension cannot be split back: run the requests alone.
            for task in batch.tasks:
                _settle(task.future, lambda t=task: self._run(batch.signature, t.inputs))
            return
        start = 0
        for task in batch.tasks:
            end = start + task.rows
            task.future.set_result({k: v[start:end] for k, v in outputs.items()})
            start = end

    def _run_merged(self, batch: _Batch) -> tuple[dict[str, np.ndarray], int]:
        tasks = batch.tasks
        padding = 0
        for size in self.params.allowed_batch_sizes:
            if size >= batch.rows:
                padding = size - batch.rows
                break
        if len(tasks) == 1 and not padding:
            return self._run(batch.signature, tasks[0].inputs), 0
        merged = {}
        for name in tasks[0].inputs:
            parts = [t.inputs[name] for t in tasks]
            if padding:
                first = parts[0][:1]
                parts.append(np.repeat(first, padding, axis=0))
            merged[name] = np.concatenate(parts, axis=0)
        return self._run(batch.signature, merged), padding


def _settle(future: Future, call: Callable[[], dict[str, np.ndarray]]) -> None:
    try:
        future.set_result(call())
    except Exception as err:
        if not isinstance(err, RequestError):
            log.exception("request of a batch failed")
            err = RequestError.internal(f"{type(err).__name__} while running the request")
        future.set_exception(err)


def _joined(pieces: list[Future]) -> Future:
    """One future for the row-wise concatenation of ``pieces``' outputs."""
    joined: Future = Future()
    lock = threading.Lock()

    def finish(_: Future) -> None:
        with lock:  # the last pieces may finish on two batch threads at once
            if joined.done() or not all(p.done() for p in pieces):
                return
            try:
                parts = [p.result() for p in pieces]
                result = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
            except Exception as err:
                joined.set_exception(err)
                return
            joined.set_result(result)

    def cancel_pieces(future: Future) -> None:
        if future.cancelled():  # the caller gave up: pieces not started are left out
            for piece in pieces:
                piece.cancel()

    for piece in pieces:
        piece.add_done_callback(finish)
    joined.add_done_callback(cancel_pieces)
    return joined
