"""Serve exported models with TensorFlow Serving's gRPC and REST APIs, without TF Serving.

Takes ``tensorflow_model_server``'s flags (``--flag=value`` or ``--flag value``; booleans also
as ``--flag``, ``--flag=true|false``) for what it implements, so the same command line works
with the real server in production::

    python -m tfsent.serve --model_name=tfsent --model_base_path=exported/tfsent
    python -m tfsent.serve --model_config_file=serving/models.config --enable_batching \\
        --batching_parameters_file=serving/batching.config \\
        --monitoring_config_file=serving/monitoring.config --rest_api_port=8501

gRPC on ``--port`` (8500), REST on ``--rest_api_port`` (8501; 0 turns it off), on 127.0.0.1
unless ``--host`` says otherwise. SIGTERM or Ctrl-C drains in-flight requests and exits 0. The
flags are the fields of ``tfsent.model_server.server.ServerOptions``, with their help::

    >>> options = parse_options(["--model_base_path=exported/tfsent", "--enable_batching",
    ...                          "--enable_model_warmup=false", "--max_num_load_retries", "2"])
    >>> options.enable_batching, options.enable_model_warmup, options.max_num_load_retries
    (True, False, 2)
    >>> options.host, options.load_retry_interval_micros
    ('127.0.0.1', 60000000)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any

from tfsent.cli import (
    SERVE_MODULES,
    add_verbose_flag,
    configure_logging,
    parse_bool,
    require_extra,
)
from tfsent.errors import OneLineArgumentParser, run_cli
from tfsent.model_server.server import ServerOptions, serve


class ServeArgumentParser(OneLineArgumentParser):
    """The flags are tensorflow_model_server's, spelled with underscores; a dashed spelling
    (``--model-base-path``), which other tfsent CLIs use, gets an error naming the right one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.flags: set[str] = set()  # filled by add_argument, which argparse's __init__ calls
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.flags.update(action.option_strings)
        return action

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = super().parse_known_args(args, namespace)
        for arg in extras:
            flag = arg.split("=", 1)[0]
            spelled = "--" + flag.removeprefix("--").replace("-", "_")
            if flag.startswith("--") and spelled != flag and spelled in self.flags:
                self.error(
                    f"unrecognized argument {flag}: did you mean {spelled}? (the flags are "
                    "tensorflow_model_server's, spelled with underscores)"
                )
        return parsed, extras


def _with_default(help_text: str, value: Any) -> str:
    """The flag's help with its default, as TF Serving writes it (``true``, not ``True``);
    none for an unset default or one the help already states."""
    if value is None or value == "" or "(default" in help_text:
        return help_text
    shown = str(value).lower() if isinstance(value, bool) else value
    return f"{help_text} (default: {shown})"


def build_parser() -> argparse.ArgumentParser:
    """One flag per ``ServerOptions`` field: its name, type, default and help.

    >>> build_parser().parse_args(["--model-base-path", "m"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tfsent.errors.UserError: unrecognized argument --model-base-path: ... --model_base_path? ...
    """
    parser = ServeArgumentParser(
        prog="python -m tfsent.serve",
        description="A TensorFlow-Serving-compatible model server (gRPC + REST) for development "
        "and tests; flags as tensorflow_model_server's.",
    )
    hints = typing.get_type_hints(ServerOptions)
    defaults = ServerOptions()
    for field in dataclasses.fields(ServerOptions):
        kind = hints[field.name]
        default = getattr(defaults, field.name)
        help_text = _with_default(field.metadata.get("help", ""), default)
        if kind is bool:
            # `--flag`, `--flag=true|false` or `--flag true|false`, as TF Serving's bool flags.
            parser.add_argument(
                f"--{field.name}",
                type=parse_bool,
                nargs="?",
                const=True,
                default=default,
                metavar="BOOL",
                help=help_text,
            )
            continue
        args = typing.get_args(kind)
        value_type = next(a for a in args if a is not type(None)) if args else kind
        parser.add_argument(
            f"--{field.name}",
            type=value_type,
            default=default,
            metavar=value_type.__name__.upper(),
            help=help_text,
        )
    add_verbose_flag(parser)
    return parser


def parse_options(argv: list[str] | None = None) -> ServerOptions:
    args = vars(build_parser().parse_args(argv))
    args.pop("verbose")
    return ServerOptions(**args)


def main(argv: list[str] | None = None) -> int:
    require_extra("serve", SERVE_MODULES, "the model server")
    args = vars(build_parser().parse_args(argv))
    configure_logging(args.pop("verbose"))
    return serve(ServerOptions(**args))


if __name__ == "__main__":
    sys.exit(run_cli(main))
