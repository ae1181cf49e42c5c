"""common/tls.py: the files a client trusts and presents, every bad one named, and handshake
failures told in words."""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.tls import TlsFiles, TlsFilesError, describe_tls_failure, ssl_context
from scripts.cluster.pki import PkiFiles, certificate_pem, issue, new_ca, write_issued


def test_the_keys_are_private_and_the_server_names_loopback(pki):
    assert all(
        os.stat(path).st_mode & 0o777 == 0o600
        for path in (pki.ca_key, pki.server_key, pki.client_key)
    )
    from cryptography import x509

    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]


def test_good_files_make_a_context(pki):
    context = ssl_context(TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # the private CA only, not the system's
    assert ssl_context(TlsFiles()).get_ca_certs() != context.get_ca_certs()


def bad_inputs(tmp: Path, pki: PkiFiles) -> dict[str, tuple[TlsFiles, str]]:
    """Each bad input: the files, and what the error must say."""
    (tmp / "empty.pem").write_bytes(b"")
    (tmp / "der.crt").write_bytes(b"\x30\x82\x01\x0a" + os.urandom(64))
    (tmp / "damaged.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    )
    (tmp / "u.pem").write_bytes(pki.ca_cert.read_bytes())
    (tmp / "u.pem").chmod(0)
    (tmp / "bad.key").write_text(
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    )
    from cryptography.hazmat.primitives import serialization

    from scripts.cluster.pki import Issued

    ca = new_ca()
    other = issue(ca, "other", client=True)
    write_issued(other, tmp / "other.pem", tmp / "other.key")
    encrypted = other.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp / "e.key").write_bytes(encrypted)
    old = issue(ca, "old", client=True, not_after=datetime.now(UTC) - timedelta(days=1))
    write_issued(Issued(old.key, old.certificate), tmp / "old.pem", tmp / "old.key")
    cert, key = pki.client_cert, pki.client_key
    other_cert, other_key = tmp / "other.pem", tmp / "other.key"
    return {
        "missing CA": (TlsFiles(tmp / "nope.pem"), "does not exist", tmp / "nope.pem"),
        "CA is a directory": (TlsFiles(tmp), "is a directory", tmp),
        "empty CA": (TlsFiles(tmp / "empty.pem"), "holds no PEM certificate", tmp / "empty.pem"),
        "DER CA": (TlsFiles(tmp / "der.crt"), "openssl x509 -inform der", tmp / "der.crt"),
        "damaged CA": (TlsFiles(tmp / "damaged.pem"), "damaged PEM", tmp / "damaged.pem"),
        "key as CA": (TlsFiles(key), "holds no PEM certificate", key),
        "unreadable CA": (TlsFiles(tmp / "u.pem"), "not readable by this user", tmp / "u.pem"),
        "cert without key": (TlsFiles(None, cert), "client_key is not", cert),
        "key without cert": (TlsFiles(None, None, key), "client_cert is not", key),
        "missing key": (TlsFiles(None, cert, tmp / "k.pem"), "does not exist", tmp / "k.pem"),
        "cert as key": (TlsFiles(None, cert, cert), "holds no PEM private key", cert),
        "damaged key": (TlsFiles(None, cert, tmp / "bad.key"), "damaged PEM", tmp / "bad.key"),
        "encrypted key": (TlsFiles(None, other_cert, tmp / "e.key"), "encrypted", tmp / "e.key"),
        "key of another cert": (TlsFiles(None, cert, other_key), "does not match", other_key),
        "expired cert": (
            TlsFiles(None, tmp / "old.pem", tmp / "old.key"),
            "expired on",
            tmp / "old.pem",
        ),
        "key as cert": (TlsFiles(None, key, key), "holds no PEM certificate", key),
    }


CASES = [
    "missing CA", "CA is a directory", "empty CA", "DER CA", "damaged CA", "key as CA",
    "unreadable CA", "cert without key", "key without cert", "missing key", "cert as key",
    "damaged key", "encrypted key", "key of another cert", "expired cert", "key as cert",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_files_are_named_with_what_is_wrong(case, tmp_path, pki):
    files, expected, bad_file = bad_inputs(tmp_path, pki)[case]
    if case == "unreadable CA" and os.geteuid() == 0:
        pytest.skip("root reads any file")
    with pytest.raises(TlsFilesError) as raised:
        ssl_context(files)
    assert expected in str(raised.value) and str(bad_file) in str(raised.value)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    noise=st.binary(max_size=300),
    text=st.text(max_size=300),
    header=st.sampled_from(
        [b"", b"-----BEGIN CERTIFICATE-----\n", b"-----BEGIN PRIVATE KEY-----\n"]
    ),
)
def test_any_bytes_either_load_or_are_refused_in_words(tmp_path, noise, text, header):
    path = tmp_path / "fuzz.pem"
    path.write_bytes(header + noise + text.encode() + b"\n-----END CERTIFICATE-----\n")
    for files in (TlsFiles(path), TlsFiles(None, path, path)):
        with pytest.raises(TlsFilesError, match=r"fuzz\.pem"):
            ssl_context(files)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=st.text(max_size=200).filter(lambda s: "-----" not in s), after=st.text(max_size=200))
def test_a_pem_certificate_loads_whatever_text_surrounds_it(tmp_path, pki, before, after):
    if "-----BEGIN" in after:
        after = ""
    path = tmp_path / "bundle.pem"
    certificate = pki.ca_cert.read_bytes()
    path.write_bytes(before.encode() + b"\n" + certificate + after.encode() + b"\n")
    assert len(ssl_context(TlsFiles(path)).get_ca_certs()) == 1


# --- handshakes against a real TLS server on loopback -----------------------------------------


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def tls_server(pki: PkiFiles, require_client_cert: bool) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca_cert)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def https_url(pki) -> Iterator[str]:
    yield from tls_server(pki, require_client_cert=False)


@pytest.fixture
def mutual_url(pki) -> Iterator[str]:
    yield from tls_server(pki, require_client_cert=True)


def test_an_untrusted_server_is_described_with_the_option_to_pass(https_url, pki):
    with pytest.raises(httpx.ConnectError) as raised:
        httpx.get(https_url, verify=ssl_context(TlsFiles()))
    described = describe_tls_failure(raised.value)
    assert described is not None
    assert "certificate verify failed" in described and "pass --ca-file" in described
    assert httpx.get(https_url, verify=ssl_context(TlsFiles(pki.ca_cert))).text == "ok"


def test_a_missing_client_certificate_is_described(mutual_url, pki):
    with pytest.raises(httpx.TransportError) as raised:
        httpx.get(mutual_url, verify=ssl_context(TlsFiles(pki.ca_cert)))
    described = describe_tls_failure(raised.value)
    assert described is not None and "--client-cert" in described, raised.value
    with_cert = ssl_context(TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key))
    assert httpx.get(mutual_url, verify=with_cert).text == "ok"


def test_other_failures_are_not_tls_ones():
    assert describe_tls_failure(httpx.ConnectError("connection refused")) is None


def test_the_certificate_pem_round_trips():
    ca = new_ca()
    assert certificate_pem(ca.certificate).startswith(b"-----BEGIN CERTIFICATE-----")
