"""The production TF Serving files in serving/ parse and agree with each other, with the export
layout and with the client's defaults."""

from __future__ import annotations

import functools
import inspect
import re
import shlex
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import yaml
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from tfsent.client import DEFAULT_MODEL_NAME, GRPC_PORT, REST_PORT, SentimentClient
from tfsent.export import OLDEST_VERIFIED_SERVING, SERVING_IMAGE
from tfsent.export import build_parser as export_parser
from tfsent.predict import build_parser
from tfsent.serve import build_parser as serve_parser

SERVING = Path(__file__).resolve().parents[2] / "serving"
REPO = SERVING.parent
REQUIRED_FLAGS = {
    "--model_config_file": "/config/models.config",
    "--batching_parameters_file": "/config/batching.config",
    "--monitoring_config_file": "/config/monitoring.config",
}


def flags(args: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) if "=" in a else (a, "") for a in args)


@functools.cache
def tf_serving_messages():
    """BatchingParameters and MonitoringConfig as declared in TF Serving's .proto files (which
    tensorflow-serving-api does not ship), so a misspelt field fails to parse as it would in the
    server."""
    file = descriptor_pb2.FileDescriptorProto(
        name="tfsent_test_serving_configs.proto", package="tfsent_test",
        dependency=["google/protobuf/wrappers.proto"], syntax="proto3",
    )
    F = descriptor_pb2.FieldDescriptorProto
    specs = {
        "BatchingParameters": [
            ("max_batch_size", F.TYPE_MESSAGE, ".google.protobuf.Int64Value", F.LABEL_OPTIONAL),
            ("batch_timeout_micros", F.TYPE_MESSAGE, ".google.protobuf.Int64Value",
             F.LABEL_OPTIONAL),
            ("max_enqueued_batches", F.TYPE_MESSAGE, ".google.protobuf.Int64Value",
             F.LABEL_OPTIONAL),
            ("num_batch_threads", F.TYPE_MESSAGE, ".google.protobuf.Int64Value",
             F.LABEL_OPTIONAL),
            ("thread_pool_name", F.TYPE_MESSAGE, ".google.protobuf.StringValue",
             F.LABEL_OPTIONAL),
            ("allowed_batch_sizes", F.TYPE_INT64, None, F.LABEL_REPEATED),
            ("pad_variable_length_inputs", F.TYPE_BOOL, None, F.LABEL_OPTIONAL),
        ],
        "PrometheusConfig": [
            ("enable", F.TYPE_BOOL, None, F.LABEL_OPTIONAL),
            ("path", F.TYPE_STRING, None, F.LABEL_OPTIONAL),
        ],
        "MonitoringConfig": [
            ("prometheus_config", F.TYPE_MESSAGE, ".tfsent_test.PrometheusConfig",
             F.LABEL_OPTIONAL),
        ],
    }
    for name, fields in specs.items():
        message = file.message_type.add(name=name)
        for number, (field, ftype, type_name, label) in enumerate(fields, start=1):
            message.field.add(name=field, number=number, type=ftype, label=label,
                              **({"type_name": type_name} if type_name else {}))
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tfsent_test.{name}"))
        for name in ("BatchingParameters", "MonitoringConfig")
    }


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((SERVING / "docker-compose.yml").read_text())["services"]["tfserving"]


def compose_image(service: dict, environ: dict[str, str]) -> str:
    """The image compose runs: its ``${VAR:-default}`` interpolated as compose does."""
    match = re.fullmatch(r"\$\{(\w+):-([^}]+)\}", service["image"])
    assert match, service["image"]
    return environ.get(match[1]) or match[2]


