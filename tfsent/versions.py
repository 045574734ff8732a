"""Version folders of a model base path, as TF Serving reads them, and how new ones are made.

TF Serving (``file_system_storage_path_source.cc``) takes a child folder as a version only when
its whole name parses as a non-negative int64 of ASCII digits. Python's ``str.isdigit`` also
accepts ``²`` and ``٣``, and ``int()`` accepts ``"45\\n"`` and ``" 7"``: both would make tfsent
serve or export versions that TF Serving ignores. Exporters, the training run's export, the
local server and the predictor all use this one scan. Light on purpose: the client imports it
without TensorFlow.

>>> [parse_version(n) for n in ("1", "0012", "²", "٣٣", "45\\n", ".tmp-3-99", "-1")]
[1, 12, None, None, None, None, None]

Versions only grow: a new one is the highest + 1 (:func:`next_version`). It is written into a
hidden, non-integer sibling, ``.tmp-<N>-<pid>`` (TF Serving ignores it), and renamed into place
(:func:`staged_version`), so a server polling the folder never loads half a model. A writer
killed midway (even by SIGKILL) leaves only that folder, which the next
:func:`remove_stale_staging` of the same base path removes once its process is gone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tfsent.errors import fail
from tfsent.files import pid_alive

log = logging.getLogger(__name__)

_VERSION = re.compile(r"[0-9]{1,19}")
INT64_MAX = 2**63 - 1
# Staging folders: ".tmp-<version>-<pid>", never an integer, so TF Serving never loads one.
STAGING_PREFIX = ".tmp-"
_STAGING = re.compile(r"\.tmp-([0-9]+)-([0-9]+)")
# Inside a staging folder, removed before the rename: a lock its writer holds while it runs
# (released by the kernel however the process ends, also over NFS).
LOCK_FILE = ".lock"


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


def existing_versions(base: str | Path) -> list[int]:
    """The versions under ``base`` as TF Serving reads them (:func:`scan_versions`), in
    increasing order."""
    return sorted(scan_versions(base) or {})


def next_version(base: str | Path, version: int | None = None) -> int:
    """``version`` if it is free, else a ``UserError``; by default the highest + 1, or 1.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for name in ("1", "02", "²", ".tmp-7-12345"):
    ...         (Path(tmp) / name).mkdir()
    ...     print(existing_versions(tmp), next_version(tmp))
    [1, 2] 3
    """
    versions = existing_versions(base)
    if version is None:
        version = versions[-1] + 1 if versions else 1
        if version > INT64_MAX:
            fail(f"{base} already holds version {versions[-1]}, TF Serving's largest; "
                 "export to another --model-name")
        return version
    if version < 1:
        fail(f"--version {version} is not a positive integer; TF Serving versions are 1, 2, ...")
    if parse_version(str(version)) is None:
        fail(f"--version {version} is above TF Serving's largest version, {INT64_MAX}")
    if version in versions:
        hint = f" or omit it to get {versions[-1] + 1}" if versions[-1] < INT64_MAX else ""
        fail(f"version {version} already exists in {base}; pass another --version{hint}")
    return version


def remove_stale_staging(base: str | Path) -> list[Path]:
    """Remove the staging folders under ``base`` whose writer is gone (killed); return them.

    A staging folder is live while its writer holds the lock in it (``flock``, released by the
    kernel when the process ends, however it ends, also over NFS) or, before the lock exists,
    while the process whose pid its name carries runs.
    """
    try:
        children = sorted(Path(base).iterdir())
    except OSError:  # absent or unreadable: the export itself says what is wrong, if anything
        return []
    removed = []
    for folder in children:
        match = _STAGING.fullmatch(folder.name)
        if match and folder.is_dir() and not _writer_running(folder, int(match[2])):
            shutil.rmtree(folder, ignore_errors=True)
            log.info("removed %s, left by an export that did not finish", folder)
            removed.append(folder)
    return removed


def _writer_running(staging: Path, pid: int) -> bool:
    if pid == os.getpid():  # ours (another thread's export): never stale while we run
        return True
    try:
        fd = os.open(staging / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:  # made a moment ago, or its lock removed just before the rename
        return pid_alive(pid)
    except OSError:
        return True  # cannot tell: leave it
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the pid alone tells
        os.close(fd)
        return pid_alive(pid)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True  # held: the writer runs
    finally:
        os.close(fd)
    return False


def hold_lock(path: Path) -> int:
    """Create ``path`` and hold an exclusive ``flock`` on it; closing the returned file
    descriptor (or the process ending, however) releases it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:
        pass
    return fd


@contextmanager
def staged_version(base: Path, version: int) -> Iterator[Path]:
    """A fresh ``base/.tmp-<version>-<pid>`` to write version ``version`` into, locked while the
    block runs and renamed to ``base/<version>`` (atomically: servers see no version or a whole
    one) when it ends. Made first, so an unwritable target fails fast; removed, with any
    folders made for it, if the block raises.

    >>> import tempfile
    >>> base = Path(tempfile.mkdtemp()) / "m"
    >>> with staged_version(base, 3) as staging:
    ...     _ = (staging / "saved_model.pb").write_bytes(b"...")
    >>> sorted(p.name for p in base.iterdir()), sorted(p.name for p in (base / "3").iterdir())
    (['3'], ['saved_model.pb'])
    """
    made = [p for p in (base, *base.parents) if not p.exists()]
    staging = base / f"{STAGING_PREFIX}{version}-{os.getpid()}"
    try:
        base.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as err:
        _remove_empty(made)
        fail(f"cannot write to {base} ({err.strerror}); pass a writable --export-dir")
    lock = None
    try:
        lock = hold_lock(staging / LOCK_FILE)
        yield staging
        # The lock file goes before the rename (a version folder holds the SavedModel only),
        # while still held: until the rename, the pid in the folder's name, ours, marks it live.
        (staging / LOCK_FILE).unlink(missing_ok=True)
        target = base / str(version)
        try:
            os.rename(staging, target)
        except OSError as err:
            fail(f"could not move the export into {target} ({err.strerror}); "
                 "was that version written meanwhile? export again")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(made)
        raise
    finally:
        if lock is not None:
            os.close(lock)


def _remove_empty(folders: Iterable[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            pass
