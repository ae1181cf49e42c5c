"""Every path under the agent's data directory, and the lock the running agent holds on it.

DATA_DIR/identity.json     agent id, token, control-plane URL     (secret, 0600)
DATA_DIR/agent-key.pem     the agent's own Ed25519 key             (secret, 0600)
DATA_DIR/trust.json        control-plane keys this agent trusts
DATA_DIR/state.json        what is applied and how each model is doing
DATA_DIR/artifacts/        the content-addressed cache: sha256/<digest>, partial/
DATA_DIR/outbox.db         reports waiting for the control plane's acknowledgement
DATA_DIR/inbox/            bundles handed to the running agent
DATA_DIR/agent.lock        flock held by the running agent, naming its pid
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import TextIO

from agent.errors import AgentError

IDENTITY_FILE = "identity.json"
AGENT_KEY_FILE = "agent-key.pem"
TRUST_FILE = "trust.json"
STATE_FILE = "state.json"
ARTIFACTS_DIR = "artifacts"
OUTBOX_FILE = "outbox.db"
INBOX_DIR = "inbox"
LOCK_FILE = "agent.lock"


def artifacts_dir(data_dir: Path) -> Path:
    return Path(data_dir) / ARTIFACTS_DIR


def outbox_path(data_dir: Path) -> Path:
    return Path(data_dir) / OUTBOX_FILE


def inbox_dir(data_dir: Path) -> Path:
    return Path(data_dir) / INBOX_DIR


class DataDirLocked(AgentError):
    """Another process (a running agent, or an import) holds the data directory."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"{holder} holds the data dir {data_dir}")
        self.data_dir = data_dir
        self.pid = pid


class DataDirLock:
    """The flock one process holds on a data directory: two agents would fight over its state.

    Held as a context manager, or from `acquire()` until `release()` (the running agent).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._handle: TextIO | None = None

    def acquire(self) -> None:
        """Take the lock and write this process's pid into it, or raise DataDirLocked."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.data_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise DataDirLocked(self.data_dir, int(holder) if holder.isdigit() else None) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file releases the flock
            self._handle = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
