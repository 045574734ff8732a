"""Tables of reviews read and written one row at a time, for the bulk scorer.

CSV and JSON lines (``.jsonl``, ``.ndjson``, ``.json``) need only the standard library; Parquet
needs pyarrow (``pip install 'tfsent[parquet]'``), read with ``iter_batches`` and written with
``ParquetWriter``. The format is the file's extension. Memory does not grow with the file: rows
stream through, and a written table grows in a *staging* file beside the output whose committed
state (a small JSON value) lets a killed run cut it back to the last committed row and go on:

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "in.csv").write_text("id,review\\n1,great film\\n2,\\n")
>>> reader = open_table(folder / "in.csv", "review")
>>> reader.columns, reader.count()
(['id', 'review'], 2)
>>> [(row.index, row.text, row.problem) for row in reader.rows()]
[(0, 'great film', None), (1, None, 'empty text')]
>>> writer = open_writer(folder / "out.jsonl", reader, [("label", "text")], None)
>>> writer.write(list(reader.rows()), [["positive"], [None]])
>>> writer.finish(folder / "out.jsonl")
>>> print((folder / "out.jsonl").read_text(), end="")
{"id": "1", "review": "great film", "label": "positive"}
{"id": "2", "review": "", "label": null}

Rows from JSON lines keep every key of their object; when they go to CSV or Parquet, the
columns are the keys of the first rows (:data:`SAMPLE_ROWS`). Values that are not text are
written to CSV as JSON, and Parquet written from CSV or JSON lines holds text columns (the
values' JSON where they are not text); Parquet to Parquet keeps the input's types.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tfsent.errors import fail, first_line

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet"}
# The JSON-lines keys that name the columns when such rows go to CSV or Parquet.
SAMPLE_ROWS = 1000
PARQUET_BATCH_ROWS = 1024
PARQUET_ROW_GROUP_ROWS = 65536
# (name, kind) of a column the scorer adds; kind "text" or "number".
Added = Sequence[tuple[str, str]]


def table_format(path: str | Path) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the extension, or a one-line error.

    >>> table_format("reviews.CSV"), table_format("x.ndjson")
    ('csv', 'jsonl')
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        fail(f"cannot tell the format of {path} from {suffix or 'its missing extension'!r}; "
             "name it .csv, .jsonl or .parquet")
    return FORMATS[suffix]


def staging_path(output: Path) -> Path:
    """Where ``output`` grows until it is complete (a folder of parts for Parquet)."""
    return output.with_name(output.name + ".partial")


def pyarrow_modules():
    """``(pyarrow, pyarrow.parquet)``, or a one-line error naming the extra."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        fail("Parquet needs pyarrow: pip install 'tfsent[parquet]' (or use .csv or .jsonl)")
    return pa, pq


@dataclass(frozen=True)
class Row:
    """One input row: its position (from 0), its values as the format holds them (a list of CSV
    fields, or a dict), its text, and why it cannot be scored (``text`` is then None)."""

    index: int
    data: list[str] | dict[str, Any]
    text: str | None
    problem: str | None = None

    def as_dict(self, columns: Sequence[str]) -> dict[str, Any]:
        if isinstance(self.data, list):
            return dict(zip(columns, self.data, strict=True))
        return self.data

    def as_list(self, columns: Sequence[str]) -> list[Any]:
        if isinstance(self.data, list):
            return self.data
        return [self.data.get(c) for c in columns]


def text_of(value: Any, column: str) -> tuple[str | None, str | None]:
    """``(text, None)``, or ``(None, why it cannot be scored)``.

    >>> text_of("  ", "review"), text_of(None, "review")[1], text_of(3, "review")[1]
    ((None, 'empty text'), "no 'review' value", "the 'review' value is a int, not text")
    """
    if value is None:
        return None, f"no {column!r} value"
    if not isinstance(value, str):
        return None, f"the {column!r} value is a {type(value).__name__}, not text"
    if not value.strip():
        return None, "empty text"
    return value, None


