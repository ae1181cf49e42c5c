"""Which control-plane keys this agent trusts, and the agent's own key.

    DATA_DIR/trust.json      the control plane's public keys this agent trusts      (mode 0600)
    DATA_DIR/agent-key.pem   the agent's own Ed25519 private key, signs report exports (0600)

Trust starts at enrollment: the keys the control plane answered with, checked against a pinned
fingerprint (`--pin`) or taken on first use. After that, every manifest that verifies with a
trusted key replaces the set with the keys it lists (`Manifest.signing_keys`): that is how a
`tether key rotate` reaches enrolled agents without re-enrolling them. Both files are written
through a temp file and a rename, so a crash leaves the old set or the new one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ValidationError

from agent.errors import AgentError
from agent.local.datadir import AGENT_KEY_FILE, TRUST_FILE
from common.clock import utcnow
from common.files import write_atomic
from common.schemas import Manifest
from common.signing import (
    BadSignature,
    PublicKey,
    Signature,
    load_private_key_pem,
    load_public_key,
    private_key_pem,
    verify,
)

log = logging.getLogger("tether.agent.trust")


class TrustError(AgentError):
    """The trusted keys or the agent's key are missing, unreadable or refused."""


class PinMismatch(TrustError):
    """The pinned fingerprint is not among the keys the control plane answered with."""


class TrustedKeys(BaseModel):
    """The body of trust.json."""

    keys: list[PublicKey]
    updated_at: datetime | None = None


class TrustStore:
    """Read, check and replace one data directory's trusted control-plane keys."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / TRUST_FILE

    def load(self) -> list[PublicKey]:
        """Return the trusted keys; none if the agent never enrolled with signing."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise TrustError(f"cannot read {self.path}: {error}") from None
        try:
            return TrustedKeys.model_validate_json(raw).keys
        except ValidationError as error:
            raise TrustError(f"{self.path} is not a valid key list: {error}") from None

    def save(self, keys: list[PublicKey]) -> None:
        """Replace the trusted keys (each checked against its id and fingerprint)."""
        if not keys:
            raise TrustError("refusing to trust no key at all")
        for key in keys:
            load_public_key(key)  # raises BadSignature on a key that is not what it says
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = TrustedKeys(keys=keys, updated_at=utcnow())
        write_atomic(self.path, body.model_dump_json(indent=2).encode(), mode=0o600)

    def verify(self, document: Any, signatures: list[Signature]) -> str:
        """Return the id of the trusted key that signed `document`, else raise BadSignature."""
        keys = self.load()
        if not keys:
            raise BadSignature(
                f"no trusted control-plane key in {self.path}: enroll this agent again "
                "(tether agent enroll --force ...)"
            )
        return verify(document, signatures, {key.key_id: key for key in keys})

    def learn(self, manifest: Manifest) -> bool:
        """Trust the keys a verified manifest lists; return whether the set changed."""
        listed = manifest.signing_keys
        if not listed:
            return False  # a manifest naming no key leaves the trusted set as it is
        current = self.load()
        if {k.key_id for k in listed} == {k.key_id for k in current}:
            return False
        self.save(listed)
        log.warning(
            "trusted control-plane keys changed (a key rotation): now %s, was %s",
            ", ".join(k.fingerprint for k in listed),
            ", ".join(k.fingerprint for k in current) or "none",
        )
        return True


def choose_trust(offered: list[PublicKey], pin: str | None) -> list[PublicKey]:
    """Return the keys to trust at enrollment: all offered, if the pin (when given) is one."""
    if not offered:
        raise TrustError("the control plane sent no signing key: it cannot be trusted")
    for key in offered:
        try:
            load_public_key(key)
        except BadSignature as error:
            raise TrustError(f"the control plane sent a malformed key: {error}") from None
    if pin is not None:
        wanted = pin.strip()
        if wanted not in {key.fingerprint for key in offered}:
            raise PinMismatch(
                f"pinned key {wanted} is not among the control plane's keys "
                f"({', '.join(k.fingerprint for k in offered)}): wrong server, or a "
                "man in the middle"
            )
    return offered


def expired(manifest: Manifest, now: datetime, skew: float) -> bool:
    """Tell whether the manifest's validity ended, allowing `skew` seconds of clock difference."""
    return manifest.expires_at + timedelta(seconds=skew) < now


def due_for_refresh(manifest: Manifest, now: datetime) -> bool:
    """Tell whether half the manifest's lifetime has passed: time to fetch a freshly signed one.

    The control plane answers 304 while the revision stands, so without this an agent on an
    unchanged revision would hold a manifest that expires, and would not learn rotated keys.
    """
    return now >= manifest.issued_at + (manifest.expires_at - manifest.issued_at) / 2


# --- the agent's own key ----------------------------------------------------------------------


def new_agent_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def save_agent_key(data_dir: Path, key: Ed25519PrivateKey) -> Path:
    """Write the agent's private key, mode 0600."""
    path = Path(data_dir) / AGENT_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, private_key_pem(key), mode=0o600)
    return path


def load_agent_key(data_dir: Path) -> Ed25519PrivateKey:
    """Read the agent's private key, or raise TrustError naming what to do."""
    path = Path(data_dir) / AGENT_KEY_FILE
    try:
        return load_private_key_pem(path.read_bytes())
    except FileNotFoundError:
        raise TrustError(
            f"no agent key in {path}: this agent enrolled without one; enroll it again "
            "(tether agent enroll --force ...) to export reports"
        ) from None
    except (OSError, ValueError) as error:
        raise TrustError(f"cannot read the agent key {path}: {error}") from None
