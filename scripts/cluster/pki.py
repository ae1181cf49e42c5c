"""A throwaway certificate authority: a CA, a server certificate and a client certificate.

Used by the tests and by `make cluster`, never for production (use your organisation's CA):
the CA key sits beside the certificates it signed. ECDSA P-256 keys, made in milliseconds;
private keys are written mode 0600.

    python -m scripts.cluster.pki DIR [--name tether.internal ...]

writes DIR/ca.pem, ca.key, server.pem, server.key, client.pem, client.key.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.files import write_atomic, write_secret_file

# Every server certificate names loopback, so a local cluster answers at either name.
LOOPBACK_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Issued:
    """A private key and the certificate that vouches for it."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


@dataclass(frozen=True)
class PkiFiles:
    """Where `write_pki` put each file."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def new_ca(common_name: str = "Tether throwaway CA", days: int = 30) -> Issued:
    """Make a self-signed CA that may sign leaf certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, certificate)


def issue(
    ca: Issued,
    common_name: str,
    *,
    names: Iterable[str] = (),
    client: bool = False,
    days: int = 30,
    not_after: datetime | None = None,
) -> Issued:
    """Sign a leaf certificate: a server's for `names` (DNS names or IP addresses), or a client's.

    `not_after` overrides `days` (tests make expired certificates with it).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    expires = not_after or now + timedelta(days=days)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now - timedelta(minutes=5), expires - timedelta(days=1)))
        .not_valid_after(expires)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    alternative = [_general_name(name) for name in dict.fromkeys(names)]
    if alternative:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_issued(issued: Issued, cert_path: Path, key_path: Path) -> None:
    """Write a certificate (mode 0644) and its key (mode 0600), replacing older ones."""
    write_atomic(cert_path, certificate_pem(issued.certificate), durable=False)
    write_secret_file(key_path, key_pem(issued.key), overwrite=True)


def write_pki(
    directory: Path, server_names: Iterable[str] = (), client_name: str = "tether-agent"
) -> PkiFiles:
    """Make a CA, a server certificate (loopback plus `server_names`) and a client one in
    `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = PkiFiles(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    ca = new_ca()
    names = [*LOOPBACK_NAMES, *server_names]
    write_issued(ca, files.ca_cert, files.ca_key)
    write_issued(issue(ca, names[-1], names=names), files.server_cert, files.server_key)
    write_issued(issue(ca, client_name, client=True), files.client_cert, files.client_key)
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="where to write the files")
    parser.add_argument(
        "--name", action="append", default=[], help="another name for the server, repeatable"
    )
    parser.add_argument("--client-name", default="tether-agent", help="client certificate CN")
    args = parser.parse_args(argv)
    files = write_pki(args.directory, args.name, args.client_name)
    for field, path in vars(files).items():
        print(f"{field:12} {path}")


if __name__ == "__main__":
    main()
