"""The review page (``python -m tfsent.app``): its JSON API on the tiny export (in-process and in
front of the local model server), its CLI errors, and the page itself in Debian's Chromium
driven by Playwright, in front of a model server that is stopped and restarted.

The browser tests skip with one line when Chromium or Playwright is missing, and fail instead
when TFSENT_REQUIRE_BROWSER=1 (CI). TFSENT_UPDATE_SCREENSHOT=1 also writes docs/app.png.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import struct
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.app.helpers import (
    AppProcess,
    browser_missing,
    browser_required,
    chromium_context,
    start_server_on,
)
from tfsent.client import Prediction, SentimentClient
from tfsent.errors import run_cli
from tfsent.model_server.process import REPO, free_port, start_server

# Starlette's TestClient would rather have httpx2; the httpx it runs on here works the same.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

VIEWPORT = {"width": 1280, "height": 900}
SCREENSHOT = REPO / "docs" / "app.png"
LONG_REVIEW = (
    "A funny, beautiful story about love and time, with characters that you will think about "
    "long after the end of the film and a score that is just perfect for every scene."
)
REVIEWS = [
    "A wonderful, moving film with superb acting.",
    "Dull and far too long; I hated the ending.",
    "The plot was boring but the actors were great.",
    "Best movie I have watched this year!",
    "Terrible script, awful dialogue, never again.",
    LONG_REVIEW,
    'She said "never watch it", and she was right, sadly.',
    "Un café naïve et très beau 😀",
    "I loved the director, not the story.",
    "So bad it was funny.",
    "Two hours of my life I will never get back.",
    "The best acting of the year, the worst ending ever.",
    "watch it",
    "THE WORST.",
    "really really good",
    "no, no, no",
    "A sad and beautiful ending.",
    "Too much plot, too little time.",
    "they were all great",
    "Just one more scene would have been too much.",
    "My favourite film of all time.",
    "It was fine, I think.",
    "Not good, not bad.",
    "  I would watch it again  ",
]


def display(label: str) -> str:
    """How the page writes a label: first letter upper-case (``Positive (confidence 0.95)``)."""
    return label[:1].upper() + label[1:]


# ---- fixtures ---------------------------------------------------------------------------------


class Server:
    """The model server under test; the outage test stops it and starts it again on the same
    ports, so teardown stops whichever process is current."""

    def __init__(self, base_path: Path) -> None:
        self.base_path = base_path
        self.process = start_server(base_path)
        self.grpc_port, self.rest_port = self.process.grpc_port, self.process.rest_port
        self.grpc = f"grpc://127.0.0.1:{self.grpc_port}"
        self.rest = f"http://127.0.0.1:{self.rest_port}"

    def stop(self) -> int:
        return self.process.stop()

    def restart(self) -> None:
        self.process = start_server_on(self.base_path, self.grpc_port, self.rest_port)


@pytest.fixture(scope="module")
def server(tiny_export):
    running = Server(tiny_export.parent)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(server):
    with SentimentClient(server.grpc, timeout=30) as grpc_client:
        yield grpc_client


@pytest.fixture(scope="module")
def app(server):
    """``python -m tfsent.app --server grpc://...`` on a free port."""
    process = AppProcess(["--server", server.grpc])
    try:
        yield process
    finally:
        assert process.stop() == 0, process.log()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One Chromium for the module, or None when it cannot run here (see module docstring)."""
    missing = browser_missing()
    if missing:
        if browser_required():
            pytest.fail(f"TFSENT_REQUIRE_BROWSER=1 but {missing}")
        yield None
        return
    with chromium_context(VIEWPORT) as context:
        yield context


@pytest.fixture(scope="module")
def page_or_none(browser, app):
    if browser is None:
        yield None
        return
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(app.url)
    page.wait_for_selector("#status.status-ok")
    yield page
    assert errors == [], errors
    page.close()


@pytest.fixture
def page(page_or_none):
    if page_or_none is None:
        pytest.skip(browser_missing())
    return page_or_none


# ---- the page in Chromium ---------------------------------------------------------------------


def test_page_shows_model_info(page, server):
    assert page.inner_text("#info-model") == "tfsent"
    assert page.inner_text("#info-version") == "1"
    assert page.inner_text("#info-labels") == "negative, positive"
    assert page.inner_text("#info-server") == f"{server.grpc} (gRPC)"
    assert page.inner_text("#status") == "Model ready"
    assert page.is_hidden("#error-banner")


def test_single_review_label_and_confidence(page, client):
    review = "Dull and far too long; I hated the ending."
    (expected,) = client.predict([review])
    page.fill("#review", review)
    page.click("#predict")
    page.wait_for_selector("#single-result:not([hidden])")
    assert page.inner_text("#single-label") == display(expected.label)
    assert page.inner_text("#single-confidence") == f"{expected.confidence:.2f}"
    assert " ".join(page.inner_text(".answer").split()) == (
        f"{display(expected.label)} (confidence {expected.confidence:.2f})"
    )
    assert float(page.get_attribute("#single-result", "data-confidence")) == expected.confidence
    bars = page.locator("#single-bars .bar-row")
    assert bars.count() == len(expected.probabilities)
    for i, (label, p) in enumerate(expected.probabilities.items()):
        assert bars.nth(i).get_attribute("data-label") == label
        assert bars.nth(i).locator(".bar-name").inner_text() == display(label)
        assert bars.nth(i).locator(".bar-value").inner_text() == f"{p:.2f}"
        width = bars.nth(i).locator(".bar-fill").evaluate("e => parseFloat(e.style.width)")
        assert width == pytest.approx(100 * p, abs=0.06)

    # Ctrl+Enter scores too, and a second review replaces the first answer.
    other = "A wonderful, moving film. The actors were superb."
    (expected,) = client.predict([other])
    page.fill("#review", other)
    page.press("#review", "Control+Enter")
    page.wait_for_function(
        "c => document.querySelector('#single-result').dataset.confidence === c",
        arg=repr(expected.confidence),
    )
    assert page.inner_text("#single-label") == display(expected.label)


def read_table(page) -> list[dict[str, str]]:
    rows = page.locator("#batch-table tbody tr")
    return [
        {
            "number": rows.nth(i).locator("td").nth(0).inner_text(),
            "review": rows.nth(i).locator("td.review").inner_text(),
            "title": rows.nth(i).locator("td.review").get_attribute("title"),
            "label": rows.nth(i).locator("td.label").inner_text(),
            "confidence": rows.nth(i).locator("td.confidence").inner_text(),
        }
        for i in range(rows.count())
    ]


def assert_table(page, reviews: list[str], expected: list[Prediction]) -> None:
    table = read_table(page)
    assert len(table) == len(reviews)
    for i, (row, review, p) in enumerate(zip(table, reviews, expected, strict=True)):
        assert row["number"] == str(i + 1)
        assert row["title"] == review
        assert row["label"] == display(p.label)
        assert row["confidence"] == f"{p.confidence:.2f}"
        shown = " ".join(review.split())
        if len(shown) <= 90:
            assert row["review"] == shown
        else:  # shortened, with the full text as its tooltip
            assert row["review"].endswith("…") and len(row["review"]) <= 90
            assert shown.startswith(row["review"][:-1])
    chart = page.locator("#batch-chart g.chart-row")
    counts = {chart.nth(i).get_attribute("data-label"):
              int(chart.nth(i).locator(".chart-count").text_content())
              for i in range(chart.count())}
    assert counts == {label: Counter(p.label for p in expected)[label]
                      for label in expected[0].probabilities}
    assert page.inner_text("#batch-total") == f"({len(reviews)} reviews)"


def test_batch_table_chart_and_csv_download(page, client, tmp_path):
    pasted = "\n".join(REVIEWS[:12]) + "\n\n   \n" + "\r\n".join(REVIEWS[12:])  # blanks skipped
    expected = client.predict(REVIEWS)
    assert {p.label for p in expected} == {"negative", "positive"}, "the test needs both labels"
    page.fill("#batch-text", pasted)
    page.click("#batch-run")
    page.wait_for_selector("#batch-results:not([hidden])")
    assert_table(page, REVIEWS, expected)

    with page.expect_download() as download:
        page.click("#download-csv")
    assert download.value.suggested_filename == "tfsent-predictions.csv"
    data = Path(download.value.path()).read_bytes()
    assert data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["review", "label", "confidence", "p_negative", "p_positive"]
    assert len(rows) == 1 + len(REVIEWS)
    for row, review, p in zip(rows[1:], REVIEWS, expected, strict=True):
        assert row[0] == review  # whole, with its commas, quotes, spaces and emoji
        assert row[1] == p.label
        assert float(row[2]) == p.confidence
        assert [float(x) for x in row[3:]] == list(p.probabilities.values())

    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    png = (tmp_path / "app.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">I", png[16:20])[0] == VIEWPORT["width"]
    if os.environ.get("TFSENT_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(png)


def test_batch_csv_upload(page, client, tmp_path):
    reviews = REVIEWS[::-1][:20]
    upload = tmp_path / "reviews.csv"
    with open(upload, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "Review", "stars"])
        writer.writerows([i, review, 3] for i, review in enumerate(reviews))
    page.set_input_files("#batch-file", str(upload))
    page.wait_for_function(  # a function: the page's CSP forbids evaluating strings
        "() => document.querySelector('#batch-total').textContent === '(20 reviews)'"
    )
    assert_table(page, reviews, client.predict(reviews))

    # A file that is no CSV: said next to the upload, not as a server problem.
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"id,stars\n1,5\n")
    page.set_input_files("#batch-file", str(bad))
    page.wait_for_selector("#batch-error:not([hidden])")
    assert "none is named review or text" in page.inner_text("#batch-error")
    assert page.is_hidden("#error-banner")


def test_server_down_message_then_recovery(page_or_none, app, server, client):
    """Stop the model server: the app answers 503 with a clear message and the page shows it
    in its banner; start it again on the same ports: both recover with no reload."""
    page = page_or_none
    review = "Best movie I have watched this year!"
    (expected,) = client.predict([review])
    down = f"Cannot reach the model server at {server.grpc}"
    if page is not None:
        page.evaluate("window.sameDocument = true")
    assert server.stop() == 0

    reply = httpx.post(app.url + "api/predict", json={"text": review}, timeout=30)
    assert reply.status_code == 503
    assert reply.json()["error"].startswith(down)
    assert reply.json()["kind"] == "unreachable"
    if page is not None:
        page.fill("#review", review)
        page.click("#predict")
        page.wait_for_selector("#error-banner:not([hidden])")
        assert page.inner_text("#error-banner").startswith(down)
        assert "retries by itself" in page.inner_text("#error-banner")
        assert page.inner_text("#status") == "Model unreachable"
        # The page itself still works: its own checks and its backend answer.
        page.fill("#review", "   ")
        page.click("#predict")
        assert page.inner_text("#single-error") == "The review is empty: type a review first."
        assert page.evaluate("fetch('api/info').then(r => r.status)") == 503

    server.restart()
    if page is not None:  # recovers by itself: the page polls /api/info while the banner is up
        page.wait_for_selector("#error-banner", state="hidden", timeout=30_000)
        assert page.inner_text("#status") == "Model ready"
        assert page.inner_text("#info-version") == "1"
        page.fill("#review", review)
        page.click("#predict")
        page.wait_for_selector("#single-error", state="hidden")
        page.wait_for_function(
            "c => document.querySelector('#single-result').dataset.confidence === c",
            arg=repr(expected.confidence),
        )
        assert page.inner_text("#single-label") == display(expected.label)
        assert page.evaluate("window.sameDocument") is True
    reply = httpx.post(app.url + "api/predict", json={"text": review}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert (reply.json()["label"], reply.json()["confidence"]) == (
        expected.label, expected.confidence
    )


# ---- the app as a process ---------------------------------------------------------------------


def test_cli_serves_the_page(app, server):
    assert app.first_line.startswith("tfsent app on http://127.0.0.1:")
    assert server.grpc in app.first_line
    page = httpx.get(app.url, timeout=30)
    assert page.status_code == 200
    assert '<textarea id="review"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert re.search(r'(src|href)="(https?:)?//', page.text) is None, "all from this origin"
    script = httpx.get(app.url + "static/app.js", timeout=30)
    assert script.status_code == 200 and "api/predict" in script.text
    # Another site's page (DNS rebinding) is not let in.
    assert httpx.get(app.url, headers={"Host": "evil.example"}, timeout=30).status_code == 400


# ---- the JSON API -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def in_process(tiny_export):
    """The app on the export in this process, with small limits to test them."""
    from fastapi.testclient import TestClient

    from tfsent.app.backends import SavedModelBackend
    from tfsent.app.web import Limits, create_app

    backend = SavedModelBackend(tiny_export.parent)
    limits = Limits(max_reviews=5, max_review_chars=300, max_body_bytes=2000)
    with TestClient(create_app(backend, limits)) as test_client:
        yield test_client, backend


def test_api_in_process_matches_the_export(in_process, tiny_export):
    from tfsent.client import SavedModelPredictor

    test_client, _ = in_process
    predictor = SavedModelPredictor(tiny_export)
    reviews = ["a great film", "dull, dull, dull", "café 😀"]
    expected = predictor.predict(reviews)

    info = test_client.get("/api/info").json()
    assert info["model_name"] == "tfsent" and info["version"] == 1
    assert info["labels"] == ["negative", "positive"]
    assert info["server"] == f"in-process: {tiny_export}"
    assert info["limits"]["max_reviews"] == 5

    # Same batches as the predictor's, so the same numbers to the last bit.
    one = test_client.post("/api/predict", json={"text": reviews[0]}).json()
    (alone,) = predictor.predict(reviews[:1])
    assert (one["label"], one["confidence"]) == (alone.label, alone.confidence)
    assert one["probabilities"] == alone.probabilities

    batch = test_client.post("/api/batch", json={"reviews": [reviews[0], " ", *reviews[1:]]})
    assert batch.status_code == 200
    body = batch.json()
    assert [r["review"] for r in body["results"]] == reviews
    assert [(r["label"], r["confidence"]) for r in body["results"]] == [
        (p.label, p.confidence) for p in expected
    ]
    assert body["counts"] == {
        label: sum(p.label == label for p in expected) for label in ("negative", "positive")
    }

    data = 'id,text,stars\n1,a great film,5\n2,"dull, dull, dull",1\n3,café 😀,3\n'.encode()
    upload = test_client.post("/api/batch/csv", content=data,
                              headers={"Content-Type": "text/csv"}).json()
    assert upload["column"] == "text"
    assert [(r["review"], r["label"]) for r in upload["results"]] == [
        (r, p.label) for r, p in zip(reviews, expected, strict=True)
    ]
    picked = test_client.post("/api/batch/csv?column=stars", content=data).json()
    assert [r["review"] for r in picked["results"]] == ["5", "1", "3"]

    missing = test_client.get("/api/nothing")
    assert (missing.status_code, missing.json()["error"]) == (404, "Not Found: GET /api/nothing")
    assert test_client.get("/api/predict").status_code == 405


BAD_REQUESTS = [
    # (route, body, status, message part)
    ("/api/predict", {"text": "   "}, 422, "The review is empty: type a review first."),
    ("/api/predict", {}, 422, 'The request has no review; send {"text": "a review"}.'),
    ("/api/predict", {"text": 7}, 422, "has no review"),
    ("/api/predict", {"text": "x" * 301}, 422, "Review 1 is 301 characters long, more than 300"),
    ("/api/predict", b"great film", 400, "The request body is not JSON"),
    ("/api/predict", b"\xff\xfe", 400, "The request body is not JSON"),
    ("/api/predict", ["great film"], 422, "not a JSON object"),
    ("/api/batch", {"reviews": ["a"] * 6}, 413, "6 reviews in the request, more than the 5"),
    ("/api/batch", {"reviews": "a, b"}, 422, "'reviews' must be a list of texts"),
    ("/api/batch", {"reviews": ["a", 1]}, 422, "'reviews' must be a list of texts"),
    ("/api/batch", {"reviews": ["", "  "]}, 422, "No reviews in the request"),
    ("/api/batch", {"reviews": ["y" * 500] * 5}, 413, "larger than 2 kB"),
    ("/api/batch/csv", b"review\n" + b"good\n" * 6, 413, "6 reviews in the CSV, more than the 5"),
    ("/api/batch/csv", b"z" * 2001, 413, "The upload is larger than 2 kB"),
    ("/api/batch/csv", b"review\ncaf\xe9\n", 422, "The file is not UTF-8 text (byte 10)"),
    ("/api/batch/csv", b"review\ngood\x00\n", 422, "NUL bytes"),
    ("/api/batch/csv", b"id,stars\n1,5\n", 422, "several columns (id, stars) and none is named"),
    ("/api/batch/csv", b"", 422, "The CSV is empty"),
    ("/api/batch/csv", b"\n \n", 422, "The CSV is empty"),
    ("/api/batch/csv", b"review\n", 422, "No reviews in the CSV"),
    ("/api/batch/csv", b'review\n"never closed\n', 422,
     "The CSV cannot be read at line 2: unexpected end of data"),
    ("/api/batch/csv", b'review\n"a"b\n', 422, "cannot be read at line 2"),
    ("/api/batch/csv?column=stars", b"review\ngood\n", 422, "no column 'stars'; its columns"),
]


@pytest.mark.parametrize("route, body, status, message", BAD_REQUESTS)
def test_api_rejects_bad_input(in_process, route, body, status, message):
    test_client, _ = in_process
    if isinstance(body, bytes):
        reply = test_client.post(route, content=body)
    else:
        reply = test_client.post(route, content=json.dumps(body))
    assert reply.status_code == status, reply.text
    assert message in reply.json()["error"]
    # ... and the app keeps serving.
    assert test_client.post("/api/predict", json={"text": "fine"}).status_code == 200


def test_api_counts_a_body_without_length(in_process):
    test_client, _ = in_process

    def chunks():  # sent chunked, with no Content-Length to refuse it by
        for _ in range(100):
            yield b"x" * 1000

    reply = test_client.post("/api/batch/csv", content=chunks())
    assert reply.status_code == 413
    assert "larger than 2 kB" in reply.json()["error"]


def test_app_refuses_a_large_upload_before_reading_it(app):
    """A declared 1 GB body is refused at once: the app answers before the body is sent."""
    port = int(app.url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"POST /api/batch/csv HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: text/csv\r\nContent-Length: 1000000000\r\n\r\nreview\n")
        reply = b""
        while b"}" not in reply:  # the JSON error's end; the app may then close the connection
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413 "), reply
    assert "The upload is larger than 5.0 MB" in reply


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_api_in_front_of_the_server(server, protocol, client):
    from fastapi.testclient import TestClient

    from tfsent.app.backends import ServerBackend
    from tfsent.app.web import create_app

    address = getattr(server, protocol)
    with TestClient(create_app(ServerBackend(address))) as test_client:
        info = test_client.get("/api/info").json()
        assert info == {
            "model_name": "tfsent", "version": 1, "labels": ["negative", "positive"],
            "server": address, "protocol": protocol, "limits": info["limits"],
        }
        got = test_client.post("/api/predict", json={"text": "a great film"}).json()
        (expected,) = client.predict(["a great film"])
        assert got["label"] == expected.label
        assert got["confidence"] == pytest.approx(expected.confidence, abs=1e-6)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_api_unknown_model(server, protocol):
    from fastapi.testclient import TestClient

    from tfsent.app.backends import ServerBackend
    from tfsent.app.web import create_app

    address = getattr(server, protocol)
    backend = ServerBackend(address, model_name="nope", retries=0)
    with TestClient(create_app(backend)) as test_client:
        for reply in (test_client.get("/api/info"),
                      test_client.post("/api/predict", json={"text": "a great film"})):
            assert reply.status_code == 502
            assert reply.json()["kind"] == "unknown_model"
            assert reply.json()["error"].startswith(
                f"The model server at {address} does not serve a model named 'nope' ("
            )
            assert "--model-name" in reply.json()["error"]


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_api_server_not_running(scheme):
    from fastapi.testclient import TestClient

    from tfsent.app.backends import ServerBackend
    from tfsent.app.web import create_app

    address = f"{scheme}://127.0.0.1:{free_port()}"
    with TestClient(create_app(ServerBackend(address, retries=0, timeout=5))) as test_client:
        assert test_client.get("/").status_code == 200  # the page still loads
        for reply in (test_client.get("/api/info"),
                      test_client.post("/api/batch", json={"reviews": ["a", "b"]})):
            assert reply.status_code == 503
            assert reply.json()["error"].startswith(
                f"Cannot reach the model server at {address} (connection refused). Start it"
            )
            assert reply.json()["error"].endswith("this page retries by itself every few seconds.")


# ---- the CLI's one-line errors ----------------------------------------------------------------


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "one of the arguments --server --saved-model is required"),
        (["--server", "a:1", "--saved-model", "b"], "not allowed with argument"),
        (["--server", "ftp://host:1"], "cannot use server address 'ftp://host:1'"),
        (["--saved-model", "{tmp}/missing", "--port", "0"], "no such directory: {tmp}/missing"),
        (["--server", "a:1", "--port", "{busy}"], "port {busy} on 127.0.0.1 is in use"),
        (["--server", "a:1", "--port", "70000"], "--port must be 0..65535"),
        (["--server", "a:1", "--max-reviews", "0"], "--max-reviews must be at least 1"),
        (["--server", "a:1", "--timeout", "0"], "--timeout must be more than 0"),
        (["--server", "a:1", "--host", "192.0.2.1"], "cannot listen on 192.0.2.1:8080"),
    ],
)
def test_cli_errors_are_one_line(args, message, tmp_path, busy_port, capsys):
    from tfsent.app.__main__ import main

    def fill(text: str) -> str:
        return text.format(tmp=tmp_path, busy=busy_port)

    assert run_cli(main, [fill(a) for a in args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert fill(message) in err
