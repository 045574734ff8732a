"""Score a whole table of reviews (CSV, JSON lines, Parquet) against TF Serving: streamed,
concurrent, resumable at any moment. ``python -m tfsent.score`` is its command line::

    from tfsent.client import SentimentClient
    from tfsent.client.bulk import BulkOptions, score_file

    with SentimentClient("grpc://localhost:8500", retries=0) as client:
        summary = score_file(client, "reviews.csv", "scored.csv", BulkOptions("review"))
    print(summary.line())

The output holds every input column, in order, then ``label``, ``confidence``, one
``prob_<class>`` per class (named from the model's ``classes`` output) and ``error``; rows come
out in input order. ``concurrency`` requests of the client's ``chunk_size`` reviews are in
flight at once; UNAVAILABLE, RESOURCE_EXHAUSTED and HTTP 503/429 are retried with exponential
backoff (give the client ``retries=0``: the scorer's own policy is the patient one a long job
needs). A row with no text, or one the server refuses (INVALID_ARGUMENT for its chunk: the
chunk's rows are then sent one by one to find it), gets a one-line ``error`` and no label; the
run goes on.

Resuming: the output grows in a staging file beside it (``<output>.partial``) and appears at its
path only when complete. Twice a second the rows written so far are committed to
``.<output>.progress.json`` beside it (atomically, with the input's fingerprint: path, size,
mtime and the options that change the output). A rerun of the same command after a kill at any
moment cuts the staging file back to the last commit and scores only the rows after it, so the
output ends with every input row exactly once (a rerun of a finished command does nothing);
different input or options are refused in one line unless ``overwrite``. ``shard=Shard(i, n)``
scores the rows whose index is ``i`` modulo ``n``.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfsent.client import Prediction, SentimentClient, ServingError
from tfsent.client.tables import (
    Row,
    StaleStaging,
    TableReader,
    TableWriter,
    open_table,
    open_writer,
    pyarrow_modules,
    staging_path,
    table_format,
)
from tfsent.errors import UserError, fail, first_line
from tfsent.files import read_json, write_json_atomic

RETRY_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "HTTP 503", "HTTP 429"})
REFUSED_CODES = frozenset({"INVALID_ARGUMENT", "HTTP 400"})
MAX_BACKOFF_SECONDS = 30.0
COMMIT_SECONDS = 0.5
# Asked once before the run: the class names (the output's columns) and a reachable server.
PROBE_TEXT = "a review"


@dataclass(frozen=True)
class Shard:
    """Rows whose index is ``index`` modulo ``count``.

    >>> shard = Shard.parse("1/3")
    >>> shard.size(10), [i for i in range(10) if shard.holds(i)], shard.input_index(2)
    (3, [1, 4, 7], 7)
    """

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, sep, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            shard = None
        if not sep or shard is None or not 0 <= shard.index < shard.count:
            fail(f"--shard {text!r} is not I/N with 0 <= I < N; write e.g. --shard 0/4")
        return shard

    def holds(self, row_index: int) -> bool:
        return row_index % self.count == self.index

    def size(self, total: int) -> int:
        return len(range(self.index, total, self.count))

    def input_index(self, done: int) -> int:
        """The input index of this shard's row number ``done`` (from 0)."""
        return self.index + done * self.count

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class BulkOptions:
    """What to score and how; ``retries`` and ``backoff`` (seconds, doubled each time) apply to
    UNAVAILABLE / RESOURCE_EXHAUSTED / 503."""

    text_column: str = "text"
    concurrency: int = 8
    shard: Shard = field(default_factory=Shard)
    retries: int = 6
    backoff: float = 0.5
    overwrite: bool = False
    column_prefix: str = ""
    progress: bool = True


@dataclass(frozen=True)
class BulkSummary:
    rows: int
    failed: int
    scored_now: int
    seconds: float
    output: Path

    def line(self) -> str:
        """``scored 1,000 rows (2 failed, see their error column) in 8.1 s, 123.4 rows/s ->
        scored.csv``"""
        if not self.scored_now:
            return f"nothing left to score: {self.output} holds all {self.rows:,} rows"
        rate = self.scored_now / self.seconds if self.seconds > 0 else 0.0
        resumed = "" if self.scored_now == self.rows else f", {self.scored_now:,} in this run"
        failed = f"{self.failed:,} failed, see their error column" if self.failed else "0 failed"
        return (f"scored {self.rows:,} rows ({failed}{resumed}) in {self.seconds:.1f} s, "
                f"{rate:,.1f} rows/s -> {self.output}")


