"""gRPC over TLS with TF Serving's ``--ssl_config_file`` (an SSLConfig text proto holding PEM
texts), with certificates made here: a CA, a server certificate for localhost / 127.0.0.1 and
a client certificate, all signed by that CA.

One server has TLS only (checked with ``tfsent.client.SentimentClient`` on the tiny export), the
other also ``client_verify`` (mutual TLS, the toy model). REST stays plain HTTP, as in TF
Serving.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
from pathlib import Path

import grpc
import httpx
import pytest

from tests.server.helpers import (
    Stubs,
    grpc_error,
    needs_local,
    outputs_of,
    predict_request,
    save_toy_model,
)
from tfsent.model_server.process import start_server

pytestmark = needs_local


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _certificate(subject: str, key, issuer_key=None, issuer=None, ca=False, hosts=()):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert, cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    """PEM texts: ca, server key/cert, client key/cert; and ca.pem written to a file."""
    pytest.importorskip("cryptography")
    ca_key = _key()
    ca, ca_pem = _certificate("tfsent test CA", ca_key, ca=True)
    server_key, client_key = _key(), _key()
    _, server_pem = _certificate("localhost", server_key, ca_key, ca, hosts=True)
    _, client_pem = _certificate("a client", client_key, ca_key, ca)
    folder = tmp_path_factory.mktemp("pki")
    (folder / "ca.pem").write_text(ca_pem)
    return {
        "ca": ca_pem, "ca_file": str(folder / "ca.pem"),
        "server_key": _pem_key(server_key), "server_cert": server_pem,
        "client_key": _pem_key(client_key), "client_cert": client_pem,
    }


def ssl_config(folder: Path, pki: dict[str, str], client_verify: bool) -> Path:
    def quoted(text: str) -> str:
        return '"' + text.replace("\n", "\\n") + '"'

    path = folder / "ssl.config"
    path.write_text(
        f"server_key: {quoted(pki['server_key'])}\nserver_cert: {quoted(pki['server_cert'])}\n"
        + (f"custom_ca: {quoted(pki['ca'])}\nclient_verify: true\n" if client_verify else "")
    )
    return path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki, tiny_export):
    root = tmp_path_factory.mktemp("tls")
    shutil.copytree(tiny_export, root / "tfsent" / "1")
    args = [f"--ssl_config_file={ssl_config(root, pki, client_verify=False)}"]
    with start_server(root / "tfsent", "tfsent", args, timeout=120) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    root = tmp_path_factory.mktemp("mtls")
    save_toy_model(root / "toy" / "1")
    args = [f"--ssl_config_file={ssl_config(root, pki, client_verify=True)}"]
    with start_server(root / "toy", "toy", args, timeout=120) as server:
        yield server


def test_client_predicts_over_tls(tls_server, pki):
    from tfsent.client import SentimentClient

    port = tls_server.grpc_port
    with SentimentClient(f"grpcs://localhost:{port}", model_name="tfsent",
                         root_certificates=pki["ca_file"], retries=0, timeout=30) as client:
        (prediction,) = client.predict(["A great film, I loved it."])
    assert prediction.label in ("negative", "positive")
    assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert "Running gRPC ModelServer at 127.0.0.1:" in tls_server.log()
    assert "(TLS)" in tls_server.log()


def test_plaintext_and_unknown_ca_are_refused(tls_server, tmp_path):
    plain = Stubs(f"localhost:{tls_server.grpc_port}")
    code, _ = grpc_error(plain.predictions.Predict, predict_request(["ok"]), timeout=5)
    plain.close()
    assert code == grpc.StatusCode.UNAVAILABLE
    other_key = _key()
    _, other_ca = _certificate("another CA", other_key, ca=True)
    stranger = Stubs(f"localhost:{tls_server.grpc_port}",
                     grpc.ssl_channel_credentials(other_ca.encode()))
    code, _ = grpc_error(stranger.predictions.Predict, predict_request(["ok"]), timeout=5)
    stranger.close()
    assert code == grpc.StatusCode.UNAVAILABLE


def test_rest_stays_plain_http_on_a_tls_server(tls_server):
    reply = httpx.get(f"{tls_server.rest_url}/v1/models/tfsent", timeout=30)
    assert reply.json()["model_version_status"][0]["state"] == "AVAILABLE"


def test_client_verify_needs_a_certificate_from_the_custom_ca(mtls_server, pki):
    address = f"localhost:{mtls_server.grpc_port}"
    with_cert = Stubs(address, grpc.ssl_channel_credentials(
        pki["ca"].encode(), pki["client_key"].encode(), pki["client_cert"].encode()))
    try:
        request = predict_request(["four", ""], name="toy")
        reply = with_cert.predictions.Predict(request, timeout=30)
        assert outputs_of(reply)["length"].tolist() == [4, 0]
    finally:
        with_cert.close()
    without = Stubs(address, grpc.ssl_channel_credentials(pki["ca"].encode()))
    code, _ = grpc_error(without.predictions.Predict, predict_request(["ok"], name="toy"),
                         timeout=5)
    without.close()
    assert code == grpc.StatusCode.UNAVAILABLE
