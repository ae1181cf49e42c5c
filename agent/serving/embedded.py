"""Predict in-process, without HTTP, from the models the agent has applied on this host.

The agent's data directory is the contract between the daemon and embedding hosts:

    DATA_DIR/state.json
        {"applied": {"environment": str, "revision": int,
                     "models": {name: {"primary": ENTRY, "shadow": ENTRY | null}}}}
        ENTRY = {"version": int, "sha256": str, "size": int, "format": str,
                 "input_schema": [{"name": str, "type": str}, ...] | null}
    DATA_DIR/artifacts/sha256/<digest>
        the artifact bytes, named by their sha256

The daemon writes `state.json` only after it verified the manifest's signature; `LocalModels`
checks each artifact's size and digest again before loading it, so a file changed on disk
since is refused rather than unpickled. Example:

    models = LocalModels("/var/lib/tether")
    models.predict("churn", [{"tenure": 3, "plan": "pro"}]).predictions
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.local.datadir import STATE_FILE, artifacts_dir
from agent.serving.runtime import (
    DEFAULT_MAX_ROWS,
    LoadedModel,
    LoadFailed,
    ModelNotFound,
    Prediction,
    load_model,
)
from agent.serving.slots import Deployed, ModelSlots
from common.digests import DigestMismatch, verify_file
from common.schemas import Feature


class LocalModels:
    """The primary models of the agent's last applied state, loaded in this process."""

    def __init__(self, data_dir: str | Path, *, max_batch_rows: int = DEFAULT_MAX_ROWS) -> None:
        self.data_dir = Path(data_dir)
        self.max_batch_rows = max_batch_rows
        self.slots = ModelSlots()
        self.environment: str | None = None
        self.revision = 0
        self._refresh_lock = threading.Lock()
        self.refresh()

    def refresh(self) -> list[str]:
        """Load what changed in the agent's state since the last call; return the names changed.

        A model that fails to load keeps its previous version serving; after trying every
        model, the failures are raised together as one LoadFailed.
        """
        with self._refresh_lock:
            applied = self._read_state()
            wanted = applied.get("models") or {}
            changed, failures = [], []
            for name, entry in sorted(wanted.items()):
                try:
                    primary = _entry(name, entry, "primary")
                    current = self.slots.get(name)
                    if current is not None and current.primary.sha256 == primary["sha256"]:
                        continue
                    self.slots.swap(name, Deployed(self._load(name, primary), None))
                    changed.append(name)
                except LoadFailed as exc:
                    failures.append(str(exc))
            for name in self.slots.names():
                if name not in wanted:
                    self.slots.remove(name)
                    changed.append(name)
            self.environment = applied.get("environment")
            self.revision = int(applied.get("revision") or 0)
            if failures:
                raise LoadFailed("; ".join(failures))
            return changed

    def names(self) -> list[str]:
        """Return the names of the loaded models."""
        return self.slots.names()

    def get(self, name: str) -> LoadedModel:
        """Return the loaded primary model `name`, or raise ModelNotFound."""
        deployed = self.slots.get(name)
        if deployed is None:
            served = ", ".join(self.slots.names()) or "none"
            raise ModelNotFound(f"unknown model {name!r} (loaded: {served})")
        return deployed.primary

    def predict(self, model: str, rows: list[dict[str, Any]]) -> Prediction:
        """Validate `rows` against the model's inputs and predict; raise InvalidInput if bad."""
        loaded = self.get(model)
        return loaded.predict(loaded.validate(rows, max_rows=self.max_batch_rows))

    def _read_state(self) -> dict[str, Any]:
        path = self.data_dir / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return {}  # the agent has applied nothing yet
        except (OSError, ValueError) as exc:
            raise LoadFailed(f"{path}: unreadable agent state: {exc}") from exc
        applied = state.get("applied") if isinstance(state, dict) else None
        if applied is None:
            return {}
        if not isinstance(applied, dict) or not isinstance(applied.get("models", {}), dict):
            raise LoadFailed(f"{path}: 'applied' is not in the documented shape")
        return applied

    def _load(self, name: str, entry: dict[str, Any]) -> LoadedModel:
        path = artifacts_dir(self.data_dir) / "sha256" / entry["sha256"]
        try:
            verify_file(path, sha256=entry["sha256"], size=entry["size"])
        except FileNotFoundError as exc:
            raise LoadFailed(f"model {name!r}: artifact {path} is missing") from exc
        except DigestMismatch as exc:
            raise LoadFailed(f"model {name!r}: refused, {exc}") from exc
        schema = entry.get("input_schema")
        try:
            features = [Feature.model_validate(f) for f in schema] if schema is not None else None
        except (TypeError, ValidationError) as exc:
            raise LoadFailed(f"model {name!r}: bad input_schema in agent state: {exc}") from exc
        return load_model(
            path,
            name=name,
            version=entry["version"],
            sha256=entry["sha256"],
            format=entry["format"],
            input_schema=features,
        )


def _entry(name: str, model: Any, role: str) -> dict[str, Any]:
    """Return one entry of the state file, or raise LoadFailed naming what is wrong."""
    entry = model.get(role) if isinstance(model, dict) else None
    required = {"version": int, "sha256": str, "size": int, "format": str}
    if not isinstance(entry, dict) or any(
        not isinstance(entry.get(key), kind) for key, kind in required.items()
    ):
        raise LoadFailed(
            f"model {name!r}: state entry {role!r} needs version, sha256, size and format"
        )
    if len(entry["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in entry["sha256"]):
        raise LoadFailed(f"model {name!r}: {entry['sha256']!r} is not a sha256 digest")
    return entry
