"""``python -m tfsent.score`` and ``tfsent.client.bulk``: CSV, JSONL and Parquet in and out,
agreement with ``SentimentClient.predict``, kills at random moments then reruns, bad rows,
retries, shards, one-line errors, and no TensorFlow in the scorer's process.

The end-to-end tests score against the local model server serving the session's tiny export
(or a real TF Serving, see ``tfsent/model_server/process.py``); the refused rows and retries go
to a fake TF Serving REST API (an ``httpx.MockTransport``), and the kills to subprocesses.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfsent.client import SentimentClient, ServingError
from tfsent.client.bulk import BulkOptions, ChunkScorer, Shard, progress_path, score_file
from tfsent.client.tables import staging_path, table_format
from tfsent.errors import UserError, run_cli
from tfsent.model_server.process import server_addresses

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "tensorflow_serving", "tensorflow_text", "keras", "tf_keras",
         "transformers")
WORDS = ("great film wonderful acting dull plot boring loved hated the movie, \"quoted\" "
         "naïve café 😀 ending").split()
ROWS = 240
FORMATS = ("csv", "jsonl", "parquet")
ADDED = ["label", "confidence", "prob_negative", "prob_positive", "error"]


# --- tables -----------------------------------------------------------------------------------


def review_rows(count: int = ROWS, seed: int = 0) -> list[dict]:
    """``id``, ``review`` (commas, quotes, newlines, non-ASCII), ``stars``: distinct texts."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 25))]
        if i % 17 == 3:
            words.insert(1, "\n")
        rows.append({"id": i, "review": f"{i} " + " ".join(words), "stars": rng.randint(1, 5)})
    return rows


def write_table(path: Path, rows: list[dict]) -> Path:
    """``rows`` as CSV (text), JSONL or Parquet (typed columns)."""
    fmt = table_format(path)
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=50)
    return path


def read_table(path: Path) -> tuple[list[str], list[dict]]:
    """Column names and rows of an output, values as the format holds them."""
    fmt = table_format(path)
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames), list(reader)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return list(rows[0]), rows
    table = pq.read_table(path)
    return table.schema.names, table.to_pylist()


def number(value) -> float | None:
    return None if value in (None, "") else float(value)


# --- the server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(served_version):
    with server_addresses(served_version.parent, timeout=180) as addresses:
        yield f"grpc://{addresses.grpc_address}"


@pytest.fixture(scope="module")
def expected(server):
    """``SentimentClient.predict`` of every review, in the chunks the scorer sends (the model
    pads a batch to its longest review, which moves the last digits)."""
    texts = [r["review"] for r in review_rows()]
    with SentimentClient(server, chunk_size=16) as client:
        return dict(zip(texts, client.predict(texts), strict=True))


def score(argv: list[str], capsys) -> tuple[int, str]:
    """``python -m tfsent.score`` in this process: exit code and stderr."""
    from tfsent.score import main

    environ = dict(os.environ)  # main sets gRPC's log level for its process
    try:
        code = run_cli(main, argv)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    return code, capsys.readouterr().err


def score_cmd(server: str, source: Path, output: Path, *extra: str) -> list[str]:
    return ["--server", server, "--input", str(source), "--output", str(output),
            "--text-column", "review", *extra]


# --- formats, agreement -------------------------------------------------------------------------