@dataclass(frozen=True)
class AddedColumns:
    """The columns the scorer adds, and their values for a prediction or a failure."""

    prefix: str
    classes: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        p = self.prefix
        return [f"{p}label", f"{p}confidence", *(f"{p}prob_{c}" for c in self.classes),
                f"{p}error"]

    @property
    def kinds(self) -> list[tuple[str, str]]:
        kinds = ["text"] + ["number"] * (len(self.classes) + 1) + ["text"]
        return list(zip(self.names, kinds, strict=True))

    def values(self, p: Prediction) -> list[Any]:
        return [p.label, p.confidence, *(p.probabilities[c] for c in self.classes), None]

    def failure(self, reason: str) -> list[Any]:
        return [None] * (len(self.classes) + 2) + [reason]


class ChunkScorer:
    """Scores chunks of rows with retries, isolating the rows a server refuses."""

    def __init__(self, client: SentimentClient, options: BulkOptions,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client, self.options, self.sleep = client, options, sleep
        self.columns: AddedColumns | None = None

    def predict(self, texts: list[str]) -> list[Prediction]:
        retries = self.options.retries
        for attempt in range(retries + 1):
            try:
                return self.client.predict(texts)
            except ServingError as err:
                if not (err.retryable or err.code in RETRY_CODES) or attempt == retries:
                    raise
            delay = min(self.options.backoff * 2**attempt, MAX_BACKOFF_SECONDS)
            self.sleep(delay * (0.5 + random.random() / 2))  # jitter: clients spread out
        raise AssertionError("unreachable")

    def classes(self) -> tuple[str, ...]:
        return tuple(self.predict([PROBE_TEXT])[0].probabilities)

    def score(self, rows: Sequence[Row]) -> list[list[Any]]:
        """The added values of each row, in order."""
        columns = self.columns
        assert columns is not None
        out: list[list[Any] | None] = [
            None if row.text is not None else columns.failure(row.problem or "no text")
            for row in rows
        ]
        todo = [i for i, row in enumerate(rows) if row.text is not None]
        for i, answer in zip(todo, self._answers([rows[i].text for i in todo]), strict=True):
            out[i] = columns.failure(answer) if isinstance(answer, str) else columns.values(answer)
        return out  # type: ignore[return-value]

    def _answers(self, texts: list[str]) -> list[Prediction | str]:
        """Predictions, or for a text the server refuses, why."""
        if not texts:
            return []
        try:
            return list(self.predict(texts))
        except ServingError as err:
            if err.code not in REFUSED_CODES:
                raise
            if len(texts) == 1:
                return [f"refused by the server: {err.code}: {first_line(err.message)}"]
        return [answer for text in texts for answer in self._answers([text])]


def chunks(rows: Iterator[Row], shard: Shard, size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        if shard.holds(row.index):
            chunk.append(row)
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def in_order(score: Callable[[list[Row]], list[list[Any]]], work: Iterator[list[Row]],
             concurrency: int) -> Iterator[tuple[list[Row], list[list[Any]]]]:
    """``(chunk, score(chunk))`` in input order, ``concurrency`` chunks scored at once and as
    many waiting, so that a slow chunk at the head does not idle the others."""
    with ThreadPoolExecutor(concurrency, thread_name_prefix="tfsent-score") as pool:
        window: deque[tuple[list[Row], Future]] = deque()
        try:
            for chunk in work:
                window.append((chunk, pool.submit(score, chunk)))
                if len(window) >= 2 * concurrency:
                    chunk, done = window.popleft()
                    yield chunk, done.result()
            while window:
                chunk, done = window.popleft()
                yield chunk, done.result()
        finally:
            for _, pending in window:
                pending.cancel()


# --- the run ----------------------------------------------------------------------------------


def progress_path(output: Path) -> Path:
    """Kept after the run too (hidden): a rerun of a finished command then has nothing to do."""
    return output.with_name(f".{output.name}.progress.json")


def fingerprint(reader: TableReader, output: Path, client: SentimentClient,
                options: BulkOptions) -> dict[str, Any]:
    """What the output depends on: a rerun with anything else here must not resume."""
    stat = reader.path.stat()
    return {
        "input": str(reader.path.resolve()), "input_bytes": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns, "output_format": table_format(output),
        "text_column": reader.text_column, "shard": str(options.shard),
        "column_prefix": options.column_prefix, "model_name": client.model_name,
        "version": client.version, "version_label": client.version_label,
        "signature": client.signature_name, "label_names": client.label_names,
    }


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = [k for k in new if old.get(k) != new[k]]
    return "; ".join(f"{k} {old.get(k)!r} then, {new[k]!r} now" for k in keys[:3])


def load_progress(output: Path, print_: dict[str, Any], overwrite: bool) -> dict | None:
    """The committed progress of an earlier run of this command, or None to start afresh."""
    progress, staging = progress_path(output), staging_path(output)
    if overwrite:
        progress.unlink(missing_ok=True)
        return None
    state = read_json(progress)
    if state is None:
        if output.exists():
            fail(f"{output} exists; add --overwrite to score again into it")
        return None
    if state.get("fingerprint") != print_:
        changes = _differences(state.get("fingerprint") or {}, print_)
        fail(f"{progress} is of another input or options ({changes}); rerun the same "
             "command, or add --overwrite to start over")
    if not staging.exists() and not output.exists():
        return None
    return state


class BulkRun:
    """One run of :func:`score_file`: the reader, the writer and the progress file."""

    def __init__(self, client: SentimentClient, reader: TableReader, output: Path,
                 options: BulkOptions) -> None:
        self.client, self.reader, self.output, self.options = client, reader, output, options
        self.scorer = ChunkScorer(client, options)
        self.print = fingerprint(reader, output, client, options)
        self.done = self.failed = self.scored_now = 0

    def _check_clash(self, names: Sequence[str]) -> None:
        clash = [n for n in names if n in self.reader.columns]
        if clash:
            fail(f"{self.reader.path} already has column {clash[0]!r}, which the scorer adds; "
                 "add --column-prefix (e.g. pred_) or rename it")

    def _commit(self, writer: TableWriter, classes: Sequence[str]) -> None:
        state = {"fingerprint": self.print, "rows": self.done, "failed": self.failed,
                 "classes": list(classes), "writer": writer.commit()}
        write_json_atomic(progress_path(self.output), state)

    def _open(self, state: dict | None, columns: AddedColumns) -> TableWriter:
        if state is not None:
            try:
                writer = open_writer(self.output, self.reader, columns.kinds, state["writer"])
                self.done, self.failed = int(state["rows"]), int(state["failed"])
                return writer
            except (StaleStaging, KeyError, TypeError, ValueError):
                pass  # nothing usable was kept: start over
        writer = open_writer(self.output, self.reader, columns.kinds, None)
        self._commit(writer, columns.classes)
        return writer

    def run(self) -> BulkSummary:
        start = time.monotonic()
        self._check_clash(AddedColumns(self.options.column_prefix, ()).names)
        state = load_progress(self.output, self.print, self.options.overwrite)
        if state is not None and not staging_path(self.output).exists():
            return BulkSummary(state["rows"], state["failed"], 0, 0.0, self.output)  # done
        # The counting pass reads the whole input first: a bad byte deep in it fails here,
        # before anything is sent.
        total = self.options.shard.size(self.reader.count()) if self.options.progress else None
        classes = self.scorer.classes()
        if state is not None and tuple(state.get("classes", ())) != classes:
            fail(f"the model's classes are now {list(classes)}, {state.get('classes')} when "
                 f"{self.output} was begun; add --overwrite to score it all with this model")
        columns = AddedColumns(self.options.column_prefix, classes)
        self._check_clash(columns.names)
        self.scorer.columns = columns
        writer = self._open(state, columns)
        try:
            self._score_rows(writer, classes, total)
            writer.finish(self.output)
        finally:
            writer.close()
        return BulkSummary(self.done, self.failed, self.scored_now, time.monotonic() - start,
                           self.output)

    def _score_rows(self, writer: TableWriter, classes: Sequence[str], total: int | None) -> None:
        from tqdm import tqdm

        options = self.options
        rows = self.reader.rows(options.shard.input_index(self.done))
        work = chunks(rows, options.shard, self.client.chunk_size)
        last_commit = time.monotonic()
        bar = tqdm(total=total, initial=self.done, unit=" rows", file=sys.stderr,
                   disable=not options.progress, dynamic_ncols=True, smoothing=0.1)
        try:
            for chunk, added in in_order(self.scorer.score, work, options.concurrency):
                writer.write(chunk, added)
                self.done += len(chunk)
                self.scored_now += len(chunk)
                self.failed += sum(values[-1] is not None for values in added)
                bar.update(len(chunk))
                if time.monotonic() - last_commit >= COMMIT_SECONDS:
                    self._commit(writer, classes)
                    last_commit = time.monotonic()
        except (ServingError, UserError):
            # Raised between chunks (by a request or the reader): what was written is whole.
            # An interrupt may come mid-write, so it keeps the last commit instead.
            self._commit(writer, classes)
            raise
        finally:
            bar.close()
        self._commit(writer, classes)


def score_file(client: SentimentClient, source: str | os.PathLike, output: str | os.PathLike,
               options: BulkOptions) -> BulkSummary:
    """Score ``source`` into ``output`` (see the module docstring); bad input is a one-line
    ``UserError`` before anything is sent; the server's failures raise ``ServingError``."""
    if options.concurrency < 1:
        fail(f"--concurrency must be at least 1, got {options.concurrency}")
    output = Path(output)
    if table_format(output) == "parquet":
        pyarrow_modules()
    reader = open_table(source, options.text_column)
    if output.resolve() == reader.path.resolve():
        fail(f"--output {output} is the input; write the scores to another file")
    if not output.parent.is_dir():
        fail(f"no such folder: {output.parent}; create it or write --output elsewhere")
    return BulkRun(client, reader, output, options).run()
