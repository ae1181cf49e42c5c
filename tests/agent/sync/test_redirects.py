"""Artifact downloads redirected to a store's presigned URL: followed by hand, without the token.

httpx drops Authorization on a cross-origin redirect, but keeps it on an http-to-https one to
the same host; the client follows a download's redirect itself, with a client that holds no
token at all, so the token never reaches a store or mirror whatever its address.
"""

from __future__ import annotations

import io

import httpx
import pytest

from agent.local.cache import ArtifactCache, VerificationFailed
from agent.sync.client import ControlPlaneClient, Unreachable
from common.digests import sha256_stream
from tests.agent.fakes import ArtifactServer
from tests.support.agent_world import URL

TOKEN = "tether_agent_secret"
PRESIGNED = "http://store.test/bucket/sha256/abc?X-Amz-Signature=deadbeef&X-Amz-Expires=300"


class RedirectingControlPlane:
    """A control plane that answers every download with a 307 to `location`, and a mirror."""

    def __init__(self, mirror: ArtifactServer, location: str = PRESIGNED) -> None:
        self.mirror = mirror
        self.location = location
        self.asked: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "tether.test":
            self.asked.append(request)
            return httpx.Response(307, headers={"Location": self.location})
        return self.mirror(request)


def client_for(handler) -> ControlPlaneClient:  # type: ignore[no-untyped-def]
    return ControlPlaneClient(URL, TOKEN, agent_id="agt_x", transport=httpx.MockTransport(handler))


def test_a_redirect_is_followed_without_the_token(tmp_path):
    body = b"model bytes " * 1000
    plane = RedirectingControlPlane(ArtifactServer(body))
    with client_for(plane) as client, client.download("m", 1) as stream:
        received = b"".join(stream.chunks())
    assert received == body
    assert plane.asked[0].headers["Authorization"] == f"Bearer {TOKEN}"
    (to_store,) = plane.mirror.requests
    assert to_store.url == httpx.URL(PRESIGNED)
    assert "Authorization" not in to_store.headers
    assert to_store.headers["Accept-Encoding"] == "identity"


def test_the_token_stays_home_even_on_an_https_upgrade_to_the_same_host():
    # The one case where httpx itself would keep Authorization on a redirect.
    plane = RedirectingControlPlane(ArtifactServer(b"x" * 10), "https://tether.test/presigned")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            seen.append(request)
            return plane.mirror(request)
        return plane(request)

    with client_for(handler) as client, client.download("m", 1) as stream:
        assert b"".join(stream.chunks()) == b"x" * 10
    assert "Authorization" not in seen[0].headers


def test_a_cut_download_resumes_with_range_against_a_fresh_presigned_url(tmp_path):
    body = bytes(range(256)) * 4096  # 1 MiB
    plane = RedirectingControlPlane(ArtifactServer(body, cut_after=300_000))
    cache = ArtifactCache(tmp_path, reserve_bytes=0, chunk_bytes=64 * 1024)
    digest = sha256_stream(io.BytesIO(body))
    with client_for(plane) as client:
        opener = lambda offset: client.download("m", 1, offset)  # noqa: E731
        with pytest.raises(Exception):  # noqa: B017 - the cut, as the cache reports it
            cache.download(digest, len(body), opener)
        path = cache.download(digest, len(body), opener)
    assert path.read_bytes() == body
    assert len(plane.asked) == 2  # each attempt asks the control plane for a URL anew
    assert plane.mirror.ranges()[0] is None
    assert plane.mirror.ranges()[1] == f"bytes={plane.mirror.sent()[0]}-"
    assert all("Authorization" not in r.headers for r in plane.mirror.requests)


def test_a_mirror_serving_wrong_bytes_is_refused_and_nothing_is_kept(tmp_path):
    body = b"the genuine model" * 1000
    plane = RedirectingControlPlane(ArtifactServer(bytes(reversed(body))))
    cache = ArtifactCache(tmp_path, reserve_bytes=0)
    digest = sha256_stream(io.BytesIO(body))
    with client_for(plane) as client, pytest.raises(VerificationFailed, match="sha256"):
        cache.download(digest, len(body), lambda offset: client.download("m", 1, offset))
    assert not cache.path(digest).exists()
    assert list(cache.partial.iterdir()) == []


@pytest.mark.parametrize(
    ("location", "mirror", "message"),
    [
        ("ftp://store.test/x", ArtifactServer(b"x"), "unusable location"),
        ("", ArtifactServer(b"x"), "unusable location"),
        (PRESIGNED, ArtifactServer(b"x", status=403), "store answered 403"),
        (PRESIGNED, ArtifactServer(b"x", status=404), "store answered 404"),
    ],
)
def test_a_bad_redirect_or_store_answer_is_unreachable_so_it_is_retried(location, mirror, message):
    with (
        client_for(RedirectingControlPlane(mirror, location)) as client,
        pytest.raises(Unreachable, match=message),
        client.download("m", 1),
    ):
        pass


def test_a_store_that_redirects_again_is_not_followed():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "tether.test":
            return httpx.Response(307, headers={"Location": PRESIGNED})
        return httpx.Response(302, headers={"Location": "http://elsewhere.test/"})

    with (
        client_for(handler) as client,
        pytest.raises(Unreachable, match="store answered 302"),
        client.download("m", 1),
    ):
        pass


def test_the_presigned_signature_is_not_logged(caplog):
    plane = RedirectingControlPlane(ArtifactServer(b"x" * 10))
    with (
        caplog.at_level("DEBUG", logger="tether.agent.client"),
        client_for(plane) as client,
        client.download("m", 1) as stream,
    ):
        b"".join(stream.chunks())
    assert "deadbeef" not in caplog.text
    assert "store.test/bucket/sha256/abc (presigned)" in caplog.text