@pytest.mark.parametrize("out_fmt", FORMATS)
@pytest.mark.parametrize("in_fmt", FORMATS)
def test_every_format_in_and_out_agrees_with_predict(in_fmt, out_fmt, server, expected,
                                                     tmp_path, capsys):
    rows = review_rows()
    source = write_table(tmp_path / f"reviews.{in_fmt}", rows)
    output = tmp_path / f"scored.{out_fmt}"
    code, err = score(score_cmd(server, source, output, "--chunk-size", "16"), capsys)
    assert code == 0, err
    assert re.search(rf"scored {ROWS} rows \(0 failed\) in [\d.]+ s, [\d,.]+ rows/s -> "
                     rf"{re.escape(str(output))}\n$", err), err
    # the bar: rows of a known total, elapsed<ETA, rate
    assert re.search(rf"\| {ROWS}/{ROWS} \[\d\d:\d\d<\d\d:\d\d, *[\d.]+ rows/s\]", err), err
    columns, got = read_table(output)
    assert columns == ["id", "review", "stars", *ADDED]
    assert len(got) == ROWS
    for row, out in zip(rows, got, strict=True):
        if (in_fmt, out_fmt) == ("parquet", "parquet"):  # Parquet keeps the input's types
            assert (out["id"], out["stars"]) == (row["id"], row["stars"])
        else:
            assert (str(out["id"]), str(out["stars"])) == (str(row["id"]), str(row["stars"]))
        assert out["review"] == row["review"]
        p = expected[row["review"]]
        assert out["label"] == p.label and out["error"] in (None, "")
        assert number(out["confidence"]) == p.confidence  # CSV and JSON keep every digit
        for name in ("negative", "positive"):
            assert number(out[f"prob_{name}"]) == p.probabilities[name]
    assert not staging_path(output).exists()  # complete: the staging file became the output


def test_shards_cover_every_row_exactly_once(server, tmp_path, capsys):
    source = write_table(tmp_path / "reviews.csv", review_rows())
    code, err = score(score_cmd(server, source, tmp_path / "all.csv", "--quiet"), capsys)
    assert (code, err) == (0, "")
    _, whole = read_table(tmp_path / "all.csv")
    seen = []
    for i in range(3):
        output = tmp_path / f"shard-{i}.jsonl"
        code, err = score(score_cmd(server, source, output, "--shard", f"{i}/3"), capsys)
        assert code == 0, err
        _, rows = read_table(output)
        assert [int(r["id"]) for r in rows] == list(range(i, ROWS, 3))
        for row in rows:
            assert row["label"] == whole[int(row["id"])]["label"]
        seen += [int(r["id"]) for r in rows]
    assert sorted(seen) == list(range(ROWS))


# --- kills ------------------------------------------------------------------------------------


