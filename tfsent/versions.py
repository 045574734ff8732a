"""Version folders of a model base path, as TF Serving reads them: ASCII digits only.

TF Serving (``file_system_storage_path_source.cc``) takes a child folder as a version only when
its whole name parses as a non-negative int64 of ASCII digits. Python's ``str.isdigit`` also
accepts ``²`` and ``٣``, and ``int()`` accepts ``"45\\n"`` and ``" 7"``: both would make tfsent
serve or export versions that TF Serving ignores. Exporters, the local server and the predictor
all use this one scan. Light on purpose: the client imports it without TensorFlow.

>>> [parse_version(n) for n in ("1", "0012", "²", "٣٣", "45\\n", ".tmp-3-99", "-1")]
[1, 12, None, None, None, None, None]
"""

from __future__ import annotations

import re
from pathlib import Path

_VERSION = re.compile(r"[0-9]{1,19}")
INT64_MAX = 2**63 - 1


def parse_version(name: str) -> int | None:
    """The version a folder name stands for, or ``None`` if TF Serving would not load it."""
    if not _VERSION.fullmatch(name):
        return None
    number = int(name)
    return number if number <= INT64_MAX else None


def scan_versions(base: str | Path) -> dict[int, Path] | None:
    """``{version: folder}`` under ``base`` (``None`` when ``base`` is not a folder).

    Only folders count. When two names parse to one version (``1`` and ``01``) the first in
    sorted order wins, so the answer does not depend on the file system's listing order.
    """
    base = Path(base)
    if not base.is_dir():
        return None
    versions: dict[int, Path] = {}
    for child in sorted(base.iterdir()):
        number = parse_version(child.name)
        if number is not None and number not in versions and child.is_dir():
            versions[number] = child
    return versions
