"""The agent's settings; see config/agent.toml for each one explained."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.config import load_settings
from common.tls import TlsFiles

MIB = 1024 * 1024
GIB = 1024 * MIB


def default_data_dir() -> Path:
    """Return /var/lib/tether when running as root, else ./tether-agent."""
    geteuid = getattr(os, "geteuid", None)
    return (
        Path("/var/lib/tether")
        if geteuid is not None and geteuid() == 0
        else Path("./tether-agent")
    )


class AgentSettings(BaseModel):
    """Every setting of the agent, with its default."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None, description="Control plane URL; defaults to the one enrolled with."
    )
    ca_file: Path | None = Field(
        default=None,
        description="PEM CA certificate(s) to trust instead of the system's (a private CA).",
    )
    client_cert: Path | None = Field(
        default=None, description="PEM client certificate, for control planes that ask for one."
    )
    client_key: Path | None = Field(default=None, description="client_cert's PEM private key.")
    mode: Literal["online", "offline"] = Field(
        default="online",
        description="offline: never connect; models come from `tether agent import-bundle`.",
    )
    clock_skew: float = Field(
        default=300.0, ge=0, le=86400, description="Seconds a manifest is taken past its expiry."
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    serve: str = Field(default="127.0.0.1:8501", description="HOST:PORT of the inference server.")
    serve_threads: int = Field(default=8, ge=1, le=256)
    max_batch_rows: int = Field(default=10_000, ge=1)
    poll_interval: float = Field(
        default=30.0, gt=0, description="Used when the server gives no hint."
    )
    poll_jitter: float = Field(default=0.2, ge=0, lt=1)
    follow_poll_hint: bool = Field(default=True, description="Poll at the server's hint.")
    long_poll: int = Field(default=0, ge=0, le=600, description="Seconds; 0 turns long-poll off.")
    backoff_initial: float = Field(default=1.0, gt=0)
    backoff_max: float = Field(default=300.0, gt=0)
    heartbeat_interval: float = Field(default=60.0, gt=0)
    request_timeout: float = Field(default=30.0, gt=0)
    keep_versions: int = Field(default=2, ge=1)
    free_disk_reserve_bytes: int = Field(default=512 * MIB, ge=0)
    max_bundle_bytes: int = Field(
        default=64 * GIB, gt=0, description="A bundle file larger than this is refused."
    )
    download_chunk_bytes: int = Field(default=1 * MIB, ge=4096, le=256 * MIB)
    report_interval: float = Field(
        default=60.0, gt=0, description="Seconds per drift and shadow report window."
    )
    report_max_requests: int = Field(
        default=10_000, ge=1, description="Cut a report window early after this many requests."
    )
    shadow_queue_size: int = Field(
        default=1000, ge=1, description="Requests waiting for the shadow; more are dropped."
    )
    labels: dict[str, str] = Field(default_factory=dict)
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="text, or json: one JSON object per line for collectors."
    )

    @field_validator("serve")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"{value!r} is not one of debug, info, warning, error, critical")
        return value.lower()

    def tls_files(self, enrolled: TlsFiles | None = None) -> TlsFiles:
        """Return the TLS files to use: each one set here wins over the one enrolled with."""
        enrolled = enrolled or TlsFiles()
        return TlsFiles(
            self.ca_file or enrolled.ca_file,
            self.client_cert or enrolled.client_cert,
            self.client_key or enrolled.client_key,
        )

    @property
    def serve_host(self) -> str:
        return split_host_port(self.serve)[0]

    @property
    def serve_port(self) -> int:
        return split_host_port(self.serve)[1]


def split_host_port(value: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 hosts in brackets); raise ValueError naming the problem."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8501)")
    return host.strip("[]"), int(port)


def load_agent_settings(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentSettings:
    """Build AgentSettings from defaults < TOML file < TETHER_* variables < overrides."""
    return load_settings(AgentSettings, path, environ=environ, overrides=overrides)
