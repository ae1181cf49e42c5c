"""Request and response bodies of the REST API, shared by the control plane, agent and CLI.

The OpenAPI document is generated from these models, so a field documented here is the field on
the wire.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, model_validator

from common.names import NAME_MAX_LENGTH, NAME_PATTERN
from common.signing import PublicKey, Signature

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# The largest integer SQLite stores: a bigger one in a field the store keeps is refused as
# input (422) rather than failing in the database (500).
MAX_INTEGER = 2**63 - 1
VersionNumber = Annotated[int, Field(ge=1, le=MAX_INTEGER)]

# Rules across fields, which JSON Schema cannot state. The API refuses a body that breaks one
# with a 422 whose message is this very sentence, and the field's description carries it too,
# so the schema says in words what the server checks.
SHADOW_DIFFERS = "shadow must differ from version"
ENROLLMENT_NEEDS_ENVIRONMENT = "an enrollment token needs an environment"
ENROLLMENT_ONLY = "{field} applies to enrollment tokens only"


class Strict(BaseModel):
    """A request body: unknown keys are refused, so typos never pass silently.

    The API also validates request bodies in strict mode (control_plane.api.routing.parse_body):
    `true` is not 1 and `"3"` is not 3.
    """

    model_config = ConfigDict(extra="forbid")


# --- errors -----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `not_found`.")
    message: str = Field(description="What is wrong, for people.")
    details: Any = Field(default=None, description="Field errors or other context.")


class ErrorBody(BaseModel):
    """The one error shape of the API."""

    error: ErrorDetail


# --- models and versions ----------------------------------------------------------------------


class ArtifactFormat(StrEnum):
    joblib = "joblib"
    skops = "skops"


class FeatureType(StrEnum):
    number = "number"
    integer = "integer"
    string = "string"
    boolean = "boolean"


class Feature(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    type: FeatureType = FeatureType.number


Tags = dict[
    Annotated[str, StringConstraints(min_length=1, max_length=64)],
    Annotated[str, StringConstraints(max_length=256)],
]


class VersionMetadata(Strict):
    """The `metadata` part of a version upload."""

    format: ArtifactFormat = ArtifactFormat.joblib
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    tags: Tags = Field(default_factory=dict)
    code_revision: Annotated[str, StringConstraints(max_length=128)] | None = None
    training_data_fingerprint: Annotated[str, StringConstraints(max_length=128)] | None = None
    input_schema: list[Feature] | None = Field(default=None, max_length=10_000)
    input_example: list[dict[str, Any]] | None = Field(
        default=None, max_length=1000, description="Rows used as the smoke test on agents."
    )


class VersionPatch(Strict):
    tags: Tags | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None


class Artifact(BaseModel):
    sha256: Sha256
    size: int
    format: ArtifactFormat


class ProfileRef(BaseModel):
    """Where a version's reference profile (common.drift.ReferenceProfile JSON) is stored."""

    sha256: Sha256
    size: int


class ModelVersion(BaseModel):
    model: str
    version: int
    artifact: Artifact
    reference_profile: ProfileRef | None = None
    description: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    code_revision: str | None = None
    training_data_fingerprint: str | None = None
    input_schema: list[Feature] | None = None
    input_example: list[dict[str, Any]] | None = None
    created_at: datetime
    created_by: str


class ModelSummary(BaseModel):
    name: str
    latest_version: int | None
    version_count: int
    created_at: datetime


class ModelList(BaseModel):
    models: list[ModelSummary]


class VersionList(BaseModel):
    model: str
    versions: list[ModelVersion]


# --- environments and desired state -----------------------------------------------------------


class EnvironmentCreate(Strict):
    description: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None, description="Set or replace the description; left out, it is kept."
    )
    manifest_ttl: Annotated[int, Field(ge=300, le=365 * 86400)] | None = Field(
        default=None,
        description="Seconds a manifest stays valid on agents [7 days]; left out, it is kept.",
    )


class Environment(BaseModel):
    name: str
    description: str = ""
    revision: int
    manifest_ttl: int = 7 * 86400
    created_at: datetime
    updated_at: datetime


class EnvironmentList(BaseModel):
    environments: list[Environment]


