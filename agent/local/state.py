"""The agent's local state on disk, readable without the network.

    DATA_DIR/identity.json   agent id, token, control plane URL and TLS files,  (mode 0600)
                             environment
    DATA_DIR/state.json      what is applied and how each model is doing        (no secrets)

`state.json` is also the contract with `agent.embedded.LocalModels`: its `applied` key holds
the environment, revision and, per model, the primary and shadow entries (version, sha256, size,
format, input_schema) whose files are in `artifacts/sha256/`. Every write goes to a temp file
that is fsynced and then renamed over the old one, so a crash leaves the old or the new state,
never half of one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agent.errors import AgentError
from agent.local.datadir import IDENTITY_FILE, STATE_FILE
from common.clock import utcnow
from common.files import write_atomic
from common.schemas import ActualModel, Heartbeat, Manifest
from common.tls import TlsFiles
from common.version import package_version

log = logging.getLogger("tether.agent.state")


class StateError(AgentError):
    """The agent's local state is missing or unreadable."""


class Identity(BaseModel):
    """Who this agent is to the control plane."""

    agent_id: str
    token: str
    url: str
    environment: str
    hostname: str
    labels: dict[str, str] = Field(default_factory=dict)
    enrolled_at: datetime
    # The TLS files given at enrollment (absolute paths), used unless agent.toml names others.
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.ca_file, self.client_cert, self.client_key)


class AppliedEntry(BaseModel):
    """One artifact in place: what `LocalModels` and a restart load from the cache."""

    version: int
    sha256: str
    size: int
    format: str
    input_schema: list[dict[str, Any]] | None = None


class AppliedModel(BaseModel):
    primary: AppliedEntry
    shadow: AppliedEntry | None = None


class Applied(BaseModel):
    """What serves now; `revision` is the newest manifest applied in full."""

    environment: str
    revision: int = 0
    models: dict[str, AppliedModel] = Field(default_factory=dict)


class AgentState(BaseModel):
    """Everything the agent remembers between runs, except its secret."""

    applied: Applied | None = None
    # The newest manifest accepted (persisted before acting on it): what the agent converges
    # on, and the floor below which a manifest is refused as a rollback.
    accepted_revision: int = 0
    manifest: Manifest | None = None
    manifest_etag: str | None = None
    actual: dict[str, ActualModel] = Field(default_factory=dict)
    # Digests that served as primary per model, newest first: the cache keeps the first N.
    recent: dict[str, list[str]] = Field(default_factory=dict)
    last_poll_attempt: datetime | None = None
    last_successful_poll: datetime | None = None
    last_heartbeat: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    reachable: bool | None = None
    updated_at: datetime | None = None


class StateStore:
    """Read and write one data directory's identity and state, thread-safely."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.identity_path = self.data_dir / IDENTITY_FILE
        self.state_path = self.data_dir / STATE_FILE
        self._lock = threading.RLock()
        self._state: AgentState | None = None

    # --- identity -------------------------------------------------------------------------

    def load_identity(self) -> Identity | None:
        """Return the enrolled identity, or None if this data dir never enrolled."""
        try:
            raw = self.identity_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StateError(f"cannot read {self.identity_path}: {error}") from None
        try:
            return Identity.model_validate_json(raw)
        except ValidationError as error:
            raise StateError(f"{self.identity_path} is not a valid identity: {error}") from None

    def save_identity(self, identity: Identity) -> None:
        """Write the identity, mode 0600: it holds the agent's token."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.identity_path, identity.model_dump_json(indent=2).encode(), mode=0o600)

    # --- state ----------------------------------------------------------------------------

    def load(self) -> AgentState:
        """Return the state (read once, then kept in memory); a corrupt file is set aside."""
        with self._lock:
            if self._state is None:
                self._state = self._read()
            return self._state.model_copy(deep=True)

    def _read(self) -> AgentState:
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return AgentState()
        try:
            return AgentState.model_validate_json(raw)
        except ValidationError as error:
            # Keep the evidence, start clean: the agent re-fetches what it needs.
            aside = self.state_path.with_name(f"{STATE_FILE}.corrupt-{int(time.time())}")
            os.replace(self.state_path, aside)
            log.error(
                "state file unreadable (%d problem(s)); moved to %s and starting empty",
                error.error_count(),
                aside,
            )
            return AgentState()

    @contextlib.contextmanager
    def edit(self, *, durable: bool = True) -> Iterator[AgentState]:
        """Change the state in a block and save it atomically when the block ends.

        `durable=False` is for bookkeeping that may be lost in a crash (poll times): no fsync, and
        a write that fails (a full disk) is logged and the change kept in memory only.
        """
        with self._lock:
            state = self.load()
            yield state
            state.updated_at = utcnow()
            self._state = state
            self.data_dir.mkdir(parents=True, exist_ok=True)
            payload = state.model_dump_json(indent=1).encode()
            try:
                write_atomic(self.state_path, payload, mode=0o644, durable=durable)
            except OSError as error:
                if durable:
                    raise
                log.warning("state kept in memory only, not saved: %s", error)


def read_state_file(data_dir: Path) -> AgentState | None:
    """Read DATA_DIR/state.json for display, or None if there is none (never modifies it)."""
    path = Path(data_dir) / STATE_FILE
    try:
        return AgentState.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError, json.JSONDecodeError) as error:
        raise StateError(f"cannot read {path}: {error}") from None


def heartbeat_of(state: AgentState, hostname: str, labels: dict[str, str]) -> Heartbeat:
    """Describe the agent's actual state, as a heartbeat tells the control plane."""
    return Heartbeat(
        agent_version=package_version(),
        hostname=hostname,
        labels=labels,
        applied_revision=state.applied.revision if state.applied else 0,
        models=dict(state.actual),
    )
