"""The server's configuration files, in TF Serving's own text-proto formats.

- ``--model_config_file``: a text ``tensorflow.serving.ModelServerConfig`` (from the
  ``tensorflow-serving-api`` package), e.g. ``serving/models.config``.
- ``--batching_parameters_file``: a text ``tensorflow.serving.BatchingParameters``, and
- ``--monitoring_config_file``: a text ``tensorflow.serving.MonitoringConfig``, and
- ``--ssl_config_file``: a text ``tensorflow.serving.SSLConfig`` (PEM texts, not file names).
  Those three protos are not in the pip package, so their messages are declared here (same
  names, the fields this server implements) and parsed with protobuf's own ``text_format``,
  which gives the exact grammar and one-line errors naming the line and field.

Version folders are read with ``tfsent.versions.scan_versions`` (ASCII digits only, as TF
Serving).

::

    >>> params = parse_batching_parameters("max_batch_size { value: 32 }  # comment")
    >>> params.max_batch_size, params.batch_timeout_micros
    (32, 0)
    >>> aspired_versions(single_model_config("m", "/x").model_config_list.config[0]
    ...                  .model_version_policy, [1, 3, 2])
    {3}
    >>> parse_grpc_channel_arguments("grpc.max_receive_message_length=1024,grpc.lb_policy_name=x")
    [('grpc.max_receive_message_length', 1024), ('grpc.lb_policy_name', 'x')]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from tfsent.errors import fail, first_line
from tfsent.versions import scan_versions

ModelServerConfig = model_server_config_pb2.ModelServerConfig
# One model's entry; not tfsent.config.ModelConfig, the run's model options.
ModelConfigProto = model_server_config_pb2.ModelConfig

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
SUPPORTED_PLATFORMS = ("", "tensorflow")


def _declare_messages() -> dict[str, type]:
    """BatchingParameters and MonitoringConfig as in TF Serving's ``session_bundle_config.proto``
    and ``monitoring_config.proto``, in a private descriptor pool."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    proto = descriptor_pb2.FileDescriptorProto(
        name="tfsent/serving/tf_serving_text_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    F = descriptor_pb2.FieldDescriptorProto
    wrapped = {
        "int64": ".google.protobuf.Int64Value",
        "bool": ".google.protobuf.BoolValue",
        "string": ".google.protobuf.StringValue",
    }

    def add(message: Any, name: str, kind: str, repeated: bool = False) -> None:
        number = len(message.field) + 1
        label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
        if kind in wrapped:
            message.field.add(
                name=name, number=number, label=label, type=F.TYPE_MESSAGE, type_name=wrapped[kind]
            )
        elif kind.startswith("."):
            message.field.add(
                name=name, number=number, label=label, type=F.TYPE_MESSAGE, type_name=kind
            )
        else:
            scalar = {
                "int64_scalar": F.TYPE_INT64,
                "bool_scalar": F.TYPE_BOOL,
                "string_scalar": F.TYPE_STRING,
            }[kind]
            message.field.add(name=name, number=number, label=label, type=scalar)

    batching = proto.message_type.add(name="BatchingParameters")
    for name in (
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
    ):
        add(batching, name, "int64")
    add(batching, "thread_pool_name", "string")
    add(batching, "allowed_batch_sizes", "int64_scalar", repeated=True)
    add(batching, "pad_variable_length_inputs", "bool_scalar")
    add(batching, "enable_large_batch_splitting", "bool")
    add(batching, "max_execution_batch_size", "int64")

    prometheus = proto.message_type.add(name="PrometheusConfig")
    add(prometheus, "enable", "bool_scalar")
    add(prometheus, "path", "string_scalar")
    monitoring = proto.message_type.add(name="MonitoringConfig")
    add(monitoring, "prometheus_config", ".tensorflow.serving.PrometheusConfig")
    ssl = proto.message_type.add(name="SSLConfig")  # tensorflow_serving/config/ssl_config.proto
    for name in ("server_key", "server_cert", "custom_ca"):
        add(ssl, name, "string_scalar")
    add(ssl, "client_verify", "bool_scalar")
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        )
        for name in ("BatchingParameters", "MonitoringConfig", "SSLConfig")
    }


_MESSAGES = _declare_messages()