@pytest.fixture(scope="module")
def kustomization():
    return yaml.safe_load((SERVING / "k8s" / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def k8s():
    docs = list(yaml.safe_load_all((SERVING / "k8s" / "deployment.yaml").read_text()))
    return {doc["kind"]: doc for doc in docs}


@pytest.fixture(scope="module")
def models_config():
    return text_format.Parse(
        (SERVING / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )


def test_models_config_serves_the_export_layout(models_config, compose):
    (model,) = models_config.model_config_list.config
    assert model.name == DEFAULT_MODEL_NAME
    assert model.model_platform == "tensorflow"
    mounts = dict(v.rsplit(":", 2)[:2] for v in compose["volumes"])
    models_root = {target: src for src, target in mounts.items()}["/models"]
    # exported/<model_name>/<version>/ on the host is <base_path>/<version>/ in the container.
    assert (SERVING / models_root).resolve() == REPO / "exported"
    assert model.base_path == f"/models/{model.name}"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 2
    assert dict(model.version_labels) == {}  # labels on unloaded versions stop TF Serving


# Every file that names a TF Serving image, the repository's README included.
IMAGE_MENTIONS = [SERVING / "docker-compose.yml", SERVING / "k8s" / "kustomization.yaml",
                  SERVING / "README.md", REPO / "README.md"]
OLDEST_IMAGE = f"tensorflow/serving:{OLDEST_VERIFIED_SERVING}"


def test_one_serving_image_everywhere():
    """SERVING_IMAGE is the one name: a TF Serving release that exists, not derived from the
    installed TensorFlow; files name it, and at most the oldest verified release beside it."""
    assert SERVING_IMAGE == "tensorflow/serving:2.21.0"
    for path in IMAGE_MENTIONS:
        text = path.read_text()
        named = set(re.findall(r"tensorflow/serving:[\w.-]+", text))
        named |= {f"tensorflow/serving:{tag}" for tag in re.findall(r'newTag: "([\w.-]+)"', text)}
        assert SERVING_IMAGE in named, path
        assert named <= {SERVING_IMAGE, OLDEST_IMAGE}, path
    # The export is made with the tensorflow / tensorflow-text minor the image links.
    minor = SERVING_IMAGE.split(":")[1].split(".")[:2]
    for package in ("tensorflow", "tensorflow-text"):
        assert installed_version(package).split(".")[:2] == minor, package


def test_the_image_is_one_variable_in_compose_and_k8s(compose, kustomization, k8s):
    """An operator pinned to an older release changes one line: compose's TFSERVING_IMAGE,
    kustomize's newTag."""
    assert compose_image(compose, {}) == SERVING_IMAGE
    assert compose_image(compose, {"TFSERVING_IMAGE": OLDEST_IMAGE}) == OLDEST_IMAGE
    (image,) = kustomization["images"]
    assert f"{image['name']}:{image['newTag']}" == SERVING_IMAGE
    assert kustomization["resources"] == ["deployment.yaml"]
    (container,) = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image["name"]  # untagged: the tag is kustomize's one line


def test_compose_runs_tf_serving_with_the_configs(compose):
    assert compose_image(compose, {}) == SERVING_IMAGE
    command = flags(compose["command"])
    assert compose["ports"] == [f"{GRPC_PORT}:{GRPC_PORT}", f"{REST_PORT}:{REST_PORT}"]
    for flag, path in REQUIRED_FLAGS.items():
        assert command[flag] == path
    assert "--enable_batching" in command
    assert int(command["--file_system_poll_wait_seconds"]) > 0
    mounted = {v.split(":")[1]: SERVING / v.split(":")[0] for v in compose["volumes"]}
    for path in REQUIRED_FLAGS.values():
        assert mounted[path].resolve().is_file(), path


def test_batching_config_parses():
    batching_parameters = tf_serving_messages()["BatchingParameters"]
    config = text_format.Parse((SERVING / "batching.config").read_text(), batching_parameters())
    # CPU serving: no allowed_batch_sizes, so a lone request is not padded to a bigger batch.
    assert list(config.allowed_batch_sizes) == []
    # TF Serving refuses a request larger than max_batch_size: it must take a client chunk.
    chunk = inspect.signature(SentimentClient).parameters["chunk_size"].default
    assert config.max_batch_size.value >= chunk
    assert 0 < config.batch_timeout_micros.value <= 100_000
    assert config.num_batch_threads.value >= 1 and config.max_enqueued_batches.value >= 1
    # TF Serving pads with each tensor's first element, which would corrupt attention masks.
    assert config.pad_variable_length_inputs is False
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_sise { value: 1 }", batching_parameters())


def test_monitoring_config_parses():
    config = text_format.Parse(
        (SERVING / "monitoring.config").read_text(), tf_serving_messages()["MonitoringConfig"]()
    )
    assert config.prometheus_config.enable is True
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_k8s_deployment_matches_compose(k8s, compose):
    deployment, service = k8s["Deployment"], k8s["Service"]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels
    assert service["spec"]["selector"].items() <= pod_labels
    (container,) = pod["spec"]["containers"]
    assert SERVING_IMAGE.startswith(container["image"] + ":")
    assert container["args"] == compose["command"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": GRPC_PORT, "http": REST_PORT}
    assert {(p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        (GRPC_PORT, "grpc"), (REST_PORT, "http")}

    readiness = container["readinessProbe"]["httpGet"]
    assert readiness == {"path": f"/v1/models/{DEFAULT_MODEL_NAME}/metadata", "port": REST_PORT}
    assert container["livenessProbe"]["tcpSocket"]["port"] == GRPC_PORT
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys() <= resources["limits"].keys()

    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts["/models"]]
    configmap = volumes[mounts["/config"]]["configMap"]["name"]
    readme = (SERVING / "README.md").read_text()
    created = re.search(r"kubectl create configmap (\S+)((?:.|\\\n)*?)\n(?!\s)", readme)
    assert created and created.group(1) == configmap
    for path in REQUIRED_FLAGS.values():  # each flag's file is a key of the ConfigMap
        assert f"--from-file=serving/{Path(path).name}" in created.group(2)

    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/monitoring/prometheus/metrics"
    assert annotations["prometheus.io/port"] == str(REST_PORT)


def readme_commands(prefix: str) -> list[list[str]]:
    text = (SERVING / "README.md").read_text().replace("\\\n", " ")
    return [shlex.split(line.split("#")[0])[len(prefix.split()):]
            for line in text.splitlines() if line.strip().startswith(prefix)]


def test_readme_predict_commands_are_valid():
    commands = readme_commands("python -m tfsent.predict")
    assert {c[c.index(o) + 1] for c in commands for o in ("--server",) if o in c} == {
        f"grpc://localhost:{GRPC_PORT}", f"http://localhost:{REST_PORT}"}
    for argv in commands:
        args = build_parser().parse_args(argv)
        assert args.model_name == DEFAULT_MODEL_NAME


def test_readme_rest_requests_use_the_ports_and_model():
    text = (SERVING / "README.md").read_text()
    urls = set(re.findall(r"http://localhost:\d+/v1/models/[\w/:]+", text))
    assert f"http://localhost:{REST_PORT}/v1/models/{DEFAULT_MODEL_NAME}:predict" in urls
    assert all(u.startswith(f"http://localhost:{REST_PORT}/v1/models/{DEFAULT_MODEL_NAME}")
               for u in urls)


def test_readme_export_and_serve_commands_are_valid():
    (export,) = readme_commands("python -m tfsent.export")
    args = export_parser().parse_args(export)
    assert (args.export_dir, args.model_name) == ("exported", DEFAULT_MODEL_NAME)
    (serve,) = readme_commands("python -m tfsent.serve")
    args = vars(serve_parser().parse_args(serve))
    assert (args["model_name"], args["model_base_path"]) == (
        DEFAULT_MODEL_NAME, f"exported/{DEFAULT_MODEL_NAME}")
    assert (args["port"], args["rest_api_port"]) == (GRPC_PORT, REST_PORT)
