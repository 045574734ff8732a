"""Hide the native start-up lines that TensorFlow writes to stderr before any flag can stop them.

Since TensorFlow 2.21 the CUDA stub logs through absl before ``absl::InitializeLog()``
runs, and such lines ("WARNING: All log messages before absl::InitializeLog() ...",
"I0000 ... cudart_stub.cc:31] Could not find cuda drivers ...") ignore ``TF_CPP_MIN_LOG_LEVEL``:
no environment variable reaches them. They come from C++ straight to file descriptor 2, so the
only place to filter them is that descriptor, for the duration of ``import tensorflow``.

:func:`hide_tensorflow_startup_lines` installs an import hook that does so once, when
TensorFlow is first imported: while it loads, fd 2 goes to a temporary file; afterwards the lines
that are not start-up noise are written back to stderr, so a real error still shows.

>>> drop_noise("WARNING: All log messages before absl::InitializeLog() is called are written "
...            "to STDERR\\nI0000 00:00:1.0  1 cudart_stub.cc:31] Could not find cuda drivers\\n"
...            "real problem\\n")
'real problem\\n'
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from types import ModuleType

# absl's pre-init banner, and absl/glog INFO lines ("I1206 12:00:00.000 123 file.cc:31] ...");
# warnings and errors (W/E/F) are kept.
_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\).*|"
                    r"I\d{4} [\d:.]+\s+\d+ \S+\.cc:\d+\] .*)$")


def drop_noise(text: str) -> str:
    """``text`` without its start-up noise lines."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not _NOISE.match(line.rstrip("\n")))


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        show_tensorflow_startup_lines()  # once: later imports of tensorflow are cached anyway
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile(mode="w+b") as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self._loader.exec_module(module)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                kept = drop_noise(captured.read().decode(errors="replace"))
                if kept:
                    sys.stderr.write(kept)
                    sys.stderr.flush()


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201
        # A find_spec alone (``importlib.util.find_spec``, asking whether TensorFlow is
        # installed) loads nothing, so the hook stays until the module is executed.
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def hide_tensorflow_startup_lines() -> None:
    """Filter TensorFlow's native start-up noise from fd 2 when it is first imported; a no-op
    when TensorFlow is already loaded (its lines are out) or the hook is in place."""
    if "tensorflow" in sys.modules or any(isinstance(f, _TensorFlowFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TensorFlowFinder())


def show_tensorflow_startup_lines() -> None:
    """Undo :func:`hide_tensorflow_startup_lines` (``--verbose``)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TensorFlowFinder)]
