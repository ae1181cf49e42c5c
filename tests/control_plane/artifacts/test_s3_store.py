"""The S3 store against moto's standalone server: uploads in parts, nothing left, ranged reads."""

from __future__ import annotations

import hashlib
import io
import time

import httpx
import pytest

from control_plane.artifacts import ArtifactMissing, ArtifactStoreError, S3Location
from control_plane.artifacts.s3 import PART_SIZE, S3Store

pytestmark = pytest.mark.e2e  # a real server on loopback


def store_on(bucket, prefix: str = "tether", **options) -> S3Store:  # type: ignore[no-untyped-def]
    return S3Store(S3Location(bucket.name, prefix), endpoint_url=bucket.endpoint, **options)


def upload(store: S3Store, data: bytes, piece: int = 64 * 1024):  # type: ignore[no-untyped-def]
    handle = store.open_upload()
    for start in range(0, len(data), piece):
        handle.write(data[start : start + piece])
    handle.seek(0)  # as werkzeug does at the end of a part
    return handle


@pytest.mark.parametrize("size", [10, PART_SIZE - 1, PART_SIZE, 2 * PART_SIZE + 123])
def test_a_kept_upload_lands_under_its_digest_and_leaves_no_temporary_key(s3_bucket, size):
    store = store_on(s3_bucket)
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    digest, kept_size = store.keep(upload(store, data))
    assert (digest, kept_size) == (hashlib.sha256(data).hexdigest(), size)
    assert s3_bucket.object_keys() == [f"tether/sha256/{digest}"]
    assert s3_bucket.multipart_uploads() == []
    assert s3_bucket.get(f"tether/sha256/{digest}") == data
    assert store.exists(digest)


def test_the_same_bytes_twice_are_stored_once(s3_bucket):
    store = store_on(s3_bucket, prefix="")
    first = store.keep(upload(store, b"same bytes"))
    second = store.keep(upload(store, b"same bytes"))
    assert first == second
    assert s3_bucket.object_keys() == [f"sha256/{first[0]}"]


@pytest.mark.parametrize("size", [100, PART_SIZE + 5])
def test_a_discarded_upload_leaves_nothing_not_even_parts(s3_bucket, size):
    store = store_on(s3_bucket)
    handle = upload(store, b"y" * size)
    assert handle.read_back(4) == b"yyyy"
    store.discard(handle)
    assert s3_bucket.object_keys() == []
    assert s3_bucket.multipart_uploads() == []


def test_an_upload_cut_off_mid_part_is_aborted(s3_bucket):
    store = store_on(s3_bucket)
    handle = upload(store, b"z" * (PART_SIZE * 2 + 7))  # two parts sent, the rest buffered
    assert s3_bucket.multipart_uploads()
    store.discard(handle)
    assert s3_bucket.multipart_uploads() == []
    assert s3_bucket.object_keys() == []


def test_reads_seek_with_ranged_gets(s3_bucket):
    store = store_on(s3_bucket)
    data = bytes(range(256)) * 4000
    digest, _ = store.keep(upload(store, data))
    with store.open(digest) as handle:
        assert handle.seek(0, io.SEEK_END) == len(data)
        handle.seek(1000)
        assert handle.read(10) == data[1000:1010]
        handle.seek(len(data) - 5)
        assert handle.read() == data[-5:]
    assert store.read_bytes(digest) == data
    with pytest.raises(ArtifactMissing):
        store.open("0" * 64)


def test_a_presigned_url_serves_the_bytes_and_ranges_without_credentials(s3_bucket):
    store = store_on(s3_bucket, presign_ttl=60)
    data = b"presigned " * 1000
    digest, _ = store.keep(upload(store, data))
    url = store.presigned_url(digest)
    assert url is not None and "X-Amz-Signature" in url and "X-Amz-Expires=60" in url
    assert httpx.get(url).content == data
    partial = httpx.get(url, headers={"Range": "bytes=100-"})
    assert (partial.status_code, partial.content) == (206, data[100:])
    assert store_on(s3_bucket, presign=False).presigned_url(digest) is None


def test_sweeps_take_old_uploads_only_and_unreferenced_artifacts(s3_bucket):
    store = store_on(s3_bucket)
    kept, _ = store.keep(upload(store, b"kept"))
    orphan, _ = store.keep(upload(store, b"orphan"))
    in_flight = upload(store, b"w" * (PART_SIZE + 1))  # a multipart upload under way
    leftover = upload(store, b"small")
    leftover.finish()  # a small temporary object, as a crash between PUT and copy leaves it
    # Young ones stay: another replica may be receiving them right now.
    assert store.sweep_uploads(older_than=3600) == 0
    assert s3_bucket.multipart_uploads() and leftover.name in s3_bucket.object_keys()
    time.sleep(1.1)
    assert store.sweep_uploads(older_than=1) == 2
    assert s3_bucket.multipart_uploads() == []
    assert leftover.name not in s3_bucket.object_keys()
    assert store.sweep({kept}) == [orphan]
    assert s3_bucket.object_keys() == [f"tether/sha256/{kept}"]
    store.discard(in_flight)  # its upload is gone already: discarding still does not raise


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing bucket", r"bucket 'tether-no-such-bucket' does not exist; create it first"),
        ("unreachable", r"cannot reach the endpoint"),
    ],
)
def test_a_store_that_cannot_be_used_fails_prepare_naming_why(s3_bucket, case, message):
    from tests.support.processes import free_port

    if case == "missing bucket":
        store = S3Store(S3Location("tether-no-such-bucket"), endpoint_url=s3_bucket.endpoint)
    else:
        dead = f"http://127.0.0.1:{free_port()}"
        store = S3Store(S3Location(s3_bucket.name), endpoint_url=dead, connect_timeout=1)
    with pytest.raises(ArtifactStoreError, match=message) as caught:
        store.prepare()
    assert "s3://" in str(caught.value)
    assert store.check().startswith("error: ")
