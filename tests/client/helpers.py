"""What the client's test files share: the fake model's answers and a predict CLI runner."""

from __future__ import annotations

import io
import os

import numpy as np

from tfsent.errors import run_cli

LABELS = ("neg", "pos")


def fake_probabilities(text: str) -> list[float]:
    """Distinct per text (so order is checkable), 'great' leans positive."""
    pos = (0.9 if "great" in text else 0.2) + len(text) / 1000
    return [1.0 - pos, pos]


def expected_line(text: str) -> str:
    """The predict CLI's text line for ``text`` answered by the fake model."""
    probs = fake_probabilities(text)
    return f"{LABELS[int(np.argmax(probs))]} (confidence {max(probs):.2f})  {text}"


def run_predict(argv, capsys, stdin: str | bytes | None = None, monkeypatch=None):
    """``python -m tfsent.predict`` in-process: exit code, stdout, stderr."""
    from tfsent.predict import main

    if stdin is not None:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    environ = dict(os.environ)  # main sets TF's and gRPC's log levels for its process
    try:
        code = run_cli(main, argv)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    out, err = capsys.readouterr()
    return code, out, err


class Tty(io.StringIO):
    """A stdin that says it is a terminal (no piped input)."""

    def isatty(self) -> bool:
        return True
