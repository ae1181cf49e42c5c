"""Models and their versions."""

from __future__ import annotations

from typing import Any

from common.clock import utcnow
from common.schemas import (
    Artifact,
    ModelSummary,
    ModelVersion,
    ProfileRef,
    VersionMetadata,
    VersionPatch,
)
from control_plane.store.db import Database, write_transaction
from control_plane.store.rows import dict_rows, from_json, from_time, to_json, to_time


class RegistryStore:
    """Read and write models and versions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_version(
        self,
        model: str,
        artifact: Artifact,
        metadata: VersionMetadata,
        actor: str,
        profile: ProfileRef | None = None,
    ) -> ModelVersion:
        """Register the next version of `model` (creating the model on first use)."""
        now = to_time(utcnow())
        with write_transaction(self.db) as db:
            db.execute(
                "INSERT INTO models (name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
                [model, now],
            )
            (version,) = db.execute(
                "UPDATE models SET last_version = last_version + 1 WHERE name = ? "
                "RETURNING last_version",
                [model],
            ).fetchone()
            db.execute(
                """INSERT INTO versions (model, version, artifact_sha256, artifact_size, format,
                   description, metrics, params, tags, code_revision, training_data_fingerprint,
                   input_schema, input_example, created_at, created_by, profile_sha256,
                   profile_size)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [
                    model,
                    version,
                    artifact.sha256,
                    artifact.size,
                    artifact.format.value,
                    metadata.description,
                    to_json(metadata.metrics),
                    to_json(metadata.params),
                    to_json(metadata.tags),
                    metadata.code_revision,
                    metadata.training_data_fingerprint,
                    to_json(
                        None
                        if metadata.input_schema is None
                        else [feature.model_dump(mode="json") for feature in metadata.input_schema]
                    ),
                    to_json(metadata.input_example),
                    now,
                    actor,
                    profile and profile.sha256,
                    profile and profile.size,
                ],
            )
        found = self.get_version(model, version)
        assert found is not None
        return found

    def list_models(self) -> list[ModelSummary]:
        return self._summaries("1 = 1", [])

    def get_model(self, model: str) -> ModelSummary | None:
        # One row, not a scan: artifact downloads check the model on every request.
        found = self._summaries("m.name = ?", [model])
        return found[0] if found else None

    def _summaries(self, where: str, params: list[Any]) -> list[ModelSummary]:
        rows = self.db.execute(
            f"""SELECT m.name, m.created_at, MAX(v.version), COUNT(v.version)
               FROM models m LEFT JOIN versions v ON v.model = m.name
               WHERE {where} GROUP BY m.name ORDER BY m.name""",
            params,
        ).fetchall()
        return [
            ModelSummary(
                name=name, created_at=from_time(created), latest_version=latest, version_count=count
            )
            for name, created, latest, count in rows
        ]

    def model_exists(self, model: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM models WHERE name = ?", [model]).fetchone() is not None
        )

    def list_versions(self, model: str) -> list[ModelVersion]:
        cursor = self.db.execute("SELECT * FROM versions WHERE model = ? ORDER BY version", [model])
        return [_version(row) for row in dict_rows(cursor)]

    def get_version(self, model: str, version: int) -> ModelVersion | None:
        cursor = self.db.execute(
            "SELECT * FROM versions WHERE model = ? AND version = ?", [model, version]
        )
        rows = dict_rows(cursor)
        return _version(rows[0]) if rows else None

    def existing_versions(self, model: str, versions: list[int]) -> set[int]:
        """Return which of `versions` exist for `model`."""
        marks = ",".join("?" * len(versions))
        rows = self.db.execute(
            f"SELECT version FROM versions WHERE model = ? AND version IN ({marks})",
            [model, *versions],
        ).fetchall()
        return {row[0] for row in rows}

    def patch_version(self, model: str, version: int, patch: VersionPatch) -> ModelVersion | None:
        updates: dict[str, Any] = {}
        if patch.tags is not None:
            updates["tags"] = to_json(patch.tags)
        if patch.description is not None:
            updates["description"] = patch.description
        if updates:
            assignments = ", ".join(f"{column} = ?" for column in updates)
            with write_transaction(self.db) as db:
                db.execute(
                    f"UPDATE versions SET {assignments} WHERE model = ? AND version = ?",
                    [*updates.values(), model, version],
                )
        return self.get_version(model, version)

    def referenced_digests(self) -> set[str]:
        """Return every digest a version points at, as artifact or reference profile."""
        rows = self.db.execute(
            "SELECT artifact_sha256 FROM versions UNION "
            "SELECT profile_sha256 FROM versions WHERE profile_sha256 IS NOT NULL"
        ).fetchall()
        return {digest for (digest,) in rows}

    def digest_in_use(self, sha256: str) -> bool:
        """Tell whether any version points at this digest, as artifact or reference profile."""
        row = self.db.execute(
            "SELECT 1 FROM versions WHERE artifact_sha256 = ? OR profile_sha256 = ? LIMIT 1",
            [sha256, sha256],
        ).fetchone()
        return row is not None


def _version(row: dict[str, Any]) -> ModelVersion:
    return ModelVersion(
        model=row["model"],
        version=row["version"],
        artifact=Artifact(
            sha256=row["artifact_sha256"], size=row["artifact_size"], format=row["format"]
        ),
        reference_profile=None
        if row["profile_sha256"] is None
        else ProfileRef(sha256=row["profile_sha256"], size=row["profile_size"]),
        description=row["description"],
        metrics=from_json(row["metrics"]),
        params=from_json(row["params"]),
        tags=from_json(row["tags"]),
        code_revision=row["code_revision"],
        training_data_fingerprint=row["training_data_fingerprint"],
        input_schema=from_json(row["input_schema"]),
        input_example=from_json(row["input_example"]),
        created_at=from_time(row["created_at"]),
        created_by=row["created_by"],
    )