def _read_text(path: str | os.PathLike[str], flag: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        fail(f"cannot read {flag} {path}: {err.strerror or err}; give an existing text-proto file")


def _parse(text: str, message: Any, what: str) -> Any:
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as err:
        fail(f"bad {what}: {first_line(err)}")


# ----------------------------------------------------------------------------------------------
# Models


def single_model_config(name: str, base_path: str | os.PathLike[str]) -> Any:
    """The config ``--model_name``/``--model_base_path`` stand for: one model, latest version."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = str(base_path)
    model.model_platform = "tensorflow"
    return config


def parse_model_server_config(text: str, source: str = "--model_config_file") -> Any:
    """Parse and check a text ``ModelServerConfig`` (relative base paths resolve from the cwd)."""
    config = _parse(text, ModelServerConfig(), f"{source} (ModelServerConfig text proto)")
    return validate_model_server_config(config, source)


def validate_model_server_config(config: Any, source: str = "model server config") -> Any:
    """Check a ``ModelServerConfig`` as TF Serving does (``UserError`` naming the problem)."""
    if config.WhichOneof("config") == "custom_model_config":
        fail(f"{source}: custom_model_config is not supported; use model_config_list")
    models = config.model_config_list.config
    if not models:
        fail(f"{source} lists no model; add model_config_list {{ config {{ name: ... }} }}")
    seen: set[str] = set()
    for model in models:
        if not model.name:
            fail(f'{source}: a model config has no name; set name: "..."')
        if model.name in seen:
            fail(f"{source}: model name {model.name!r} appears twice; names must be unique")
        seen.add(model.name)
        if not model.base_path:
            fail(f"{source}: model {model.name!r} has no base_path; set it to the export folder")
        if model.model_platform not in SUPPORTED_PLATFORMS:
            fail(
                f"{source}: model {model.name!r} requested unsupported platform "
                f'{model.model_platform!r}; use model_platform: "tensorflow"'
            )
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
            fail(
                f"{source}: model {model.name!r} has a specific version policy with no "
                "versions; list them with versions: N"
            )
        model.base_path = os.path.abspath(model.base_path)
    return config


def read_model_server_config(path: str | os.PathLike[str]) -> Any:
    return parse_model_server_config(
        _read_text(path, "--model_config_file"), f"--model_config_file {path}"
    )


def aspired_versions(policy: Any, on_disk: Iterable[int]) -> set[int]:
    """The versions a ``model_version_policy`` wants served out of those on disk.

    As TF Serving's FileSystemStoragePathSource: ``latest`` (the default, ``num_versions`` at
    least 1) keeps the highest ones, ``all`` every one, ``specific`` the listed ones present.
    """
    versions = sorted(set(on_disk), reverse=True)
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(versions)
    if choice == "specific":
        return set(policy.specific.versions) & set(versions)
    keep = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    return set(versions[:keep])


def check_base_path(model: ModelConfigProto) -> None:
    """``UserError`` unless a model's base path holds a version its policy wants served."""
    base = Path(model.base_path)
    on_disk = scan_versions(base)
    if on_disk is None:
        fail(
            f"model {model.name}: base path {base} does not exist or is not a folder; "
            "export a model there (python -m tfsent.export) or fix the base path"
        )
    if not on_disk:
        fail(
            f"model {model.name}: no version folders (names of ASCII digits such as 1/) under "
            f"{base}; export a model there first (python -m tfsent.export)"
        )
    if not aspired_versions(model.model_version_policy, on_disk):
        wanted = list(model.model_version_policy.specific.versions)
        fail(
            f"model {model.name}: none of the versions {wanted} of its version policy "
            f"are under {base} (found {sorted(on_disk)}); fix model_version_policy"
        )


# ----------------------------------------------------------------------------------------------
# Batching


@dataclass(frozen=True)
class BatchingParameters:
    """Server-side batching options, with TF Serving's defaults for fields left out."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                fail(f"batching parameter {name} must be at least 1, got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            fail(
                f"batching parameter batch_timeout_micros must be >= 0, "
                f"got {self.batch_timeout_micros}"
            )
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)) or sizes[0] < 1:
                fail(f"allowed_batch_sizes must be positive and increasing, got {list(sizes)}")
            if sizes[-1] != self.execution_batch_size:
                fail(
                    f"the last entry in allowed_batch_sizes ({sizes[-1]}) must equal "
                    f"max_batch_size ({self.execution_batch_size})"
                )

    @property
    def execution_batch_size(self) -> int:
        """Largest batch actually run (``max_execution_batch_size`` when splitting is on)."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size:
            return self.max_execution_batch_size
        return self.max_batch_size


