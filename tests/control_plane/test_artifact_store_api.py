"""The REST API on an S3 artifact store (moto): uploads, presigned and streamed downloads."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import httpx
import pytest

from agent.local.cache import ArtifactCache
from agent.sync.client import ControlPlaneClient
from common.bundles import BUNDLE_BLOB_DIR
from common.drift import build_profile
from control_plane.app import create_app
from tests.support.api import Api
from tests.support.models import wine_frame

pytestmark = pytest.mark.e2e  # a real S3 stand-in on loopback

ENV = "production"


@pytest.fixture(params=["presigned", "streamed"])
def mode(request) -> str:
    return request.param


@pytest.fixture
def s3_app(tmp_path, s3_bucket, mode):
    config = {"data_dir": tmp_path / "cp", **s3_bucket.settings()}
    config["artifact_presign"] = mode == "presigned"
    application = create_app(config)
    yield application
    application.extensions["tether"].close()


@pytest.fixture
def s3_api(s3_app) -> Api:
    return Api(s3_app.test_client(), s3_app.extensions["tether"].new_admin_token)


class RecordingTransport(httpx.HTTPTransport):
    """A real HTTP transport that keeps each request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def pushed(api: Api, artifact: bytes) -> dict:
    response = api.push("wine", artifact, {"format": "joblib"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_an_upload_lands_in_s3_under_its_digest_with_nothing_left_behind(
    s3_api, s3_bucket, s3_app, wine_model_bytes
):
    version = pushed(s3_api, wine_model_bytes)
    digest = hashlib.sha256(wine_model_bytes).hexdigest()
    assert version["artifact"] == {
        "sha256": digest,
        "size": len(wine_model_bytes),
        "format": "joblib",
    }
    assert s3_bucket.object_keys() == [f"tether/sha256/{digest}"]
    assert s3_bucket.get(f"tether/sha256/{digest}") == wine_model_bytes
    assert s3_bucket.multipart_uploads() == []
    # Streamed to the store: no copy of it on the control plane's disk.
    data_dir = s3_app.extensions["tether"].settings.data_dir
    assert not (data_dir / "artifacts").exists()


def test_a_refused_upload_leaves_nothing_in_the_store(s3_api, s3_bucket, wine_model_bytes):
    response = s3_api.client.post(
        "/api/v1/models/wine/versions",
        data={
            "artifact": (io.BytesIO(wine_model_bytes), "model.joblib"),
            "metadata": json.dumps({}),
            "reference_profile": (io.BytesIO(b'{"not": "a profile"}'), "profile.json"),
        },
        headers=s3_api.headers(),
        content_type="multipart/form-data",
    )
    assert response.status_code == 422, response.get_json()
    assert "reference_profile" in json.dumps(response.get_json())
    assert s3_bucket.object_keys() == []
    assert s3_bucket.multipart_uploads() == []
    assert s3_api.get("/api/v1/models/wine").status_code == 404


def test_a_profile_is_checked_and_stored_beside_the_artifact(s3_api, s3_bucket, wine_model_bytes):
    profile = build_profile(wine_frame()[0]).model_dump_json().encode()
    response = s3_api.client.post(
        "/api/v1/models/wine/versions",
        data={
            "artifact": (io.BytesIO(wine_model_bytes), "model.joblib"),
            "metadata": json.dumps({}),
            "reference_profile": (io.BytesIO(profile), "profile.json"),
        },
        headers=s3_api.headers(),
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    digest = hashlib.sha256(profile).hexdigest()
    assert f"tether/sha256/{digest}" in s3_bucket.object_keys()
    assert s3_bucket.multipart_uploads() == []
    assert len(s3_bucket.object_keys()) == 2


def test_a_download_redirects_to_a_presigned_url_or_streams_with_range(
    s3_api, mode, wine_model_bytes
):
    pushed(s3_api, wine_model_bytes)
    digest = hashlib.sha256(wine_model_bytes).hexdigest()
    path = "/api/v1/models/wine/versions/1/artifact"
    whole = s3_api.get(path)
    assert whole.headers["X-Tether-Sha256"] == digest
    if mode == "presigned":
        assert whole.status_code == 307
        assert whole.headers["Cache-Control"] == "no-store"
        location = whole.headers["Location"]
        assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
        assert httpx.get(location).content == wine_model_bytes
        ranged = httpx.get(location, headers={"Range": "bytes=100-"})
    else:
        assert whole.status_code == 200
        assert whole.get_data() == wine_model_bytes
        assert whole.headers["ETag"] == f'"{digest}"'
        assert whole.headers["Accept-Ranges"] == "bytes"
        ranged = s3_api.get(path, Range="bytes=100-")
        assert ranged.headers["Content-Range"] == (
            f"bytes 100-{len(wine_model_bytes) - 1}/{len(wine_model_bytes)}"
        )
        past = s3_api.get(path, Range=f"bytes={len(wine_model_bytes) + 5}-")
        assert past.status_code == 416
    body = ranged.content if isinstance(ranged, httpx.Response) else ranged.get_data()
    assert (ranged.status_code, body) == (206, wine_model_bytes[100:])
    # Either way an agent already holding the digest is told so, and nothing moves.
    assert s3_api.get(path, **{"If-None-Match": f'"{digest}"'}).status_code == 304


def test_the_agent_resumes_a_cut_download_and_verifies_it(
    s3_app, s3_api, mode, tmp_path, wine_model_bytes
):
    pushed(s3_api, wine_model_bytes)
    s3_api.create_env(ENV)
    assert s3_api.set_desired(ENV, "wine", 1).status_code == 200
    enrolled = s3_api.enroll(ENV)
    digest = hashlib.sha256(wine_model_bytes).hexdigest()
    cache = ArtifactCache(tmp_path / "agent", reserve_bytes=0, chunk_bytes=16 * 1024)
    cache.prepare()
    cut = len(wine_model_bytes) // 3
    cache.part_path(digest).write_bytes(wine_model_bytes[:cut])  # as a dropped link leaves it
    mirror = RecordingTransport()  # the presigned URL is moto's real address
    with ControlPlaneClient(
        "http://tether.test",
        enrolled["token"],
        agent_id=enrolled["agent_id"],
        transport=httpx.WSGITransport(app=s3_app),
        mirror_transport=mirror,
    ) as client:
        path = cache.download(
            digest, len(wine_model_bytes), lambda offset: client.download("wine", 1, offset)
        )
    assert path.read_bytes() == wine_model_bytes
    seen = mirror.requests
    if mode == "presigned":
        (to_store,) = seen
        assert to_store.headers["Range"] == f"bytes={cut}-"
        assert "Authorization" not in to_store.headers
    else:
        assert seen == []  # streamed through the control plane


def test_a_bundle_is_built_from_the_s3_store(s3_api, wine_model_bytes):
    pushed(s3_api, wine_model_bytes)
    s3_api.create_env(ENV)
    assert s3_api.set_desired(ENV, "wine", 1).status_code == 200
    response = s3_api.get(f"/api/v1/environments/{ENV}/bundle")
    assert response.status_code == 200
    digest = hashlib.sha256(wine_model_bytes).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(response.get_data())) as archive:
        member = archive.extractfile(f"{BUNDLE_BLOB_DIR}{digest}")
        assert member is not None and member.read() == wine_model_bytes


def test_readiness_reports_the_store(s3_api):
    response = s3_api.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["details"]["artifacts"] == "ok"
