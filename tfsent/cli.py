"""What every tfsent command line shares: quiet logs unless ``--verbose``, the extras check, and
one-line errors (:func:`tfsent.errors.run_cli`).

A CLI's ``main`` checks its extra, parses its arguments, then calls :func:`configure_logging`
before anything imports TensorFlow (TensorFlow's C++ logging reads its level once, on import)::

    def main(argv=None):
        require_extra("train", TRAIN_MODULES, "training")
        parser = OneLineArgumentParser(prog="python -m tfsent.x")
        add_verbose_flag(parser)
        args = parser.parse_args(argv)
        configure_logging(args.verbose)
        ...

    if __name__ == "__main__":
        sys.exit(run_cli(main))

This module imports nothing heavy: the client-only install (no TensorFlow) uses it too.

    >>> parse_bool("yes"), parse_bool("0")
    (True, False)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from tfsent.errors import fail
from tfsent.native_log import hide_tensorflow_startup_lines, show_tensorflow_startup_lines

# What the train extra adds and a command that trains or evaluates imports.
TRAIN_MODULES: tuple[str, ...] = ("tensorflow", "tf_keras", "transformers", "sklearn")
# What the serve extra adds and ``python -m tfsent.serve`` imports.
SERVE_MODULES: tuple[str, ...] = ("tensorflow", "tensorflow_text", "tensorflow_serving",
                                  "fastapi", "uvicorn", "prometheus_client")
DISTRIBUTION = "tfsent"
VERBOSE_HELP = (
    "Show the log messages of TensorFlow, absl, Hugging Face and Keras (hidden by default; "
    "errors of tfsent itself are always shown)."
)
_TRUE = {"yes", "true", "t", "y", "1", "on"}
_FALSE = {"no", "false", "f", "n", "0", "off"}
# Python-level messages every run printed although nothing is wrong: users read them as errors.
_NOISE_WARNINGS = (
    r"`seed_generator` is deprecated",  # transformers' TF generation mixin, on every model build
)


def parse_bool(text: str | bool) -> bool:
    """``argparse`` type of a boolean flag: yes/no, true/false, 1/0, on/off."""
    if isinstance(text, bool):
        return text
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_verbose_flag(parser: argparse.ArgumentParser, help_text: str = VERBOSE_HELP) -> None:
    """``--verbose``: log messages of the libraries (a plain switch, so that it never takes a
    positional argument after it for its value)."""
    parser.add_argument("--verbose", action="store_true", help=help_text)


def add_model_source_options(parser: argparse.ArgumentParser, saved_model_help: str) -> None:
    """The one required choice of the commands that score reviews: ``--server`` (TF Serving,
    or ``tfsent.serve``) or ``--saved-model`` (an export, in this process)."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--server",
        help="TF Serving address: grpc://host:8500, grpcs://..., http://host:8501 or https://...",
    )
    where.add_argument("--saved-model", help=saved_model_help)


def require_extra(extra: str, modules: Sequence[str] = TRAIN_MODULES,
                  what: str = "this command") -> None:
    """A one-line error naming the extra, and the pip command that adds it to this install
    (:func:`install_command`), when one of ``modules`` is not installed.

    >>> require_extra("train", ["json"], "training")
    >>> require_extra("train", ["no_such_module_xyz"], "training")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tfsent.errors.UserError: training needs the train extra: pip install ...[train]...
    """
    if missing_module(modules) is not None:
        fail(f"{what} needs the {extra} extra: {install_command(extra)}")


def missing_module(modules: Sequence[str]) -> str | None:
    """The first of ``modules`` that cannot be imported here (without importing any), or None.

    >>> missing_module(["json", "no_such_module_xyz"]), missing_module(["json"])
    ('no_such_module_xyz', None)
    """
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return name
    return None


