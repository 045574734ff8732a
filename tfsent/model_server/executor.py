"""Bounded request queues: a fixed set of worker threads behind a queue of limited length.

Each front end (gRPC, REST) hands its predict work to its own ``RequestQueue``: ``threads``
workers (``--grpc_max_threads``, ``--rest_api_num_threads``) run requests; at most
``max_queued`` more wait (``--max_queued_requests``); one more is refused at once with
UNAVAILABLE (HTTP 503), which clients retry with backoff. The front ends only wait on the
returned future, so a request can always be answered: with its result, DEADLINE_EXCEEDED once
its deadline passes (a request still queued then is dropped, never run), or UNAVAILABLE when
the server aborts what is left at the end of its shutdown grace period::

    >>> queue = RequestQueue("doc", threads=1, max_queued=1)
    >>> queue.submit(lambda: 6 * 7).result(timeout=5)
    42
    >>> import threading
    >>> gate = threading.Event()
    >>> running = queue.submit(gate.wait)           # takes the only worker
    >>> waiting = queue.submit(lambda: "queued")     # takes the only queue place
    >>> queue.submit(lambda: "refused")
    Traceback (most recent call last):
    ...
    tfsent.model_server.status.RequestError: UNAVAILABLE: ...queue ... is full...
    >>> gate.set(); waiting.result(timeout=5)
    'queued'
    >>> queue.stop()
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from tfsent.model_server.status import RequestError


class _Task:
    __slots__ = ("function", "future", "deadline")

    def __init__(self, function: Callable[[], Any], deadline: float | None) -> None:
        self.function = function
        self.future: Future = Future()
        self.deadline = deadline


def _settle(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Set a future's outcome unless it already has one (aborted, timed out)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


class RequestQueue:
    """``threads`` workers, at most ``max_queued`` waiting requests; thread-safe."""

    def __init__(self, name: str, threads: int, max_queued: int) -> None:
        self.name = name
        self.threads = max(int(threads), 1)
        self.max_queued = max(int(max_queued), 0)
        self._queue: deque[_Task] = deque()
        self._running: set[_Task] = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._workers = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, function: Callable[[], Any], deadline: float | None = None) -> Future:
        """Queue ``function``; UNAVAILABLE at once when the queue is full or stopping.

        ``deadline`` (``time.monotonic()`` seconds): a task still queued then is not run.
        """
        task = _Task(function, deadline)
        with self._cond:
            self._check_capacity()
            self._queue.append(task)
            self._cond.notify()
        task.future.add_done_callback(self._forget_if_cancelled)
        return task.future

    def check_capacity(self) -> None:
        """UNAVAILABLE if a request submitted now would be refused."""
        with self._cond:
            self._check_capacity()

    def _check_capacity(self) -> None:
        if self._stopping:
            raise RequestError.unavailable("Server is shutting down")
        if len(self._running) + len(self._queue) >= self.threads + self.max_queued:
            raise RequestError.unavailable(
                f"The {self.name} request queue ({self.threads} running, "
                f"{self.max_queued} waiting) is full; retry later"
            )

    @property
    def busy(self) -> int:
        """Requests running or waiting."""
        with self._cond:
            return len(self._running) + len(self._queue)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing runs or waits; False if ``timeout`` seconds passed first."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._running or self._queue:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def abort(self, message: str) -> int:
        """Answer every request still waiting or running with UNAVAILABLE; their count."""
        with self._cond:
            tasks = list(self._queue) + list(self._running)
            self._queue.clear()
            self._cond.notify_all()
        for task in tasks:
            _settle(task.future, error=RequestError.unavailable(message))
        return len(tasks)

    def stop(self, wait: bool = True) -> None:
        """Refuse new requests, run the queued ones, end the workers (joined if ``wait``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if wait:
            for worker in self._workers:
                worker.join()

    def _forget_if_cancelled(self, future: Future) -> None:
        if future.cancelled():
            with self._cond:
                for task in self._queue:
                    if task.future is future:
                        self._queue.remove(task)
                        break
                self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                task = self._queue.popleft()
                if task.deadline is not None and time.monotonic() >= task.deadline:
                    _settle(task.future, error=RequestError.deadline_exceeded())
                    self._cond.notify_all()
                    continue
                if not task.future.set_running_or_notify_cancel():
                    self._cond.notify_all()
                    continue
                self._running.add(task)
            try:
                _settle(task.future, task.function())
            except BaseException as err:  # the caller sees it; the worker goes on
                _settle(task.future, error=err)
            finally:
                with self._cond:
                    self._running.discard(task)
                    self._cond.notify_all()


async def run_queued(
    queue: RequestQueue, function: Callable[[], Any], deadline: float | None
) -> Any:
    """Run ``function`` on ``queue``'s workers and await its result from an event loop:
    UNAVAILABLE when the queue is full, DEADLINE_EXCEEDED at ``deadline`` (a queued request is
    then dropped; a running one finishes unheard). A cancelled caller (client gone) drops it too.
    """
    future = queue.submit(function, deadline)
    timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except asyncio.TimeoutError:
        future.cancel()
        raise RequestError.deadline_exceeded() from None
