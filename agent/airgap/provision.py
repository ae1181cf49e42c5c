"""Provision files: an agent identity made on an operator's machine for a host with no network.

    tether agent provision ENV --out FILE   (operator machine, admin token)  -> ProvisionFile
    tether agent enroll --from-file FILE    (the site, no network)           -> identity, keys

The file holds the agent's token and private key: it is written mode 0600 and should be
deleted once the host is enrolled (agent.enrollment.enroll_from_file).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from agent.airgap.exports import OfflineError
from common.signing import PublicKey, load_private_key_pem


class ProvisionFile(BaseModel):
    """Everything an air-gapped host needs to be an agent; a secret, kept mode 0600."""

    format: Literal["tether-provision/1"] = "tether-provision/1"
    agent_id: str
    token: str
    environment: str
    url: str
    hostname: str
    labels: dict[str, str] = Field(default_factory=dict)
    private_key_pem: str = Field(description="The agent's own Ed25519 key, PKCS#8 PEM.")
    signing_keys: list[PublicKey] = Field(description="The control plane's public keys.")
    created_at: datetime


def read_provision_file(path: Path) -> ProvisionFile:
    """Read a provision file, checking that its private key is an Ed25519 key."""
    try:
        provision = ProvisionFile.model_validate_json(Path(path).read_bytes())
        load_private_key_pem(provision.private_key_pem.encode())
    except OSError as error:
        raise OfflineError(f"cannot read {path}: {error.strerror or error}") from None
    except ValidationError as error:
        raise OfflineError(
            f"{path} is not a tether provision file ({error.error_count()} problem(s))"
        ) from None
    except ValueError as error:
        raise OfflineError(f"{path}: unusable agent key: {error}") from None
    return provision