def committed_rows(output: Path) -> int:
    try:
        return json.loads(progress_path(output).read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize("out_fmt", ["csv", "parquet"])
def test_killed_at_random_moments_then_rerun_equals_an_uninterrupted_run(out_fmt, server,
                                                                          tmp_path):
    """SIGKILL once the run has committed something, after a further random delay (so during
    requests, writes, commits), several rounds; then the same command to the end."""
    total = 1200
    source = write_table(tmp_path / "reviews.jsonl", review_rows(total, seed=1))
    reference, output = tmp_path / f"reference.{out_fmt}", tmp_path / f"scored.{out_fmt}"
    command = [sys.executable, "-m", "tfsent.score", "--chunk-size", "3", "--concurrency", "2"]
    subprocess.run([*command, *score_cmd(server, source, reference, "--quiet")], cwd=REPO,
                   check=True, timeout=300)
    rng = random.Random(7)
    kills: list[int] = []
    for _ in range(4):
        proc = subprocess.Popen([*command, *score_cmd(server, source, output, "--quiet")],
                                cwd=REPO)
        start = committed_rows(output)
        while proc.poll() is None and committed_rows(output) <= start:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is not None:  # it finished first
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(committed_rows(output))
    assert kills and kills[0] > 0
    last = subprocess.run([*command, *score_cmd(server, source, output)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert last.returncode == 0, last.stderr
    summary = last.stderr.splitlines()[-1]
    if proc.returncode == -signal.SIGKILL:  # only the rows after the last commit were scored
        left = total - kills[-1]  # none when it was killed while finishing
        assert (f"scored {total:,} rows (0 failed, {left:,} in this run)" if left else
                f"nothing left to score: {output} holds all {total:,} rows") in summary
    if out_fmt == "csv":
        assert output.read_bytes() == reference.read_bytes()
    else:
        assert pq.read_table(output).equals(pq.read_table(reference))
    _, got = read_table(output)
    assert [r["id"] for r in got] == [str(i) for i in range(total)]  # in order, each once
    again = subprocess.run([*command, *score_cmd(server, source, output)], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing left to score" in again.stderr, again.stderr


# --- bad rows -----------------------------------------------------------------------------------


def test_empty_and_missing_texts_get_an_error_and_the_run_goes_on(server, expected, tmp_path,
                                                                  capsys):
    good = review_rows(5)
    source = tmp_path / "reviews.jsonl"
    objects = [good[0], {"id": 1, "review": ""}, {"id": 2, "review": "  \t"}, {"id": 3},
               {"id": 4, "review": None}, {"id": 5, "review": 7}, good[1]]
    source.write_text("".join(json.dumps(o) + "\n" for o in objects))
    output = tmp_path / "scored.csv"
    code, err = score(score_cmd(server, source, output), capsys)
    assert code == 0, err
    assert "scored 7 rows (5 failed, see their error column)" in err.splitlines()[-1]
    _, rows = read_table(output)
    assert [r["error"] for r in rows] == [
        "", "empty text", "empty text", "no 'review' value", "no 'review' value",
        "the 'review' value is a int, not text", ""]
    assert [r["label"] for r in rows] == [expected[good[0]["review"]].label, "", "", "", "",
                                          "", expected[good[1]["review"]].label]
    assert rows[3]["confidence"] == rows[3]["prob_positive"] == ""


def test_a_csv_row_missing_its_text_field(server, tmp_path, capsys):
    source = tmp_path / "reviews.csv"
    source.write_text("id,stars,review\n1,5,great film\n2,3\n3,1,dull,extra\n4,2,ok\n")
    output = tmp_path / "scored.jsonl"
    code, err = score(score_cmd(server, source, output), capsys)
    assert code == 0, err
    _, rows = read_table(output)
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"]
    assert [r["error"] for r in rows] == [
        None, "no 'review' value",
        "the row has 4 fields, the header 3; the extra ones are dropped", None]
    assert rows[1]["stars"] == "3" and rows[0]["label"] and rows[3]["label"]


def fake_rest(refuse: str = "POISON", fail_first: list[int] | None = None):
    """A TF Serving REST predict endpoint: 400 for a request holding ``refuse``; the statuses
    in ``fail_first`` for the first requests. Returns the transport and the texts it saw."""
    seen: list[list[str]] = []
    failures = list(fail_first or [])

    def handle(request: httpx.Request) -> httpx.Response:
        texts = [i["text"] for i in json.loads(request.content)["instances"]]
        seen.append(texts)
        if failures:
            return httpx.Response(failures.pop(0), json={"error": "busy"})
        if any(refuse in t for t in texts):
            return httpx.Response(400, json={"error": "Invalid argument: bad review\n at node"})
        predictions = [{"probabilities": [0.25, 0.75], "label_id": 1, "label": "pos",
                        "classes": ["neg", "pos"]} for _ in texts]
        return httpx.Response(200, json={"predictions": predictions})

    return httpx.MockTransport(handle), seen


def test_a_refused_row_is_isolated_one_by_one(tmp_path):
    transport, seen = fake_rest()
    source = write_table(tmp_path / "in.csv", [{"review": t} for t in
                                               ["a", "b", "xPOISONx", "c", "d", "e"]])
    with SentimentClient("http://fake:8501", chunk_size=4, retries=0,
                         http_transport=transport) as client:
        summary = score_file(client, source, tmp_path / "out.csv",
                             BulkOptions("review", concurrency=1, progress=False))
    assert (summary.rows, summary.failed) == (6, 1)
    _, rows = read_table(tmp_path / "out.csv")
    assert [r["label"] for r in rows] == ["pos", "pos", "", "pos", "pos", "pos"]
    assert rows[2]["error"] == "refused by the server: HTTP 400: Invalid argument: bad review"
    assert rows[0]["prob_pos"] == "0.75" and rows[2]["prob_pos"] == ""
    # probe, the refused chunk, its rows one by one, then the last chunk
    assert seen == [["a review"], ["a", "b", "xPOISONx", "c"], ["a"], ["b"], ["xPOISONx"], ["c"],
                    ["d", "e"]]


class _Flaky:
    """A client whose first predictions fail with the given codes."""

    chunk_size = 8

    def __init__(self, codes: list[str]) -> None:
        self.codes = codes
        self.calls = 0

    def predict(self, texts):
        self.calls += 1
        if self.codes:
            raise ServingError(self.codes.pop(0), "try later")
        return list(texts)


@pytest.mark.parametrize("code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "HTTP 503", "HTTP 429"])
def test_busy_servers_are_retried_with_backoff(code):
    client = _Flaky([code, code])
    waits: list[float] = []
    scorer = ChunkScorer(client, BulkOptions(retries=2, backoff=1.0), sleep=waits.append)
    assert scorer.predict(["x"]) == ["x"] and client.calls == 3
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0  # doubled, with jitter
    with pytest.raises(ServingError, match=code):
        ChunkScorer(_Flaky([code] * 3), BulkOptions(retries=2), sleep=waits.append).predict(["x"])


@pytest.mark.parametrize("code", ["INVALID_ARGUMENT", "NOT_FOUND", "DEADLINE_EXCEEDED"])
def test_other_failures_are_not_retried(code):
    client = _Flaky([code])
    with pytest.raises(ServingError, match=code):
        ChunkScorer(client, BulkOptions(retries=5), sleep=lambda s: None).predict(["x"])
    assert client.calls == 1


def test_a_server_gone_for_good_stops_the_run_and_keeps_its_progress(tmp_path):
    transport, _ = fake_rest()
    source = write_table(tmp_path / "in.csv", [{"review": f"r{i}"} for i in range(40)])
    output = tmp_path / "out.csv"
    calls = {"n": 0}

    def handle(request):
        calls["n"] += 1
        if calls["n"] > 3:  # the probe and two chunks answered, then down
            return httpx.Response(503, json={"error": "down"})
        return transport.handle_request(request)

    options = BulkOptions("review", concurrency=1, retries=1, backoff=0.001, progress=False)
    with SentimentClient("http://fake:8501", chunk_size=8, retries=0,
                         http_transport=httpx.MockTransport(handle)) as client:
        with pytest.raises(ServingError, match="HTTP 503"):
            score_file(client, source, output, options)
    assert committed_rows(output) == 16 and not output.exists()
    with SentimentClient("http://fake:8501", chunk_size=8, retries=0,
                         http_transport=transport) as client:
        summary = score_file(client, source, output, options)
    assert (summary.rows, summary.scored_now) == (40, 24)
    assert [r["review"] for r in read_table(output)[1]] == [f"r{i}" for i in range(40)]


# --- one-line errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "message"), [
    ("column", r"reviews\.csv has no column 'text'; its columns are 'id', 'review', 'stars'; "
               r"give one of them with --text-column"),
    ("in-extension", r"cannot tell the format of \S+reviews\.txt from '\.txt'; name it \.csv, "
                     r"\.jsonl or \.parquet"),
    ("out-extension", r"cannot tell the format of \S+scored\.xlsx from '\.xlsx'"),
    ("missing", r"no such file: \S+nope\.csv"),
    ("not-utf8", r"cannot read \S+reviews\.csv: 'utf-8' codec can't decode byte 0xe9"),
    ("not-parquet", r"cannot read \S+broken\.parquet: "),
    ("not-json", r"cannot read \S+broken\.jsonl \(line 2\): "),
    ("shard", r"--shard '2/2' is not I/N with 0 <= I < N"),
    ("label-column", r"already has column 'label', which the scorer adds; add --column-prefix"),
])
def test_bad_input_is_one_line_before_anything_is_sent(case, message, tmp_path, capsys,
                                                       monkeypatch):
    transport, seen = fake_rest()
    monkeypatch.setattr("tfsent.predict.SentimentClient",
                        lambda *a, **k: SentimentClient(*a, **k, http_transport=transport))
    source = write_table(tmp_path / "reviews.csv", review_rows(5))
    output, extra = tmp_path / "scored.csv", ["--text-column", "review"]
    if case == "column":
        extra = ["--text-column", "text"]
    elif case == "in-extension":
        source = source.rename(tmp_path / "reviews.txt")
    elif case == "out-extension":
        output = tmp_path / "scored.xlsx"
    elif case == "missing":
        source = tmp_path / "nope.csv"
    elif case == "not-utf8":
        source.write_bytes(b"review\n" + b"ok\n" * 5000 + "caf\xe9\n".encode("latin-1"))
    elif case == "not-parquet":
        source = tmp_path / "broken.parquet"
        source.write_bytes(b"PAR1 not really")
    elif case == "not-json":
        source = tmp_path / "broken.jsonl"
        source.write_text('{"review": "ok"}\n{"review": nope}\n')
    elif case == "shard":
        extra += ["--shard", "2/2"]
    elif case == "label-column":
        source = write_table(tmp_path / "labelled.csv", [{"review": "x", "label": "pos"}])
    argv = ["--server", "http://fake:8501", "--input", str(source), "--output", str(output),
            *extra]
    code, err = score(argv, capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert re.search(message, err), err
    assert seen == []
    assert not output.exists() and not staging_path(output).exists()


def test_a_rerun_with_other_options_says_so_and_overwrite_starts_over(tmp_path, capsys,
                                                                      monkeypatch):
    transport, seen = fake_rest()
    monkeypatch.setattr("tfsent.predict.SentimentClient",
                        lambda *a, **k: SentimentClient(*a, **k, http_transport=transport))
    source = write_table(tmp_path / "reviews.csv", review_rows(10))
    output = tmp_path / "scored.csv"
    base = score_cmd("http://fake:8501", source, output, "--quiet")
    assert score(base, capsys) == (0, "")
    code, err = score([*base, "--column-prefix", "p_"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "is of another input or options (column_prefix '' then, 'p_' now)" in err
    assert "--overwrite" in err
    assert score([*base, "--column-prefix", "p_", "--overwrite"], capsys) == (0, "")
    assert read_table(output)[0][-5:] == ["p_label", "p_confidence", "p_prob_neg", "p_prob_pos",
                                          "p_error"]
    progress_path(output).unlink()  # an output of unknown origin is not replaced unasked
    code, err = score(base, capsys)
    assert code == 2 and "scored.csv exists; add --overwrite" in err


def test_parquet_without_pyarrow_says_so(tmp_path, monkeypatch):
    source = write_table(tmp_path / "reviews.csv", review_rows(3))
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(UserError, match=r"^Parquet needs pyarrow: pip install 'tfsent\[parquet\]'"):
        score_file(SentimentClient("http://fake:8501"), source, tmp_path / "out.parquet",
                   BulkOptions("review"))


def test_shard_parse():
    assert Shard.parse("0/1") == Shard() and str(Shard.parse("3/4")) == "3/4"
    for bad in ("1", "1/0", "-1/2", "a/b", "2/2"):
        with pytest.raises(UserError, match="is not I/N"):
            Shard.parse(bad)


# --- no TensorFlow ------------------------------------------------------------------------------


def test_help_and_a_run_import_no_tensorflow(server, tmp_path):
    """``-X importtime`` lists every module the process imported, on stderr."""
    for argv in (["--help"], score_cmd(server, write_table(tmp_path / "in.csv", review_rows(20)),
                                       tmp_path / "out.csv", "--quiet")):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "tfsent.score",
                                 *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        imported = {line.split("|")[-1].strip().split(".")[0]
                    for line in result.stderr.splitlines() if line.startswith("import time:")}
        assert {"tfsent", "numpy"} <= imported
        assert imported.isdisjoint(HEAVY), imported & set(HEAVY)
        assert "pyarrow" not in imported  # CSV needs only the standard library
    assert "--concurrency" in result.stdout or (tmp_path / "out.csv").is_file()
