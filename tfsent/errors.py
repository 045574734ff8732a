"""One error type for bad user input, and the CLI wrapper that turns it into one line + exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

USAGE_EXIT_CODE = 2

# Imported before TensorFlow by every tfsent module: TF's C++ INFO and WARNING start-up lines
# (CPU feature notes, CUDA probing) are hidden for library users too. The CLIs go further,
# and back, with tfsent.cli.configure_logging (--verbose).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class UserError(Exception):
    """Input the user can fix: the message names the problem and the fix, on one line."""


def fail(message: str) -> NoReturn:
    raise UserError(message)


def first_line(err: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of an error's text (its type's name when it has none), cut to
    ``limit`` characters: what a one-line message quotes of an error from a library.

    >>> first_line(ValueError("bad shape\\n  at node x"))
    'bad shape'
    >>> first_line(KeyError())
    'KeyError'
    """
    text = err if isinstance(err, str) else str(err)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines:
        return lines[0][:limit]
    return type(err).__name__ if isinstance(err, BaseException) else ""


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are one ``UserError`` line instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a CLI ``main`` so that a ``UserError`` prints one line and exits 2, with no traceback.

    Anything else is a bug in tfsent and keeps its traceback.
    """
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_EXIT_CODE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