class TableReader(Protocol):
    path: Path
    format: str
    columns: list[str]
    text_column: str

    def count(self) -> int: ...
    def rows(self, start: int = 0) -> Iterator[Row]: ...


def open_table(path: str | Path, text_column: str) -> TableReader:
    """A reader of ``path``, checked before anything is scored: the format, that the file reads
    and that ``text_column`` is one of its columns (else a one-line error naming them)."""
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        fail(f"no such file: {path}; give an existing .csv, .jsonl or .parquet file")
    reader = {"csv": CsvReader, "jsonl": JsonlReader, "parquet": ParquetReader}[fmt](path)
    if text_column not in reader.columns:
        shown = ", ".join(map(repr, reader.columns[:20])) or "none"
        fail(f"{path} has no column {text_column!r}; its columns are {shown}; "
             "give one of them with --text-column")
    reader.text_column = text_column
    if isinstance(reader, ParquetReader):
        reader.check_text_type()
    return reader


def _unreadable(path: Path, err: Exception, where: str = "") -> None:
    fail(f"cannot read {path}{where}: {first_line(err)}; give a readable UTF-8 table")


class CsvReader:
    """A CSV file with a header line; blank lines are no rows."""

    format = "csv"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text_column = ""
        # A review longer than csv's default field limit (128 KiB) is still one field.
        csv.field_size_limit(2**31 - 1)
        try:
            with self._open() as f:
                header = next(csv.reader(f), None)
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            _unreadable(path, err)
        if not header:
            fail(f"{path} is empty; give a CSV file whose first line names the columns")
        self.columns: list[str] = header

    def _open(self) -> io.TextIOWrapper:
        return open(self.path, newline="", encoding="utf-8-sig")

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        with self._open() as f:
            reader = csv.reader(f)
            try:
                next(reader)
                for fields in reader:
                    if fields:
                        yield reader.line_num, fields
            except UnicodeDecodeError as err:  # met a decoded block ahead: no line to name
                _unreadable(self.path, err)
            except csv.Error as err:
                _unreadable(self.path, err, f" (line {reader.line_num})")

    def count(self) -> int:
        return sum(1 for _ in self._records())

    def rows(self, start: int = 0) -> Iterator[Row]:
        width, at = len(self.columns), self.columns.index(self.text_column)
        for index, (_, fields) in enumerate(self._records()):
            if index < start:
                continue
            text, problem = text_of(fields[at] if at < len(fields) else None, self.text_column)
            if len(fields) > width:
                text, problem = None, (f"the row has {len(fields)} fields, the header {width}; "
                                       "the extra ones are dropped")
            padded = (fields + [""] * width)[:width]
            yield Row(index, padded, text, problem)


class JsonlReader:
    """One JSON object per line; blank lines are no rows."""

    format = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text_column = ""
        columns: dict[str, None] = {}
        for _, obj in zip(range(SAMPLE_ROWS), self._objects(), strict=False):
            columns.update(dict.fromkeys(obj))
        self.columns: list[str] = list(columns)

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        try:
            with open(self.path, "rb") as f:
                for number, line in enumerate(f, 1):
                    if line.strip():
                        yield number, line
        except OSError as err:
            _unreadable(self.path, err)

    def _objects(self, start: int = 0) -> Iterator[dict[str, Any]]:
        for index, (number, line) in enumerate(self._lines()):
            if index < start:
                continue
            try:
                obj = json.loads(line.decode("utf-8-sig" if number == 1 else "utf-8"))
            except ValueError as err:
                _unreadable(self.path, err, f" (line {number})")
            if not isinstance(obj, dict):
                fail(f"{self.path} line {number} is not a JSON object; "
                     "give one object per line, like {\"text\": \"...\"}")
            yield obj

    def count(self) -> int:
        return sum(1 for _ in self._lines())

    def rows(self, start: int = 0) -> Iterator[Row]:
        for index, obj in enumerate(self._objects(start), start):
            yield Row(index, obj, *text_of(obj.get(self.text_column), self.text_column))