def parse_batching_parameters(
    text: str, source: str = "--batching_parameters_file"
) -> BatchingParameters:
    message = _parse(
        text, _MESSAGES["BatchingParameters"](), f"{source} (BatchingParameters text proto)"
    )
    values: dict[str, Any] = {}
    for name in (
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
        "thread_pool_name",
        "enable_large_batch_splitting",
        "max_execution_batch_size",
    ):
        if message.HasField(name):
            values[name] = getattr(message, name).value
    values["allowed_batch_sizes"] = tuple(message.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = message.pad_variable_length_inputs
    return BatchingParameters(**values)


def read_batching_parameters(path: str | os.PathLike[str]) -> BatchingParameters:
    return parse_batching_parameters(
        _read_text(path, "--batching_parameters_file"), f"--batching_parameters_file {path}"
    )


# ----------------------------------------------------------------------------------------------
# Monitoring


@dataclass(frozen=True)
class MonitoringConfig:
    prometheus_enabled: bool = False
    prometheus_path: str = DEFAULT_PROMETHEUS_PATH


def parse_monitoring_config(
    text: str, source: str = "--monitoring_config_file"
) -> MonitoringConfig:
    message = _parse(
        text, _MESSAGES["MonitoringConfig"](), f"{source} (MonitoringConfig text proto)"
    )
    prometheus = message.prometheus_config
    path = prometheus.path or DEFAULT_PROMETHEUS_PATH
    if not path.startswith("/"):
        fail(f"{source}: prometheus_config path must start with '/', got {path!r}")
    return MonitoringConfig(prometheus_enabled=prometheus.enable, prometheus_path=path)


def read_monitoring_config(path: str | os.PathLike[str]) -> MonitoringConfig:
    return parse_monitoring_config(
        _read_text(path, "--monitoring_config_file"), f"--monitoring_config_file {path}"
    )


# ----------------------------------------------------------------------------------------------
# TLS and gRPC channel arguments


@dataclass(frozen=True)
class SslConfig:
    """TF Serving's ``SSLConfig``: PEM texts of the server's key and certificate, and the CA
    that client certificates must chain to when ``client_verify``."""

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False


def parse_ssl_config(text: str, source: str = "--ssl_config_file") -> SslConfig:
    message = _parse(text, _MESSAGES["SSLConfig"](), f"{source} (SSLConfig text proto)")
    for name in ("server_key", "server_cert"):
        value = getattr(message, name)
        if "-----BEGIN" not in value:
            fail(
                f"{source}: {name} must hold the PEM text itself (-----BEGIN ...), as TF "
                "Serving's SSLConfig, not a file name"
            )
    if message.custom_ca and "-----BEGIN" not in message.custom_ca:
        fail(f"{source}: custom_ca must hold PEM text (-----BEGIN CERTIFICATE-----)")
    if message.client_verify and not message.custom_ca:
        fail(f"{source}: client_verify needs custom_ca, the CA that signs client certificates")
    _check_pem(message.server_key, message.server_cert, message.custom_ca, source)
    return SslConfig(
        message.server_key, message.server_cert, message.custom_ca, message.client_verify
    )


def _check_pem(key: str, cert: str, ca: str, source: str) -> None:
    """Load the PEM texts with the ``ssl`` module, so a bad key or certificate is one clear
    line now rather than gRPC's C++ log at bind time."""
    import ssl
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tfsent-ssl-") as folder:
        key_file, cert_file = Path(folder) / "key.pem", Path(folder) / "cert.pem"
        key_file.touch(mode=0o600)
        key_file.write_text(key)
        cert_file.write_text(cert)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, ValueError) as err:
            fail(
                f"{source}: unusable key or certificate ({err.__class__.__name__}: "
                f"{getattr(err, 'reason', None) or err}); give PEM texts of a matching "
                "private key and certificate"
            )
    if ca:
        try:
            ssl.create_default_context(cadata=ca)
        except (ssl.SSLError, ValueError) as err:
            fail(f"{source}: unusable custom_ca ({err.__class__.__name__}); give the CA's PEM text")


def read_ssl_config(path: str | os.PathLike[str]) -> SslConfig:
    return parse_ssl_config(_read_text(path, "--ssl_config_file"), f"--ssl_config_file {path}")


def parse_grpc_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """``--grpc_channel_arguments``: ``key=value`` pairs, comma-separated; values that are
    32-bit integers are passed as integers, others as strings (TF Serving's parsing)."""
    arguments: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(
                f"--grpc_channel_arguments: {item!r} is not key=value; "
                "e.g. grpc.max_concurrent_streams=100"
            )
        try:
            number = int(value)
        except ValueError:
            arguments.append((key, value))
            continue
        arguments.append((key, number) if -(2**31) <= number < 2**31 else (key, value))
    return arguments
