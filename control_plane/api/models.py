"""Models and versions: upload, list, show, patch, download the artifact."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request
from pydantic import ValidationError

from common.drift import ReferenceProfile
from common.names import check_name
from common.schemas import (
    Artifact,
    Deployment,
    ModelDetail,
    ModelList,
    ModelVersion,
    ProfileRef,
    Role,
    VersionList,
    VersionMetadata,
    VersionPatch,
)
from control_plane.api.artifact_responses import blob_response
from control_plane.api.routing import check_form_parts, operation, parse_body, validate_json
from control_plane.auth import ADMIN, ARTIFACT_READERS, READERS
from control_plane.context import get_store, settings, state
from control_plane.errors import NotFound, Unprocessable, invalid_input
from control_plane.uploads import keep_upload

bp = Blueprint("models", __name__, url_prefix="/api/v1")
TAG = "models"
MAX_PROFILE_BYTES = 64 * 1024 * 1024
# A file's content is beyond what the OpenAPI document can check: its description says this
# sentence, and a refused profile is answered with it (see common.schemas.SHADOW_DIFFERS).
PROFILE_RULE = "the reference profile must be a common.drift.ReferenceProfile JSON document"


@operation(
    bp,
    "/models/<model>/versions",
    "POST",
    roles=ADMIN,
    tag=TAG,
    multipart={
        "artifact": "The model file (joblib or skops).",
        "metadata": "JSON object, a VersionMetadata: format, metrics, params, tags, schema...",
        "reference_profile": f"Optional, the training data's profile: {PROFILE_RULE}.",
    },
    multipart_json={"metadata": VersionMetadata},
    response=ModelVersion,
    status=201,
    errors=(413,),
)
def create_version(model: str):
    """Register a new version of a model from an uploaded artifact.

    The artifact is streamed to the artifact store and hashed as it arrives; a refused or
    interrupted upload leaves neither a version nor a file behind.
    """
    check_name(model, "model name")
    request.max_content_length = settings().max_artifact_bytes
    if request.mimetype != "multipart/form-data":
        raise Unprocessable(
            "send multipart/form-data with an 'artifact' file and a 'metadata' JSON field",
            details=[{"field": "artifact", "message": "missing"}],
        )
    check_form_parts()
    metadata = _parse_metadata(request.form["metadata"])
    upload = request.files.get("artifact")
    if upload is None:
        raise Unprocessable(
            "missing the 'artifact' file part",
            details=[{"field": "artifact", "message": "missing"}],
        )
    stream = upload.stream
    if getattr(stream, "size", 0) == 0:
        raise Unprocessable(
            "the artifact is empty", details=[{"field": "artifact", "message": "empty file"}]
        )
    profile_upload = request.files.get("reference_profile")
    if profile_upload is not None:
        _check_profile(profile_upload.stream)
    kept = [(stream, "artifact")] + (
        [(profile_upload.stream, "profile")] if profile_upload is not None else []
    )
    digests = {}
    for part, role in kept:
        digests[role] = keep_upload(part)  # type: ignore[arg-type]
    store = get_store()
    try:
        digest, size = digests["artifact"]
        version = store.registry.create_version(
            model,
            Artifact(sha256=digest, size=size, format=metadata.format),
            metadata,
            actor=g.principal.actor,
            profile=ProfileRef(sha256=digests["profile"][0], size=digests["profile"][1])
            if "profile" in digests
            else None,
        )
    except BaseException:
        for digest, _ in digests.values():
            if not store.registry.digest_in_use(digest):
                state().artifacts.delete(digest)
        raise
    return version.model_dump(mode="json"), 201


def _check_profile(upload: Any) -> None:
    """Refuse a reference profile that is not a valid common.drift.ReferenceProfile."""
    raw = upload.read_back(MAX_PROFILE_BYTES + 1)
    if len(raw) > MAX_PROFILE_BYTES:
        raise Unprocessable(
            f"the reference profile is over {MAX_PROFILE_BYTES} bytes",
            details=[{"field": "reference_profile", "message": "too large"}],
        )
    try:
        validate_json(ReferenceProfile, raw)
    except ValidationError as error:
        details = invalid_input(error, prefix="reference_profile").details
        raise Unprocessable(PROFILE_RULE, details=details) from None


def _parse_metadata(text: str) -> VersionMetadata:
    try:
        return validate_json(VersionMetadata, text or "{}")
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise Unprocessable(
                "the 'metadata' field is not valid JSON",
                details=[{"field": "metadata", "message": "invalid JSON"}],
            ) from None
        raise invalid_input(error, prefix="metadata") from None


@operation(bp, "/models", roles=READERS, tag=TAG, response=ModelList)
def list_models():
    """List models with their latest version."""
    return ModelList(models=get_store().registry.list_models()).model_dump(mode="json")


@operation(bp, "/models/<model>", roles=READERS, tag=TAG, response=ModelDetail, errors=(404,))
def show_model(model: str):
    """Show a model: its versions and where each is deployed."""
    store = get_store()
    summary = _existing_model(model)
    deployments = [
        Deployment(environment=env.name, version=entry.version, shadow=entry.shadow)
        for env in store.environments.list()
        if (desired := store.environments.desired(env.name)) is not None
        and (entry := desired.models.get(model)) is not None
    ]
    detail = ModelDetail(
        **summary.model_dump(),
        versions=store.registry.list_versions(model),
        deployments=deployments,
    )
    return detail.model_dump(mode="json")


@operation(
    bp, "/models/<model>/versions", roles=READERS, tag=TAG, response=VersionList, errors=(404,)
)
def list_versions(model: str):
    """List every version of a model, oldest first."""
    _existing_model(model)
    versions = get_store().registry.list_versions(model)
    return VersionList(model=model, versions=versions).model_dump(mode="json")


@operation(
    bp,
    "/models/<model>/versions/<int:version>",
    roles=READERS,
    tag=TAG,
    response=ModelVersion,
    errors=(404,),
)
def show_version(model: str, version: int):
    """Show one version: artifact, metadata, input schema."""
    return _existing_version(model, version).model_dump(mode="json")


@operation(
    bp,
    "/models/<model>/versions/<int:version>",
    "PATCH",
    roles=ADMIN,
    tag=TAG,
    body=VersionPatch,
    response=ModelVersion,
    errors=(404,),
)
def patch_version(model: str, version: int):
    """Change a version's tags or description."""
    patch = parse_body(VersionPatch)
    _existing_version(model, version)
    updated = get_store().registry.patch_version(model, version, patch)
    assert updated is not None
    return updated.model_dump(mode="json")


