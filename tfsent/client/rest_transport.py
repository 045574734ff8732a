"""The REST side of ``SentimentClient``: TF Serving's ``/v1/models/{name}[/versions/{v}|
/labels/{l}]`` followed by ``:predict`` or ``/metadata``, over ``httpx``."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from tfsent.client.predictions import ModelMetadata, ServingError, VersionStatus
from tfsent.client.transport import ModelSpec, TlsFiles
from tfsent.signatures import TEXT_INPUT


def ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """A client TLS context trusting ``tls.root_certificates`` (the system's roots when
    ``None``), presenting ``tls.client_cert`` / ``client_key`` when given.

    >>> ssl_context(TlsFiles()).verify_mode == ssl.CERT_REQUIRED
    True
    """
    root = tls.root_certificates
    context = ssl.create_default_context(cafile=str(root) if root else None)
    if tls.client_cert:
        context.load_cert_chain(tls.client_cert, tls.client_key)
    return context


class RestTransport:
    """``rest_format`` ``"instances"`` (row) or ``"inputs"`` (columnar) predict requests to
    ``base_url``: TLS with ``tls`` (``https://``), none when ``None`` (``http://``).

    Missing or unreadable PEM files raise ``OSError`` here, before anything is sent.
    """

    def __init__(
        self,
        base_url: str,
        model: ModelSpec,
        *,
        timeout: float,
        tls: TlsFiles | None,
        headers: Mapping[str, str] | None,
        rest_format: str,
        transport: httpx.BaseTransport | None,
    ) -> None:
        self.model = model
        self.rest_format = rest_format
        # Plain http:// has no TLS to verify; httpx would still load the CA bundle (a tenth of
        # a second of every CLI call) for verify=True.
        verify: ssl.SSLContext | bool = ssl_context(tls) if tls is not None else False
        self.http = httpx.Client(
            base_url=base_url,
            headers=dict(headers or {}),
            timeout=timeout,
            verify=verify,
            transport=transport,
        )

    def _model_path(self, model: ModelSpec | None = None) -> str:
        m = model or self.model
        path = f"/v1/models/{m.name}"
        if m.version is not None:
            path += f"/versions/{m.version}"
        elif m.version_label is not None:
            path += f"/labels/{m.version_label}"
        return path

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self.http.request(method, path, json=body)
        except httpx.TimeoutException as err:
            raise ServingError("DEADLINE_EXCEEDED", f"no answer from {err.request.url}") from None
        except httpx.TransportError as err:
            raise ServingError(
                "UNAVAILABLE", str(err) or type(err).__name__, retryable=True
            ) from None
        if response.status_code != 200:
            raise ServingError(
                f"HTTP {response.status_code}",
                _error_message(response),
                retryable=response.status_code == 503,
            )
        try:
            return response.json()
        except ValueError:
            raise ServingError("INVALID_RESPONSE", "the server's reply is not JSON") from None

    def predict(self, texts: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"signature_name": self.model.signature_name}
        if self.rest_format == "instances":
            body["instances"] = [{TEXT_INPUT: t} for t in texts]
            rows = self._request("POST", self._model_path() + ":predict", body).get("predictions")
            if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
                raise ServingError("INVALID_RESPONSE", f"unexpected predictions: {rows!r:.200}")
            return {name: [row[name] for row in rows] for name in rows[0]}
        body["inputs"] = {TEXT_INPUT: texts}
        outputs = self._request("POST", self._model_path() + ":predict", body).get("outputs")
        if not isinstance(outputs, dict):
            raise ServingError("INVALID_RESPONSE", f"unexpected outputs: {outputs!r:.200}")
        return outputs

    def status(self, model: ModelSpec | None = None) -> list[VersionStatus]:
        reply = self._request("GET", self._model_path(model))
        return [
            VersionStatus(
                version=int(s["version"]),
                state=s.get("state", "UNKNOWN"),
                error_code=s.get("status", {}).get("error_code", "OK"),
                error_message=s.get("status", {}).get("error_message", ""),
            )
            for s in reply.get("model_version_status", [])
        ]

    def metadata(self) -> ModelMetadata:
        # Here, not at the top: predict() over REST needs no protos, so it does not load them.
        from google.protobuf import json_format

        from tfsent.client.protos.tensorflow_serving.apis import get_model_metadata_pb2

        reply = self._request("GET", self._model_path() + "/metadata")
        try:
            signatures = json_format.ParseDict(
                reply["metadata"]["signature_def"],
                get_model_metadata_pb2.SignatureDefMap(),
                ignore_unknown_fields=True,
            )
        except (KeyError, TypeError, json_format.ParseError) as err:
            raise ServingError("INVALID_RESPONSE", f"unexpected metadata: {err}") from None
        spec = reply.get("model_spec", {})
        return ModelMetadata(
            name=spec.get("name", self.model.name),
            version=int(spec.get("version", 0)),
            signature_defs=dict(signatures.signature_def),
        )

    def close(self) -> None:
        self.http.close()


def _error_message(response: httpx.Response) -> str:
    """TF Serving answers errors as ``{"error": "..."}``; anything else is shown as text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text.strip()
