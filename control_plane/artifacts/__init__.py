"""Artifact stores: where uploaded artifacts and reference profiles live, by sha256 digest.

What belongs here: the `artifact_store` setting's parser (`location.py`), the interface every
store offers (`store.py`), the directory store (`files.py`) and the S3 store (`s3.py`, boto3
imported only when used). What never does: HTTP (the API turns a store's answers into
responses) and the registry (which digests exist is the database's business).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_plane.artifacts.files import DirectoryStore
from control_plane.artifacts.location import (
    ArtifactLocation,
    BadArtifactStore,
    DirectoryLocation,
    S3Location,
    parse_artifact_store,
)
from control_plane.artifacts.store import (
    ArtifactMissing,
    ArtifactStore,
    ArtifactStoreError,
    ArtifactStoreUnavailable,
    Upload,
)

if TYPE_CHECKING:
    from control_plane.settings import ControlPlaneSettings

__all__ = [
    "ArtifactLocation",
    "ArtifactMissing",
    "ArtifactStore",
    "ArtifactStoreError",
    "ArtifactStoreUnavailable",
    "BadArtifactStore",
    "DirectoryLocation",
    "DirectoryStore",
    "S3Location",
    "Upload",
    "open_artifact_store",
    "parse_artifact_store",
]


def open_artifact_store(settings: ControlPlaneSettings) -> ArtifactStore:
    """Return the store the settings name (no connection is made until it is used)."""
    location = settings.artifact_location
    if isinstance(location, DirectoryLocation):
        return DirectoryStore(location.path)
    from control_plane.artifacts.s3 import S3Store

    return S3Store(
        location,
        endpoint_url=settings.artifact_store_endpoint,
        region=settings.artifact_store_region,
        presign=settings.artifact_presign,
        presign_ttl=settings.artifact_presign_ttl,
    )