def install_command(extra: str | None = None) -> str:
    """The pip command that installs ``extra`` into this install of tfsent.

    tfsent is not on PyPI yet, so ``pip install 'tfsent[train]'`` only works once it is
    published. Until then the command names where this copy came from, as pip recorded it
    (PEP 610 ``direct_url.json``): the clone (``pip install -e '.[train]'`` from inside it), the
    wheel file or the repository URL; a clone run in place, not installed, is named too.

    >>> install_command("serve").startswith("pip install ")
    True
    """
    spec = f"[{extra}]" if extra else ""
    source = _install_source()
    if source is None:  # installed from an index: what works once tfsent is published
        return f"pip install {shlex.quote(DISTRIBUTION + spec)}"
    where, editable = source
    if "://" in where:  # a VCS or archive URL
        return f"pip install {shlex.quote(f'{DISTRIBUTION}{spec} @ {where}')}"
    if Path(where).resolve() == Path.cwd().resolve():
        where = "."
    return f"pip install {'-e ' if editable else ''}{shlex.quote(where + spec)}"


def _install_source() -> tuple[str, bool] | None:
    """Where the running tfsent comes from (a path or URL, and whether to install it
    editable), or None for an index."""
    root = Path(__file__).resolve().parents[1]
    if (root / "setup.cfg").is_file():  # a clone, installed editable or run in place
        return str(root), True
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
        files = {Path(dist.locate_file(f)).resolve() for f in dist.files or ()}
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except (importlib.metadata.PackageNotFoundError, ValueError, OSError):
        return None
    if Path(__file__).resolve() not in files or not direct.get("url"):
        return None  # another copy's metadata, or installed from an index
    path = _url_path(direct["url"])
    vcs = direct.get("vcs_info", {}).get("vcs")
    url = f"{vcs}+{direct['url']}" if vcs else direct["url"]  # git+https://...
    return (str(path) if path else url), bool(direct.get("dir_info", {}).get("editable"))


def _url_path(url: str) -> Path | None:
    parsed = urlparse(url)
    return Path(unquote(parsed.path)).resolve() if parsed.scheme == "file" else None


def configure_logging(verbose: bool = False) -> None:
    """Hide the libraries' start-up chatter (unless ``verbose``); call before TensorFlow loads.

    Hidden by default: TensorFlow's C++ log (the oneDNN notice, CUDA probing, ``E0000 ...
    cuInit``, the AVX-512 note, absl's "before InitializeLog" line), the Python loggers of
    TensorFlow, absl and Hugging Face (transformers' "TensorFlow and JAX classes are
    deprecated", "All model checkpoint layers were used ...", datasets' notes), and Keras'
    ``seed_generator`` deprecation warning. Keras' progress bars are output, not logs: they stay.
    With ``verbose``, every library logs at its own default level again.
    """
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        show_tensorflow_startup_lines()
        for name in ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY"):
            os.environ.pop(name, None)
        for name in ("tensorflow", "absl", "transformers", "datasets", "tf_keras"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_warning()
        return
    # 3 hides TensorFlow's C++ INFO, WARNING and ERROR lines (FATAL still shows); on this
    # stack every ERROR line at start-up is a probe for hardware that is simply absent.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # TensorFlow >= 2.21 logs its CUDA probe through absl before any level applies.
    hide_tensorflow_startup_lines()
    os.environ["GRPC_VERBOSITY"] = "NONE"  # gRPC's C core: fork and DNS notes
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"  # read when transformers is first imported
    os.environ["DATASETS_VERBOSITY"] = "error"
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in ("tensorflow", "absl", "transformers", "datasets", "tf_keras", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # already imported: its logger level was set then
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    for pattern in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    # protobuf 6.x warns about every module generated for 5.x (TensorFlow 2.20's own and the
    # client's); they work, and the warning is for their developers, not for this user.
    warnings.filterwarnings("ignore", category=UserWarning,
                            module="google.protobuf.runtime_version")
    # A warning that is left is meant for the user: one line, without the source line.
    warnings.formatwarning = _one_line_warning


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"note: {message}\n"
