"""Model registry over the API: upload, list, show, patch, download."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.support.api import Api, assert_error


def stored_files(app) -> list[Path]:
    root = app.extensions["tether"].artifacts.root
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_push_registers_numbered_versions_with_digest(api: Api, wine_model_bytes: bytes):
    first = api.operator.push(
        "wine", wine_model_bytes, {"metrics": {"accuracy": 0.97}, "tags": {"team": "a"}}
    )
    second = api.operator.push("wine", wine_model_bytes + b"\0", {"format": "joblib"})
    assert (first["version"], second["version"]) == (1, 2)
    assert first["artifact"] == {
        "sha256": hashlib.sha256(wine_model_bytes).hexdigest(),
        "size": len(wine_model_bytes),
        "format": "joblib",
    }
    assert first["metrics"] == {"accuracy": 0.97}
    assert first["created_by"].startswith("admin:")


def test_list_and_show_models(api: Api, wine_model_bytes: bytes):
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("iris", wine_model_bytes)
    listing = api.get("/api/v1/models").get_json()["models"]
    assert [(m["name"], m["latest_version"], m["version_count"]) for m in listing] == [
        ("iris", 1, 1),
        ("wine", 2, 2),
    ]
    detail = api.get("/api/v1/models/wine").get_json()
    assert [v["version"] for v in detail["versions"]] == [1, 2]
    assert detail["deployments"] == []
    versions = api.get("/api/v1/models/wine/versions").get_json()["versions"]
    assert len(versions) == 2
    assert api.get("/api/v1/models/wine/versions/2").get_json()["version"] == 2


def test_show_model_lists_where_it_is_deployed(api: Api, wine_model_bytes: bytes):
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("wine", wine_model_bytes)
    api.create_env("staging")
    assert api.set_desired("staging", "wine", 2, 1).status_code == 200
    detail = api.get("/api/v1/models/wine").get_json()
    assert detail["deployments"] == [{"environment": "staging", "version": 2, "shadow": 1}]


def test_versions_are_never_reused(api: Api, wine_model_bytes: bytes):
    for expected in range(1, 4):
        assert api.operator.push("wine", wine_model_bytes)["version"] == expected


def test_same_bytes_are_stored_once(app, api: Api, wine_model_bytes: bytes):
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("other", wine_model_bytes)
    assert len([p for p in stored_files(app) if p.parent.name == "sha256"]) == 1


def test_patch_changes_tags_and_description_only(api: Api, wine_model_bytes: bytes):
    api.operator.push("wine", wine_model_bytes, {"tags": {"stage": "dev"}})
    response = api.send(
        "PATCH", "/api/v1/models/wine/versions/1", {"tags": {"stage": "prod"}, "description": "ok"}
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["tags"], body["description"]) == ({"stage": "prod"}, "ok")
    assert body["artifact"]["size"] == len(wine_model_bytes)


def test_artifact_download_honours_etag_and_range(api: Api, wine_model_bytes: bytes):
    digest = api.operator.push("wine", wine_model_bytes)["artifact"]["sha256"]
    full = api.get("/api/v1/models/wine/versions/1/artifact")
    assert full.status_code == 200
    assert full.data == wine_model_bytes
    assert full.headers["ETag"] == f'"{digest}"'
    cached = api.get("/api/v1/models/wine/versions/1/artifact", **{"If-None-Match": f'"{digest}"'})
    assert cached.status_code == 304
    part = api.get("/api/v1/models/wine/versions/1/artifact", Range="bytes=100-")
    assert part.status_code == 206
    assert part.data == wine_model_bytes[100:]
    assert (
        part.headers["Content-Range"]
        == f"bytes 100-{len(wine_model_bytes) - 1}/{len(wine_model_bytes)}"
    )
    unsatisfiable = api.get(
        "/api/v1/models/wine/versions/1/artifact", Range=f"bytes={len(wine_model_bytes) + 5}-"
    )
    assert unsatisfiable.status_code == 416


def test_upload_over_the_size_limit_leaves_nothing(tmp_path: Path, wine_model_bytes: bytes):
    from control_plane.app import create_app

    app = create_app({"data_dir": tmp_path / "cp", "max_artifact_bytes": 1000})
    api = Api(app.test_client(), app.extensions["tether"].new_admin_token)
    assert_error(api.push("wine", wine_model_bytes), 413, "too_large")
    assert api.get("/api/v1/models").get_json()["models"] == []
    assert stored_files(app) == []


def test_refused_upload_leaves_no_file(app, api: Api, wine_model_bytes: bytes):
    assert_error(
        api.push("wine", wine_model_bytes, {"format": "pickle"}), 422, field="metadata.format"
    )
    assert_error(api.push("Bad Name", wine_model_bytes), 422, "invalid_name")
    assert stored_files(app) == []
    assert api.get("/api/v1/models").get_json()["models"] == []
