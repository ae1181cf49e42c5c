"""The control plane's signing keys: created on first start, rotated without re-enrolling agents.

`DATA_DIR/keys/` holds one PEM file per private key (mode 0600) and `keyring.json`, which lists
the keys that sign, newest first. After `rotate()`, manifests are signed by the new key and the
previous one; they also list both public keys, so an agent that trusts the old key verifies the
manifest and learns the new key from it.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.files import write_secret_file
from common.signing import (
    PublicKey,
    Signature,
    describe,
    load_private_key_pem,
    private_key_pem,
    sign,
)

KEEP_SIGNING = 2  # the new key and the one before it, so no enrolled agent is left behind


@dataclass(frozen=True)
class SigningKeys:
    """The keys that sign right now, and a tag that changes whenever they do."""

    private: list[Ed25519PrivateKey]
    public: list[PublicKey]
    tag: str

    def sign(self, document: Any) -> list[Signature]:
        return [sign(key, document) for key in self.private]


class KeyRing:
    """Load, create and rotate the signing keys in a directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.index = directory / "keyring.json"
        self._lock = threading.Lock()
        self._loaded: tuple[float, SigningKeys] | None = None

    def ensure(self) -> bool:
        """Create the first key if there is none; return whether one was created."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.index.exists():
            return False
        # Replicas sharing this directory may start at once: the index is linked into place,
        # so one first key wins and every replica signs with it.
        key = Ed25519PrivateKey.generate()
        key_id = describe(key.public_key()).key_id
        write_secret_file(self.directory / f"ed25519-{key_id}.pem", private_key_pem(key))
        aside = self.directory / f".keyring.{os.getpid()}.{key_id}"
        aside.write_text(json.dumps({"signing": [key_id]}, indent=2))
        try:
            os.link(aside, self.index)
        except FileExistsError:
            (self.directory / f"ed25519-{key_id}.pem").unlink()
            return False
        finally:
            aside.unlink()
        return True

    def rotate(self) -> PublicKey:
        """Make a new signing key; the previous one keeps co-signing so agents follow.

        Under an exclusive lock on the directory: two rotations at once (from two hosts
        sharing the secrets dir) each read the key list the other wrote, and neither is lost.
        """
        with open(self.directory / ".rotate.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ids = self._ids()
            return self._add_key(ids)

    def current(self) -> SigningKeys:
        """Return the signing keys, re-read when `tether key rotate` changed them."""
        mtime = self.index.stat().st_mtime
        loaded = self._loaded
        if loaded is not None and loaded[0] == mtime:
            return loaded[1]
        with self._lock:
            ids = self._ids()[:KEEP_SIGNING]
            private = [
                load_private_key_pem((self.directory / f"ed25519-{key_id}.pem").read_bytes())
                for key_id in ids
            ]
            keys = SigningKeys(
                private=private,
                public=[describe(key.public_key()) for key in private],
                tag=ids[0][:8] + (f"+{len(ids) - 1}" if len(ids) > 1 else ""),
            )
            self._loaded = (mtime, keys)
            return keys

    def _ids(self) -> list[str]:
        return list(json.loads(self.index.read_text())["signing"])

    def _add_key(self, previous: list[str]) -> PublicKey:
        key = Ed25519PrivateKey.generate()
        described = describe(key.public_key())
        write_secret_file(self.directory / f"ed25519-{described.key_id}.pem", private_key_pem(key))
        temporary = self.index.with_name(f".keyring.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"signing": [described.key_id, *previous]}, indent=2))
        os.replace(temporary, self.index)
        return described
