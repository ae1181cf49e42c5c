"""TLS for every client of the control plane: trust a private CA, present a client certificate.

Agents and the operator CLI name up to three files (`ca_file`, `client_cert`, `client_key`);
`ssl_context` checks them and returns the `ssl.SSLContext` their httpx clients verify with.
Every problem is a `TlsFilesError` naming the file and what is wrong with it, raised before any
connection is made, so a bad setting stores nothing. `describe_tls_failure` turns a handshake
that failed into a sentence that says what to pass.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from common.errors import TetherError

PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
# What a user is told to do when the server's certificate is not trusted.
CA_HINT = "pass --ca-file with the CA's certificate (or set ca_file / TETHER_CA_FILE)"
CLIENT_CERT_HINT = "pass --client-cert and --client-key (or set client_cert and client_key)"


class TlsFilesError(TetherError):
    """A CA file, client certificate or client key cannot be used."""


@dataclass(frozen=True)
class TlsFiles:
    """The files a client verifies the server with and proves itself with; None: not set."""

    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @property
    def is_default(self) -> bool:
        """Tell whether nothing is set: the system's CAs, no client certificate."""
        return self.ca_file is None and self.client_cert is None and self.client_key is None

    def absolute(self) -> TlsFiles:
        """Return the same files with absolute paths, fit to store and use from anywhere."""
        return TlsFiles(
            _absolute(self.ca_file), _absolute(self.client_cert), _absolute(self.client_key)
        )


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else Path(path).absolute()


def ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """Check `files` and return the context an httpx client verifies the server with.

    With a CA file only that CA is trusted (a private CA replaces the system's, it does not add
    to it); without one, the system's CAs are (as httpx trusts them by default).
    """
    if (files.client_cert is None) != (files.client_key is None):
        given, missing = (
            ("client_cert", "client_key")
            if files.client_key is None
            else ("client_key", "client_cert")
        )
        raise TlsFilesError(
            f"{given} is set ({files.client_cert or files.client_key}) but {missing} is not: "
            "a client certificate needs its private key, give both or neither"
        )
    if files.ca_file is not None:
        certificates = read_pem_certificates(files.ca_file, "CA file")
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
        try:
            # Given cadata, the system's CAs are not loaded: only this CA is trusted.
            context = ssl.create_default_context(cadata=pem.decode("ascii"))
        except ssl.SSLError as error:
            raise TlsFilesError(f"CA file {files.ca_file}: {error.reason or error}") from None
    else:
        context = httpx.create_ssl_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if files.client_cert is not None and files.client_key is not None:
        _load_client_certificate(context, files.client_cert, files.client_key)
    return context


def mirror_ssl_context(files: TlsFiles) -> ssl.SSLContext | None:
    """The context for a redirected artifact download (an object store's presigned URL).

    The store may be a public cloud's (the system's CAs) or an internal one signed by the
    private CA, so both are trusted; no client certificate is shown to a third party.
    None: the system's CAs, as httpx trusts them by default.
    """
    if files.ca_file is None:
        return None
    certificates = read_pem_certificates(files.ca_file, "CA file")
    context = httpx.create_ssl_context()
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    context.load_verify_locations(cadata=pem.decode("ascii"))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _load_client_certificate(context: ssl.SSLContext, cert_path: Path, key_path: Path) -> None:
    certificate = read_pem_certificates(cert_path, "client certificate")[0]
    key = read_pem_private_key(key_path)
    if _public_der(certificate.public_key()) != _public_der(key.public_key()):
        raise TlsFilesError(
            f"client key {key_path} does not match client certificate {cert_path} "
            "(it is the key of another certificate)"
        )
    expires = certificate.not_valid_after_utc
    if expires < datetime.now(UTC):
        raise TlsFilesError(
            f"client certificate {cert_path} expired on {expires:%Y-%m-%d %H:%M} UTC"
        )
    try:
        context.load_cert_chain(certfile=str(cert_path), keyfile=str(key_path))
    except (ssl.SSLError, OSError) as error:
        raise TlsFilesError(
            f"client certificate {cert_path} with key {key_path}: {_reason(error)}"
        ) from None


def read_pem_certificates(path: Path, what: str) -> list[x509.Certificate]:
    """Read one or more PEM certificates from `path`; `what` names the file in errors."""
    data = _read(path, what)
    if PEM_CERTIFICATE not in data:
        raise TlsFilesError(
            f"{what} {path} holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' line; "
            "a DER file converts with `openssl x509 -inform der -in FILE -out FILE.pem`)"
        )
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise TlsFilesError(f"{what} {path} holds a damaged PEM certificate: {error}") from None


def read_pem_private_key(path: Path) -> PrivateKeyTypes:
    """Read an unencrypted PEM private key from `path`."""
    data = _read(path, "client key")
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise TlsFilesError(
            f"client key {path} holds no PEM private key (no '-----BEGIN ... PRIVATE KEY-----' "
            "line)"
        )
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TlsFilesError(
            f"client key {path} is encrypted: give an unencrypted key, readable only by "
            "this user (mode 0600)"
        ) from None
    except ValueError as error:
        raise TlsFilesError(f"client key {path} holds a damaged PEM private key: {error}") from None
    except UnsupportedAlgorithm as error:
        raise TlsFilesError(f"client key {path} is of a kind TLS cannot use: {error}") from None


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise TlsFilesError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise TlsFilesError(f"{what} {path} is a directory, not a file") from None
    except PermissionError:
        raise TlsFilesError(f"{what} {path} is not readable by this user") from None
    except OSError as error:
        raise TlsFilesError(f"{what} {path} cannot be read: {_reason(error)}") from None


def _public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]  # every key type has it
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def describe_tls_failure(error: BaseException) -> str | None:
    """Say what went wrong in a TLS handshake behind `error`, and what to pass; None if none.

    httpx raises its own ConnectError with the `ssl` error as the cause, so the chain is walked.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            detail = current.verify_message or current.reason or "not trusted"
            return (
                f"TLS: certificate verify failed: {detail}; the server's certificate is not "
                f"signed by a CA this client trusts: if it uses a private CA, {CA_HINT}"
            )
        text = str(current)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return f"TLS: certificate verify failed ({text}); if it uses a private CA, {CA_HINT}"
        if "CERTIFICATE_REQUIRED" in text or "ALERT_BAD_CERTIFICATE" in text:
            return (
                "TLS: the server requires a client certificate it trusts "
                f"({text}); {CLIENT_CERT_HINT}"
            )
        current = current.__cause__ or current.__context__
    return None
