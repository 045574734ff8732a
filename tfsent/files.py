"""Files that survive a kill at any moment, and the liveness of the process that wrote them.

A leaf: it imports nothing of tfsent, TensorFlow or transformers, so the run layout
(``tfsent.rundir``), the config, the export, the search and the bulk scorer all share it.

>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "state.json"
>>> read_json(path) is None
True
>>> write_json_atomic(path, {"epoch": 2})
>>> read_json(path)
{'epoch': 2}
>>> pid_alive(os.getpid()), pid_alive(-1)
(True, False)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | Path, text: str, newline: str | None = None) -> None:
    """Write ``text`` to ``path`` so that readers (and a rerun after a kill) see the old file
    or the whole new one, never a part: a sibling temporary file, then ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file's value, or None when it is missing (or, from a foreign tool, unreadable)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (another user's counts).

    A lock or a claim left by a pid that is gone was left by a killed process; anything that is
    not a valid pid is not alive.
    """
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except (OverflowError, ValueError, OSError):
        return False
    return True
