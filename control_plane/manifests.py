"""Build an agent's manifest from its environment's desired state, and its poll hint."""

from __future__ import annotations

from datetime import datetime, timedelta

from common.clock import utcnow
from common.schemas import Manifest, ManifestEntry, ManifestModel, ModelVersion, SignedManifest
from control_plane.keys import SigningKeys
from control_plane.settings import ControlPlaneSettings
from control_plane.store import Store


def build_manifest(
    store: Store, environment: str, keys: SigningKeys, ttl_seconds: int
) -> SignedManifest | None:
    """Return the signed manifest of an environment at its current revision."""
    desired = store.environments.desired(environment)
    if desired is None:
        return None
    models: dict[str, ManifestModel] = {}
    for name, entry in desired.models.items():
        primary = store.registry.get_version(name, entry.version)
        shadow = None if entry.shadow is None else store.registry.get_version(name, entry.shadow)
        assert primary is not None  # versions are never deleted
        models[name] = ManifestModel(
            primary=_entry(primary), shadow=None if shadow is None else _entry(shadow)
        )
    issued = utcnow()
    manifest = Manifest(
        environment=environment,
        revision=desired.revision,
        issued_at=issued,
        expires_at=issued + timedelta(seconds=ttl_seconds),
        models=models,
        signing_keys=keys.public,
    )
    document = manifest.model_dump(mode="json")
    # poll_after is set by the caller: it is advice, outside what is signed.
    return SignedManifest(manifest=manifest, signatures=keys.sign(document), poll_after=0)


def _entry(version: ModelVersion) -> ManifestEntry:
    return ManifestEntry(
        version=version.version,
        artifact=version.artifact,
        reference_profile=version.reference_profile,
        input_schema=version.input_schema,
        input_example=version.input_example,
    )


def poll_hint(
    settings: ControlPlaneSettings,
    updated_at: datetime,
    lagging_agents: int,
    now: datetime | None = None,
) -> int:
    """Seconds until the next poll: short while a change rolls out, long when idle."""
    age = (now or utcnow()) - updated_at
    if lagging_agents and age < timedelta(seconds=settings.rollout_window):
        return settings.rollout_poll_interval
    if age > timedelta(seconds=settings.idle_after):
        return settings.idle_poll_interval
    return settings.poll_interval


def manifest_etag(revision: int, keys_tag: str) -> str:
    """Name a manifest version for If-None-Match: the revision and the signing keys.

    A key rotation changes the tag, so agents fetch the newly co-signed manifest at once and
    learn the new key, without waiting for the next desired-state change.
    """
    return f"r{revision}.{keys_tag}"
