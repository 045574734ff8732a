"""Serve exported models with TensorFlow Serving's gRPC and REST APIs, without TF Serving.

Takes ``tensorflow_model_server``'s flags (``--flag=value`` or ``--flag value``) for what it
implements, so the same command line works with the real server in production::

    python -m tfsent.serve --model_name=tfsent --model_base_path=exported/tfsent
    python -m tfsent.serve --model_config_file=serving/models.config --enable_batching \\
        --batching_parameters_file=serving/batching.config \\
        --monitoring_config_file=serving/monitoring.config --rest_api_port=8501

gRPC on ``--port`` (8500), REST on ``--rest_api_port`` (8501; 0 turns it off). SIGTERM or
Ctrl-C drains in-flight requests and exits 0. See ``tfsent.model_server.server``.
"""

from __future__ import annotations

import argparse
import sys

from tfsent.errors import OneLineArgumentParser, run_cli
from tfsent.model_server.server import ServerOptions, serve

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    defaults = ServerOptions()
    parser = OneLineArgumentParser(
        prog="python -m tfsent.serve",
        description="A TensorFlow-Serving-compatible model server (gRPC + REST) for development "
        "and tests; flags as tensorflow_model_server's.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    def flag(name: str, type_: type, default: object, help_: str) -> None:
        parser.add_argument(f"--{name}", type=type_, default=default, help=help_)

    def switch(name: str, default: bool, help_: str) -> None:
        # `--flag`, `--flag=true|false` or `--flag true|false`, as TF Serving's bool flags.
        parser.add_argument(
            f"--{name}",
            type=_bool,
            nargs="?",
            const=True,
            default=default,
            metavar="BOOL",
            help=help_,
        )

    flag("port", int, defaults.port, "gRPC port")
    flag("rest_api_port", int, defaults.rest_api_port, "REST port (0 turns the REST API off)")
    flag("host", str, defaults.host, "address to listen on (tfsent extension; TF Serving: all)")
    flag("model_name", str, defaults.model_name, "name of the model (with --model_base_path)")
    flag("model_base_path", str, None, "folder holding the model's integer version folders")
    flag(
        "model_config_file",
        str,
        None,
        "text-format ModelServerConfig (model_config_list: names, base paths, version policies, "
        "version labels), instead of --model_name/--model_base_path",
    )
    flag(
        "model_config_file_poll_wait_seconds",
        float,
        defaults.model_config_file_poll_wait_seconds,
        "re-read --model_config_file this often (seconds; 0: never)",
    )
    flag(
        "file_system_poll_wait_seconds",
        float,
        defaults.file_system_poll_wait_seconds,
        "look for new model versions this often (seconds; 0: only at startup)",
    )
    switch(
        "enable_batching",
        defaults.enable_batching,
        "merge concurrent requests into batches (server-side batching)",
    )
    flag(
        "batching_parameters_file",
        str,
        None,
        "text-format BatchingParameters (max_batch_size, batch_timeout_micros, "
        "num_batch_threads, max_enqueued_batches, allowed_batch_sizes)",
    )
    flag(
        "monitoring_config_file",
        str,
        None,
        "text-format MonitoringConfig; prometheus_config { enable: true } serves metrics on "
        "the REST port",
    )
    flag(
        "rest_api_num_threads",
        int,
        defaults.rest_api_num_threads,
        "REST requests processed at once",
    )
    flag("grpc_max_threads", int, defaults.grpc_max_threads, "gRPC requests processed at once")
    switch(
        "allow_version_labels_for_unavailable_models",
        defaults.allow_version_labels_for_unavailable_models,
        "allow version_labels on versions that are not loaded (yet)",
    )
    switch(
        "enable_model_warmup",
        defaults.enable_model_warmup,
        "replay assets.extra/tf_serving_warmup_requests before serving a version",
    )
    flag(
        "num_request_iterations_for_warmup",
        int,
        defaults.num_request_iterations_for_warmup,
        "times each warmup request is replayed",
    )
    flag(
        "saved_model_tags",
        str,
        defaults.saved_model_tags,
        "comma-separated tags of the MetaGraph to load",
    )
    flag(
        "tensorflow_intra_op_parallelism",
        int,
        defaults.tensorflow_intra_op_parallelism,
        "threads within one op (0: TensorFlow's choice)",
    )
    flag(
        "tensorflow_inter_op_parallelism",
        int,
        defaults.tensorflow_inter_op_parallelism,
        "ops run at once (0: TensorFlow's choice)",
    )
    flag(
        "shutdown_grace_seconds",
        float,
        defaults.shutdown_grace_seconds,
        "on SIGTERM, wait this long for in-flight requests (tfsent extension)",
    )
    return parser


def parse_options(argv: list[str] | None = None) -> ServerOptions:
    args = build_parser().parse_args(argv)
    return ServerOptions(**vars(args))


def main(argv: list[str] | None = None) -> int:
    return serve(parse_options(argv))


if __name__ == "__main__":
    sys.exit(run_cli(main))
