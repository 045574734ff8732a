"""TensorFlow's native start-up lines are hidden from fd 2 by default, and only those."""

import os
import subprocess
import sys

import pytest

IMPORT_TF = "import tensorflow, importlib.util; tensorflow.constant(1)"


def run(code: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_tensorflow_import_is_quiet_behind_the_hook_even_after_a_find_spec():
    bare = run(IMPORT_TF)
    if "InitializeLog" not in bare:
        pytest.skip("this TensorFlow build logs nothing through absl at import")
    hidden = run("import importlib.util; from tfsent.native_log import "
                 "hide_tensorflow_startup_lines as hide; hide(); "
                 "assert importlib.util.find_spec('tensorflow'); " + IMPORT_TF)
    assert hidden == ""


def test_lines_that_are_not_startup_noise_still_reach_stderr():
    from tfsent.native_log import drop_noise

    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR\nI0000 00:00:1796.1  9 cudart_stub.cc:31] Could not find cuda drivers\n"
            "E0000 00:00:1796.2  9 cuda_platform.cc:52] failed call to cuInit\n"
            "Traceback (most recent call last):\n")
    assert drop_noise(text) == ("E0000 00:00:1796.2  9 cuda_platform.cc:52] failed call to "
                                "cuInit\nTraceback (most recent call last):\n")
