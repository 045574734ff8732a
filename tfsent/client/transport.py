"""What ``SentimentClient`` hands a transport (``ModelSpec``, ``TlsFiles``) and asks of it
(``Transport``), below both transports so that neither imports the client.

``grpc_transport.GrpcTransport`` and ``rest_transport.RestTransport`` implement ``Transport``;
each builds its own TLS setup from ``TlsFiles`` (gRPC channel credentials, an
``ssl.SSLContext`` for httpx).

>>> spec = ModelSpec("tfsent", "serving_default", version=3)
>>> spec.unpinned()
ModelSpec(name='tfsent', signature_name='serving_default', version=None, version_label=None)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from tfsent.client.predictions import ModelMetadata, VersionStatus


@dataclass(frozen=True)
class ModelSpec:
    """Which model, version (or version label) and signature a request is for."""

    name: str
    signature_name: str
    version: int | None = None
    version_label: str | None = None

    def unpinned(self) -> ModelSpec:
        """The same model at no particular version (what the server has of it)."""
        return replace(self, version=None, version_label=None)

    def fill(self, spec: Any, signature: bool = True) -> None:
        """Set a ``tensorflow.serving.ModelSpec`` message to this."""
        spec.name = self.name
        if signature:
            spec.signature_name = self.signature_name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label is not None:
            spec.version_label = self.version_label


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for TLS: trusted roots (``None``: the system's), and for mutual TLS the
    client's certificate and key."""

    root_certificates: str | Path | None = None
    client_cert: str | Path | None = None
    client_key: str | Path | None = None


class Transport(Protocol):
    """One way to the server. ``predict`` returns the signature's outputs by name (arrays or
    nested lists); ``status`` is of ``model`` when given, else of the transport's own spec.
    Failures raise ``ServingError``."""

    def predict(self, texts: list[str]) -> Mapping[str, Any]: ...
    def status(self, model: ModelSpec | None = None) -> list[VersionStatus]: ...
    def metadata(self) -> ModelMetadata: ...
    def close(self) -> None: ...