class DesiredModel(BaseModel):
    version: int
    shadow: int | None = None


class DesiredState(BaseModel):
    environment: str
    revision: int
    models: dict[str, DesiredModel]


class DesiredModelUpdate(Strict):
    version: VersionNumber
    shadow: VersionNumber | None = Field(
        default=None,
        description=f"The candidate run beside it on the same inputs: {SHADOW_DIFFERS}.",
    )
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""


class ActionReason(Strict):
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""


class HistoryEntry(BaseModel):
    id: int
    environment: str
    revision: int
    model: str
    action: str
    actor: str
    at: datetime
    before: DesiredModel | None
    after: DesiredModel | None
    reason: str


class History(BaseModel):
    environment: str
    entries: list[HistoryEntry]


# --- tokens -----------------------------------------------------------------------------------


class Role(StrEnum):
    admin = "admin"
    viewer = "viewer"
    enrollment = "enrollment"
    agent = "agent"


class TokenCreate(Strict):
    role: Literal["admin", "viewer", "enrollment"]
    environment: Name | None = Field(
        default=None,
        description=f"The environment agents enroll into: {ENROLLMENT_NEEDS_ENVIRONMENT}; "
        f"{ENROLLMENT_ONLY.format(field='environment')}.",
    )
    expires_in: Annotated[int, Field(gt=0, le=10 * 365 * 86400)] | None = Field(
        default=None, description="Seconds until the token expires."
    )
    max_uses: Annotated[int, Field(gt=0, le=MAX_INTEGER)] | None = Field(
        default=None,
        description="How many agents may enroll with it: "
        f"{ENROLLMENT_ONLY.format(field='max_uses')}.",
    )
    description: Annotated[str, StringConstraints(max_length=500)] = ""


class TokenInfo(BaseModel):
    id: str
    role: Role
    environment: str | None = None
    agent_id: str | None = None
    expires_at: datetime | None = None
    uses_left: int | None = None
    description: str = ""
    created_at: datetime


class TokenList(BaseModel):
    tokens: list[TokenInfo]


class TokenCreated(TokenInfo):
    token: str = Field(description="The secret, shown once; only its hash is stored.")


# --- agents -----------------------------------------------------------------------------------


class EnrollRequest(Strict):
    public_key: PublicKey | None = Field(
        default=None, description="The agent's own key, which signs its offline report exports."
    )
    hostname: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    labels: dict[
        Annotated[str, StringConstraints(max_length=64)],
        Annotated[str, StringConstraints(max_length=256)],
    ] = Field(default_factory=dict)
    agent_version: Annotated[str, StringConstraints(max_length=64)] = ""


class EnrollResponse(BaseModel):
    agent_id: str
    token: str
    environment: str
    signing_keys: list[PublicKey] = Field(
        description="The control plane's public keys: pin one (tether agent enroll --pin)."
    )


class ModelStatus(StrEnum):
    ok = "ok"
    downloading = "downloading"
    failed = "failed"


class ActualModel(Strict):
    serving: VersionNumber | None = None
    shadow: VersionNumber | None = None
    status: ModelStatus = ModelStatus.ok
    error: Annotated[str, StringConstraints(max_length=4000)] | None = None
    stage: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Where a failure happened: download, verify, load, smoke_test."
    )
    target: VersionNumber | None = Field(
        default=None, description="The version being applied, while downloading or after failing."
    )


class Heartbeat(Strict):
    agent_version: Annotated[str, StringConstraints(max_length=64)] = ""
    hostname: Annotated[str, StringConstraints(max_length=255)] = ""
    labels: dict[
        Annotated[str, StringConstraints(max_length=64)],
        Annotated[str, StringConstraints(max_length=256)],
    ] = Field(default_factory=dict)
    applied_revision: Annotated[int, Field(ge=0, le=MAX_INTEGER)] = 0
    models: dict[Name, ActualModel] = Field(default_factory=dict, max_length=1000)


class HeartbeatAck(BaseModel):
    agent_id: str
    received_at: datetime
    desired_revision: int


