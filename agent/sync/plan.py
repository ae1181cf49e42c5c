"""What a manifest asks of each model against what serves, and how that is written down.

Pure functions shared by the reconciler: whether a model is in place, the key of an attempt
(for retry pacing), the `applied` entries of state.json (the contract `agent.embedded` reads),
and which cached artifacts must be kept.
"""

from __future__ import annotations

import hmac
from typing import Any

from agent.local.state import AgentState, Applied, AppliedEntry, AppliedModel
from agent.serving.runtime import LoadedModel
from agent.serving.slots import Deployed
from common.schemas import Feature, Manifest, ManifestEntry, ManifestModel


def in_place(deployed: Deployed | None, want: ManifestModel) -> bool:
    """Tell whether `deployed` serves exactly the manifest's primary and shadow."""
    if deployed is None or not same(deployed.primary, want.primary):
        return False
    if want.shadow is None or deployed.shadow is None:
        return want.shadow is None and deployed.shadow is None
    return same(deployed.shadow, want.shadow)


def same(model: LoadedModel, entry: ManifestEntry) -> bool:
    """Tell whether a loaded model is the manifest entry's version, with its bytes."""
    return model.version == entry.version and hmac.compare_digest(
        model.sha256, entry.artifact.sha256
    )


def attempt_key(want: ManifestModel) -> tuple[Any, ...]:
    """Name what one attempt tried to deploy: a new key means a new attempt, not a retry."""
    shadow = want.shadow
    return (
        want.primary.version,
        want.primary.artifact.sha256,
        shadow.version if shadow else None,
        shadow.artifact.sha256 if shadow else None,
    )


def input_schema(entry: ManifestEntry) -> list[Feature] | None:
    """Return the entry's input schema, if the control plane sent one."""
    # ManifestEntry carries no input schema yet; take it as soon as the control plane sends one.
    schema = getattr(entry, "input_schema", None)
    if schema is None:
        return None
    return [item if isinstance(item, Feature) else Feature.model_validate(item) for item in schema]


def applied_entry(entry: ManifestEntry) -> AppliedEntry:
    """Describe a manifest entry the way state.json records what serves."""
    schema = input_schema(entry)
    return AppliedEntry(
        version=entry.version,
        sha256=entry.artifact.sha256,
        size=entry.artifact.size,
        format=entry.artifact.format.value,
        input_schema=None if schema is None else [f.model_dump(mode="json") for f in schema],
    )


def applied_model(want: ManifestModel) -> AppliedModel:
    """Describe a manifest model the way state.json records what serves."""
    return AppliedModel(
        primary=applied_entry(want.primary),
        shadow=None if want.shadow is None else applied_entry(want.shadow),
    )


def applied_from(manifest: Manifest) -> Applied:
    """Describe a manifest applied in full."""
    models = {name: applied_model(want) for name, want in manifest.models.items()}
    return Applied(environment=manifest.environment, revision=manifest.revision, models=models)


def input_examples(manifest: Manifest | None) -> dict[tuple[str, str], list[dict]]:
    """Map (model, sha256) to the version's input example, for smoke tests at start-up."""
    found: dict[tuple[str, str], list[dict]] = {}
    for name, model in manifest.models.items() if manifest else ():
        for entry in (model.primary, model.shadow):
            if entry is not None and entry.input_example:
                found[(name, entry.artifact.sha256)] = entry.input_example
    return found


def kept_digests(state: AgentState, keep_versions: int) -> set[str]:
    """Return the artifacts the cache must keep: wanted, serving, or among a model's last N."""
    keep: set[str] = set()
    if state.manifest is not None:
        for model in state.manifest.models.values():
            for entry in (model.primary, model.shadow):
                if entry is not None:
                    keep.add(entry.artifact.sha256)
                    if entry.reference_profile is not None:
                        keep.add(entry.reference_profile.sha256)
    if state.applied is not None:
        for applied in state.applied.models.values():
            keep.update(e.sha256 for e in (applied.primary, applied.shadow) if e is not None)
    for digests in state.recent.values():
        keep.update(digests[:keep_versions])
    return keep