@operation(
    bp,
    "/models/<model>/versions/<int:version>/artifact",
    roles=ARTIFACT_READERS,
    tag=TAG,
    errors=(304, 206, 307, 404, 416),
    binary_response="application/octet-stream",
    response_headers={
        "ETag": "The artifact's sha256 digest.",
        "Location": "On 307: a presigned URL of the artifact store; GET it without the token.",
        "If-None-Match": "A digest already held: answered with 304.",
        "Range": "bytes=N- resumes a download from byte N.",
    },
)
def download_artifact(model: str, version: int):
    """Download a version's artifact; Range and If-None-Match are honoured.

    Agent tokens may fetch only versions their environment currently wants. With an S3 artifact
    store and presigning on, the answer is a 307 to a short-lived presigned URL.
    """
    found = _readable_version(model, version)
    return blob_response(
        found.artifact.sha256,
        mimetype="application/octet-stream",
        what=f"the artifact of {model} v{version}",
        download_name=f"{model}-{version}.{found.artifact.format.value}",
    )


@operation(
    bp,
    "/models/<model>/versions/<int:version>/profile",
    roles=ARTIFACT_READERS,
    tag=TAG,
    errors=(304, 307, 404),
    binary_response="application/json",
    response_headers={"ETag": "The profile's sha256 digest."},
)
def download_profile(model: str, version: int):
    """Download a version's reference profile (JSON), for drift on agents and dashboards."""
    found = _readable_version(model, version)
    if found.reference_profile is None:
        raise NotFound(f"{model} v{version} has no reference profile")
    return blob_response(
        found.reference_profile.sha256,
        mimetype="application/json",
        what=f"the reference profile of {model} v{version}",
    )


def _readable_version(model: str, version: int) -> ModelVersion:
    """Return a version the token may read: an agent's, only one its environment wants.

    To an agent, any other version is not found, in the words used for one that does not exist:
    a 403 would tell it what exists outside its environment.
    """
    principal = g.principal
    if principal.role is Role.agent:
        desired = get_store().environments.desired(principal.environment)
        entry = desired.models.get(model) if desired else None
        if entry is None:
            raise _no_model(model)
        if version not in (entry.version, entry.shadow):
            raise _no_version(model, version)
    return _existing_version(model, version)


def _existing_model(model: str):
    check_name(model, "model name")
    summary = get_store().registry.get_model(model)
    if summary is None:
        raise _no_model(model)
    return summary


def _existing_version(model: str, version: int) -> ModelVersion:
    _existing_model(model)
    found = get_store().registry.get_version(model, version)
    if found is None:
        raise _no_version(model, version)
    return found


def _no_model(model: str) -> NotFound:
    return NotFound(f"model {model!r} not found")


def _no_version(model: str, version: int) -> NotFound:
    return NotFound(f"version {version} of model {model!r} not found")
