"""Fixtures: an air-gapped site (an agent data dir that never talks to the control plane)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.airgap.bundle import ImportResult, import_bundle_file
from agent.daemon import AgentDaemon
from agent.local.state import StateStore
from agent.local.trust import TrustStore
from agent.settings import AgentSettings
from common.signing import PublicKey
from tests.support.agent_world import ENV, desire, fast_settings, identity_of

DEAD_URL = "http://127.0.0.1:9"  # nothing listens on the discard port: any attempt would fail


@dataclass
class Site:
    """An enrolled agent's data dir on a host without a network."""

    data_dir: Path
    settings: AgentSettings
    agent_id: str

    def apply(self, bundle: Path) -> ImportResult:
        return import_bundle_file(bundle, self.settings)

    def serving(self) -> dict[str, int]:
        """Start the agent as it would after the import (offline) and list what it serves."""
        daemon = AgentDaemon(self.settings, serve=False)
        try:
            daemon.reconciler.restore()
            return {name: d.primary.version for name, d in daemon.slots.snapshot().items()}
        finally:
            daemon.client.close()

    def cached(self) -> set[str]:
        folder = self.data_dir / "artifacts" / "sha256"
        return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


@pytest.fixture
def site(tmp_path: Path, enrolled: dict) -> Site:
    data_dir = tmp_path / "site"
    identity = identity_of(enrolled, url=DEAD_URL)
    settings = fast_settings(data_dir, mode="offline", url=DEAD_URL)
    StateStore(data_dir).save_identity(identity)
    TrustStore(data_dir).save([PublicKey(**key) for key in enrolled["signing_keys"]])
    return Site(data_dir=data_dir, settings=settings, agent_id=enrolled["agent_id"])


@pytest.fixture
def bundle_of(api, tmp_path: Path) -> Callable[..., Path]:
    """Export an environment's bundle from the in-process control plane to a file."""
    count = iter(range(1000))

    def export(environment: str = ENV) -> Path:
        response = api.get(f"/api/v1/environments/{environment}/bundle")
        assert response.status_code == 200, response.get_data(as_text=True)
        path = tmp_path / f"bundle-{next(count)}.tar"
        path.write_bytes(response.data)
        return path

    return export


@pytest.fixture
def at_v1(api, push, site: Site, bundle_of, wine_model_bytes, wine_v2_bytes) -> Site:
    """The site serves wine v1 from a bundle; v2 is registered and desired, not yet carried."""
    push(wine_model_bytes)
    push(wine_v2_bytes)
    desire(api, "wine", 1)
    result = site.apply(bundle_of())
    assert result.outcome is not None and result.outcome.swapped == ["wine"]
    assert site.serving() == {"wine": 1}
    desire(api, "wine", 2)
    return site


def members_of(bundle: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Read a bundle's members and their bytes (small test bundles only)."""
    with tarfile.open(bundle) as archive:
        found = []
        for member in archive.getmembers():
            reader = archive.extractfile(member)
            found.append((member, reader.read() if reader else b""))
        return found


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """Write members as given (sizes included: a header may lie about its data)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path
