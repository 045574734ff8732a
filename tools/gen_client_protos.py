"""Regenerate ``tfsent/client/protos/``: TF Serving's API messages and gRPC stubs for the client.

The light client (``tfsent.client``) speaks TF Serving's gRPC API without TensorFlow or
``tensorflow-serving-api`` installed, so it carries its own generated modules. This script makes
them with ``grpcio-tools`` (protoc + the gRPC Python plugin) from the compiled
``FileDescriptorProto``s that the pinned PyPI wheels register: ``tensorflow-serving-api==2.21.0``
(built by TF Serving's maintainers from the ``tensorflow/serving`` tag ``2.21.0``) and
``tensorflow==2.21.0`` (tag ``v2.21.0``). That is the exact schema of the release the server and
the exporter use, byte for byte, with no source checkout needed.

Only the closure the client needs is generated: ``predict``, ``model``,
``get_model_metadata``, ``get_model_status``, ``model_service``, ``prediction_service`` and what
they import, plus TensorFlow's ``saved_model.proto`` (the in-process predictor reads an export's
signatures with it).

Every module is rewritten so that it (1) imports its dependencies from ``tfsent.client.protos``
and (2) registers its file in the private ``DescriptorPool`` of ``tfsent/client/protos/_pool.py``,
not the default pool: a process that also imports the real ``tensorflow`` /
``tensorflow_serving`` packages (of this or any other release) gets no "duplicate file name"
conflicts. Message and service full names stay TF Serving's (``tensorflow.serving.Predict...``),
so the wire format, gRPC method paths and ``Any`` type URLs are unchanged.

``tfsent/client/protos/_source.py`` records where every file came from (wheel, protoc).

Usage (from the repository root; the versions are the ones the committed modules were made with)::

    python -m venv /tmp/protogen && /tmp/protogen/bin/pip install grpcio-tools==1.68.1
    /tmp/protogen/bin/python tools/gen_client_protos.py --wheels-python .venv/bin/python
    # .venv has tensorflow==2.21.0 and tensorflow-serving-api==2.21.0 (pip install -e ".[serve]")

grpcio-tools 1.68.1 bundles protoc 28.1, so the modules need protobuf >= 5.28.1 (TensorFlow 2.21's
own gencode needs 5.28.3) and grpcio >= 1.68.1 at run time.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "tfsent.client.protos"
OUT_DIR = REPO / "tfsent" / "client" / "protos"
SERVING_REPOSITORY = "https://github.com/tensorflow/serving"
TENSORFLOW_REPOSITORY = "https://github.com/tensorflow/tensorflow"
ENTRY_FILES = [
    "tensorflow_serving/apis/predict.proto",
    "tensorflow_serving/apis/model.proto",
    "tensorflow_serving/apis/get_model_metadata.proto",
    "tensorflow_serving/apis/get_model_status.proto",
    "tensorflow_serving/apis/model_service.proto",
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow/core/protobuf/saved_model.proto",
]
# Proto path prefixes -> the top-level Python packages protoc names their modules after.
GENERATED_ROOTS = ("tensorflow_serving", "tensorflow", "xla")
WELL_KNOWN = "google/protobuf/"
IMPORT = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.MULTILINE)

# Run in the Python that has the wheels: the closure of ``roots`` as a FileDescriptorSet. The
# serialized FileDescriptorProto is read out of each generated module's source (the bytes literal
# it passes to ``AddSerializedFile``) without running the module: some of
# tensorflow-serving-api's modules are old gencode that newer protobuf runtimes refuse to import.
_WHEEL_SNIPPET = r"""
import ast, importlib.util, json, sys
from importlib.metadata import version
from google.protobuf import descriptor_pb2
roots = json.loads(sys.argv[1])
def serialized(name):
    module = name[: -len(".proto")].replace("/", ".") + "_pb2"
    if module.startswith("xla."):  # the tensorflow wheel ships XLA's protos here
        module = "tensorflow.compiler." + module
    tree = ast.parse(open(importlib.util.find_spec(module).origin, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            return ast.literal_eval(node.args[0])
        if isinstance(node, ast.keyword) and node.arg == "serialized_pb":  # old gencode
            value = node.value  # _b('...'): latin-1 text of the bytes
            return ast.literal_eval(value.args[0] if isinstance(value, ast.Call) else value
                                    ).encode("latin1")
    raise SystemExit(f"{module}: no serialized FileDescriptorProto found")
out = descriptor_pb2.FileDescriptorSet()
seen = set()
def add(name):
    if name in seen or name.startswith("google/protobuf/"):
        return
    seen.add(name)
    proto = descriptor_pb2.FileDescriptorProto.FromString(serialized(name))
    for dep in proto.dependency:
        add(dep)
    out.file.append(proto)
for name in roots:
    add(name)
sys.stdout.buffer.write(out.SerializeToString())
sys.stderr.write(json.dumps({"tensorflow": version("tensorflow"),
                             "tensorflow-serving-api": version("tensorflow-serving-api")}))
"""


def wheel_descriptors(python: str, roots: list[str], path: Path) -> tuple[list[str], dict]:
    """Write the FileDescriptorSet of ``roots``' closure to ``path``; its files and the wheels'
    versions."""
    from google.protobuf import descriptor_pb2

    proc = subprocess.run([python, "-c", _WHEEL_SNIPPET, json.dumps(roots)], check=True,
                          capture_output=True, env={"TF_CPP_MIN_LOG_LEVEL": "3",
                                                    "PATH": "/usr/bin:/bin"})
    path.write_bytes(proc.stdout)
    names = [f.name for f in descriptor_pb2.FileDescriptorSet.FromString(proc.stdout).file]
    return names, json.loads(proc.stderr.decode().strip().splitlines()[-1])


def run_protoc(descriptor_set: Path, files: list[str], out: Path) -> None:
    from grpc_tools import protoc

    include = Path(protoc.__file__).parent / "_proto"  # the well-known types
    args = ["grpc_tools.protoc", f"-I{include}", f"--python_out={out}",
            f"--grpc_python_out={out}", f"--descriptor_set_in={descriptor_set}"]
    if protoc.main(args + files) != 0:
        raise SystemExit("protoc failed (see above)")


def rewrite(path: Path, name: str, origin: str) -> None:
    """Imports from ``tfsent.client.protos``; the file registered in the private pool."""
    code = path.read_text(encoding="utf-8")
    roots = "|".join(GENERATED_ROOTS)
    code = re.sub(rf"^from ({roots})([. ])", rf"from {PACKAGE}.\1\2", code, flags=re.MULTILINE)
    code = re.sub(rf"^import ({roots})\b", rf"import {PACKAGE}.\1", code, flags=re.MULTILINE)
    if path.name.endswith("_pb2.py"):
        # The classes' ``__module__`` is the module they live in.
        code = re.sub(rf"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')(({roots})\.)",
                      rf"\1{PACKAGE}.\2", code)
        code, count = re.subn(r"_descriptor_pool\.Default\(\)\.AddSerializedFile\(",
                              "_POOL.AddSerializedFile(", code)
        if count != 1:
            raise SystemExit(f"{path}: expected one AddSerializedFile call, found {count}")
        marker = "# @@protoc_insertion_point(imports)\n"
        code = code.replace(marker, marker + f"from {PACKAGE}._pool import POOL as _POOL\n", 1)
    header = (f"# ruff: noqa\n# {name}, from {origin}.\n"
              "# Generated by tools/gen_client_protos.py (see tfsent/client/protos/_source.py); "
              "do not edit.\n")
    path.write_text(header + code, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels-python", required=True,
                        help="A Python with tensorflow and tensorflow-serving-api installed.")
    parser.add_argument("--version", default="2.21.0",
                        help="The release both wheels must be (checked).")
    parser.add_argument("--out", default=str(OUT_DIR))
    args = parser.parse_args(argv)

    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        descriptor_set = tmp / "descriptors.pb"
        files, versions = wheel_descriptors(args.wheels_python, ENTRY_FILES, descriptor_set)
        wrong = {k: v for k, v in versions.items() if v != args.version}
        if wrong:
            raise SystemExit(f"{args.wheels_python} has {wrong}, not {args.version}")
        generated = tmp / "out"
        generated.mkdir()
        run_protoc(descriptor_set, sorted(files), generated)

        origins = {}
        for name in sorted(files):
            wheel = ("tensorflow-serving-api" if name.startswith("tensorflow_serving/")
                     else "tensorflow")
            origins[name] = (f"the FileDescriptorProto registered by the {wheel} "
                             f"{args.version} wheel")
            module = generated / (name[: -len(".proto")] + "_pb2.py")
            rewrite(module, name, origins[name])
            stub = module.with_name(module.stem + "_grpc.py")
            if stub.is_file() and "class " in stub.read_text():
                rewrite(stub, name, origins[name])
            elif stub.is_file():
                stub.unlink()  # no services in this file: an empty stub module says nothing
        for folder in [generated, *(p for p in generated.rglob("*") if p.is_dir())]:
            if folder != generated and not (folder / "__init__.py").exists():
                (folder / "__init__.py").write_text("")

        well_known = sorted(_wheel_well_known(descriptor_set))
        (generated / "_pool.py").write_text(_pool_module(well_known), encoding="utf-8")
        (generated / "_source.py").write_text(_source_module(versions, origins),
                                              encoding="utf-8")

        for root in GENERATED_ROOTS:
            shutil.rmtree(out / root, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        for item in generated.iterdir():
            target = out / item.name
            if target.is_file():
                target.unlink()
            shutil.move(str(item), target)
    print(f"wrote {len(files)} files' modules to {out}")
    return 0


def _wheel_well_known(descriptor_set: Path) -> set[str]:
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    return {d for f in fds.file for d in f.dependency if d.startswith(WELL_KNOWN)}


def _pool_module(well_known: list[str]) -> str:
    modules = [name[len(WELL_KNOWN): -len(".proto")] + "_pb2" for name in well_known]
    return f'''# ruff: noqa
# Generated by tools/gen_client_protos.py; do not edit.
"""The private DescriptorPool every module of ``tfsent.client.protos`` registers its file in.

Not the default pool: the real ``tensorflow`` / ``tensorflow_serving`` packages register the same
file names there, possibly of another release, and a second registration would fail. The
well-known types the files import are copied in from the protobuf runtime.
"""

from google.protobuf import descriptor_pool
from google.protobuf import {", ".join(modules)}

POOL = descriptor_pool.DescriptorPool()
for _module in ({", ".join(modules)},):
    POOL.AddSerializedFile(_module.DESCRIPTOR.serialized_pb)
'''


def _source_module(versions: dict[str, str], origins: dict[str, str]) -> str:
    import importlib.metadata

    tools_version = importlib.metadata.version("grpcio-tools")
    protoc_version = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "--version"],
                                    capture_output=True, text=True).stdout.strip()
    lines = [
        "# ruff: noqa",
        "# Generated by tools/gen_client_protos.py; do not edit.",
        '"""Where the generated modules of ``tfsent.client.protos`` came from."""',
        "",
        f"SERVING = {{'wheel': 'tensorflow-serving-api=={versions['tensorflow-serving-api']}', "
        f"'tag': {versions['tensorflow-serving-api']!r}, 'repository': {SERVING_REPOSITORY!r}}}",
        f"TENSORFLOW = {{'wheel': 'tensorflow=={versions['tensorflow']}', "
        f"'tag': 'v{versions['tensorflow']}', 'repository': {TENSORFLOW_REPOSITORY!r}}}",
        f"GRPCIO_TOOLS = {tools_version!r}",
        f"PROTOC = {protoc_version!r}",
        "FILES = {",
        *(f"    {name!r}: {origin!r}," for name, origin in sorted(origins.items())),
        "}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