class ParquetReader:
    """A Parquet file, a batch at a time; a resumed read skips whole row groups unread."""

    format = "parquet"

    def __init__(self, path: Path) -> None:
        pa, pq = pyarrow_modules()
        self.path = path
        self.text_column = ""
        try:
            self.file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as err:
            _unreadable(path, err)
        self.schema = self.file.schema_arrow
        self.columns: list[str] = list(self.schema.names)

    def count(self) -> int:
        return self.file.metadata.num_rows

    def check_text_type(self) -> None:
        pa, _ = pyarrow_modules()
        kind = self.schema.field(self.text_column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            fail(f"column {self.text_column!r} of {self.path} holds {kind}, not text; "
                 "give a text column with --text-column")

    def rows(self, start: int = 0) -> Iterator[Row]:
        pa, _ = pyarrow_modules()
        first, index = 0, 0
        meta = self.file.metadata
        while first < meta.num_row_groups and index + meta.row_group(first).num_rows <= start:
            index += meta.row_group(first).num_rows
            first += 1
        batches = self.file.iter_batches(PARQUET_BATCH_ROWS,
                                         row_groups=range(first, meta.num_row_groups))
        try:
            for batch in batches:
                for data in batch.to_pylist():
                    if index >= start:
                        text = data[self.text_column]
                        yield Row(index, data, *text_of(text, self.text_column))
                    index += 1
        except (OSError, pa.ArrowException) as err:
            _unreadable(self.path, err, f" (row {index})")


# --- writing ----------------------------------------------------------------------------------


class TableWriter(Protocol):
    def write(self, rows: Sequence[Row], added: Sequence[Sequence[Any]]) -> None: ...
    def commit(self) -> dict[str, Any]: ...
    def finish(self, output: Path) -> None: ...
    def close(self) -> None: ...


class StaleStaging(Exception):
    """The staging file does not hold what the committed state says: start over."""


def open_writer(output: Path, reader: TableReader, added: Added,
                state: dict[str, Any] | None) -> TableWriter:
    """A writer of ``reader``'s columns plus ``added`` into ``output``'s staging file: a fresh
    one (``state`` None), or the one a killed run committed ``state`` of, cut back to it
    (``StaleStaging`` when it cannot be)."""
    fmt = table_format(output)
    if fmt == "parquet":
        return ParquetTableWriter(staging_path(output), reader, added, state)
    writer = CsvWriter if fmt == "csv" else JsonlWriter
    return writer(staging_path(output), reader.columns, [name for name, _ in added], state)


def cell_text(value: Any) -> str:
    """A value as CSV text: text as it is, nothing as empty, anything else as JSON.

    >>> cell_text("a"), cell_text(None), cell_text(0.5), cell_text([1, 2])
    ('a', '', '0.5', '[1, 2]')
    """
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


class _AppendedText:
    """CSV or JSON lines staging: bytes appended; the committed state is their length."""

    def __init__(self, staging: Path, columns: list[str], added: list[str],
                 state: dict[str, Any] | None) -> None:
        self.staging, self.columns, self.added = staging, columns, added
        if state is None:
            self.file = open(staging, "wb")
            self.size = 0
            self._append(self.header())
            return
        self.size = int(state["bytes"])
        try:
            if staging.stat().st_size < self.size:
                raise StaleStaging(f"{staging} is shorter than its committed {self.size} bytes")
            self.file = open(staging, "r+b")
        except OSError as err:
            raise StaleStaging(str(err)) from None
        self.file.truncate(self.size)
        self.file.seek(self.size)

    def header(self) -> str:
        return ""

    def encode(self, rows: Sequence[Row], added: Sequence[Sequence[Any]]) -> str:
        raise NotImplementedError

    def _append(self, text: str) -> None:
        data = text.encode("utf-8")
        self.file.write(data)
        self.size += len(data)

    def write(self, rows: Sequence[Row], added: Sequence[Sequence[Any]]) -> None:
        self._append(self.encode(rows, added))

    def commit(self) -> dict[str, Any]:
        self.file.flush()  # in the OS's hands: a killed process loses nothing of it
        return {"bytes": self.size}

    def finish(self, output: Path) -> None:
        self.close()
        os.replace(self.staging, output)

    def close(self) -> None:
        self.file.close()


class CsvWriter(_AppendedText):
    def _lines(self, rows: Sequence[Sequence[Any]]) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        return out.getvalue()

    def header(self) -> str:
        return self._lines([self.columns + self.added])

    def encode(self, rows: Sequence[Row], added: Sequence[Sequence[Any]]) -> str:
        return self._lines([[cell_text(v) for v in row.as_list(self.columns) + list(values)]
                            for row, values in zip(rows, added, strict=True)])


class JsonlWriter(_AppendedText):
    def encode(self, rows: Sequence[Row], added: Sequence[Sequence[Any]]) -> str:
        return "".join(
            json.dumps({**row.as_dict(self.columns), **dict(zip(self.added, values, strict=True))},
                       ensure_ascii=False, default=str) + "\n"
            for row, values in zip(rows, added, strict=True)
        )


class ParquetTableWriter:
    """Parquet staging: a folder of complete part files, one per commit, joined at the end into
    one file with large row groups (a Parquet file is readable only once its footer is written,
    so one growing file could not be cut back to a commit)."""

    def __init__(self, staging: Path, reader: TableReader, added: Added,
                 state: dict[str, Any] | None) -> None:
        self.pa, self.pq = pyarrow_modules()
        pa = self.pa
        self.staging, self.columns = staging, reader.columns
        if isinstance(reader, ParquetReader):
            fields = list(reader.schema.remove_metadata())
            self.as_text = False
        else:
            fields = [pa.field(c, pa.string()) for c in reader.columns]
            self.as_text = True
        fields += [pa.field(n, pa.string() if k == "text" else pa.float64()) for n, k in added]
        self.schema = pa.schema(fields)
        self.parts = 0 if state is None else int(state["parts"])
        if state is None:
            shutil.rmtree(staging, ignore_errors=True)
        elif not all(self._part(i).is_file() for i in range(self.parts)):
            raise StaleStaging(f"{staging} lacks some of its {self.parts} committed parts")
        staging.mkdir(parents=True, exist_ok=True)
        for extra in set(staging.iterdir()) - {self._part(i) for i in range(self.parts)}:
            extra.unlink()
        self.pending: list[dict[str, Any]] = []

    def _part(self, i: int) -> Path:
        return self.staging / f"part-{i:06d}.parquet"

    def write(self, rows: Sequence[Row], added: Sequence[Sequence[Any]]) -> None:
        names = self.schema.names
        for row, values in zip(rows, added, strict=True):
            data = row.as_list(self.columns)
            if self.as_text:
                data = [None if v is None else cell_text(v) for v in data]
            self.pending.append(dict(zip(names, [*data, *values], strict=True)))

    def commit(self) -> dict[str, Any]:
        # The rows since the last commit (a fraction of a second's worth) become one part.
        if self.pending:
            table = self.pa.Table.from_pylist(self.pending, schema=self.schema)
            self.pq.write_table(table, self._part(self.parts))
            self.pending = []
            self.parts += 1
        return {"parts": self.parts}

    def finish(self, output: Path) -> None:
        self.commit()
        joined = self.staging / "joined.parquet.tmp"
        with self.pq.ParquetWriter(joined, self.schema) as out:
            pending: list[Any] = []
            for i in range(self.parts):
                for batch in self.pq.ParquetFile(self._part(i)).iter_batches(PARQUET_BATCH_ROWS):
                    pending.append(batch)
                    if sum(b.num_rows for b in pending) >= PARQUET_ROW_GROUP_ROWS:
                        out.write_table(self.pa.Table.from_batches(pending, self.schema))
                        pending = []
            if pending:
                out.write_table(self.pa.Table.from_batches(pending, self.schema))
        os.replace(joined, output)
        shutil.rmtree(self.staging, ignore_errors=True)

    def close(self) -> None:
        self.pending = []
