"""Ed25519 signatures over canonical JSON: how agents know a manifest or bundle is genuine.

The signed bytes are the canonical JSON of the document as received (sorted keys, no spaces,
UTF-8), so signer and verifier never depend on how either side's models serialise.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel


class BadSignature(ValueError):
    """No signature from a trusted key verifies the document."""


class PublicKey(BaseModel):
    """A signing key as agents pin it."""

    key_id: str
    public_key: str  # base64 of the raw 32-byte Ed25519 key
    fingerprint: str


class Signature(BaseModel):
    key_id: str
    signature: str  # base64 of the 64-byte Ed25519 signature


def canonical_json(value: Any) -> bytes:
    """Serialise JSON data one way only: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(raw: bytes) -> str:
    """Name a public key the way people compare them: SHA256:<base64 of its sha256>."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def describe(key: Ed25519PublicKey) -> PublicKey:
    """Return the shareable description of a public key."""
    raw = raw_public_key(key)
    return PublicKey(
        key_id=hashlib.sha256(raw).hexdigest()[:16],
        public_key=base64.b64encode(raw).decode(),
        fingerprint=fingerprint(raw),
    )


def load_public_key(described: PublicKey) -> Ed25519PublicKey:
    """Rebuild a public key, refusing one whose id or fingerprint does not match its bytes."""
    try:
        raw = base64.b64decode(described.public_key, validate=True)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as error:
        raise BadSignature(f"malformed public key {described.key_id}: {error}") from None
    if describe(key) != described:
        raise BadSignature(f"public key {described.key_id} does not match its id or fingerprint")
    return key


def sign(private: Ed25519PrivateKey, document: Any) -> Signature:
    """Sign the canonical JSON of `document`."""
    return Signature(
        key_id=describe(private.public_key()).key_id,
        signature=base64.b64encode(private.sign(canonical_json(document))).decode(),
    )


def verify(document: Any, signatures: list[Signature], trusted: dict[str, PublicKey]) -> str:
    """Return the id of a trusted key whose signature verifies `document`, else raise."""
    if not signatures:
        raise BadSignature("the document is not signed")
    payload = canonical_json(document)
    unknown = []
    for signature in signatures:
        described = trusted.get(signature.key_id)
        if described is None:
            unknown.append(signature.key_id)
            continue
        try:
            load_public_key(described).verify(base64.b64decode(signature.signature), payload)
        except (InvalidSignature, ValueError):
            continue
        return signature.key_id
    if unknown and len(unknown) == len(signatures):
        raise BadSignature(f"signed only by untrusted key(s): {', '.join(unknown)}")
    raise BadSignature("no signature verifies: the document was altered or the signature forged")


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_pem(data: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key
