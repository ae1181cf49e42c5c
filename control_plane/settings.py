"""The control plane's settings; see config/control-plane.toml for each one explained."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from control_plane.artifacts.location import (
    ArtifactLocation,
    BadArtifactStore,
    DirectoryLocation,
    parse_artifact_store,
)
from control_plane.store.db import BadDatabaseUrl, DatabaseUrl


class ControlPlaneSettings(BaseModel):
    """Every setting of the control plane, with its default."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Path("./tether-data")
    database_url: str | None = Field(
        default=None,
        description="sqlite:///PATH or postgresql://USER@HOST:PORT/DB; None: DATA_DIR/tether.db.",
    )
    database_listen_url: str | None = Field(
        default=None,
        description="PostgreSQL URL for the one LISTEN session per process, when database_url "
        "goes through a pooler in transaction mode; None: database_url.",
    )
    artifact_store: str | None = Field(
        default=None,
        description="A directory (a shared mount for replicas) or s3://BUCKET/PREFIX; "
        "None: DATA_DIR/artifacts.",
    )
    artifact_store_endpoint: str | None = Field(
        default=None,
        description="An S3-compatible server's URL (MinIO, Ceph...); None: AWS's own.",
    )
    artifact_store_region: str | None = Field(
        default=None, description="The S3 region; None: boto3's (AWS_DEFAULT_REGION...)."
    )
    artifact_presign: bool = Field(
        default=True,
        description="With S3, send agents to a presigned URL (307) rather than streaming the "
        "artifact through the control plane.",
    )
    artifact_presign_ttl: int = Field(
        default=300,
        ge=10,
        le=7 * 24 * 3600,  # the longest a SigV4 presigned URL may live
        description="Seconds a presigned artifact URL stays valid.",
    )
    secrets_dir: Path | None = Field(
        default=None,
        description="Signing keys and the dashboard's session key; replicas share one. "
        "None: DATA_DIR.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8500, ge=0, le=65535)
    workers: int = Field(default=2, ge=1, le=64)
    threads: int = Field(default=8, ge=1, le=256)
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="text, or json: one JSON object per line for collectors."
    )
    max_artifact_bytes: int = Field(default=4 * 1024**3, gt=0)
    max_request_bytes: int = Field(default=1024**2, gt=0)
    max_report_batch_bytes: int = Field(default=64 * 1024**2, gt=0)
    poll_interval: int = Field(default=30, ge=1, description="Poll hint in steady state.")
    rollout_poll_interval: int = Field(default=5, ge=1, description="Poll hint during a rollout.")
    idle_poll_interval: int = Field(default=120, ge=1, description="Poll hint when idle.")
    idle_after: int = Field(default=3600, ge=1, description="Seconds without change = idle.")
    rollout_window: int = Field(
        default=600, ge=1, description="How long a change counts as rolling out."
    )
    long_poll_max: int = Field(default=60, ge=0, le=600)
    long_poll_slots: int | None = Field(
        default=None,
        ge=0,
        description="Long-polls one worker holds at once (one per agent); beyond, polls are "
        "answered at once. None: half the worker's threads, so the API always has threads left.",
    )
    policy_interval: int = Field(
        default=10, ge=0, description="Seconds between policy passes; 0 turns the engine off."
    )
    stale_after: int = Field(default=120, ge=1, description="Seconds without heartbeat = stale.")
    session_cookie_secure: bool | None = Field(
        default=None, description="Dashboard cookie's Secure flag; None: when served over https."
    )
    session_lifetime: int = Field(
        default=12 * 3600, ge=60, description="Seconds a dashboard sign-in lasts."
    )

    @field_validator("database_url", "database_listen_url")
    @classmethod
    def _database_url_opens(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                DatabaseUrl.parse(value)
            except BadDatabaseUrl as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("artifact_store")
    @classmethod
    def _artifact_store_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_artifact_store(value)
            except BadArtifactStore as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("artifact_store_endpoint")
    @classmethod
    def _endpoint_is_a_url(cls, value: str | None) -> str | None:
        if value is not None:
            scheme, sep, rest = value.partition("://")
            if scheme not in ("http", "https") or not sep or not rest.strip("/"):
                raise ValueError(
                    f"artifact_store_endpoint {value!r}: expected http(s)://HOST[:PORT]"
                )
            if "@" in rest.split("/", 1)[0]:
                raise ValueError(
                    f"artifact_store_endpoint {value!r}: credentials do not belong in the URL; "
                    "boto3 reads them from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                )
        return value

    @property
    def long_poll_capacity(self) -> int:
        """Long-polls one worker holds at once: the setting, or half its threads."""
        if self.long_poll_slots is not None:
            return self.long_poll_slots
        return self.threads // 2

    @property
    def database(self) -> DatabaseUrl:
        """The database to open: the URL given, else the SQLite file in the data dir."""
        if self.database_url is None:
            return DatabaseUrl.for_file(self.data_dir / "tether.db")
        return DatabaseUrl.parse(self.database_url)

    @property
    def listen_url(self) -> str:
        """The URL for sessions of our own: LISTEN, and the leader's lock (PostgreSQL only)."""
        return self.database_listen_url or self.database.url

    @property
    def replicated(self) -> bool:
        """Whether other processes may share the database: the PostgreSQL deployment."""
        return self.database.dialect == "postgresql"

    @property
    def artifact_location(self) -> ArtifactLocation:
        """Where artifacts live: the store given, else DATA_DIR/artifacts."""
        if self.artifact_store is None:
            return DirectoryLocation(self.data_dir / "artifacts")
        return parse_artifact_store(self.artifact_store)

    @property
    def keys_dir(self) -> Path:
        return (self.secrets_dir or self.data_dir) / "keys"

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin.token"

    @property
    def session_key_path(self) -> Path:
        return (self.secrets_dir or self.data_dir) / "session.key"

    @property
    def metrics_dir(self) -> Path:
        return self.data_dir / "prometheus"