class AgentInfo(BaseModel):
    id: str
    environment: str
    hostname: str
    labels: dict[str, str]
    agent_version: str
    enrolled_at: datetime
    last_seen: datetime | None
    last_import: datetime | None = Field(
        default=None, description="Offline agents: when their last report export was imported."
    )
    applied_revision: int
    models: dict[str, ActualModel]
    public_key: PublicKey | None = None


class AgentList(BaseModel):
    agents: list[AgentInfo]


# --- manifest ---------------------------------------------------------------------------------


class ManifestEntry(BaseModel):
    version: int
    artifact: Artifact
    reference_profile: ProfileRef | None = None
    input_schema: list[Feature] | None = None
    input_example: list[dict[str, Any]] | None = None


class ManifestModel(BaseModel):
    primary: ManifestEntry
    shadow: ManifestEntry | None = None


class Manifest(BaseModel):
    """The desired state of one agent's environment, with everything needed to fetch it."""

    environment: str
    revision: int
    issued_at: datetime
    expires_at: datetime = Field(description="Agents refuse the manifest after this (freeze).")
    models: dict[str, ManifestModel]
    signing_keys: list[PublicKey] = Field(
        default_factory=list,
        description="The keys that sign now; an agent trusting one of them learns the others.",
    )


# The header of a manifest response that carries the poll hint (as `poll_after` does in a 200).
POLL_HINT_HEADER = "X-Tether-Poll-After"


class SignedManifest(BaseModel):
    """A manifest and its detached Ed25519 signatures over the manifest's canonical JSON."""

    manifest: Manifest
    signatures: list[Signature]
    poll_after: int = Field(description="Seconds the agent should wait before its next poll.")
    # The manifest exactly as it arrived. The signatures cover it, not this schema's rendering
    # of it, so an agent still verifies a manifest from a newer control plane with fields it
    # does not know (they are ignored after the check, never trusted unchecked).
    _received: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_received(cls, data: Any, handler: Any) -> Any:
        signed = handler(data)
        if isinstance(data, dict) and isinstance(data.get("manifest"), dict):
            signed._received = data["manifest"]
        return signed

    def __eq__(self, other: object) -> bool:
        # The same manifest is equal however it arrived: what arrived matters to verify only.
        if not isinstance(other, SignedManifest):
            return NotImplemented
        mine = (self.manifest, self.signatures, self.poll_after)
        return mine == (other.manifest, other.signatures, other.poll_after)

    __hash__ = None  # type: ignore[assignment]  # mutable, like every pydantic model

    def signed_document(self) -> dict[str, Any]:
        """Return what the signatures cover: the manifest as received, else as built here."""
        if self._received is not None:
            return self._received
        return self.manifest.model_dump(mode="json")


# --- status -----------------------------------------------------------------------------------


class AgentModelStatus(BaseModel):
    desired: DesiredModel | None
    actual: ActualModel | None
    converged: bool


class AgentStatus(BaseModel):
    agent_id: str
    hostname: str
    last_seen: datetime | None
    last_import: datetime | None = None
    stale: bool
    applied_revision: int
    converged: bool
    models: dict[str, AgentModelStatus]


AgentState = Literal["failed", "stale", "lagging", "converged"]
# The order a fleet's agents are listed in: what needs a look first.
AGENT_STATES: tuple[AgentState, ...] = ("failed", "stale", "lagging", "converged")


class StateCounts(BaseModel):
    """How many agents are in each state: stale (not heard from), failed, lagging, converged."""

    failed: int = 0
    stale: int = 0
    lagging: int = 0
    converged: int = 0


class EnvironmentStatus(BaseModel):
    environment: str
    revision: int
    agents: list[AgentStatus] = Field(
        description="One page: failed agents first, then stale, lagging and converged ones, "
        "each by id."
    )
    converged: int
    total: int
    counts: StateCounts = Field(default_factory=StateCounts)
    state: AgentState | None = Field(default=None, description="The state the page is of.")
    offset: int = 0
    next_offset: int | None = Field(
        default=None, description="Where the next page starts; None on the last page."
    )


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    details: dict[str, Any] = Field(default_factory=dict)


class Deployment(BaseModel):
    environment: str
    version: int
    shadow: int | None = None


class ModelDetail(ModelSummary):
    versions: list[ModelVersion]
    deployments: list[Deployment]
